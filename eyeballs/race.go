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

// Race is one Happy Eyeballs race (RFC 8305, HEv3) as a state machine. Its driver tells it what
// happened (an answer, the end of the answer stream, an attempt's outcome) and what time it is;
// it says which connection attempts to start and when it must be asked again. It starts no
// goroutine, arms no timer, opens no socket for its attempts and never reads the clock.
// DialContext is one driver (a goroutine per attempt, a timer, the resolver's channel); an event
// loop making non-blocking connects is another.
//
// A race with a winner or an error is over: it starts nothing more and ignores later events.
// A Race belongs to one driver: it is not safe for concurrent use, and must not be copied.
type Race struct {
	d        *Dialer
	host     string
	port     uint16
	start    time.Time
	deadline time.Time
	sorter   sorter

	name        bool // the driver runs a lookup and streams its answers
	answersDone bool // the answer stream closed

	seen     []netip.Addr // every address received, in its sorting form
	untried  []candidate  // in attempt order
	spare    []candidate  // scratch for arrange, swapped with untried
	tried    []candidate  // in start order: attempt i's candidate is tried[i]
	attempts []attempt    // by ID
	errs     []error      // attempt and synthesis errors, in order
	dnsErrs  []error
	answers  int // Answers received (one per family at most)

	goAhead    bool      // attempts may start (RFC 8305 §3)
	preferred  int       // the family whose answer is awaited: 6, or 4 when history says so
	prefDone   bool      // the preferred family's answer, positive or negative, is in
	rdDeadline time.Time // end of the Resolution Delay, once a positive A answer waits
	lastStart  time.Time
	kick       bool // an attempt failed: the next one need not wait for AttemptDelay
	inflight   int
	graceUntil time.Time // set when the deadline came with no address and the lookup open

	over bool
	err  error // why the race failed, once over without a winner

	startBuf []Attempt // what Next returned last

	// Backing arrays, so that a race of a few addresses costs one allocation.
	seenArr              [4]netip.Addr
	untriedArr, spareArr [4]candidate
	triedArr             [4]candidate
	attemptArr           [4]attempt
	startArr             [1]Attempt // the 10ms floor: one start per Next
}

// Attempt is a connection attempt the driver must start: a TCP connect to Target.
type Attempt struct {
	ID      int            // 0, 1, 2... in start order
	Network string         // "tcp4" or "tcp6"
	Target  netip.AddrPort // after NAT64 synthesis and Approve
}

// Step is what a race asks of its driver.
type Step struct {
	// Start lists the attempts to start at once, in order. It is valid until the next call of
	// Next.
	Start []Attempt
	// Wake is when Next must be called again if no other event (Answer, AnswersDone,
	// Finished) comes first; zero once the race is over. The race's deadline is among the
	// times it names: a driver enforces Dialer.Timeout by calling Next at Wake.
	Wake time.Time
	// Done reports that the race is over: it has a winner (Err nil) or failed (Err says why).
	// The driver closes every attempt still running and stops calling.
	Done bool
	// Err is the race's error when it is over without a winner: see DialContext for its
	// classification.
	Err error
}

// attempt is the state of one started Attempt.
type attempt struct {
	target netip.AddrPort
	at     time.Time // started
	nat64  bool      // target is synthesized
	ended  bool
}

func (a *attempt) network() string {
	if a.target.Addr().Is4() {
		return "tcp4"
	}
	return "tcp6"
}

func (a *attempt) path() string {
	if a.nat64 {
		return PathNAT64
	}
	return PathNative
}

// NewRace starts the race for host (a name or an IP literal, brackets allowed) and port at now;
// its deadline is now + Timeout. A literal's one candidate is known at once. For a name
// (NeedsLookup), the driver runs Resolver.Lookup with a context that ends at the race's Deadline,
// feeds each answer to Answer and reports the stream's end with AnswersDone. A name without a
// Resolver makes a race that is already over with an error wrapping ErrNoResolver, and so does
// a name the Policy refuses, with an error wrapping ErrNotAllowed (nothing is looked up).
//
// NewRace reads the host's history and the IPv4 route probe's result, as Direct does; the probe
// (a connect(2) on a UDP socket, which sends nothing) runs at most once per RouteProbeInterval
// per Dialer, and not at all when HasIPv4Route is set.
func (d *Dialer) NewRace(host string, port uint16, now time.Time) *Race {
	r := &Race{d: d, host: host, port: port, start: now, deadline: now.Add(d.timeout()), preferred: 6}
	r.seen, r.untried, r.spare = r.seenArr[:0], r.untriedArr[:0], r.spareArr[:0]
	r.tried, r.attempts, r.startBuf = r.triedArr[:0], r.attemptArr[:0], r.startArr[:0]
	r.sorter.v4route = d.hasIPv4Route(now)
	r.sorter.hasNAT64 = d.NAT64 != nil && d.NAT64.HasPrefix()
	r.sorter.winner, _ = d.winner(host, now)
	if r.sorter.winner.Is4() {
		r.preferred = 4 // history says this host is best reached over IPv4
	}
	lit, isLit := parseLiteral(host)
	var denied error
	if !isLit {
		denied = d.denyName(host, port)
	}
	switch {
	case isLit:
		r.add([]netip.Addr{lit})
		r.goAhead = true
	case denied != nil:
		r.end(opError("tcp", nil, denied), ReasonPolicy)
	case d.Resolver == nil:
		r.end(opError("tcp", nil, fmt.Errorf("%w: %s", ErrNoResolver, host)), ReasonDNS)
	default:
		r.name = true
	}
	return r
}

