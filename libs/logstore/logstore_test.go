package logstore_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"testing/iotest"

	"github.com/testum/testum/libs/logstore"
	"github.com/testum/testum/libs/logstore/logstoretest"
	"github.com/testum/testum/libs/testenv"
)

func TestDisk(t *testing.T) {
	t.Parallel()
	logstoretest.Run(t, func(t *testing.T) logstore.Store {
		d, err := logstore.NewDisk(filepath.Join(t.TempDir(), "logs"))
		if err != nil {
			t.Fatal(err)
		}
		return d
	})
}

func TestS3(t *testing.T) {
	t.Parallel()
	cfg := logstoretest.StartMinIO(t)
	logstoretest.Run(t, func(t *testing.T) logstore.Store {
		c := cfg
		c.Bucket = logstoretest.NewBucketName(t)
		s, err := logstore.NewS3(t.Context(), c)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})

	t.Run("ExistingBucket", func(t *testing.T) {
		for range 2 { // the second call finds the bucket already there
			if _, err := logstore.NewS3(t.Context(), cfg); err != nil {
				t.Fatal(err)
			}
		}
	})
	t.Run("WrongSecretNotInError", func(t *testing.T) {
		c := cfg
		c.SecretKey = "wrong-secret-" + cfg.SecretKey
		c.Bucket = logstoretest.NewBucketName(t)
		_, err := logstore.NewS3(t.Context(), c)
		if err == nil {
			t.Fatal("NewS3 with a wrong secret key succeeded")
		}
		if strings.Contains(err.Error(), c.SecretKey) || strings.Contains(err.Error(), cfg.SecretKey) {
			t.Fatalf("error contains the secret key: %v", err)
		}
	})
	t.Run("ConfigFormatting", func(t *testing.T) {
		var sb strings.Builder
		slog.New(slog.NewTextHandler(&sb, nil)).Info("cfg", "s3", cfg)
		for _, s := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), fmt.Sprintf("%s", cfg), sb.String()} {
			if strings.Contains(s, cfg.SecretKey) {
				t.Fatalf("formatted config contains the secret key: %s", s)
			}
		}
	})
	t.Run("Open", func(t *testing.T) {
		// An endpoint written as a URL: its scheme decides Secure.
		s, err := logstore.Open(logstore.Config{DataDir: t.TempDir(), S3: logstore.S3Config{
			Endpoint: "http://" + cfg.Endpoint + "/", AccessKey: cfg.AccessKey, SecretKey: cfg.SecretKey, Secure: true,
		}})
		if err != nil {
			t.Fatal(err)
		}
		s3, ok := s.(*logstore.S3)
		if !ok {
			t.Fatalf("Open returned %T, want *logstore.S3", s)
		}
		if s3.Bucket() != logstore.DefaultBucket {
			t.Fatalf("bucket = %q, want %q", s3.Bucket(), logstore.DefaultBucket)
		}
		if err := s.Put(t.Context(), "runs/1/1.log", strings.NewReader("ok"), 2); err != nil {
			t.Fatal(err)
		}
	})
}

