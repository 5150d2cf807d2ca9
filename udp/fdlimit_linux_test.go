//go:build linux

package udp

import (
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// lowestFreeFD is the fd number the next open would get (the kernel always picks the lowest).
func lowestFreeFD(t *testing.T) int {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return int(f.Fd())
}

// TestOpenFileLimit: at the open-file limit a new client's session cannot open its socket; its
// datagram is dropped as socket_error, its slot given back, existing sessions keep working, and
// once fds free up the client gets a session.
func TestOpenFileLimit(t *testing.T) {
	for _, eng := range engines() {
		t.Run(eng, func(t *testing.T) {
			checkLeaks(t)
			e := newEcho(t, "127.0.0.1:0")
			lim := &slots{max: 100}
			r := startRelay(t, Config{Listen: netip.MustParseAddrPort("[::1]:0"), Target: e.addr, Engine: eng, Limit: lim})
			old := client(t, "udp6")
			exchange(t, old, r.Addr(), []byte("before"))
			late := client(t, "udp6")
			var rl unix.Rlimit
			if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
				t.Fatal(err)
			}
			low := rl
			low.Cur = uint64(lowestFreeFD(t)) // every fd number below it is taken
			if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
				t.Fatal(err)
			}
			restored := false
			restore := func() {
				if !restored {
					restored = true
					unix.Setrlimit(unix.RLIMIT_NOFILE, &rl)
				}
			}
			defer restore()
			late.WriteToUDPAddrPort([]byte("no fd"), r.Addr())
			eventually(t, 10*time.Second, "no socket_error drop", func() bool { return r.Stats().Drops[DropSocketError] >= 1 })
			if got, _ := exchange(t, old, r.Addr(), []byte("still")); string(got) != "still" {
				t.Fatalf("existing session: %q", got)
			}
			if lim.inUse() != 1 {
				t.Fatalf("%d slots in use, want 1 (the failed session's given back)", lim.inUse())
			}
			restore()
			if got, _ := exchange(t, late, r.Addr(), []byte("now")); string(got) != "now" {
				t.Fatalf("after the limit: %q", got)
			}
		})
	}
}