// parseLiteral parses host as an IP literal (brackets allowed) without building the error
// netip.ParseAddr would return for a name: a name is the common case.
func parseLiteral(host string) (netip.Addr, bool) {
	s := strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if !strings.Contains(s, ":") && strings.ContainsFunc(s, func(c rune) bool { return c != '.' && (c < '0' || c > '9') }) {
		return netip.Addr{}, false // neither IPv6 nor dotted decimal
	}
	a, err := netip.ParseAddr(s)
	return a, err == nil
}

// NeedsLookup reports whether the driver must look host up: it is a name and the Dialer has a
// Resolver.
func (r *Race) NeedsLookup() bool { return r.name }

// Deadline is when the race fails if nothing has won: NewRace's now + Dialer.Timeout. The
// lookup's context should end then, so that a silent resolver says why within the short grace
// the race gives it.
func (r *Race) Deadline() time.Time { return r.deadline }

// expire moves the deadline to now, for a driver whose own deadline came first.
func (r *Race) expire(now time.Time) {
	if now.Before(r.deadline) {
		r.deadline = now
	}
}

// Answer merges one family's answer and applies RFC 8305 §3 (HEv3 §4.2): the preferred family's
// answer, positive or negative, lets attempts start; a positive answer of the other family
// alone waits ResolutionDelay for it. The preferred family is IPv6 unless the history of this
// host names an IPv4 winner. In the grace after the deadline (see expired) only the answer's
// error counts.
func (r *Race) Answer(a resolver.Answer, now time.Time) {
	if r.over || !r.name || r.answersDone {
		return
	}
	r.answers++
	if a.Err != nil {
		r.dnsErrs = append(r.dnsErrs, a.Err)
	}
	if !r.graceUntil.IsZero() {
		return
	}
	added := r.add(a.Addrs)
	switch {
	case a.Family == r.preferred:
		r.prefDone, r.goAhead = true, true
	case added == 0 || r.goAhead:
	case r.prefDone:
		r.goAhead = true
	case r.rdDeadline.IsZero():
		r.rdDeadline = now.Add(r.d.resolutionDelay())
	}
}

// AnswersDone reports that the answer stream closed: attempts may start with what arrived.
func (r *Race) AnswersDone(now time.Time) {
	if r.name {
		r.answersDone, r.goAhead = true, true
	}
}

// lookupOpen reports whether answers may still come.
func (r *Race) lookupOpen() bool { return r.name && !r.answersDone }

// Next says what to do at now: which attempts to start (the first at once, the next
// AttemptDelay after the previous start or as soon as an attempt has failed, never within
// MinAttemptDelay of the previous start, never more than MaxConcurrent in flight) and when to
// ask again; or that the race is over.
func (r *Race) Next(now time.Time) Step {
	if r.over {
		return Step{Done: true, Err: r.err}
	}
	if !now.Before(r.deadline) {
		return r.expired(now)
	}
	if !r.goAhead && !r.rdDeadline.IsZero() && !now.Before(r.rdDeadline) {
		r.goAhead = true
	}
	start := r.startDue(now)
	if r.inflight == 0 && len(r.untried) == 0 && !r.lookupOpen() {
		return r.fail(false)
	}
	return Step{Start: start, Wake: r.wake()}
}

// dnsGrace bounds how long a race that ended without any address waits for the resolver's
// last word: a lookup answers its outstanding families at once when its context ends.
const dnsGrace = 100 * time.Millisecond

// families is how many Answers a lookup streams: AAAA and A.
const families = 2

