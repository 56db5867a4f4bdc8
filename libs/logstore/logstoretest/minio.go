package logstoretest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/testum/testum/libs/logstore"
)

const (
	// minioReadyTimeout bounds how long StartMinIO waits for readiness.
	minioReadyTimeout = 90 * time.Second
	// minioStartAttempts bounds retries when a chosen port is taken between
	// probing and MinIO binding it.
	minioStartAttempts = 3
)

// FindMinIO returns the path of the minio binary: from PATH, else
// ~/go/bin/minio, else $GOBIN/minio. It returns "" if none exists.
func FindMinIO() string {
	if p, err := exec.LookPath("minio"); err == nil {
		return p
	}
	var cands []string
	if home, err := os.UserHomeDir(); err == nil {
		cands = append(cands, filepath.Join(home, "go", "bin", "minio"))
	}
	if gobin := os.Getenv("GOBIN"); gobin != "" {
		cands = append(cands, filepath.Join(gobin, "minio"))
	}
	if gopath := os.Getenv("GOPATH"); gopath != "" {
		cands = append(cands, filepath.Join(filepath.SplitList(gopath)[0], "bin", "minio"))
	}
	for _, c := range cands {
		if st, err := os.Stat(c); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return c
		}
	}
	return ""
}

// StartMinIO starts a private MinIO server on loopback ports, with its data
// in a temporary directory, and stops it when the test ends. It returns a
// configuration with random credentials and a fresh bucket name (the bucket
// itself is created by logstore.NewS3). If the minio binary is not installed
// the test fails, so the S3 store is never left untested by accident.
func StartMinIO(t testing.TB) logstore.S3Config {
	t.Helper()
	bin := FindMinIO()
	if bin == "" {
		t.Fatal("logstoretest: minio binary not found in PATH, ~/go/bin or $GOBIN; `make deps` installs it")
	}
	user, pass := "testum-"+randHex(t, 6), randHex(t, 20)
	var lastErr error
	for range minioStartAttempts {
		cfg, err := startMinIO(t, bin, user, pass)
		if err == nil {
			return cfg
		}
		lastErr = err
		if !errors.Is(err, errExited) {
			break
		}
	}
	t.Fatalf("starting MinIO: %v", lastErr)
	return logstore.S3Config{}
}

var errExited = errors.New("minio exited before becoming ready")

func startMinIO(t testing.TB, bin, user, pass string) (logstore.S3Config, error) {
	t.Helper()
	port, err := freePort()
	if err != nil {
		return logstore.S3Config{}, err
	}
	consolePort, err := freePort()
	if err != nil {
		return logstore.S3Config{}, err
	}
	dir := t.TempDir()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cmd := exec.Command(bin, "server", filepath.Join(dir, "data"),
		"--address", addr,
		"--console-address", net.JoinHostPort("127.0.0.1", strconv.Itoa(consolePort)),
		"--certs-dir", filepath.Join(dir, "certs"),
		"--quiet")
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+user,
		"MINIO_ROOT_PASSWORD="+pass,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
	)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	setPdeathsig(cmd)
	if err := cmd.Start(); err != nil {
		return logstore.S3Config{}, fmt.Errorf("running %s: %w", bin, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited
	}

	ctx, cancel := context.WithTimeout(context.Background(), minioReadyTimeout)
	defer cancel()
	if err := waitReady(ctx, addr, user, pass, exited); err != nil {
		stop()
		return logstore.S3Config{}, fmt.Errorf("%w; output:\n%s", err, bytes.ReplaceAll(out.Bytes(), []byte(pass), []byte("<redacted>")))
	}
	t.Cleanup(stop)
	return logstore.S3Config{
		Endpoint:  addr,
		AccessKey: user,
		SecretKey: pass,
		Bucket:    NewBucketName(t),
	}, nil
}

// waitReady polls the readiness endpoint until it answers 200 and then an
// authenticated S3 request (ListBuckets) until it succeeds: MinIO reports
// ready before its object layer is initialised. It gives up when the process
// exits or ctx ends.
func waitReady(ctx context.Context, addr, user, pass string, exited <-chan struct{}) error {
	url := "http://" + addr + "/minio/health/ready"
	httpClient := &http.Client{Timeout: 2 * time.Second}
	s3, err := minio.New(addr, &minio.Options{Creds: credentials.NewStaticV4(user, pass, "")})
	if err != nil {
		return fmt.Errorf("creating S3 client: %w", err)
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	healthy := false
	var lastErr error
	for {
		if !healthy {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if err != nil {
				return err
			}
			if resp, err := httpClient.Do(req); err == nil {
				_ = resp.Body.Close()
				healthy = resp.StatusCode == http.StatusOK
			} else {
				lastErr = err
			}
		}
		if healthy {
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := s3.ListBuckets(rctx)
			cancel()
			if err == nil {
				return nil
			}
			lastErr = err
		}
		select {
		case <-exited:
			return errExited
		case <-ctx.Done():
			return fmt.Errorf("minio not ready at %s: %w (last error: %v)", addr, ctx.Err(), lastErr)
		case <-tick.C:
		}
	}
}

// NewBucketName returns a random valid bucket name.
func NewBucketName(t testing.TB) string {
	return "test-" + randHex(t, 8)
}

func randHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of exec.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 1<<20 { // keep memory bounded; the start is what matters
		return len(p), nil
	}
	return s.b.Write(p)
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}
