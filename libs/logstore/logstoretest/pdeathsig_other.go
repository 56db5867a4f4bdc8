//go:build !linux

package logstoretest

import "os/exec"

func setPdeathsig(*exec.Cmd) {}
