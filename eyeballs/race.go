package eyeballs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/nat464/nat464-sidecar/nat64"
	"github.com/nat464/nat464-sidecar/resolver"
)

// Paths, the values of the winners_total "path" label.
const (
	PathNative = "native"
	PathNAT64  = "nat64"
)

// DialContext connects to host (a name, or an IPv4 or IPv6 literal, brackets allowed) on port
// and returns the first connection whose TCP handshake completes. ctx and Timeout bound the
// whole race. A failed race returns a *net.OpError: the most informative attempt error
// (refused, host unreachable, network unreachable, then timeout), one that satisfies
// errors.Is(err, context.DeadlineExceeded) when time ran out first, one wrapping
// nat64.ErrPolicy (or ErrNotAllowed) when every candidate was refused by policy (or Approve),
// or, when no address ever arrived, the resolver's errors: a resolver still silent at the
// deadline is asked once more, briefly, so that its error, naming what it was waiting for,
// is the cause rather than "no connection within Timeout".
func (d *Dialer) DialContext(ctx context.Context, host string, port uint16) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout())
	defer cancel()
	r := &race{d: d, host: host, port: port, start: time.Now(), seen: map[netip.Addr]bool{}}
	r.sorter.v4route = d.hasIPv4Route(r.start)
	r.sorter.hasNAT64 = d.NAT64 != nil && d.NAT64.HasPrefix()
	r.sorter.winner, _ = d.winner(host, r.start)
	r.preferred = 6
	if r.sorter.winner.Is4() {
		r.preferred = 4 // history says this host is best reached over IPv4
	}
	var answers <-chan resolver.Answer
	if lit, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")); err == nil {
		r.add([]netip.Addr{lit})
		r.goAhead = true
	} else if d.Resolver == nil {
		err := opError("tcp", nil, fmt.Errorf("%w: %s", ErrNoResolver, host))
		d.Metrics.failed(ReasonDNS)
		return nil, err
	} else {
		answers = d.Resolver.Lookup(ctx, host)
	}
	return r.run(ctx, answers)
}

// race is the state of one DialContext, owned by its goroutine.
type race struct {
	d      *Dialer
	host   string
	port   uint16
	start  time.Time
	sorter sorter

	seen    map[netip.Addr]bool
	untried []candidate // in attempt order
	tried   []candidate // in start order
	errs    []error     // attempt and synthesis errors, in order
	dnsErrs []error
	answers int // Answers received (one per family at most)

	goAhead    bool      // attempts may start (RFC 8305 §3)
	preferred  int       // the family whose answer is awaited: 6, or 4 when history says so
	prefDone   bool      // the preferred family's answer, positive or negative, is in
	rdDeadline time.Time // end of the Resolution Delay, once a positive A answer waits
	lastStart  time.Time
	kick       bool // an attempt failed: the next one need not wait for AttemptDelay
	inflight   int
}

// result is the outcome of one attempt.
type result struct {
	conn    net.Conn
	err     error
	cand    candidate
	network string
	target  netip.AddrPort
	path    string
	rtt     time.Duration
}

func (r *race) run(ctx context.Context, answers <-chan resolver.Answer) (net.Conn, error) {
	actx, stop := context.WithCancel(ctx)
	defer stop()
	results := make(chan result, r.d.maxConcurrent()) // never more in flight: sends never block
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	defer func() {
		if r.inflight > 0 || answers != nil {
			go drain(results, r.inflight, answers)
		}
	}()
	for {
		if !r.goAhead && !r.rdDeadline.IsZero() && !time.Now().Before(r.rdDeadline) {
			r.goAhead = true
		}
		r.startDue(actx, results)
		if r.inflight == 0 && len(r.untried) == 0 && answers == nil {
			return nil, r.fail(nil)
		}
		timer.Stop()
		var wake <-chan time.Time
		if at, ok := r.nextWake(); ok {
			timer.Reset(time.Until(at))
			wake = timer.C
		}
		select {
		case a, ok := <-answers:
			if !ok {
				answers, r.goAhead = nil, true
				continue
			}
			r.addAnswer(a)
		case res := <-results:
			r.inflight--
			if res.err == nil {
				return r.win(res), nil
			}
			r.lose(res)
		case <-wake:
		case <-ctx.Done():
			if len(r.seen) == 0 && answers != nil && r.awaitDNS(answers) {
				answers = nil
			}
			return nil, r.fail(ctx.Err())
		}
	}
}

// dnsGrace bounds how long a race that ended without any address waits for the resolver's
// last word: a lookup answers its outstanding families at once when its context ends.
const dnsGrace = 100 * time.Millisecond

// families is how many Answers a lookup streams: AAAA and A.
const families = 2

