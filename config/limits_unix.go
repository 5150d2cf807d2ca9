//go:build unix

package config

import "golang.org/x/sys/unix"

// DefaultMaxConns derives the flow cap from the soft RLIMIT_NOFILE (which the Go runtime raises to
// the hard limit at start); see maxConnsFor.
func DefaultMaxConns(e Engine) int { return maxConnsFor(rlimit(), e) }

// defaultMaxConns is DefaultMaxConns with reserved fds kept back for the egress listeners.
func defaultMaxConns(e Engine, reserved int) int { return maxConnsReserving(rlimit(), e, reserved) }

func rlimit() uint64 {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 1024
	}
	return rl.Cur
}
