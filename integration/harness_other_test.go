//go:build !linux

package integration

import "os/exec"

// setChildAttrs has nothing to set outside Linux.
func setChildAttrs(cmd *exec.Cmd) {}
