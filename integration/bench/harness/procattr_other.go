//go:build !linux

package harness

import "os/exec"

// setChildAttrs does nothing here: only Linux can tie a child's life to its
// parent's. Close and Stop still stop every broker on a normal exit.
func setChildAttrs(*exec.Cmd) {}
