package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/testum/testum/libs/accounts"
	"github.com/testum/testum/libs/bus"
	"github.com/testum/testum/libs/logstore"
	"github.com/testum/testum/libs/sshx"
	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/libs/testum"
	"github.com/testum/testum/services/executor"
	"github.com/testum/testum/services/gateway"
)

// Config is every setting, read once from the environment (named as in the
// seed where it has one) and overridden by flags.
type Config struct {
	DatabaseURL   string
	NATSURL       string
	NATSListen    string
	Listen        string
	DataDir       string
	SecretKey     string
	FernetKey     string
	HostKeyPolicy string
	LogLevel      string
	LogFormat     string

	Slots          int
	MaxHandshakes  int
	ConnectTimeout time.Duration
	OutputCap      int64
	Heartbeat      time.Duration
	DeadAfter      time.Duration
	AckWait        time.Duration
	DrainTimeout   time.Duration
	ConnIdle       time.Duration

	AdminUsername  string
	AdminPassword  string
	SessionIdle    time.Duration
	SessionMax     time.Duration
	TrustedProxies string
	AllowedOrigins string

	StreamReplicas int
	Streams        bool // migrate: the streams, not the database
	RecreateOutput bool // migrate --streams: the output stream may be deleted and created anew
	OutputMaxAge   time.Duration
	OutputMaxBytes int64

	MinIOEndpoint  string
	MinIOAccessKey string
	MinIOSecretKey string
	MinIOBucket    string
	MinIORegion    string
	MinIOSecure    bool
	LogStore       string // "" (chosen by the command), disk, s3 or nats
	LogDir         string
	LogDirShared   bool

	TargetDeny sshx.DenyList

	command      string // the command that loaded the settings: serve, gateway, executor...
	MetricsToken string
	OpsListen    string
}

// setting is one configurable value: its flag, its variable, its default.
// A setting without a variable is a switch of one command (a bare flag).
type setting struct {
	flag, env, def, help string
	set                  func(string) error
}

