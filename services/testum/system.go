package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/testum/testum/libs/auth"
	"github.com/testum/testum/libs/bus"
	"github.com/testum/testum/libs/logstore"
	"github.com/testum/testum/libs/natsembed"
	"github.com/testum/testum/libs/pgcluster"
	"github.com/testum/testum/libs/secrets"
	"github.com/testum/testum/libs/store"
)

// system is what every role connects to: PostgreSQL, NATS, the log store
// and the credential keys, owned (and closed) in one place.
type system struct {
	cfg     *Config
	log     *slog.Logger
	st      *store.Store
	nc      *nats.Conn
	logs    logstore.Store
	keyring *secrets.Keyring
	natsURL string // the embedded server's client URL when it listens
	wait    *startup

	closers []closer
}

type systemOpts struct {
	embed    bool // serve: start what is not configured (PostgreSQL, NATS, keys)
	needNATS bool
	// startup is where the waits for PostgreSQL, NATS and JetStream report
	// their progress (for a readiness probe); nil: only to the log.
	startup *startup
}

func openSystem(ctx context.Context, cfg *Config, log *slog.Logger, o systemOpts) (sys *system, err error) {
	opened := &system{cfg: cfg, log: log}
	sys = opened
	defer func() {
		if err != nil {
			opened.Close()
		}
	}()
	if o.embed {
		// 0711: PostgreSQL's own user must be able to pass through to its
		// cluster directory; nothing here can be listed by others.
		if err := os.MkdirAll(cfg.DataDir, 0o711); err != nil {
			return nil, fmt.Errorf("data dir: %w", err)
		}
	}
	if err := sys.loadKeys(o.embed); err != nil {
		return nil, err
	}

	dbURL := cfg.DatabaseURL
	if dbURL == "" {
		if !o.embed {
			return nil, errors.New("DATABASE_URL is required for this command")
		}
		pg, err := pgcluster.Start(ctx, pgcluster.Config{Dir: filepath.Join(cfg.DataDir, "pg"), Logger: log.With("component", "postgres")})
		if err != nil {
			return nil, fmt.Errorf("private PostgreSQL: %w", err)
		}
		sys.addCloser("PostgreSQL", func() {
			sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := pg.Stop(sctx); err != nil {
				log.Warn("stopping PostgreSQL", "err", err)
			}
		})
		dbURL = pg.URL("testum")
		log.Info("private PostgreSQL started", "dir", pg.DataDir())
	}
	wait := o.startup
	if wait == nil {
		wait = newStartup(log)
	}
	sys.wait = wait
	st, err := sys.openStore(ctx, dbURL)
	if err != nil {
		return nil, err
	}
	sys.st = st
	sys.addCloser("store", st.Close)
	if err := checkSecretsCanary(ctx, st, sys.keyring); err != nil {
		return nil, err
	}
	if err := upgradeLegacySecrets(ctx, st, sys.keyring, log); err != nil {
		return nil, err
	}

	if o.needNATS {
		if err := sys.connectNATS(ctx, o.embed); err != nil {
			return nil, err
		}
	}

	logs, err := openLogStore(ctx, cfg, sys.nc, log)
	if err != nil {
		return nil, fmt.Errorf("log store: %w", err)
	}
	sys.logs = logs
	wait.done()
	return sys, nil
}

// openStore waits until PostgreSQL answers and its schema is migrated, then
// returns the store.
func (sys *system) openStore(ctx context.Context, url string) (*store.Store, error) {
	if err := store.CheckURL(url); err != nil {
		return nil, err
	}
	var st *store.Store
	err := sys.wait.await(ctx, "PostgreSQL", func(ctx context.Context) error {
		s, err := store.Open(ctx, store.Config{URL: url, Sealer: sys.keyring, Logger: sys.log.With("component", "store")})
		if err != nil {
			return err
		}
		pctx, cancel := context.WithTimeout(ctx, startTryTimeout)
		err = s.Ping(pctx)
		cancel()
		if err == nil {
			err = store.Migrate(ctx, url, sys.log.With("component", "migrate"))
		}
		if err != nil {
			s.Close()
			return err
		}
		st = s
		return nil
	})
	return st, err
}

// startTryTimeout bounds one try to reach a dependency at start: a host
// that drops packets must not hold the wait for the system's TCP timeout.
const startTryTimeout = 10 * time.Second

