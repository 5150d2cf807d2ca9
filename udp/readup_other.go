//go:build !unix

package udp

import (
	"net"
	"net/netip"
	"syscall"
)

// msgTrunc: without recvmsg flags a truncated datagram is not recognised (buffers are
// MaxDatagram, so none is).
const msgTrunc = 0

// readUp without recvmsg: a blocked reader holds its pooled buffer.
func readUp(c *net.UDPConn, _ syscall.RawConn) (bp *[]byte, n int, trunc bool, err error) {
	bp = bufs.Get().(*[]byte)
	if n, err = c.Read(*bp); err != nil {
		bufs.Put(bp)
		return nil, 0, false, err
	}
	return bp, n, false, nil
}

// readFrom without recvmsg: a blocked listener reader holds its pooled buffer.
func readFrom(c *net.UDPConn, _ syscall.RawConn, oob []byte) (bp *[]byte, n, oobn int, from netip.AddrPort, trunc bool, err error) {
	bp = bufs.Get().(*[]byte)
	var flags int
	if n, oobn, flags, from, err = c.ReadMsgUDPAddrPort(*bp, oob); err != nil {
		bufs.Put(bp)
		return nil, 0, 0, from, false, err
	}
	return bp, n, oobn, from, flags&msgTrunc != 0, nil
}
