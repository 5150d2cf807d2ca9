//go:build unix

package udp

import (
	"net"
	"net/netip"
	"syscall"
)

// msgTrunc is the receive flag of a datagram cut to fit the buffer.
const msgTrunc = syscall.MSG_TRUNC

// readUp receives one datagram from a session's socket into a buffer of bufs, taken only once
// the socket is readable and given back if it was not after all, so a blocked reader holds
// none. On success the caller owns the buffer and puts it back.
func readUp(_ *net.UDPConn, raw syscall.RawConn) (bp *[]byte, n int, trunc bool, err error) {
	bp, n, _, _, trunc, err = readMsg(nil, raw, nil)
	return bp, n, trunc, err
}

// readFrom is readUp for a listener: it also returns the sender and the control message
// (into oob). A listener's reader holds no buffer while it waits, so an idle listener costs
// its goroutine's stack alone (transparent egress has one per name and port).
func readFrom(c *net.UDPConn, raw syscall.RawConn, oob []byte) (bp *[]byte, n, oobn int, from netip.AddrPort, trunc bool, err error) {
	return readMsg(c, raw, oob)
}

func readMsg(_ *net.UDPConn, raw syscall.RawConn, oob []byte) (bp *[]byte, n, oobn int, from netip.AddrPort, trunc bool, err error) {
	rerr := raw.Read(func(fd uintptr) bool {
		bp = bufs.Get().(*[]byte)
		var flags int
		var sa syscall.Sockaddr
		n, oobn, flags, sa, err = syscall.Recvmsg(int(fd), *bp, oob, 0)
		if err == syscall.EAGAIN {
			bufs.Put(bp)
			bp = nil // not ours any more: a closed socket must not put it back twice
			return false
		}
		trunc = flags&syscall.MSG_TRUNC != 0
		switch sa := sa.(type) {
		case *syscall.SockaddrInet6:
			from = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(sa.Port))
		case *syscall.SockaddrInet4:
			from = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
		}
		return true
	})
	if rerr != nil {
		err = rerr
	}
	if err != nil {
		if bp != nil {
			bufs.Put(bp)
		}
		return nil, 0, 0, from, false, err
	}
	return bp, n, oobn, from, trunc, nil
}
