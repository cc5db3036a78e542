package main

import (
	"os/exec"
	"syscall"
)

// setChildAttrs asks Linux to kill a started broker when the benchmark dies,
// so an aborted run (panic, kill) leaves no process behind.
func setChildAttrs(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
