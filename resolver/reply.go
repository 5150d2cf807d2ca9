package resolver

import (
	"errors"
	"fmt"
	"io"

	"github.com/miekg/dns"
)

// readUDPReply writes m on the UDP co and reads datagrams until one answers it, or the
// connection's deadline passes. A datagram whose header does not parse, or whose ID,
// question or QR bit does not match m, is not the server's reply to m but a forgery, a
// late reply to an earlier query or noise: it is dropped and the wait goes on (RFC 5452
// §9.1; glibc and Go's resolver do the same), so it can neither poison the answer nor
// cut the wait short. The reply returned may be truncated (TC): its records are then not
// trusted, and the caller asks again over TCP, even when the datagram was cut
// mid-record (RFC 2181 §9). A matching reply that does not parse is returned as the
// parse error (see badReply). Dropped datagrams are counted in Metrics.IgnoredReplies.
func (r *Resolver) readUDPReply(co *dns.Conn, m *dns.Msg) (*dns.Msg, error) {
	if err := co.WriteMsg(m); err != nil {
		return nil, err
	}
	buf := make([]byte, ednsSize)
	for {
		n, err := co.Read(buf)
		if err != nil {
			return nil, err
		}
		resp, ours, err := matchReply(m, buf[:n])
		if !ours {
			r.metrics.ignoredReply()
			continue
		}
		return resp, err
	}
}

// matchReply parses datagram p as a reply to m. ours is false when p is not m's reply
// (no DNS header, another ID, question or QR bit). A truncated reply comes back without
// its records, whatever followed the header; otherwise a parse error is returned as is.
func matchReply(m *dns.Msg, p []byte) (resp *dns.Msg, ours bool, err error) {
	resp = new(dns.Msg)
	uerr := resp.Unpack(p)
	if len(p) < 12 || resp.Id != m.Id || !sameQuestion(m, resp) {
		return nil, false, nil
	}
	if resp.Truncated {
		resp.Answer, resp.Ns, resp.Extra = nil, nil, nil
		return resp, true, nil
	}
	if uerr != nil {
		return nil, true, uerr
	}
	return resp, true, nil
}

// badReply wraps err as ErrBadResponse when it says the message was malformed (a parse
// error, a TCP reply with another ID, a TCP message cut short); ok is false otherwise.
func badReply(err error, network string, srv fmt.Stringer) (wrapped error, ok bool) {
	var de *dns.Error
	if !errors.As(err, &de) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, false
	}
	return fmt.Errorf("%w: malformed reply from %s over %s: %w", ErrBadResponse, srv, network, err), true
}
