//go:build linux

package udp

import (
	"errors"
	"unsafe"

	"golang.org/x/sys/unix"
)

// listenerRounds bounds the recvmmsg batches taken from the listener per loop turn, so sessions'
// replies are served between them (the fd is level-triggered: what is left wakes the loop again).
const listenerRounds = 4

// fromClients moves datagrams from the listener to their sessions' upstream sockets, in order:
// consecutive datagrams of one session leave in one sendmmsg.
func (n *nEngine) fromClients() {
	for range listenerRounds {
		for i := range batch {
			h := &n.lh[i].Hdr
			h.Namelen = unix.SizeofSockaddrInet6
			h.SetControllen(len(n.oobs[i]))
			h.Flags = 0
		}
		k, err := n.mmsg(unix.SYS_RECVMMSG, n.lfd, n.lh[:], unix.MSG_DONTWAIT)
		if err != nil || k == 0 {
			return // EAGAIN, or an error the listener cannot act on
		}
		n.runOf = nil
		for i := range k {
			n.fromClient(i)
		}
		n.flushRun(k)
		if k < batch {
			return
		}
	}
}

func (n *nEngine) fromClient(i int) {
	m := &n.lh[i]
	if m.Hdr.Flags&unix.MSG_TRUNC != 0 {
		n.flushRun(i)
		n.r.st.drop(DropTruncated)
		return
	}
	key := Key{Client: rawAddrPort(&n.names[i]), Local: n.local.Addr()}
	var ifindex uint32
	if n.wildcard {
		if a, ifi, ok := pktDst(n.oobs[i][:m.Hdr.Controllen]); ok {
			key.Local, ifindex = a, ifi
		}
	}
	s := n.sessions[key]
	if s != nil && s == n.runOf {
		return // joins the pending run
	}
	n.flushRun(i)
	if s == nil {
		if s = n.open(key, i, ifindex); s == nil {
			return
		}
	}
	n.runOf, n.runFrom = s, i
}

// flushRun sends the pending run, datagrams runFrom up to end (exclusive), to its session.
func (n *nEngine) flushRun(end int) {
	s := n.runOf
	if s == nil {
		return
	}
	n.runOf = nil
	s.last = n.now
	k := 0
	for i := n.runFrom; i < end; i++ {
		n.siov[k] = unix.Iovec{Base: n.riov[i].Base}
		n.siov[k].SetLen(int(n.lh[i].Len))
		h := &n.sh[k].Hdr
		h.Name, h.Namelen, h.Control = nil, 0, nil
		h.SetControllen(0)
		k++
	}
	sent, bytes, drops := n.send(int(s.fd), k)
	st := n.r.st
	st.dgIn.Add(uint64(sent))
	st.bIn.Add(uint64(bytes))
	n.countDrops(drops)
}

// open starts a session for key, whose first datagram is the listener batch's i-th; nil means
// the datagram is dropped (and counted).
func (n *nEngine) open(key Key, i int, ifindex uint32) *nSession {
	if !n.r.admit(len(n.sessions)) {
		return nil
	}
	fd, err := upstreamSocket(n.target, n.v4Target)
	if err == nil {
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
		if err = unix.EpollCtl(n.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
			unix.Close(fd)
		}
	}
	if err != nil {
		n.r.release()
		n.r.st.drop(DropSocketError)
		n.r.logf("udp: cannot open a session socket", "target", n.r.cfg.Target.String(), "err", err)
		return nil
	}
	s := &nSession{key: key, fd: int32(fd), last: n.now, client: n.names[i], nameLen: n.lh[i].Hdr.Namelen}
	if n.wildcard {
		s.oobLen = uint8(putReplyCmsg(s.oob[:], key.Local, ifindex))
	}
	n.sessions[key] = s
	n.byFD[s.fd] = s
	n.r.st.active.Add(1)
	return s
}

// fromTarget moves one batch of s's replies back to its client, from the address it used.
func (n *nEngine) fromTarget(s *nSession) {
	for i := range batch {
		n.uh[i].Hdr.Flags = 0
	}
	k, err := n.mmsg(unix.SYS_RECVMMSG, int(s.fd), n.uh[:], unix.MSG_DONTWAIT)
	switch {
	case errors.Is(err, unix.EAGAIN):
		return
	case errors.Is(err, unix.ECONNREFUSED):
		n.r.st.drop(DropUnreachable) // the session stays: the target may come back
		return
	case err != nil:
		n.r.logf("udp: session socket failed; session ended", "client", s.key.Client.String(), "err", err)
		n.end(s)
		return
	}
	s.last = n.now
	j := 0
	for i := range k {
		if n.uh[i].Hdr.Flags&unix.MSG_TRUNC != 0 {
			n.r.st.drop(DropTruncated)
			continue
		}
		n.siov[j] = unix.Iovec{Base: n.riov[i].Base}
		n.siov[j].SetLen(int(n.uh[i].Len))
		h := &n.sh[j].Hdr
		h.Name, h.Namelen = (*byte)(unsafe.Pointer(&s.client)), s.nameLen
		h.Control = nil
		h.SetControllen(0)
		if s.oobLen > 0 {
			h.Control = &s.oob[0]
			h.SetControllen(int(s.oobLen))
		}
		j++
	}
	sent, bytes, drops := n.send(n.lfd, j)
	st := n.r.st
	st.dgOut.Add(uint64(sent))
	st.bOut.Add(uint64(bytes))
	n.countDrops(drops)
}

// send writes sh[:k] to fd with sendmmsg. A datagram the kernel refuses is dropped and the rest
// still go; a full socket buffer (EAGAIN) drops what is left of the batch.
func (n *nEngine) send(fd, k int) (sent, bytes int, drops [numDrops]int) {
	for i := 0; i < k; {
		m, err := n.mmsg(unix.SYS_SENDMMSG, fd, n.sh[i:k], unix.MSG_DONTWAIT)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) {
				drops[DropSendError] += k - i
				return
			}
			drops[sendDrop(err)]++
			i++
			continue
		}
		for _, h := range n.sh[i : i+m] {
			bytes += int(h.Len)
		}
		sent += m
		i += m
	}
	return
}

func (n *nEngine) countDrops(d [numDrops]int) {
	for r, c := range d {
		if c > 0 {
			n.r.st.drops[r].Add(uint64(c))
		}
	}
}
