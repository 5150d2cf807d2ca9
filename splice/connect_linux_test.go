//go:build linux

package splice

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nat464/nat464-sidecar/internal/testnet"
)

// TestConnect: Connect tells a connect that finished at once (loopback), one that failed at
// once (refused: the fd is closed) and one still in progress (a full accept queue).
func TestConnect(t *testing.T) {
	all0, _ := fdCounts(t)
	t.Cleanup(func() { // registered first, so it runs after every other cleanup
		if all, _ := fdCounts(t); all != all0 {
			t.Errorf("fds: %d after, %d before", all, all0)
		}
	})
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fd, pending, err := Connect(netip.MustParseAddrPort(ln.Addr().String()))
	if err != nil || pending {
		t.Fatalf("Connect to a listener: fd %d pending %v err %v, want connected", fd, pending, err)
	}
	if _, err := unix.Getpeername(fd); err != nil {
		t.Errorf("connected fd has no peer: %v", err)
	}
	unix.Close(fd)

	dead, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := netip.MustParseAddrPort(dead.Addr().String())
	dead.Close()
	fd, pending, err = Connect(deadAddr)
	var op *net.OpError
	if fd != -1 || pending || !errors.Is(err, syscall.ECONNREFUSED) || !errors.As(err, &op) {
		t.Errorf("Connect to a closed port: fd %d pending %v err %v (%T), want -1 and a refused *net.OpError", fd, pending, err, err)
	}

	fd, pending, err = Connect(testnet.FullListener(t))
	if err != nil || !pending {
		t.Errorf("Connect to a full accept queue: pending %v err %v, want pending", pending, err)
	}
	if fd >= 0 {
		unix.Close(fd)
	}
}
