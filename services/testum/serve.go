package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/testum/testum/libs/accounts"
	"github.com/testum/testum/libs/metrics"
	"github.com/testum/testum/services/executor"
	"github.com/testum/testum/services/gateway"
)

// cmdServe runs everything in one process.
func cmdServe(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var cfg Config
	if err := cfg.load("serve", args, getenv, stderr, "db", "nats", "embed", "keys", "logs", "gateway", "targets", "executor", "metrics"); err != nil {
		return err
	}
	log, err := cfg.logger(stderr)
	if err != nil {
		return err
	}
	// Listen first, like testum gateway: while it waits for an external
	// PostgreSQL or NATS (or starts its own), /healthz 200 and /readyz 503.
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("TESTUM_LISTEN %s: %w", cfg.Listen, err)
	}
	fmt.Fprintf(stdout, "testum %s listening on http://%s, ready once PostgreSQL, NATS and JetStream answer\n", version, ln.Addr())
	stopStarting := serveStarting(ln, log)
	sys, err := openSystem(ctx, &cfg, log, systemOpts{embed: true, needNATS: true})
	stopStarting()
	if err != nil {
		_ = ln.Close()
		return stoppedWhileStarting(ctx, err)
	}
	defer sys.Close()

	m := metrics.New() // one registry: the gateway's /metrics shows the executor's too
	gw, err := newGateway(&cfg, sys, m)
	if err != nil {
		return err
	}
	if err := bootstrapAdmin(ctx, &cfg, sys, stdout); err != nil {
		return err
	}
	ex, err := newExecutor(&cfg, sys, m)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "testum %s serving on http://%s\n", version, ln.Addr())
	if sys.natsURL != "" {
		fmt.Fprintf(stdout, "embedded NATS for other processes at %s (user testum, password in %s)\n",
			sys.natsURL, filepath.Join(cfg.DataDir, "nats_password"))
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return stopLogged(log, "gateway", gw.Serve(gctx, ln)) })
	g.Go(func() error { return stopLogged(log, "executor", ex.Run(gctx)) })
	return g.Wait()
}

// stopLogged logs (at debug) that a part of the process returned, for
// following a stop step by step, and passes its error on.
func stopLogged(log *slog.Logger, what string, err error) error {
	log.Debug("stopped", "what", what, "err", err)
	return err
}

func newGateway(cfg *Config, sys *system, m *metrics.Metrics) (*gateway.Gateway, error) {
	return gateway.New(cfg.gatewayConfig(sys.log), gateway.Deps{Store: sys.st, NATS: sys.nc, Logs: sys.logs, Metrics: m})
}

func newExecutor(cfg *Config, sys *system, m *metrics.Metrics) (*executor.Executor, error) {
	return executor.New(cfg.executorConfig(sys.log), executor.Deps{Store: sys.st, NATS: sys.nc, Logs: sys.logs, Metrics: m})
}

// bootstrapAdmin creates the first super_admin when there is no user, and
// prints a generated master key once: it is never shown again. It also
// creates testum's identity key pair when there is none.
func bootstrapAdmin(ctx context.Context, cfg *Config, sys *system, stdout io.Writer) error {
	acc, err := accounts.New(accounts.Config{}, accounts.Postgres(sys.st))
	if err != nil {
		return err
	}
	created, key, err := acc.BootstrapAdmin(ctx, cfg.AdminUsername, cfg.AdminPassword)
	if err != nil {
		return fmt.Errorf("first user: %w", err)
	}
	switch {
	case created && key != "":
		fmt.Fprintf(stdout, "created super_admin %q with master key:\n\n    %s\n\nIt is shown this once; keep it safe (testum user reset %s makes a new one).\n",
			cfg.AdminUsername, key, cfg.AdminUsername)
	case created:
		sys.log.Info("created the first super_admin from ADMIN_USERNAME and ADMIN_PASSWORD", "username", cfg.AdminUsername)
	}
	// testum's own key pair exists from the first start: GET
	// /api/keys/identity only reads it.
	made, err := gateway.EnsureIdentity(ctx, sys.st)
	if err != nil {
		return fmt.Errorf("identity key pair: %w", err)
	}
	if made {
		sys.log.Info("created testum's identity key pair", "credential", gateway.IdentityCredential)
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