// awaitDNS collects the resolver's remaining answers (the errors of a cancelled lookup) for
// at most dnsGrace. It reports whether the stream ended.
func (r *race) awaitDNS(answers <-chan resolver.Answer) bool {
	t := time.NewTimer(dnsGrace)
	defer t.Stop()
	for {
		select {
		case a, ok := <-answers:
			if !ok {
				return true
			}
			r.answers++
			if a.Err != nil {
				r.dnsErrs = append(r.dnsErrs, a.Err)
			}
		case <-t.C:
			return false
		}
	}
}

// drain closes the connections of attempts still in flight when the race ended, and empties
// the answer stream so that the resolver never blocks on it.
func drain(results <-chan result, n int, answers <-chan resolver.Answer) {
	for n > 0 || answers != nil {
		select {
		case res := <-results:
			n--
			if res.conn != nil {
				res.conn.Close()
			}
		case _, ok := <-answers:
			if !ok {
				answers = nil
			}
		}
	}
}

// addAnswer merges one family's answer and applies RFC 8305 §3 (HEv3 §4.2): the preferred
// family's answer, positive or negative, lets attempts start; a positive answer of the other
// family alone waits ResolutionDelay for it. The preferred family is IPv6 unless the history
// of this host names an IPv4 winner.
func (r *race) addAnswer(a resolver.Answer) {
	r.answers++
	if a.Err != nil {
		r.dnsErrs = append(r.dnsErrs, a.Err)
	}
	added := r.add(a.Addrs)
	switch {
	case a.Family == r.preferred:
		r.prefDone, r.goAhead = true, true
	case added == 0 || r.goAhead:
	case r.prefDone:
		r.goAhead = true
	case r.rdDeadline.IsZero():
		r.rdDeadline = time.Now().Add(r.d.resolutionDelay())
	}
}

// add turns addresses into new candidates and sorts them into the untried tail (RFC 8305 §6,
// HEv3 §7). It returns how many were new.
func (r *race) add(addrs []netip.Addr) int {
	fresh := 0
	for _, a := range addrs {
		c, ok := r.candidate(a)
		if !ok || r.seen[c.addr] {
			continue
		}
		r.seen[c.addr] = true
		r.untried = append(r.untried, c)
		fresh++
	}
	if fresh > 0 {
		r.sorter.sort(r.untried)
		r.untried = arrange(r.untried, r.tried, r.d.firstFamilyCount())
	}
	return fresh
}

// candidate gives an address its sorting form: IPv4-mapped and synthesized IPv6 become IPv4.
// A synthesized address that embeds a host- or network-scoped IPv4 address (loopback,
// link-local, unspecified, multicast) is left as IPv6, so that a DNS64 answer can never lead
// to the pod's own loopback.
func (r *race) candidate(a netip.Addr) (candidate, bool) {
	if !a.IsValid() {
		return candidate{}, false
	}
	a = a.Unmap()
	if a.Is6() && r.d.NAT64 != nil {
		if v4, ok := r.d.NAT64.Desynthesize(a); ok && !scoped(v4) {
			return candidate{addr: v4}, true
		}
	}
	return candidate{addr: a}, true
}

func scoped(v4 netip.Addr) bool {
	return v4.IsLoopback() || v4.IsLinkLocalUnicast() || v4.IsUnspecified() || v4.IsMulticast() ||
		v4.IsLinkLocalMulticast()
}

// startDue starts every attempt that is due now: the first at once, the next AttemptDelay
// after the previous start or as soon as an attempt has failed, never within MinAttemptDelay
// of the previous start, and never more than MaxConcurrent in flight.
func (r *race) startDue(ctx context.Context, results chan<- result) {
	for r.goAhead && len(r.untried) > 0 && r.inflight < r.d.maxConcurrent() {
		now := time.Now()
		if !r.lastStart.IsZero() {
			gap := now.Sub(r.lastStart)
			if gap < MinAttemptDelay || (r.inflight > 0 && !r.kick && gap < r.d.attemptDelay()) {
				return
			}
		}
		c := r.untried[0]
		r.untried = r.untried[1:]
		network, target, path, err := r.target(c)
		if err != nil {
			r.errs = append(r.errs, opError(network, net.TCPAddrFromAddrPort(netip.AddrPortFrom(c.addr, r.port)), err))
			r.d.logf("eyeballs: %s: skip %s: %v", r.host, c.addr, err)
			continue
		}
		r.tried = append(r.tried, c)
		r.lastStart, r.kick = now, false
		r.inflight++
		r.d.Metrics.attempt(c.family(), path == PathNAT64)
		r.d.logf("eyeballs: %s: attempt %d %s %s", r.host, len(r.tried), network, target)
		go func() {
			t0 := time.Now()
			conn, err := r.d.dialAttempt(ctx, network, target)
			results <- result{conn: conn, err: err, cand: c, network: network, target: target, path: path, rtt: time.Since(t0)}
		}()
	}
}

