package main

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/testum/testum/libs/accounts"
	"github.com/testum/testum/libs/bus"
	"github.com/testum/testum/libs/logstore"
	"github.com/testum/testum/libs/sshx"
	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/services/executor"
)

var serveGroups = []string{"db", "nats", "embed", "keys", "logs", "gateway", "targets", "executor"}

func loadConfig(t *testing.T, env map[string]string, args ...string) (Config, error) {
	t.Helper()
	var c Config
	err := c.load("serve", args, func(k string) string { return env[k] }, io.Discard, serveGroups...)
	return c, err
}

// TestConfigDefaults: with nothing set, the settings table yields the
// components' own defaults, so a component built from it and one built with
// zero fields agree.
func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	c, err := loadConfig(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"Listen", c.Listen, "127.0.0.1:8000"},
		{"AdminUsername", c.AdminUsername, "admin"},
		{"HostKeyPolicy", c.HostKeyPolicy, "auto_add"},
		{"StreamReplicas", c.StreamReplicas, 0}, // min(3, JetStream servers), decided by bus.Replicas
		{"AckWait", c.AckWait, bus.DefaultAckWait},
		{"OutputMaxAge", c.OutputMaxAge, bus.DefaultOutputMaxAge},
		{"OutputMaxBytes", c.OutputMaxBytes, int64(bus.DefaultOutputMaxBytes)},
		{"SessionIdle", c.SessionIdle, accounts.DefaultSessionIdle},
		{"SessionMax", c.SessionMax, accounts.DefaultSessionMax},
		{"Slots", c.Slots, executor.DefaultSlots},
		{"MaxHandshakes", c.MaxHandshakes, executor.DefaultMaxHandshakes},
		{"ConnectTimeout", c.ConnectTimeout, sshx.DefaultConnectTimeout},
		{"OutputCap", c.OutputCap, int64(executor.DefaultOutputCap)},
		{"Heartbeat", c.Heartbeat, store.DefaultExecutorHeartbeat},
		{"DeadAfter", c.DeadAfter, store.DefaultExecutorDeadAfter},
		{"DrainTimeout", c.DrainTimeout, executor.DefaultDrainTimeout},
		{"ConnIdle", c.ConnIdle, executor.DefaultConnIdle},
		{"MinIOEndpoint", c.MinIOEndpoint, ""},
		{"MinIOBucket", c.MinIOBucket, logstore.DefaultBucket},
		{"MinIOSecure", c.MinIOSecure, false},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s = %v, want %v", ck.name, ck.got, ck.want)
		}
	}
	if !strings.HasSuffix(c.DataDir, "/data") {
		t.Errorf("DataDir = %q, want an absolute ./data", c.DataDir)
	}
	if lc := c.logsConfig(); lc.S3.Endpoint != "" || lc.DataDir != c.DataDir {
		t.Errorf("logs config %+v: want the data dir", lc)
	}
}

// TestConfigFromEnvAndFlags: variables are parsed into their types, MinIO's
// included, and a flag overrides its variable.
func TestConfigFromEnvAndFlags(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"TESTUM_ACK_WAIT":         "45s",
		"TESTUM_OUTPUT_MAX_BYTES": "1GiB",
		"TESTUM_EXECUTOR_SLOTS":   "12",
		"TESTUM_CONN_IDLE":        "0",
		"MINIO_ENDPOINT":          "https://minio.example.org:9000",
		"MINIO_ACCESS_KEY":        "access",
		"MINIO_SECRET_KEY":        "secret",
		"MINIO_BUCKET":            "archive",
		"MINIO_REGION":            "eu-1",
		"MINIO_SECURE":            "true",
	}
	c, err := loadConfig(t, env, "--slots=7", "--ack-wait", "1m")
	if err != nil {
		t.Fatal(err)
	}
	if c.Slots != 7 || c.AckWait != time.Minute || c.OutputMaxBytes != 1<<30 || c.ConnIdle != 0 {
		t.Fatalf("slots %d, ack wait %s, output max bytes %d, conn idle %s", c.Slots, c.AckWait, c.OutputMaxBytes, c.ConnIdle)
	}
	if sc := c.streamsConfig(); sc.AckWait != time.Minute {
		t.Errorf("streams ack wait %s, want 1m", sc.AckWait)
	}
	if ec := c.executorConfig(nil); !ec.NoConnReuse || ec.Slots != 7 {
		t.Errorf("executor config %+v: want 7 slots and no connection reuse", ec)
	}
	want := logstore.S3Config{Endpoint: "https://minio.example.org:9000", AccessKey: "access", SecretKey: "secret",
		Bucket: "archive", Region: "eu-1", Secure: true}
	if got := c.logsConfig().S3; got != want {
		t.Errorf("S3 config %v, want %v", got, want)
	}
}

// TestConfigBadValues: a bad value fails the load with one line naming the
// variable, and a secret's value is not repeated.
func TestConfigBadValues(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		env  map[string]string
		want string
	}{
		"duration":          {map[string]string{"TESTUM_ACK_WAIT": "soon"}, `TESTUM_ACK_WAIT="soon"`},
		"negative":          {map[string]string{"TESTUM_HEARTBEAT": "-1s"}, `TESTUM_HEARTBEAT="-1s"`},
		"number":            {map[string]string{"TESTUM_EXECUTOR_SLOTS": "many"}, `TESTUM_EXECUTOR_SLOTS="many"`},
		"size":              {map[string]string{"TESTUM_OUTPUT_CAP": "big"}, `TESTUM_OUTPUT_CAP="big"`},
		"bool":              {map[string]string{"MINIO_SECURE": "maybe"}, `MINIO_SECURE="maybe": want true or false`},
		"minio without key": {map[string]string{"MINIO_ENDPOINT": "127.0.0.1:9000", "MINIO_ACCESS_KEY": "a"}, "MINIO_SECRET_KEY"},
		"replicas":          {map[string]string{"TESTUM_STREAM_REPLICAS": "0"}, `TESTUM_STREAM_REPLICAS="0": want 1 to 5`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := loadConfig(t, tc.env)
			if err == nil {
				t.Fatal("load succeeded")
			}
			if msg := err.Error(); !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
				t.Fatalf("error %q: want one line containing %q", msg, tc.want)
			}
		})
	}
	t.Run("secret hidden", func(t *testing.T) {
		// MinIO's secret key takes any string; the redaction covers it
		// should a check on it ever fail.
		if got := redact("MINIO_SECRET_KEY", "topsecretvalue"); got == "topsecretvalue" {
			t.Fatal("MINIO_SECRET_KEY is not redacted")
		}
	})
}

func TestFmtDefaults(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		5 * time.Second: "5s", 30 * time.Second: "30s", time.Minute: "60s", 15 * time.Minute: "15m",
		24 * time.Hour: "24h", 90 * time.Minute: "1h30m",
	} {
		if got := fmtDur(d); got != want {
			t.Errorf("fmtDur(%s) = %q, want %q", d, got, want)
		}
		var back time.Duration
		if err := dur(&back)(fmtDur(d)); err != nil || back != d {
			t.Errorf("%q reads back as %s (%v)", fmtDur(d), back, err)
		}
	}
	for n, want := range map[int64]string{64 << 20: "64MiB", 8 << 30: "8GiB", 1500: "1500B"} {
		if got := fmtSize(n); got != want {
			t.Errorf("fmtSize(%d) = %q, want %q", n, got, want)
		}
		var back int64
		if err := size(&back)(fmtSize(n)); err != nil || back != n {
			t.Errorf("%q reads back as %d (%v)", fmtSize(n), back, err)
		}
	}
}