// settings lists what a command reads; groups select the ones it needs.
// The defaults come from the components' own Default constants, so a
// component built with zero fields and one built from this table agree.
func (c *Config) settings(groups ...string) []setting {
	all := map[string][]setting{
		"common": {
			{"data-dir", "TESTUM_DATA_DIR", "./data", "directory for keys, the embedded NATS store, the private PostgreSQL and logs", str(&c.DataDir)},
			{"log-level", "TESTUM_LOG_LEVEL", "info", "debug, info, warn or error", str(&c.LogLevel)},
			{"log-format", "TESTUM_LOG_FORMAT", "text", "text or json", str(&c.LogFormat)},
		},
		"db": {
			{"database-url", "DATABASE_URL", "", "PostgreSQL URL; serve starts a private cluster in the data dir when empty", str(&c.DatabaseURL)},
		},
		"nats": {
			{"nats-url", "NATS_URL", "", "NATS server URL; serve embeds one when empty", str(&c.NATSURL)},
			{"stream-replicas", "TESTUM_STREAM_REPLICAS", "", "JetStream replicas of the streams testum creates; empty: min(3, JetStream servers), 1 on the embedded server", replicas(&c.StreamReplicas)},
			{"ack-wait", "TESTUM_ACK_WAIT", fmtDur(bus.DefaultAckWait), "how long a delivered task may go unacknowledged (set on the consumers; executors read it from them)", dur(&c.AckWait)},
			{"output-max-age", "TESTUM_OUTPUT_MAX_AGE", fmtDur(bus.DefaultOutputMaxAge), "how long live transcripts stay replayable", dur(&c.OutputMaxAge)},
			{"output-max-bytes", "TESTUM_OUTPUT_MAX_BYTES", fmtSize(bus.DefaultOutputMaxBytes), "size limit of the transcript stream", size(&c.OutputMaxBytes)},
		},
		"migrate-streams": {
			{"streams", "", "false", "migrate the JetStream streams (replicas, limits) and the log bucket (replicas) to this configuration instead of the database", boolean(&c.Streams)},
			{"recreate-output", "", "false", "with --streams: delete and recreate the transcript stream when NATS cannot change it in place (persist mode); live transcripts are dropped, the log archive keeps every log", boolean(&c.RecreateOutput)},
		},
		"embed": {
			{"nats-listen", "TESTUM_NATS_LISTEN", "", "expose the embedded NATS on this loopback address (credentials go to the data dir)", str(&c.NATSListen)},
		},
		"keys": {
			{"secret-key", "SECRET_KEY", "", "signs session tokens; serve generates one into the data dir when empty", str(&c.SecretKey)},
			{"fernet-key", "FERNET_KEY", "", "encrypts credentials at rest (comma-separated, newest first); generated when empty", str(&c.FernetKey)},
		},
		"gateway": {
			{"listen", "TESTUM_LISTEN", "127.0.0.1:8000", "HTTP address", str(&c.Listen)},
			{"admin-username", "ADMIN_USERNAME", accounts.DefaultAdminName, "name of the first super_admin, created when there is no user", str(&c.AdminUsername)},
			{"admin-password", "ADMIN_PASSWORD", "", "master key of the first super_admin; generated and printed once when empty", str(&c.AdminPassword)},
			{"session-idle", "TESTUM_SESSION_IDLE", fmtDur(accounts.DefaultSessionIdle), "a session ends after this long without a request", dur(&c.SessionIdle)},
			{"session-max", "TESTUM_SESSION_MAX", fmtDur(accounts.DefaultSessionMax), "a session ends this long after login", dur(&c.SessionMax)},
			{"trusted-proxies", "TESTUM_TRUSTED_PROXIES", "", "comma-separated proxy addresses or CIDRs whose X-Forwarded-For is believed", str(&c.TrustedProxies)},
			{"allowed-origins", "TESTUM_ALLOWED_ORIGINS", "", "comma-separated extra origins (https://console.example.org) allowed to open WebSockets", str(&c.AllowedOrigins)},
		},
		"logs": {
			{"log-store", "TESTUM_LOG_STORE", "", "where host logs are archived: disk, s3 or nats (the JetStream object store); when empty, s3 if MINIO_ENDPOINT is set, else disk for serve and nats for gateway and executor", str(&c.LogStore)},
			{"log-dir", "TESTUM_LOG_DIR", "", "directory of the disk log store; <data dir>/logs when empty", str(&c.LogDir)},
			{"log-dir-shared", "TESTUM_LOG_DIR_SHARED", "false", "true: the disk log store is a mount every gateway and executor reads, so testum executor may use it", boolean(&c.LogDirShared)},
			{"minio-endpoint", "MINIO_ENDPOINT", "", "S3/MinIO endpoint (host:port, or a URL whose scheme sets HTTPS) that archives logs (see TESTUM_LOG_STORE)", str(&c.MinIOEndpoint)},
			{"minio-access-key", "MINIO_ACCESS_KEY", "", "S3/MinIO access key", str(&c.MinIOAccessKey)},
			{"minio-secret-key", "MINIO_SECRET_KEY", "", "S3/MinIO secret key", str(&c.MinIOSecretKey)},
			{"minio-bucket", "MINIO_BUCKET", logstore.DefaultBucket, "bucket of the log archive", str(&c.MinIOBucket)},
			{"minio-region", "MINIO_REGION", "", "S3 region (optional)", str(&c.MinIORegion)},
			{"minio-secure", "MINIO_SECURE", "false", "true: HTTPS to the endpoint", boolean(&c.MinIOSecure)},
		},
		// The target policy binds the gateway (platform checks and tests) and
		// the executor (every dial) alike.
		"targets": {
			{"target-deny", "TESTUM_TARGET_DENY", sshx.DefaultDenyRanges, "comma-separated CIDR ranges no platform, jump host or test may connect to (none: no range); replaces the default", denyList(&c.TargetDeny)},
		},
		"metrics": {
			{"metrics-token", "TESTUM_METRICS_TOKEN", "", "bearer token that may read /metrics without a session (Prometheus); empty: extended_admin sessions only", str(&c.MetricsToken)},
		},
		// Only `testum executor`: it has no other HTTP listener.
		"ops": {
			{"ops-listen", "TESTUM_OPS_LISTEN", "", "address of the executor's ops listener (/metrics with the metrics token, /healthz, /readyz); empty: none", str(&c.OpsListen)},
		},
		"executor": {
			{"host-key-policy", "SSH_HOST_KEY_POLICY", string(testum.HostKeyAutoAdd), "auto_add (pin on first contact) or strict (only pinned keys)", str(&c.HostKeyPolicy)},
			{"slots", "TESTUM_EXECUTOR_SLOTS", strconv.Itoa(executor.DefaultSlots), "concurrent SSH sessions per executor", num(&c.Slots)},
			{"max-handshakes", "TESTUM_MAX_HANDSHAKES", strconv.Itoa(executor.DefaultMaxHandshakes), "ceiling of the adaptive window of SSH handshakes in flight per executor", num(&c.MaxHandshakes)},
			{"connect-timeout", "TESTUM_CONNECT_TIMEOUT", fmtDur(sshx.DefaultConnectTimeout), "TCP dial + SSH handshake + authentication", dur(&c.ConnectTimeout)},
			{"output-cap", "TESTUM_OUTPUT_CAP", fmtSize(executor.DefaultOutputCap), "output kept per host; the rest is discarded with a marker", size(&c.OutputCap)},
			{"heartbeat", "TESTUM_HEARTBEAT", fmtDur(store.DefaultExecutorHeartbeat), "executor heartbeat interval", dur(&c.Heartbeat)},
			{"dead-after", "TESTUM_DEAD_AFTER", fmtDur(store.DefaultExecutorDeadAfter), "an executor silent this long is dead and its hosts end lost", dur(&c.DeadAfter)},
			{"drain-timeout", "TESTUM_DRAIN_TIMEOUT", fmtDur(executor.DefaultDrainTimeout), "on stop, how long running commands may finish", dur(&c.DrainTimeout)},
			{"conn-idle", "TESTUM_CONN_IDLE", fmtDur(executor.DefaultConnIdle), "how long a host's SSH connection is kept for its next command (0 = a new connection every time)", durOrOff(&c.ConnIdle)},
		},
	}
	var out []setting
	for _, g := range append([]string{"common"}, groups...) {
		out = append(out, all[g]...)
	}
	return out
}

