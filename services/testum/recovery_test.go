package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/testum/testum/libs/secrets"
	"github.com/testum/testum/libs/testenv"
)

// TestServeKilledWithAYoungRunIsTakenOver: kill -9 of a whole testum serve
// right after a run's command started, and a restart on the same data dir,
// NATS and PostgreSQL. The ack wait is shorter than the dead-after, so the
// restarted executor receives the run while the dead coordinator still
// looks alive: it must stand by and take the run over once that liveness
// expires (not drop the message), the host ends lost and its command ran
// exactly once.
func TestServeKilledWithAYoungRunIsTakenOver(t *testing.T) {
	t.Parallel()
	sshd := testenv.StartSSHD(t)
	nats := testenv.NATS(t)
	fernet, err := secrets.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	const (
		heartbeat = 500 * time.Millisecond // also the reaper's interval
		deadAfter = 15 * time.Second       // long enough for the restart to come first on a loaded machine
		ackWait   = 2 * time.Second
	)
	env := map[string]string{
		"DATABASE_URL": testenv.Postgres(t), "NATS_URL": nats.URL, "FERNET_KEY": fernet,
		"SECRET_KEY": "test-secret-key-0123456789abcdef0123456789", "TESTUM_DATA_DIR": t.TempDir(),
		"TESTUM_LOG_LEVEL": "info", "TESTUM_LISTEN": "127.0.0.1:0",
		"TESTUM_HEARTBEAT": heartbeat.String(), "TESTUM_DEAD_AFTER": deadAfter.String(), "TESTUM_ACK_WAIT": ackWait.String(),
		"ADMIN_USERNAME": testAdmin, "ADMIN_PASSWORD": testAdminKey,
	}
	first := startProcess(t, env, "serve")
	s := &server{URL: first.waitURL(t)}
	s.login(t)
	pid := s.createPlatform(t, map[string]any{"name": "young", "host": sshd.Addr(60), "port": sshd.Port,
		"username": sshd.PasswordUser.Name, "auth_method": "password", "password": sshd.PasswordUser.Password})
	marker := filepath.Join(sshd.PasswordUser.Home, fmt.Sprintf("young-%d", os.Getpid()))
	runID := s.startRun(t, map[string]any{"command": "echo x >> " + marker + "; sleep 2", "timeout": 60,
		"targets": map[string]any{"platform_ids": []int64{pid}}})

	// Kill as soon as the command runs on the host.
	deadline := time.Now().Add(waitLimit)
	for {
		r := s.getRun(t, runID)
		_, err := os.Stat(marker)
		if r.State == "running" && len(r.Hosts) == 1 && r.Hosts[0].State == "running" && err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the command never started: run %s %+v", r.State, r.Hosts)
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
	if err := first.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()

	second := startProcess(t, env, "serve")
	s2 := &server{URL: second.waitURL(t)}
	s2.login(t)
	// The bound the README states, for these settings; the hang guard is a
	// generous multiple of it.
	bound := max(ackWait, deadAfter+heartbeat) + time.Second
	deadline = killedAt.Add(6 * bound)
	var final bool
	for !final {
		r := s2.getRun(t, runID)
		switch r.State {
		case "succeeded", "failed", "canceled", "aborted":
			final = true
			if h := r.Hosts[0]; h.State != "lost" || h.Attempt != 1 || !strings.Contains(h.Error, "stopped responding") {
				t.Errorf("host of the killed serve: %s attempt %d (%s), want lost", h.State, h.Attempt, h.Error)
			}
			continue
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s still %s %v after the kill", runID, r.State, time.Since(killedAt))
		}
		time.Sleep(100 * time.Millisecond) // polling interval
	}
	took := time.Since(killedAt)
	if b, err := os.ReadFile(marker); err != nil || strings.Count(string(b), "x") != 1 {
		t.Errorf("the command ran %d times, want once (%v)", strings.Count(string(b), "x"), err)
	}
	// The mechanism: the restarted executor stood by while the dead
	// coordinator looked alive and took the run over when it expired.
	out := second.out.String()
	var tookOver bool
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "took over the run: its coordinator's liveness expired") && strings.Contains(line, runID) {
			tookOver = true
		}
	}
	if !tookOver {
		t.Errorf("the restarted serve did not take the run over by the liveness rule:\n%s", out)
	}
	t.Logf("run final %v after the kill; stated bound %v", took.Round(10*time.Millisecond), bound)
}