// expired is Next at or after the deadline. The race fails, unless no address ever arrived and
// the lookup is open: then the resolver, whose context ended with the race's deadline, has
// dnsGrace to say why, and the race fails when it has (AnswersDone) or the grace is over. A
// race that had nothing left to wait for when the deadline came fails as it would have a
// moment earlier, without the deadline's error.
func (r *Race) expired(now time.Time) Step {
	if r.graceUntil.IsZero() && r.inflight == 0 && len(r.untried) == 0 && !r.lookupOpen() {
		return r.fail(false)
	}
	if len(r.seen) == 0 && r.lookupOpen() {
		if r.graceUntil.IsZero() {
			r.graceUntil = now.Add(dnsGrace)
		}
		if now.Before(r.graceUntil) {
			return Step{Wake: r.graceUntil}
		}
	}
	return r.fail(true)
}

// add turns addresses into new candidates and sorts them into the untried tail (RFC 8305 §6,
// HEv3 §7). It returns how many were new.
func (r *Race) add(addrs []netip.Addr) int {
	fresh := 0
	for _, a := range addrs {
		c, ok := r.candidate(a)
		if !ok || slices.Contains(r.seen, c.addr) {
			continue
		}
		r.seen = append(r.seen, c.addr)
		r.untried = append(r.untried, c)
		fresh++
	}
	if fresh > 0 {
		r.sorter.sort(r.untried)
		r.spare = appendArranged(r.spare[:0], r.untried, r.tried, r.d.firstFamilyCount())
		r.untried, r.spare = r.spare, r.untried
	}
	return fresh
}