// target is where a candidate is dialed (see route), if Approve lets it.
func (r *race) target(c candidate) (network string, ap netip.AddrPort, path string, err error) {
	network, ap, path, err = r.route(c)
	if err == nil && r.d.Approve != nil {
		if aerr := r.d.Approve(ap); aerr != nil {
			err = fmt.Errorf("%w: %w", ErrNotAllowed, aerr)
		}
	}
	return network, ap, path, err
}

// route is where a candidate is dialed: IPv6 as is, IPv4 natively when it has a route (always
// for loopback), otherwise synthesized with the current NAT64 prefix (HEv3 §8.3).
func (r *race) route(c candidate) (network string, ap netip.AddrPort, path string, err error) {
	if c.addr.Is6() {
		return "tcp6", netip.AddrPortFrom(c.addr, r.port), PathNative, nil
	}
	if c.addr.IsLoopback() || r.sorter.v4route {
		return "tcp4", netip.AddrPortFrom(c.addr, r.port), PathNative, nil
	}
	if r.d.NAT64 == nil {
		return "tcp6", ap, PathNAT64, fmt.Errorf("eyeballs: no IPv4 route to %s and %w (%w)", c.addr, nat64.ErrNoPrefix, syscall.ENETUNREACH)
	}
	v6, err := r.d.NAT64.Synthesize(c.addr)
	if errors.Is(err, nat64.ErrNoPrefix) {
		err = fmt.Errorf("eyeballs: no IPv4 route to %s and %w (%w)", c.addr, err, syscall.ENETUNREACH)
	}
	if err != nil {
		return "tcp6", ap, PathNAT64, err
	}
	return "tcp6", netip.AddrPortFrom(v6, r.port), PathNAT64, nil
}

// nextWake is when the race must look again even if nothing arrives.
func (r *race) nextWake() (time.Time, bool) {
	switch {
	case !r.goAhead:
		return r.rdDeadline, !r.rdDeadline.IsZero()
	case len(r.untried) == 0 || r.inflight >= r.d.maxConcurrent():
		return time.Time{}, false
	case r.inflight == 0 || r.kick:
		return r.lastStart.Add(MinAttemptDelay), true
	}
	return r.lastStart.Add(r.d.attemptDelay()), true
}

func (r *race) win(res result) net.Conn {
	r.d.remember(r.host, res.cand.addr, res.rtt, time.Now())
	r.d.Metrics.won(res.cand.family(), res.path, time.Since(r.start))
	r.d.logf("eyeballs: %s: connected %s %s (%s) in %v", r.host, res.network, res.target, res.path, res.rtt)
	return res.conn
}

func (r *race) lose(res result) {
	r.errs = append(r.errs, opError(res.network, net.TCPAddrFromAddrPort(res.target), res.err))
	r.kick = true
	r.d.logf("eyeballs: %s: attempt %s failed: %v", r.host, res.target, res.err)
}

// fail builds the error of a race without a winner; ctxErr is set when the context ended it.
func (r *race) fail(ctxErr error) error {
	deadline := errors.Is(ctxErr, context.DeadlineExceeded)
	if ctxErr != nil && !deadline {
		err := opError("tcp", nil, fmt.Errorf("eyeballs: %s: %w", r.host, ctxErr))
		r.d.Metrics.failed(ReasonCanceled)
		return err
	}
	var best error
	if len(r.seen) == 0 {
		best = opError("tcp", nil, r.resolveErr(deadline))
		r.d.Metrics.failed(reason(best))
		return best
	}
	errs := r.errs
	if deadline {
		errs = append(errs, opError("tcp", nil, &timeoutError{host: r.host, d: r.d.timeout()}))
	}
	for _, e := range errs {
		if best == nil || rank(e) > rank(best) {
			best = e
		}
	}
	r.d.Metrics.failed(reason(best))
	return best
}

// resolveErr is why a race got no address to try: what the resolver said, and, when the
// deadline came with a family still unanswered, that it said nothing more in time.
func (r *race) resolveErr(deadline bool) error {
	errs := r.dnsErrs
	if deadline && r.answers < families {
		errs = append(slices.Clip(errs), &timeoutError{host: r.host, d: r.d.timeout(), resolving: true})
	}
	if len(errs) == 0 {
		return fmt.Errorf("%w for %s", ErrNoAddress, r.host)
	}
	return &resolveError{host: r.host, err: resolver.Join(errs...)}
}