// load reads the settings of groups from getenv, then from args.
func (c *Config) load(cmd string, args []string, getenv func(string) string, stderr io.Writer, groups ...string) error {
	fs := flag.NewFlagSet("testum "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	sets := c.settings(groups...)
	for _, s := range sets {
		v := s.def
		if e := getenv(s.env); s.env != "" && e != "" {
			v = e
		}
		if err := s.set(v); err != nil {
			return fmt.Errorf("%s=%q: %w", s.env, redact(s.env, v), err)
		}
		if s.env == "" { // a command's own switch, off by default
			fs.BoolFunc(s.flag, s.help, s.set)
		} else {
			fs.Func(s.flag, fmt.Sprintf("%s (env %s, default %q)", s.help, s.env, s.def), s.set)
		}
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: testum %s [flags]\n\nEvery flag but a command's own switches can also be set by its environment variable.\n\n", cmd)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errUsage
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if abs, err := filepath.Abs(c.DataDir); err == nil {
		c.DataDir = abs
	}
	c.command = cmd
	return c.check()
}

// check catches settings that are wrong only together.
func (c *Config) check() error {
	if strings.TrimSpace(c.MinIOEndpoint) != "" && (c.MinIOAccessKey == "" || c.MinIOSecretKey == "") {
		return errors.New("MINIO_ENDPOINT is set but MINIO_ACCESS_KEY or MINIO_SECRET_KEY is empty")
	}
	return c.checkLogStore()
}

// redact hides values of variables that hold secrets in error messages.
func redact(env, v string) string {
	switch env {
	case "SECRET_KEY", "FERNET_KEY", "DATABASE_URL", "NATS_URL", "ADMIN_PASSWORD", "MINIO_SECRET_KEY", "TESTUM_METRICS_TOKEN":
		return "<hidden>"
	}
	return v
}

func str(p *string) func(string) error { return func(v string) error { *p = v; return nil } }

func num(p *int) func(string) error {
	return func(v string) error {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return errors.New("want a whole number")
		}
		*p = n
		return nil
	}
}

// replicas takes 1..5, or empty for the default (0).
func replicas(p *int) func(string) error {
	return func(v string) error {
		if strings.TrimSpace(v) == "" {
			*p = 0
			return nil
		}
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 1 || n > 5 {
			return errors.New("want 1 to 5, or empty for min(3, JetStream servers)")
		}
		*p = n
		return nil
	}
}

func dur(p *time.Duration) func(string) error {
	return func(v string) error {
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil || d <= 0 {
			return errors.New(`want a positive duration like "10s" or "5m"`)
		}
		*p = d
		return nil
	}
}

// durOrOff is dur that also takes 0: the feature is off.
func durOrOff(p *time.Duration) func(string) error {
	return func(v string) error {
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil || d < 0 {
			return errors.New(`want a duration like "60s", or 0 for off`)
		}
		*p = d
		return nil
	}
}

func denyList(p *sshx.DenyList) func(string) error {
	return func(v string) error {
		d, err := sshx.ParseDenyList(v)
		if err != nil {
			return fmt.Errorf("want CIDR ranges like 169.254.0.0/16,10.0.0.0/8, or none: %w", err)
		}
		*p = d
		return nil
	}
}

func boolean(p *bool) func(string) error {
	return func(v string) error {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return errors.New("want true or false")
		}
		*p = b
		return nil
	}
}

