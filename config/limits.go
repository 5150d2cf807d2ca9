package config

// fdReserve is kept back from the file limit for listeners, DNS sockets, the admin server and logs.
const fdReserve = 64

// DefaultMaxPipes is the splice engine's default pipe pool bound; each pipe holds 2 fds.
const DefaultMaxPipes = 256

// maxConnsFor is the flow cap for a given file limit: an established flow holds 2 sockets (pipes
// are pooled and only borrowed while bytes are in flight), so what is left after the reserve and
// the full pipe pool, halved.
func maxConnsFor(nofile uint64) int {
	if nofile > 1<<24 {
		nofile = 1 << 24
	}
	n := (int(nofile) - fdReserve - 2*DefaultMaxPipes) / 2
	if n < 16 {
		n = 16
	}
	return n
}