func TestNATS(t *testing.T) {
	t.Parallel()
	srv := testenv.NATS(t)
	_, js := srv.JetStream(t)
	var buckets atomic.Int64
	logstoretest.Run(t, func(t *testing.T) logstore.Store {
		s, err := logstore.NewNATS(t.Context(), js, logstore.NATSConfig{Bucket: fmt.Sprintf("LOGS_%d", buckets.Add(1)), Replicas: 1})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})

	t.Run("DefaultBucketKept", func(t *testing.T) {
		// The second open finds the bucket and keeps it, object included.
		first, err := logstore.NewNATS(t.Context(), js, logstore.NATSConfig{Replicas: 1})
		if err != nil {
			t.Fatal(err)
		}
		if first.Bucket() != logstore.DefaultNATSBucket {
			t.Fatalf("bucket = %q, want %q", first.Bucket(), logstore.DefaultNATSBucket)
		}
		if err := first.Put(t.Context(), "runs/1/1.log", strings.NewReader("kept"), 4); err != nil {
			t.Fatal(err)
		}
		again, err := logstore.NewNATS(t.Context(), js, logstore.NATSConfig{Replicas: 1})
		if err != nil {
			t.Fatal(err)
		}
		if info, err := again.Stat(t.Context(), "runs/1/1.log"); err != nil || info.Size != 4 {
			t.Fatalf("Stat after reopening = %+v, %v", info, err)
		}
		if n, err := again.Replicas(t.Context()); err != nil || n != 1 {
			t.Fatalf("Replicas = %d, %v; want 1", n, err)
		}
	})
	t.Run("FailedPutKeepsNothing", func(t *testing.T) {
		// A reader that fails midway leaves no chunk behind in the bucket.
		s, err := logstore.NewNATS(t.Context(), js, logstore.NATSConfig{Bucket: "LOGS_FAIL", Replicas: 1})
		if err != nil {
			t.Fatal(err)
		}
		r := io.MultiReader(strings.NewReader(strings.Repeat("x", 300<<10)), iotest.ErrReader(errors.New("disk gone")))
		if err := s.Put(t.Context(), "runs/1/1.log", r, -1); err == nil {
			t.Fatal("Put with a failing reader succeeded")
		}
		stream, err := js.Stream(t.Context(), "OBJ_LOGS_FAIL")
		if err != nil {
			t.Fatal(err)
		}
		info, err := stream.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs != 0 {
			t.Fatalf("the bucket keeps %d messages after a failed put, want 0", info.State.Msgs)
		}
	})
}

func TestOpenDisk(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := logstore.Open(logstore.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	d, ok := s.(*logstore.Disk)
	if !ok {
		t.Fatalf("Open returned %T, want *logstore.Disk", s)
	}
	if want := filepath.Join(dir, "logs"); d.Dir() != want {
		t.Fatalf("Dir = %q, want %q", d.Dir(), want)
	}
	st, err := os.Stat(d.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if perm := st.Mode().Perm(); perm != 0o700 {
		t.Fatalf("mode = %o, want 700", perm)
	}
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	cases := map[string]logstore.Config{
		"missing credentials": {DataDir: t.TempDir(), S3: logstore.S3Config{Endpoint: "127.0.0.1:1"}},
		"missing secret key":  {DataDir: t.TempDir(), S3: logstore.S3Config{Endpoint: "127.0.0.1:1", AccessKey: "a"}},
		"nothing":             {},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := logstore.Open(c); err == nil {
				t.Fatal("Open succeeded")
			}
		})
	}
}

func TestDiskAtomicPutLeavesNoTempFiles(t *testing.T) {
	t.Parallel()
	d, err := logstore.NewDisk(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := d.Put(ctx, "runs/1/1.log", strings.NewReader("abc"), 3); err != nil {
		t.Fatal(err)
	}
	// A failed Put (short reader) and a cancelled Put leave nothing behind.
	if err := d.Put(ctx, "runs/1/2.log", strings.NewReader("ab"), 3); err == nil {
		t.Fatal("short Put succeeded")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := d.Put(cctx, "runs/1/3.log", strings.NewReader("abc"), 3); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Put error = %v, want context.Canceled", err)
	}
	entries, err := os.ReadDir(filepath.Join(d.Dir(), "runs", "1"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "1.log" {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("directory holds %v, want only 1.log", names)
	}
}

func TestValidateKey(t *testing.T) {
	t.Parallel()
	for _, k := range []string{"runs/12/3.log", "a", "runs/12/3.log.gz", "a/b/c/d", "runs/..x/y", "x.tmp-"} {
		if err := logstore.ValidateKey(k); err != nil {
			t.Errorf("ValidateKey(%q) = %v, want nil", k, err)
		}
	}
	for _, k := range logstoretest.InvalidKeys {
		if err := logstore.ValidateKey(k); !errors.Is(err, logstore.ErrInvalidKey) {
			t.Errorf("ValidateKey(%q) = %v, want ErrInvalidKey", k, err)
		}
	}
}