// candidate gives an address its sorting form: IPv4-mapped and synthesized IPv6 become IPv4.
// A synthesized address that embeds a host- or network-scoped IPv4 address (loopback,
// link-local, unspecified, multicast) is left as IPv6, so that a DNS64 answer can never lead
// to the pod's own loopback.
func (r *Race) candidate(a netip.Addr) (candidate, bool) {
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

// startDue starts every attempt that is due at now (see Next). A candidate that synthesis or
// Approve rules out is skipped and its error kept.
func (r *Race) startDue(now time.Time) []Attempt {
	out := r.startBuf[:0]
	for r.goAhead && len(r.untried) > 0 && r.inflight < r.d.maxConcurrent() {
		if len(r.attempts) > 0 {
			gap := now.Sub(r.lastStart)
			if gap < MinAttemptDelay || (r.inflight > 0 && !r.kick && gap < r.d.attemptDelay()) {
				break
			}
		}
		c := r.untried[0]
		r.untried = r.untried[:copy(r.untried, r.untried[1:])] // keeps the backing array's start
		network, target, path, err := r.target(c)
		if err != nil {
			r.errs = append(r.errs, opError(network, net.TCPAddrFromAddrPort(netip.AddrPortFrom(c.addr, r.port)), err))
			if r.d.Logf != nil {
				r.d.Logf("eyeballs: %s: skip %s: %v", r.host, c.addr, err)
			}
			continue
		}
		id := len(r.attempts)
		r.attempts = append(r.attempts, attempt{target: target, at: now, nat64: path == PathNAT64})
		r.tried = append(r.tried, c)
		r.lastStart, r.kick = now, false
		r.inflight++
		r.d.Metrics.attempt(c.family(), path == PathNAT64)
		if r.d.Logf != nil {
			r.d.Logf("eyeballs: %s: attempt %d %s %s", r.host, id+1, network, target)
		}
		out = append(out, Attempt{ID: id, Network: network, Target: target})
	}
	r.startBuf = out
	if len(out) == 0 {
		return nil
	}
	return out
}

// target is where a candidate is dialed (see route), if Policy and Approve let it. A
// candidate without a route is still put to the policy, so that a refusal names its rule.
func (r *Race) target(c candidate) (network string, ap netip.AddrPort, path string, err error) {
	network, ap, path, err = r.route(c)
	if r.d.Policy != nil {
		dest, v4 := ap, netip.Addr{}
		switch {
		case err != nil:
			dest = netip.AddrPortFrom(c.addr, r.port)
		case path == PathNAT64:
			v4 = c.addr
		}
		if perr := r.d.Policy.CheckAddr(r.policyName(), dest, v4); perr != nil {
			return network, ap, path, fmt.Errorf("%w: %w", ErrNotAllowed, perr)
		}
	}
	if err == nil && r.d.Approve != nil {
		if aerr := r.d.Approve(ap); aerr != nil {
			err = fmt.Errorf("%w: %w", ErrNotAllowed, aerr)
		}
	}
	return network, ap, path, err
}

// policyName is the name the race is for, "" for an IP literal (Policy.CheckAddr).
func (r *Race) policyName() string {
	if _, lit := parseLiteral(r.host); lit {
		return ""
	}
	return r.host
}

// denyName is the Policy's refusal of a request for the name host, wrapping ErrNotAllowed;
// nil when there is no Policy or it allows host.
func (d *Dialer) denyName(host string, port uint16) error {
	if d.Policy == nil {
		return nil
	}
	if err := d.Policy.CheckName(host, port); err != nil {
		return fmt.Errorf("%w: %w", ErrNotAllowed, err)
	}
	return nil
}

// route is where a candidate is dialed: IPv6 as is, IPv4 natively when it has a route (always
// for loopback), otherwise synthesized with the current NAT64 prefix (HEv3 §8.3).
func (r *Race) route(c candidate) (network string, ap netip.AddrPort, path string, err error) {
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

// wake is when Next must look again even if nothing happens: the end of the Resolution Delay,
// the next attempt's earliest start, or the deadline, whichever comes first.
func (r *Race) wake() time.Time {
	var at time.Time
	switch {
	case !r.goAhead:
		at = r.rdDeadline
	case len(r.untried) == 0 || r.inflight >= r.d.maxConcurrent():
	case r.inflight == 0 || r.kick:
		at = r.lastStart.Add(MinAttemptDelay)
	default:
		at = r.lastStart.Add(r.d.attemptDelay())
	}
	if at.IsZero() || r.deadline.Before(at) {
		return r.deadline
	}
	return at
}

// Finished reports that attempt id ended at now: err nil means its TCP handshake completed. The
// first success wins: the race is over, history and metrics record the winner, and the driver
// closes every other attempt. A failure is kept for the race's error and lets the next attempt
// start at once (but not within MinAttemptDelay of the last start: ask Next). Finished after
// the race is over, or twice for one attempt, is ignored.
func (r *Race) Finished(id int, err error, now time.Time) (won bool) {
	if r.over || id < 0 || id >= len(r.attempts) || r.attempts[id].ended {
		return false
	}
	a, c := &r.attempts[id], r.tried[id]
	a.ended = true
	r.inflight--
	rtt := now.Sub(a.at)
	if err != nil {
		r.errs = append(r.errs, opError(a.network(), net.TCPAddrFromAddrPort(a.target), err))
		r.kick = true
		if r.d.Logf != nil {
			r.d.Logf("eyeballs: %s: attempt %s failed: %v", r.host, a.target, err)
		}
		return false
	}
	r.over = true
	r.d.remember(r.host, c.addr, rtt, now)
	r.d.Metrics.won(c.family(), a.path(), now.Sub(r.start))
	if r.d.Logf != nil {
		r.d.Logf("eyeballs: %s: connected %s %s (%s) in %v", r.host, a.network(), a.target, a.path(), rtt)
	}
	return true
}

// Cancel ends a race whose caller gave up (client gone, drain): err is why, a context's error.
// It returns the error DialContext returns for a context that ended so: context.Canceled (or any
// other error) gives a *net.OpError wrapping err, counted as canceled; context.DeadlineExceeded
// fails the race as its own deadline would, without waiting for the resolver. The failure is
// counted once. Cancel of a race already over changes nothing and returns its error (nil when it
// was won).
func (r *Race) Cancel(err error, now time.Time) error {
	switch {
	case r.over:
		return r.err
	case errors.Is(err, context.DeadlineExceeded):
		return r.fail(true).Err
	case err == nil:
		err = context.Canceled
	}
	return r.end(opError("tcp", nil, fmt.Errorf("eyeballs: %s: %w", r.host, err)), ReasonCanceled).Err
}

// end fails the race with err, counted under the reason why.
func (r *Race) end(err error, why string) Step {
	r.over, r.err = true, err
	r.d.Metrics.failed(why)
	return Step{Done: true, Err: err}
}

// fail ends the race with its failure (see failure).
func (r *Race) fail(deadline bool) Step {
	err := r.failure(deadline)
	return r.end(err, reason(err))
}

// failure builds the error of a race without a winner; deadline is set when time ran out.
func (r *Race) failure(deadline bool) error {
	if len(r.seen) == 0 {
		return opError("tcp", nil, r.resolveErr(deadline))
	}
	errs := r.errs
	if deadline {
		errs = append(slices.Clip(errs), opError("tcp", nil, &timeoutError{host: r.host, d: r.d.timeout()}))
	}
	var best error
	for _, e := range errs {
		if best == nil || rank(e) > rank(best) {
			best = e
		}
	}
	return best
}

// resolveErr is why a race got no address to try: what the resolver said, and, when the
// deadline came with a family still unanswered, that it said nothing more in time.
func (r *Race) resolveErr(deadline bool) error {
	errs := r.dnsErrs
	if deadline && r.answers < families {
		errs = append(slices.Clip(errs), &timeoutError{host: r.host, d: r.d.timeout(), resolving: true})
	}
	if len(errs) == 0 {
		return fmt.Errorf("%w for %s", ErrNoAddress, r.host)
	}
	return &resolveError{host: r.host, err: resolver.Join(errs...)}
}
