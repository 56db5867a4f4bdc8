package logstoretest

import (
	"os/exec"
	"syscall"
)

// setPdeathsig kills MinIO if the test binary dies without cleaning up.
func setPdeathsig(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
