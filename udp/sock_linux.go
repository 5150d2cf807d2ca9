//go:build linux

package udp

import (
	"net"
	"net/netip"
	"os"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// listenSocket opens the non-blocking listener: V6ONLY and IPV6_RECVPKTINFO for IPv6,
// IP_PKTINFO for IPv4, so every datagram says which local address it was sent to.
func listenSocket(la netip.AddrPort) (fd int, local netip.AddrPort, err error) {
	v4 := la.Addr().Is4()
	family := unix.AF_INET6
	if v4 {
		family = unix.AF_INET
	}
	fd, err = unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, local, os.NewSyscallError("socket", err)
	}
	fail := func(op string, err error) (int, netip.AddrPort, error) {
		unix.Close(fd)
		return -1, netip.AddrPort{}, &net.OpError{Op: "listen", Net: "udp", Addr: net.UDPAddrFromAddrPort(la), Err: os.NewSyscallError(op, err)}
	}
	if v4 {
		err = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
	} else if err = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err == nil {
		err = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
	}
	if err != nil {
		return fail("setsockopt", err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, listenerBuffer)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, listenerBuffer)
	sa, err := sockaddr(la)
	if err != nil {
		return fail("bind", err)
	}
	if err := unix.Bind(fd, sa); err != nil {
		return fail("bind", err)
	}
	got, err := unix.Getsockname(fd)
	if err != nil {
		return fail("getsockname", err)
	}
	return fd, addrPortOf(got), nil
}

// upstreamSocket opens a session's non-blocking socket connected to target.
func upstreamSocket(target unix.Sockaddr, v4 bool) (int, error) {
	family := unix.AF_INET6
	if v4 {
		family = unix.AF_INET
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	if err := unix.Connect(fd, target); err != nil {
		unix.Close(fd)
		return -1, os.NewSyscallError("connect", err)
	}
	return fd, nil
}

func sockaddr(ap netip.AddrPort) (unix.Sockaddr, error) {
	a := ap.Addr()
	if a.Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.As4()}, nil
	}
	sa := &unix.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}
	if z := a.Zone(); z != "" {
		if n, err := strconv.Atoi(z); err == nil {
			sa.ZoneId = uint32(n)
		} else if ifi, err := net.InterfaceByName(z); err == nil {
			sa.ZoneId = uint32(ifi.Index)
		} else {
			return nil, err
		}
	}
	return sa, nil
}

func addrPortOf(sa unix.Sockaddr) netip.AddrPort {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(sa.Port))
	}
	return netip.AddrPort{}
}

// rawAddrPort reads a sockaddr the kernel wrote into a recvmmsg name buffer.
func rawAddrPort(raw *unix.RawSockaddrInet6) netip.AddrPort {
	pb := (*[2]byte)(unsafe.Pointer(&raw.Port))
	port := uint16(pb[0])<<8 | uint16(pb[1])
	if raw.Family == unix.AF_INET {
		r4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(raw))
		return netip.AddrPortFrom(netip.AddrFrom4(r4.Addr), port)
	}
	a := netip.AddrFrom16(raw.Addr)
	if raw.Scope_id != 0 {
		a = a.WithZone(strconv.Itoa(int(raw.Scope_id)))
	}
	return netip.AddrPortFrom(a.Unmap(), port)
}

// pktDst finds the destination address (and interface) in a received IP_PKTINFO or
// IPV6_PKTINFO control message, without allocating. Headers and payloads are copied into
// aligned variables, so the buffer may sit at any address.
func pktDst(oob []byte) (netip.Addr, uint32, bool) {
	hdr := unix.CmsgLen(0)
	for len(oob) >= hdr {
		var h unix.Cmsghdr
		copy((*[unix.SizeofCmsghdr]byte)(unsafe.Pointer(&h))[:], oob)
		l := int(h.Len)
		if l < hdr || l > len(oob) {
			break
		}
		data := oob[hdr:l]
		switch {
		case h.Level == unix.IPPROTO_IPV6 && h.Type == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo:
			var pi unix.Inet6Pktinfo
			copy((*[unix.SizeofInet6Pktinfo]byte)(unsafe.Pointer(&pi))[:], data)
			return netip.AddrFrom16(pi.Addr).Unmap(), pi.Ifindex, true
		case h.Level == unix.IPPROTO_IP && h.Type == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
			var pi unix.Inet4Pktinfo
			copy((*[unix.SizeofInet4Pktinfo]byte)(unsafe.Pointer(&pi))[:], data)
			return netip.AddrFrom4(pi.Addr), uint32(pi.Ifindex), true
		}
		next := unix.CmsgSpace(l - hdr)
		if next > len(oob) {
			break
		}
		oob = oob[next:]
	}
	return netip.Addr{}, 0, false
}

// replyCmsgSize fits one IPV6_PKTINFO (or the smaller IP_PKTINFO) control message.
var replyCmsgSize = unix.CmsgSpace(unix.SizeofInet6Pktinfo)

// putReplyCmsg writes into b the control message that sends from local and returns its length.
// The interface is named only for a link-local address, where the address alone is ambiguous.
func putReplyCmsg(b []byte, local netip.Addr, ifindex uint32) int {
	if !local.IsLinkLocalUnicast() {
		ifindex = 0
	}
	var m []byte
	if local.Is4() {
		m = unix.PktInfo4(&unix.Inet4Pktinfo{Ifindex: int32(ifindex), Spec_dst: local.As4()})
	} else {
		m = unix.PktInfo6(&unix.Inet6Pktinfo{Addr: local.As16(), Ifindex: ifindex})
	}
	return copy(b, m)
}

// mmsg calls recvmmsg or sendmmsg (SYS_RECVMMSG / SYS_SENDMMSG) on a non-blocking socket.
func (n *nEngine) mmsg(trap uintptr, fd int, hs []unix.Mmsghdr, flags int) (int, error) {
	n.calls.Add(1)
	return mmsg(trap, fd, hs, flags)
}

func mmsg(trap uintptr, fd int, hs []unix.Mmsghdr, flags int) (int, error) {
	n, _, e := unix.Syscall6(trap, uintptr(fd), uintptr(unsafe.Pointer(&hs[0])), uintptr(len(hs)), uintptr(flags), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
