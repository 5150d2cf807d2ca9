//go:build unix

package udp

import (
	"net"
	"syscall"
)

// msgTrunc is the receive flag of a datagram cut to fit the buffer.
const msgTrunc = syscall.MSG_TRUNC

// readUp receives one datagram from a session's socket into a buffer of bufs, taken only once
// the socket is readable and given back if it was not after all, so a blocked reader holds
// none. On success the caller owns the buffer and puts it back.
func readUp(_ *net.UDPConn, raw syscall.RawConn) (bp *[]byte, n int, trunc bool, err error) {
	rerr := raw.Read(func(fd uintptr) bool {
		bp = bufs.Get().(*[]byte)
		var flags int
		n, _, flags, _, err = syscall.Recvmsg(int(fd), *bp, nil, 0)
		if err == syscall.EAGAIN {
			bufs.Put(bp)
			return false
		}
		trunc = flags&syscall.MSG_TRUNC != 0
		return true
	})
	if rerr != nil {
		err = rerr
	}
	if err != nil {
		bufs.Put(bp)
		return nil, 0, false, err
	}
	return bp, n, trunc, nil
}
