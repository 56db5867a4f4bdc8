package main

import (
	"bufio"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

const deployDir = "../../deploy"

// knownSettings is every variable some command reads.
func knownSettings() map[string]bool {
	var c Config
	known := map[string]bool{}
	for _, s := range c.settings("db", "nats", "embed", "keys", "gateway", "logs", "targets", "executor") {
		known[s.env] = true
	}
	return known
}

// TestSystemdUnits: the units pass `systemd-analyze verify` (with the real
// binary in place of /usr/local/bin/testum, which verify requires to
// exist) and stay hardened (`systemd-analyze security` exposure at most
// 2.5 of 10).
func TestSystemdUnits(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Fatal("systemd-analyze not found: apt-get install systemd (make deps installs it)")
	}
	bin := testumBinary(t)
	dir := t.TempDir()
	for _, role := range []string{"gateway", "executor"} {
		t.Run(role, func(t *testing.T) {
			name := "testum-" + role + ".service"
			b, err := os.ReadFile(filepath.Join(deployDir, "systemd", name))
			if err != nil {
				t.Fatal(err)
			}
			unit := string(b)
			for _, want := range []string{"ExecStart=/usr/local/bin/testum " + role + "\n", "User=testum\n",
				"NoNewPrivileges=yes\n", "ProtectSystem=strict\n", "Restart=on-failure\n",
				"EnvironmentFile=/etc/testum/testum.env\n"} {
				if !strings.Contains(unit, want) {
					t.Errorf("%s lacks %q", name, strings.TrimSpace(want))
				}
			}
			p := filepath.Join(dir, name)
			if err := os.WriteFile(p, []byte(strings.ReplaceAll(unit, "/usr/local/bin/testum", bin)), 0o644); err != nil {
				t.Fatal(err)
			}
			// verify exits 0 on unknown keys, only printing them: any
			// output is a failure.
			if out, err := exec.Command("systemd-analyze", "verify", p).CombinedOutput(); err != nil || len(out) > 0 {
				t.Errorf("systemd-analyze verify %s: %v\n%s", name, err, out)
			}
			out, err := exec.Command("systemd-analyze", "security", "--offline=yes", "--threshold=25", "--no-pager", p).CombinedOutput()
			if err != nil {
				t.Errorf("systemd-analyze security %s: %v\n%s", name, err, out)
			}
			for _, line := range strings.Split(string(out), "\n") {
				if strings.Contains(line, "Overall exposure level") {
					t.Log(strings.TrimSpace(line))
				}
			}
		})
	}
}

// TestSystemdEnvExample: the example environment file sets only real
// settings, on loopback addresses, and leaves every secret empty.
func TestSystemdEnvExample(t *testing.T) {
	t.Parallel()
	f, err := os.Open(filepath.Join(deployDir, "systemd", "testum.env.example"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	known := knownSettings()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimPrefix(strings.TrimSpace(sc.Text()), "#")
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.ContainsAny(k, " \t") {
			continue // prose
		}
		if !known[k] {
			t.Errorf("%s is not a setting", k)
		}
		switch k {
		case "SECRET_KEY", "FERNET_KEY", "MINIO_SECRET_KEY", "ADMIN_PASSWORD":
			if v != "" {
				t.Errorf("%s has a value in the example", k)
			}
		case "DATABASE_URL", "NATS_URL", "MINIO_ENDPOINT", "TESTUM_LISTEN", "TESTUM_TRUSTED_PROXIES":
			for _, u := range strings.Split(v, ",") {
				if !loopback(u) {
					t.Errorf("%s=%s: %q is not on loopback", k, v, u)
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
}

// loopback tells whether an address, URL or host:port is on 127.0.0.0/8.
func loopback(s string) bool {
	host := s
	if u, err := url.Parse(s); err == nil && u.Host != "" {
		host = u.Hostname()
	} else if h, _, err := net.SplitHostPort(s); err == nil {
		host = h
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// TestComposeFile: compose.yaml runs a 3-node NATS cluster with R3 streams,
// gives every testum process the same shared settings, names only real
// settings, and keeps logs in its MinIO.
func TestComposeFile(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Services map[string]struct {
			Command     []string          `yaml:"command"`
			Environment map[string]string `yaml:"environment"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	known := knownSettings()
	roles := map[string]int{}
	var shared map[string]string
	for name, s := range doc.Services {
		if len(s.Command) == 0 || !map[string]bool{"gateway": true, "executor": true, "migrate": true}[s.Command[0]] {
			continue
		}
		roles[s.Command[0]]++
		env := s.Environment
		for k := range env {
			if !known[k] {
				t.Errorf("%s: %s is not a setting", name, k)
			}
		}
		if env["TESTUM_LOG_STORE"] != "s3" || !strings.HasPrefix(env["MINIO_ENDPOINT"], "minio:") {
			t.Errorf("%s: logs in %q at %q, want s3 at the minio service", name, env["TESTUM_LOG_STORE"], env["MINIO_ENDPOINT"])
		}
		if env["TESTUM_STREAM_REPLICAS"] != "" && env["TESTUM_STREAM_REPLICAS"] != "3" {
			t.Errorf("%s: TESTUM_STREAM_REPLICAS=%s, want 3", name, env["TESTUM_STREAM_REPLICAS"])
		}
		if shared == nil {
			shared = env
		}
		for _, k := range []string{"DATABASE_URL", "NATS_URL", "SECRET_KEY", "FERNET_KEY", "MINIO_ENDPOINT", "MINIO_BUCKET"} {
			if env[k] == "" || env[k] != shared[k] {
				t.Errorf("%s: %s=%q, want the value every process has (%q)", name, k, env[k], shared[k])
			}
		}
	}
	if roles["gateway"] < 2 || roles["executor"] < 2 {
		t.Errorf("roles %v: want two gateways and two executors", roles)
	}
	for _, n := range []string{"nats-1", "nats-2", "nats-3", "postgres", "minio"} {
		if _, ok := doc.Services[n]; !ok {
			t.Errorf("no %s service", n)
		}
	}
	conf, err := os.ReadFile(filepath.Join(deployDir, "nats", "nats.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(conf), "sync_interval: always") {
		t.Error("deploy/nats/nats.conf does not sync every write")
	}
}
