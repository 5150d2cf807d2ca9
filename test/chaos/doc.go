// Package chaos holds the chaos and soak suite of nat464-sidecar: the real binary on loopback,
// driven past its limits — thousands of checksummed flows of random sizes, more flows in flight
// than the pipe pool holds, stalled proxy handshakes, garbage on every port, the open-file limit,
// SIGTERM with flows in flight, and a soak with mixed load. Every check logs its figures (flows,
// bytes, time, peak fds, RSS and goroutines of the sidecar) with -v.
//
// The tests carry the build tag chaos, so `go test ./...` compiles this package empty:
//
//	go test -tags chaos -count=1 -timeout 15m -v ./test/chaos/   (make test-chaos)
//
// They need Linux and prlimit (util-linux). Otherwise they skip, except under CI=true, where a
// missing prerequisite is a failure. CHAOS_SOAK sets the soak's duration (default 90s; release
// checks use CHAOS_SOAK=30m).
//
// Out of scope: DNS-hostile scenarios (test/e2e and the resolver's own tests) and throughput
// figures (bench/).
package chaos
