//go:build linux

package splice

import (
	"errors"

	"golang.org/x/sys/unix"
)

// step moves direction i of fl as far as it can without blocking: first the pre bytes, then
// rounds of drain (src -> empty pipe) and pump (pipe -> dst until empty). When the pool has no
// pipe, the rounds copy through a borrowed buffer instead (read, then write until empty). It
// returns the error that ends the flow, if any; backpressure and an empty source are not errors.
//
// Backpressure: while the pipe (or buffer) holds bytes that dst cannot take, src is not read; the
// bytes stay where they are and EPOLLOUT on dst resumes the pump.
func (l *eloop) step(fl *flow, i int) error {
	d := &fl.dir[i]
	if d.done {
		return nil
	}
	if err := l.writePre(fl, d); err != nil || len(d.pre) > 0 {
		return err
	}
	src, dst := fl.fd[d.src], fl.fd[d.dst]
	for budget := roundsPerTurn; ; {
		if d.inPipe > 0 || d.bufEnd > d.bufOff {
			if !fl.writable[d.dst] {
				return nil
			}
			var n int
			var err error
			if d.inPipe > 0 {
				var n64 int64
				n64, err = unix.Splice(d.pipe.r, nil, dst, nil, d.inPipe, unix.SPLICE_F_NONBLOCK)
				n = int(n64)
			} else {
				n, err = unix.Write(dst, d.buf[d.bufOff:d.bufEnd])
			}
			switch {
			case errors.Is(err, unix.EINTR):
				continue
			case errors.Is(err, unix.EAGAIN):
				fl.writable[d.dst] = false
				return nil
			case err != nil:
				return ioError("splice", err)
			}
			if d.inPipe > 0 {
				l.calls.Add(1)
				d.inPipe -= n
			} else {
				d.bufOff += n
			}
			d.n += int64(n)
			fl.last = l.now
			continue
		}
		// Nothing is held here: the pipe or buffer (if any) is empty.
		if !fl.readable[d.src] || budget == 0 {
			l.release(d)
			if fl.readable[d.src] {
				l.requeue(fl)
			}
			return nil
		}
		if d.pipe == nil && d.buf == nil {
			p, err := l.e.pool.get()
			if err != nil {
				return err
			}
			if p != nil {
				d.pipe = p
			} else {
				d.buf, d.bufOff, d.bufEnd = l.getBuf(), 0, 0
			}
		}
		var n int
		var err error
		if d.pipe != nil {
			var n64 int64
			n64, err = unix.Splice(src, nil, d.pipe.w, nil, d.pipe.size, unix.SPLICE_F_NONBLOCK)
			n = int(n64)
		} else {
			n, err = unix.Read(src, d.buf)
		}
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EAGAIN):
			// The pipe (or buffer) is empty, so it is the socket that has nothing to read.
			fl.readable[d.src] = false
			continue
		case err != nil:
			return ioError("splice", err)
		case n == 0:
			l.release(d)
			return l.eof(fl, d)
		}
		if d.pipe != nil {
			l.calls.Add(1)
			d.inPipe = n
		} else {
			d.bufOff, d.bufEnd = 0, n
		}
		budget--
	}
}

// writePre writes d.pre to dst with plain write(2), handling partial writes and EAGAIN.
func (l *eloop) writePre(fl *flow, d *direction) error {
	for len(d.pre) > 0 && fl.writable[d.dst] {
		n, err := unix.Write(fl.fd[d.dst], d.pre)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EAGAIN):
			fl.writable[d.dst] = false
			return nil
		case err != nil:
			return ioError("write", err)
		}
		d.pre = d.pre[n:]
		if d.countPre {
			d.n += int64(n)
		}
		fl.last = l.now
	}
	if len(d.pre) == 0 {
		d.pre = nil
	}
	return nil
}

// eof finishes a direction whose source ended: the pipe is empty, so the peer has everything and
// gets a FIN. The other direction keeps running (half-close). When the other direction is done
// already, the flow ends now and close(2) sends that FIN: both sources are at EOF, so neither
// socket holds unread bytes that would turn the close into a reset.
func (l *eloop) eof(fl *flow, d *direction) error {
	d.done = true
	if fl.dir[dirUp].done && fl.dir[dirDown].done {
		return nil
	}
	err := unix.Shutdown(fl.fd[d.dst], unix.SHUT_WR)
	if err != nil && !errors.Is(err, unix.ENOTCONN) {
		return ioError("shutdown", err)
	}
	return nil
}
