//go:build linux

package splice

import (
	"fmt"
	"net"
	"net/netip"
	"os"

	"golang.org/x/sys/unix"
)

// Connect starts a non-blocking connect(2) to target and looks once, without waiting, whether
// it has finished: to loopback and other local destinations it usually has by the time connect
// returns. pending means it is still in progress: hand fd over with Flow.UpstreamConnecting.
// When it failed, fd is closed and err is a *net.OpError wrapping the errno.
func Connect(target netip.AddrPort) (fd int, pending bool, err error) {
	fd, err = connectNonblock(target)
	if err != nil {
		return -1, false, &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(target), Err: err}
	}
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	n, perr := unix.Poll(pfd, 0)
	switch {
	case perr != nil || n == 0:
		return fd, true, nil
	case pfd[0].Revents&(unix.POLLERR|unix.POLLHUP) == 0:
		return fd, false, nil
	}
	v, gerr := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	switch {
	case gerr != nil:
		err = os.NewSyscallError("getsockopt", gerr)
	case v != 0:
		err = os.NewSyscallError("connect", unix.Errno(v))
	default:
		return fd, true, nil // hung up without an error: let the engine find out
	}
	unix.Close(fd)
	return -1, false, &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(target), Err: err}
}

// connectNonblock starts a non-blocking connect(2) to target; it may still be in progress.
func connectNonblock(target netip.AddrPort) (int, error) { return connectFrom(target, netip.Addr{}) }

// connectFrom is connectNonblock from source address src when src is valid: the socket is
// bound to src:0 with IP_BIND_ADDRESS_NO_PORT first, so the kernel picks the port at connect
// time, per destination, as for an unbound socket: a bind(2) that chose the port itself would
// take it from every destination at once, and the ports would run out at about 28,000
// connections from one source address.
func connectFrom(target netip.AddrPort, src netip.Addr) (int, error) {
	var sa unix.Sockaddr
	family := unix.AF_INET
	if target.Addr().Is4() {
		sa = &unix.SockaddrInet4{Port: int(target.Port()), Addr: target.Addr().As4()}
	} else {
		family = unix.AF_INET6
		sa6 := &unix.SockaddrInet6{Port: int(target.Port()), Addr: target.Addr().As16()}
		if z := target.Addr().Zone(); z != "" {
			ifi, err := net.InterfaceByName(z)
			if err != nil {
				return -1, fmt.Errorf("splice: zone of %s: %w", target, err)
			}
			sa6.ZoneId = uint32(ifi.Index)
		}
		sa = sa6
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	if src.IsValid() {
		if err := bindNoPort(fd, src); err != nil {
			unix.Close(fd)
			return -1, err
		}
	}
	if err := unix.Connect(fd, sa); err != nil && err != unix.EINPROGRESS {
		unix.Close(fd)
		return -1, os.NewSyscallError("connect", err)
	}
	return fd, nil
}

// bindNoPort binds fd to src with port 0 left for connect(2) to choose (IP_BIND_ADDRESS_NO_PORT).
func bindNoPort(fd int, src netip.Addr) error {
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1); err != nil {
		return os.NewSyscallError("setsockopt", err)
	}
	var sa unix.Sockaddr
	if src.Is4() {
		sa = &unix.SockaddrInet4{Addr: src.As4()}
	} else {
		sa = &unix.SockaddrInet6{Addr: src.As16()}
	}
	if err := unix.Bind(fd, sa); err != nil {
		return os.NewSyscallError("bind", err)
	}
	return nil
}
