package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"

	"path/filepath"

	"github.com/testum/testum/libs/metrics"
	"github.com/testum/testum/libs/pgcluster"
	"github.com/testum/testum/libs/store"
)

// cmdGateway runs the HTTP side only, against an existing NATS and
// PostgreSQL; run as many as you like behind a load balancer.
func cmdGateway(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var cfg Config
	if err := cfg.load("gateway", args, getenv, stderr, "db", "nats", "keys", "logs", "gateway", "targets", "metrics"); err != nil {
		return err
	}
	log, err := cfg.logger(stderr)
	if err != nil {
		return err
	}
	sys, err := openSystem(ctx, &cfg, log, systemOpts{needNATS: true})
	if err != nil {
		return err
	}
	defer sys.Close()
	gw, err := newGateway(&cfg, sys, metrics.New())
	if err != nil {
		return err
	}
	if err := bootstrapAdmin(ctx, &cfg, sys, stdout); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("TESTUM_LISTEN %s: %w", cfg.Listen, err)
	}
	fmt.Fprintf(stdout, "testum gateway %s serving on http://%s\n", version, ln.Addr())
	return gw.Serve(ctx, ln)
}

// cmdExecutor runs host tasks only; run as many as the fleet needs.
func cmdExecutor(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var cfg Config
	if err := cfg.load("executor", args, getenv, stderr, "db", "nats", "keys", "logs", "targets", "executor", "metrics", "ops"); err != nil {
		return err
	}
	log, err := cfg.logger(stderr)
	if err != nil {
		return err
	}
	m := metrics.New()
	ops, err := startOps(&cfg, m, log, stdout)
	if err != nil {
		return err
	}
	defer ops.close()
	sys, err := openSystem(ctx, &cfg, log, systemOpts{needNATS: true})
	if err != nil {
		return err
	}
	defer sys.Close()
	ops.setReady(systemReady(sys))
	ex, err := newExecutor(&cfg, sys, m)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "testum executor %s started as %s\n", version, ex.ID())
	return ex.Run(ctx)
}

// cmdMigrate applies the migrations to DATABASE_URL, or to the private
// cluster in the data dir when it is not set.
func cmdMigrate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var cfg Config
	if err := cfg.load("migrate", args, getenv, stderr, "db"); err != nil {
		return err
	}
	log, err := cfg.logger(stderr)
	if err != nil {
		return err
	}
	url, stop, err := databaseURL(ctx, &cfg, log)
	if err != nil {
		return err
	}
	defer stop()
	if err := store.Migrate(ctx, url, log); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "migrations applied")
	return nil
}

// databaseURL is DATABASE_URL, or the private cluster in the data dir
// (adopted if serve runs it, started otherwise); stop releases it.
func databaseURL(ctx context.Context, cfg *Config, log *slog.Logger) (string, func(), error) {
	if cfg.DatabaseURL != "" {
		return cfg.DatabaseURL, func() {}, nil
	}
	pg, err := pgcluster.Start(ctx, pgcluster.Config{Dir: filepath.Join(cfg.DataDir, "pg"), Logger: log})
	if err != nil {
		return "", nil, fmt.Errorf("private PostgreSQL: %w", err)
	}
	return pg.URL("testum"), func() { _ = pg.Stop(context.WithoutCancel(ctx)) }, nil
}
