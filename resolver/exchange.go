package resolver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// aLongTimeAgo is a deadline in the past, used to unblock socket I/O on cancellation.
var aLongTimeAgo = time.Unix(1, 0)

// exchange sends one question to the configured servers: rounds of rc.Attempts over all
// servers (starting at a rotating index with "options rotate"), each try bounded by
// rc.Timeout, over UDP with a TCP retry on truncation. A NOERROR or NXDOMAIN reply ends it;
// SERVFAIL, REFUSED, other rcodes, timeouts and network errors move on to the next try.
// The result is a *NoAnswerError naming every server asked when no try got a reply at all,
// otherwise the last try's error when no server gave a usable reply. The time spent is thus
// bounded by rc.Timeout × rc.Attempts × the number of servers, whatever the caller's deadline.
func (r *Resolver) exchange(ctx context.Context, rc *ResolvConf, name string, qtype uint16) (*dns.Msg, error) {
	servers := rc.Servers
	if len(servers) == 0 {
		servers = localServers()
	}
	start := 0
	if rc.Rotate {
		start = int(r.rotate.Add(1)-1) % len(servers)
	}
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.SetEdns0(ednsSize, false)
	var lastErr error
	silent := &NoAnswerError{Name: name, Types: []string{dns.TypeToString[qtype]}, PerTry: rc.Timeout}
	for range max(rc.Attempts, 1) {
		for i := range servers {
			m.Id = dns.Id()
			srv := servers[(start+i)%len(servers)]
			resp, err := r.tryServer(ctx, rc, m, srv)
			if cerr := r.ctxErr(ctx); cerr != nil {
				return nil, cerr
			}
			if err == nil {
				err = rcodeErr(resp, srv)
			}
			if err == nil {
				return resp, nil
			}
			lastErr = fmt.Errorf("resolver: %s %s: %w", name, dns.TypeToString[qtype], err)
			if silent != nil {
				silent = silent.add(err)
			}
		}
	}
	if silent != nil {
		return nil, silent
	}
	return nil, lastErr
}

// add counts a try that timed out and names its server, or returns nil (some server replied)
// when err is not a timeout.
func (e *NoAnswerError) add(err error) *NoAnswerError {
	var tt *tryTimeout
	if !errors.As(err, &tt) {
		return nil
	}
	e.Tries++
	if s := tt.server(); !slices.Contains(e.Servers, s) {
		e.Servers = append(e.Servers, s)
	}
	return e
}

// rcodeErr classifies a reply: nil for NOERROR and NXDOMAIN (answers), a sentinel otherwise.
func rcodeErr(resp *dns.Msg, srv netip.AddrPort) error {
	switch resp.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
		return nil
	case dns.RcodeServerFailure:
		return fmt.Errorf("%w from %s", ErrServFail, srv)
	case dns.RcodeRefused:
		return fmt.Errorf("%w by %s", ErrRefused, srv)
	}
	return fmt.Errorf("%w: rcode %s from %s", ErrBadResponse, dns.RcodeToString[resp.Rcode], srv)
}

// tryServer is one try against one server: UDP (unless use-vc), then TCP if truncated.
func (r *Resolver) tryServer(ctx context.Context, rc *ResolvConf, m *dns.Msg, srv netip.AddrPort) (*dns.Msg, error) {
	qtype := m.Question[0].Qtype
	if !rc.UseTCP {
		resp, err := r.exchangeOne(ctx, "udp", rc.Timeout, m, srv)
		r.metrics.query(qtype, outcome(resp, err))
		if err != nil || !resp.Truncated {
			return resp, err
		}
		r.metrics.tcpFallback()
	}
	resp, err := r.exchangeOne(ctx, "tcp", rc.Timeout, m, srv)
	r.metrics.query(qtype, outcome(resp, err))
	return resp, err
}

func outcome(resp *dns.Msg, err error) string {
	switch {
	case errors.Is(err, ErrTimeout):
		return "timeout"
	case err != nil:
		return "error"
	case resp.Truncated:
		return "truncated"
	}
	if s, ok := dns.RcodeToString[resp.Rcode]; ok {
		return s
	}
	return "error"
}

// exchangeOne sends m to srv over network and reads the matching reply, within timeout.
// Cancelling ctx unblocks the socket at once.
func (r *Resolver) exchangeOne(ctx context.Context, network string, timeout time.Duration, m *dns.Msg, srv netip.AddrPort) (*dns.Msg, error) {
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c := dns.Client{Net: network, UDPSize: ednsSize, Timeout: timeout}
	co, err := c.DialContext(tctx, srv.String())
	if err != nil {
		return nil, netErr(tctx, network, srv, err)
	}
	defer co.Close()
	if dl, ok := tctx.Deadline(); ok {
		co.SetDeadline(dl) // before the AfterFunc, so that a cancel is never overwritten
	}
	stop := context.AfterFunc(tctx, func() { co.SetDeadline(aLongTimeAgo) })
	defer stop()
	var resp *dns.Msg
	if network == "udp" {
		resp, err = r.readUDPReply(co, m)
	} else {
		resp, _, err = c.ExchangeWithConnContext(tctx, m, co)
	}
	if bad, ok := badReply(err, network, srv); ok {
		return nil, bad
	}
	if err != nil {
		return nil, netErr(tctx, network, srv, err)
	}
	if !sameQuestion(m, resp) {
		return nil, fmt.Errorf("%w: question mismatch from %s", ErrBadResponse, srv)
	}
	return resp, nil
}

// netErr wraps a socket error; expiry of the try's own timeout wraps ErrTimeout.
func netErr(tctx context.Context, network string, srv netip.AddrPort, err error) error {
	var ne net.Error
	if errors.Is(tctx.Err(), context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return &tryTimeout{srv: srv, network: network}
	}
	return fmt.Errorf("resolver: %s %s: %w", network, srv, err)
}

func sameQuestion(q, a *dns.Msg) bool {
	if len(a.Question) != 1 || !a.Response {
		return false
	}
	x, y := q.Question[0], a.Question[0]
	return x.Qtype == y.Qtype && x.Qclass == y.Qclass && strings.EqualFold(x.Name, y.Name)
}
