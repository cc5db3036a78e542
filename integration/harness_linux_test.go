package integration

import (
	"os/exec"
	"syscall"
)

// setChildAttrs asks Linux to kill the broker if the test process dies, so an aborted
// test run (timeout panic, ^C) leaves no broker behind.
func setChildAttrs(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
