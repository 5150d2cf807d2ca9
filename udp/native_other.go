//go:build !linux

package udp

// newNative: without the Linux engine, every relay runs on goroutines.
func newNative(r *Relay) (engine, error) { return newGoroutine(r) }

// syscalls is counted by the Linux engine only.
func syscalls(*Relay) uint64 { return 0 }
