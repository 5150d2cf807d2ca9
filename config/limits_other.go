//go:build !unix

package config

// DefaultMaxConns is fixed where the file limit cannot be read.
func DefaultMaxConns(e Engine) int { return maxConnsFor(8192, e) }

func defaultMaxConns(e Engine, reserved int) int { return maxConnsReserving(8192, e, reserved) }
