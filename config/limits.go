package config

import "github.com/nat464/nat464-sidecar/splice"

// fdReserve is kept back from the file limit for listeners, DNS sockets, the admin server and logs.
const fdReserve = 64

// goroutineFDsPerFlow: the goroutine engine's two blocked io.Copy calls each hold one of Go's
// splice pipes (2 fds) besides the two sockets.
const goroutineFDsPerFlow = 6

// maxConnsFor is the flow cap for a given file limit and engine. On the splice engine an
// established flow holds 2 sockets (pipes are pooled and only borrowed while bytes are in
// flight), so the cap is what is left after the reserve and the full pipe pool
// (splice.DefaultMaxPipes, the bound main gives the engine), halved. On the goroutine engine
// every flow holds 6 fds.
func maxConnsFor(nofile uint64, e Engine) int { return maxConnsReserving(nofile, e, 0) }

// maxConnsReserving is maxConnsFor with reserved fds (the egress listeners) kept back first.
func maxConnsReserving(nofile uint64, e Engine, reserved int) int {
	if nofile > 1<<24 {
		nofile = 1 << 24
	}
	nofile -= min(nofile, uint64(max(reserved, 0)))
	var n int
	if e == EngineGoroutine {
		n = (int(nofile) - fdReserve) / goroutineFDsPerFlow
	} else {
		n = (int(nofile) - fdReserve - 2*splice.DefaultMaxPipes) / 2
	}
	if n < 16 {
		n = 16
	}
	return n
}
