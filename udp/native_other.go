//go:build !linux

package udp

// newNative: without the Linux engine, every relay runs on goroutines.
func newNative(r *Relay) (engine, error) { return newGoroutine(r) }
