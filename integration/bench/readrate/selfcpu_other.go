//go:build !unix

package main

import (
	"errors"
	"time"
)

// selfCPU needs getrusage (selfcpu_unix.go).
func selfCPU() (time.Duration, error) {
	return 0, errors.New("the consumer's CPU time is measured on unix only")
}
