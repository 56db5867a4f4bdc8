package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/testum/testum/libs/bus"
	"github.com/testum/testum/libs/logstore"
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
	// Listen first: while the role waits for NATS, JetStream and PostgreSQL,
	// a load balancer sees /healthz 200 and /readyz 503.
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("TESTUM_LISTEN %s: %w", cfg.Listen, err)
	}
	fmt.Fprintf(stdout, "testum gateway %s listening on http://%s, ready once NATS, JetStream and PostgreSQL answer\n", version, ln.Addr())
	stopStarting := serveStarting(ln, log)
	sys, err := openSystem(ctx, &cfg, log, systemOpts{needNATS: true})
	stopStarting()
	if err != nil {
		_ = ln.Close()
		return stoppedWhileStarting(ctx, err)
	}
	defer sys.Close()
	gw, err := newGateway(&cfg, sys, metrics.New())
	if err != nil {
		return err
	}
	if err := bootstrapAdmin(ctx, &cfg, sys, stdout); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "testum gateway %s serving on http://%s\n", version, ln.Addr())
	return gw.Serve(ctx, ln)
}

// stoppedWhileStarting is the end of a role stopped (SIGTERM) while it
// waited for its dependencies: a clean exit, not a failure.
func stoppedWhileStarting(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
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
	// wait.Status() is the executor's readiness while it starts.
	wait := newStartup(log)
	sys, err := openSystem(ctx, &cfg, log, systemOpts{needNATS: true, startup: wait})
	if err != nil {
		return stoppedWhileStarting(ctx, err)
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
// cluster in the data dir when it is not set. With --streams it brings the
// JetStream streams of NATS_URL to the configured settings instead.
func cmdMigrate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if slices.Contains(args, "--streams") || slices.Contains(args, "-streams") {
		return cmdMigrateStreams(ctx, args, getenv, stdout, stderr)
	}
	var cfg Config
	// migrate-streams: the usage shows --streams.
	if err := cfg.load("migrate", args, getenv, stderr, "db", "migrate-streams"); err != nil {
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

// cmdMigrateStreams changes every stream to TESTUM_STREAM_REPLICAS (or its
// default) and the output limits, all streams or none: the one change a
// start never makes.
func cmdMigrateStreams(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var cfg Config
	if err := cfg.load("migrate", args, getenv, stderr, "nats", "migrate-streams"); err != nil {
		return err
	}
	log, err := cfg.logger(stderr)
	if err != nil {
		return err
	}
	if cfg.NATSURL == "" {
		return errors.New("NATS_URL is required for migrate --streams")
	}
	nc, err := nats.Connect(cfg.NATSURL, bus.ConnectOptions("testum migrate", func(msg string, args ...any) { log.Warn(msg, args...) })...)
	if err != nil {
		return fmt.Errorf("NATS_URL: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	mctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	sc := cfg.streamsConfig()
	sc.Logger = log.With("component", "streams")
	// One count for the streams and the log bucket: the probe (when the
	// replicas are not configured) is made once.
	if sc.Replicas, err = bus.Replicas(mctx, js, sc.Replicas); err != nil {
		return fmt.Errorf("migrate --streams: %w", err)
	}
	// The log bucket is read before any stream changes, so that a bucket
	// that cannot be read changes nothing; it changes after the streams,
	// so that a stream change NATS refuses leaves the bucket as it is too.
	// A deployment without the bucket (logs on disk or in MinIO) has none
	// to change: it is not created here.
	bucketHave, bucketFound, err := logstore.NATSBucketReplicas(mctx, js, logstore.DefaultNATSBucket)
	if err != nil {
		return fmt.Errorf("migrate --streams: nothing changed: %w", err)
	}
	changes, err := bus.MigrateStreams(mctx, js, sc, cfg.RecreateOutput)
	for _, c := range changes {
		fmt.Fprintf(stdout, "changed %s\n", c)
	}
	if err != nil {
		return fmt.Errorf("migrate --streams: %w", err)
	}
	bucketChanged := bucketFound && bucketHave != sc.Replicas
	if bucketChanged {
		if err := logstore.SetNATSBucketReplicas(mctx, js, logstore.DefaultNATSBucket, sc.Replicas); err != nil {
			return fmt.Errorf("migrate --streams: %w; the stream changes listed are made, run again once the cause is fixed", err)
		}
		fmt.Fprintf(stdout, "changed %s\n", bus.StreamChange{Stream: logstore.DefaultNATSBucket, Setting: "replicas",
			Have: strconv.Itoa(bucketHave), Want: strconv.Itoa(sc.Replicas)})
	}
	switch {
	case len(changes) > 0 || bucketChanged:
	case bucketFound:
		fmt.Fprintln(stdout, "streams and log bucket already match the configuration")
	default:
		fmt.Fprintln(stdout, "streams already match the configuration")
	}
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