func (sys *system) connectNATS(ctx context.Context, embed bool) error {
	cfg, log := sys.cfg, sys.log
	opts := bus.ConnectOptions("testum", func(msg string, args ...any) { log.Warn(msg, args...) })
	if cfg.NATSURL != "" {
		// The client keeps trying to connect on its own (RetryOnFailedConnect);
		// the wait watches it, so that the role starts only once connected,
		// and tells why its last try failed.
		var lastErr atomic.Value
		nc, err := nats.Connect(cfg.NATSURL, append(opts, nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				lastErr.Store(err)
			}
		}))...)
		if err != nil {
			return fmt.Errorf("NATS_URL: %w", err)
		}
		sys.nc = nc
		err = sys.wait.await(ctx, "NATS", func(context.Context) error {
			if nc.IsConnected() {
				return nil
			}
			if last, ok := lastErr.Load().(error); ok {
				return fmt.Errorf("NATS_URL: not connected (%s): %w", nc.Status(), last)
			}
			return fmt.Errorf("NATS_URL: not connected yet (%s)", nc.Status())
		})
		if err != nil {
			nc.Close()
			return err
		}
	} else {
		if !embed {
			return errors.New("NATS_URL is required for this command")
		}
		nc := natsembed.Config{StoreDir: filepath.Join(cfg.DataDir, "nats"), Logger: log.With("component", "nats")}
		if cfg.NATSListen != "" {
			user, pass, err := sys.natsCredentials()
			if err != nil {
				return err
			}
			nc.Listen, nc.User, nc.Password = cfg.NATSListen, user, pass
		}
		srv, err := natsembed.Start(nc)
		if err != nil {
			return err
		}
		sys.addCloser("embedded NATS", srv.Shutdown)
		conn, err := srv.Connect(opts...)
		if err != nil {
			return fmt.Errorf("nats: %w", err)
		}
		sys.nc = conn
		sys.natsURL = srv.ClientURL()
	}
	sys.addCloser("NATS connection", func() { _ = sys.nc.Drain() })
	js, err := jetstream.New(sys.nc)
	if err != nil {
		return err
	}
	// The JetStream API answers only once the cluster has a meta leader.
	sc := cfg.streamsConfig()
	sc.Logger = log.With("component", "streams")
	return sys.wait.await(ctx, "JetStream", func(ctx context.Context) error {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		return bus.EnsureStreams(sctx, js, sc)
	})
}

// closer is one step of system.Close.
type closer struct {
	name string
	fn   func()
}

func (sys *system) addCloser(name string, fn func()) {
	sys.closers = append(sys.closers, closer{name, fn})
}

// Close releases everything in reverse order of opening, logging each step
// (at debug) with how long it took.
func (sys *system) Close() {
	for i := len(sys.closers) - 1; i >= 0; i-- {
		c := sys.closers[i]
		start := time.Now()
		c.fn()
		sys.log.Debug("stopped", "what", c.name, "took", time.Since(start).Round(time.Millisecond))
	}
	sys.closers = nil
}

// loadKeys takes SECRET_KEY and FERNET_KEY from the environment, else from
// the data dir, generating them there on first start (serve only).
func (sys *system) loadKeys(generate bool) error {
	cfg := sys.cfg
	var err error
	if cfg.SecretKey == "" {
		if cfg.SecretKey, err = keyFile(filepath.Join(cfg.DataDir, "secret_key"), generate, randomKey); err != nil {
			return fmt.Errorf("SECRET_KEY: %w", err)
		}
	}
	if len(cfg.SecretKey) < auth.MinSecretKeyLen {
		return fmt.Errorf("SECRET_KEY is too short: use at least %d random characters", auth.MinSecretKeyLen)
	}
	return sys.loadFernetKey(generate)
}

// loadFernetKey reads the credential keyring (FERNET_KEY or the data dir).
func (sys *system) loadFernetKey(generate bool) error {
	cfg := sys.cfg
	var err error
	if cfg.FernetKey == "" {
		if cfg.FernetKey, err = keyFile(filepath.Join(cfg.DataDir, "fernet_key"), generate, secrets.GenerateKey); err != nil {
			return fmt.Errorf("FERNET_KEY: %w", err)
		}
	}
	if sys.keyring, err = secrets.ParseKeyring(cfg.FernetKey); err != nil {
		return err
	}
	return nil
}

// natsCredentials returns the embedded NATS's user and password, generated
// once into the data dir.
func (sys *system) natsCredentials() (string, string, error) {
	pass, err := keyFile(filepath.Join(sys.cfg.DataDir, "nats_password"), true, randomKey)
	if err != nil {
		return "", "", fmt.Errorf("nats credentials: %w", err)
	}
	return "testum", pass, nil
}

// keyFile reads a one-line secret from path, or writes a new one (0600)
// when allowed.
func keyFile(path string, generate bool, gen func() (string, error)) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	if !generate {
		return "", fmt.Errorf("not set, and %s does not exist", path)
	}
	v, err := gen()
	if err != nil {
		return "", err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) { // another process was faster
			return keyFile(path, false, gen)
		}
		return "", err
	}
	_, err = f.WriteString(v + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", err
	}
	return v, nil
}

func randomKey() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

const canaryName = "secrets.canary"

// checkSecretsCanary makes sure the configured FERNET_KEY opens what this
// database holds before anything is written with it: a wrong key fails the
// start with a clear message instead of sealing new data under it.
func checkSecretsCanary(ctx context.Context, st *store.Store, kr *secrets.Keyring) error {
	ad := []byte("settings/" + canaryName)
	v, ok, err := st.Setting(ctx, canaryName)
	if err != nil {
		return err
	}
	if ok {
		if _, err := kr.Open(v, ad); err != nil {
			return fmt.Errorf("FERNET_KEY does not match the credentials stored in this database (%v); "+
				"configure the key they were written with (several keys may be given, newest first)", err)
		}
		return nil
	}
	sealed, err := kr.Seal([]byte("testum"), ad)
	if err != nil {
		return err
	}
	if _, err := st.SettingPutIfAbsent(ctx, canaryName, sealed); err != nil {
		return err
	}
	return nil
}
