//go:build !unix

package udp

import (
	"net"
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
