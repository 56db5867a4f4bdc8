package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

// A watchdog is a shell that blocks reading a pipe whose write end only this
// process holds. When the test binary exits, however it dies (killed, or a
// test timeout panic that skips Run's teardown), the read returns and the
// shell undoes what the harness set up outside the process: pg_ctl
// daemonizes PostgreSQL and OS users outlive everything.

// clusterWatchdog shuts down the postmaster of data dir $1 with SIGQUIT
// (immediate shutdown) and removes directory $2 if given.
const clusterWatchdog = `read -r _
pid=$(head -n 1 "$1/postmaster.pid" 2>/dev/null) && [ -n "$pid" ] && kill -QUIT "$pid" 2>/dev/null
[ -n "$2" ] && rm -rf "$2"
exit 0`

// userWatchdog kills the processes of uid $2 and deletes user $1, holding
// usersLock as newUser does.
const userWatchdog = `read -r _
for d in /proc/[0-9]*; do
	[ "$(stat -c %u "$d" 2>/dev/null)" = "$2" ] && kill -KILL "${d#/proc/}" 2>/dev/null
done
flock -w 60 /run/lock/testum-testenv-users.lock userdel -r -f "$1" >/dev/null 2>&1
exit 0`

// startWatchdog runs script with args. release closes the pipe: the
// watchdog then does its work at once, so call it once the resource is
// already cleaned up (or to clean it up).
func startWatchdog(script string, args ...string) (release func(), err error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("watchdog pipe: %w", err)
	}
	cmd := exec.Command("/bin/sh", append([]string{"-c", script, "testenv-watchdog"}, args...)...)
	cmd.Stdin = r
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // not hit by the terminal's ^C
	if err := cmd.Start(); err != nil {
		_ = r.Close()
		_ = w.Close()
		return nil, fmt.Errorf("start watchdog: %w", err)
	}
	_ = r.Close()
	go func() { _ = cmd.Wait() }() // reaps it when it ends
	// The write end stays referenced until release, so no finalizer
	// closes it early.
	return func() { _ = w.Close() }, nil
}

// watchCluster makes sure the PostgreSQL server on dataDir is stopped and
// removeDir ("" for none) removed once this process is gone.
func watchCluster(dataDir, removeDir string) (release func(), err error) {
	return startWatchdog(clusterWatchdog, dataDir, removeDir)
}

// watchUser makes sure user name (uid) is deleted once this process is gone.
func watchUser(name string, uid int) (release func(), err error) {
	return startWatchdog(userWatchdog, name, fmt.Sprint(uid))
}