func size(p *int64) func(string) error {
	return func(v string) error {
		n, err := humanize.ParseBytes(strings.TrimSpace(v))
		if err != nil || n == 0 || n > 1<<50 {
			return errors.New(`want a size like "64MiB"`)
		}
		*p = int64(n)
		return nil
	}
}

// logger builds the process logger.
func (c *Config) logger(stderr io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return nil, fmt.Errorf("TESTUM_LOG_LEVEL=%q: want debug, info, warn or error", c.LogLevel)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch c.LogFormat {
	case "text":
		return slog.New(slog.NewTextHandler(stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(stderr, opts)), nil
	}
	return nil, fmt.Errorf("TESTUM_LOG_FORMAT=%q: want text or json", c.LogFormat)
}

// fmtDur writes a default duration the way the README and dur read it:
// "30s", "60s", "15m", "24h".
func fmtDur(d time.Duration) string {
	if d < 2*time.Minute && d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// fmtSize writes a default size in the largest binary unit that divides it:
// "64MiB", "8GiB".
func fmtSize(n int64) string {
	for _, u := range []struct {
		shift uint
		name  string
	}{{40, "TiB"}, {30, "GiB"}, {20, "MiB"}, {10, "KiB"}} {
		if n >= 1<<u.shift && n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}

// The component configurations, derived from the one Config. The ack wait
// goes only to the streams: executors read it back from the consumers.

func (c *Config) streamsConfig() bus.StreamsConfig {
	return bus.StreamsConfig{
		Replicas: c.StreamReplicas, OutputMaxAge: c.OutputMaxAge, OutputMaxBytes: c.OutputMaxBytes, AckWait: c.AckWait,
	}
}

func (c *Config) logsConfig() logstore.Config {
	return logstore.Config{DataDir: c.DataDir, S3: logstore.S3Config{
		Endpoint: c.MinIOEndpoint, AccessKey: c.MinIOAccessKey, SecretKey: c.MinIOSecretKey,
		Bucket: c.MinIOBucket, Region: c.MinIORegion, Secure: c.MinIOSecure,
	}}
}

func (c *Config) gatewayConfig(log *slog.Logger) gateway.Config {
	return gateway.Config{
		ExecutorDeadAfter: c.DeadAfter,
		SecretKey:         c.SecretKey,
		ConnectTimeout:    c.ConnectTimeout,
		HostKeyPolicy:     testum.HostKeyPolicy(c.HostKeyPolicy),
		SessionIdle:       c.SessionIdle,
		SessionMax:        c.SessionMax,
		TrustedProxies:    splitList(c.TrustedProxies),
		AllowedOrigins:    splitList(c.AllowedOrigins),
		TargetDeny:        c.TargetDeny,
		MetricsToken:      c.MetricsToken,
		Logger:            log,
	}
}

func (c *Config) executorConfig(log *slog.Logger) executor.Config {
	return executor.Config{
		Slots:             c.Slots,
		MaxHandshakes:     c.MaxHandshakes,
		ConnectTimeout:    c.ConnectTimeout,
		HostKeyPolicy:     testum.HostKeyPolicy(c.HostKeyPolicy),
		OutputCap:         c.OutputCap,
		SpoolDir:          filepath.Join(c.DataDir, "spool"),
		HeartbeatInterval: c.Heartbeat,
		DeadAfter:         c.DeadAfter,
		DrainTimeout:      c.DrainTimeout,
		ConnIdle:          c.ConnIdle,
		NoConnReuse:       c.ConnIdle <= 0,
		TargetDeny:        c.TargetDeny,
		Logger:            log,
	}
}
