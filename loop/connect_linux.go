package loop

import (
	"net/netip"
	"os"

	"golang.org/x/sys/unix"
)

// connectNonblock starts a non-blocking connect(2) to target and returns the socket; the connect
// may still be in progress (the splice engine waits for it). TCP_NODELAY is set so small writes
// relayed through the flow are not held back by Nagle.
func connectNonblock(target netip.AddrPort) (int, error) {
	var sa unix.Sockaddr
	family := unix.AF_INET
	if target.Addr().Is4() {
		sa = &unix.SockaddrInet4{Port: int(target.Port()), Addr: target.Addr().As4()}
	} else {
		family = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: int(target.Port()), Addr: target.Addr().As16()}
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	if err := unix.Connect(fd, sa); err != nil && err != unix.EINPROGRESS {
		unix.Close(fd)
		return -1, os.NewSyscallError("connect", err)
	}
	return fd, nil
}

// writeAndClose sends a short final reply on a non-blocking socket (best effort: what the
// socket buffer does not take is dropped) and closes it.
func writeAndClose(fd int, reply []byte) {
	if len(reply) > 0 {
		_, _ = unix.Write(fd, reply)
	}
	unix.Close(fd)
}
