package nat64

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Modes of Prefixes, as config.Config.NAT64Mode names them.
const (
	ModeAuto   = "auto"   // RFC 7050 discovery, falling back to the WKP
	ModeStatic = "static" // the Configured prefixes
	ModeNone   = "none"   // no synthesis at all
)

// Sources say how the prefixes in use were found.
const (
	SourceConfigured = "configured"
	SourceDiscovered = "discovered (RFC 7050)"
	SourceWellKnown  = "well-known default"
	SourceNone       = "none"
)

// Timing of discovery (RFC 7050 §3).
const (
	// RefreshLead is how long before the TTL of the discovery answer expires it is asked again.
	RefreshLead = 10 * time.Second
	// MinRefresh is the floor on any wait between two discovery queries.
	MinRefresh = 10 * time.Second
)

// Querier sends the AAAA query for an absolute name with the CD bit clear. On a negative answer
// the error is set and ttl is the negative-caching TTL (greater than zero); on a timeout or any
// other failure ttl is zero. The resolver package's *Resolver satisfies it.
type Querier interface {
	LookupAAAA(ctx context.Context, name string) (addrs []netip.Addr, ttl time.Duration, err error)
}

// Prefixes holds the ordered list of NAT64 prefixes in use and how they were found. Its zero
// value is in mode auto with no Querier, so it uses the WKP. It is safe for concurrent use once
// the exported fields are set; do not change them or copy the value afterwards.
type Prefixes struct {
	// Mode is ModeAuto, ModeStatic or ModeNone. If empty (or unknown), ModeAuto. ModeStatic
	// with no valid Configured prefix behaves like ModeNone.
	Mode string
	// Configured are the prefixes for ModeStatic, in order; invalid ones are ignored.
	Configured []netip.Prefix
	// Policy guards which IPv4 addresses Synthesize accepts.
	Policy Policy
	// Querier runs the RFC 7050 query in ModeAuto. If nil, the WKP is used without discovery.
	Querier Querier
	// QueryTimeout bounds one discovery query. If zero, 5s.
	QueryTimeout time.Duration
	// RetryInterval is the wait after a failed query (timeout, SERVFAIL) that gave no TTL.
	// If zero, 30s; never below MinRefresh.
	RetryInterval time.Duration
	// Wait sleeps d or until ctx is done (test seam). If nil, a timer.
	Wait func(ctx context.Context, d time.Duration) error
	// OnChange is called (from Run, never with a lock held) with the prefixes and source each
	// time they change, and once at the start, so that main can log what is in use and why.
	OnChange func(prefixes []netip.Prefix, source string)
	// Metrics may be nil.
	Metrics *Metrics

	once      sync.Once
	ready     chan struct{}
	readyOnce sync.Once
	mu        sync.RWMutex
	cur       []netip.Prefix
	src       string
}

func (p *Prefixes) queryTimeout() time.Duration {
	if p.QueryTimeout > 0 {
		return p.QueryTimeout
	}
	return 5 * time.Second
}

func (p *Prefixes) retryInterval() time.Duration {
	if p.RetryInterval == 0 {
		return 30 * time.Second
	}
	return max(p.RetryInterval, MinRefresh)
}

func (p *Prefixes) mode() string {
	switch p.Mode {
	case ModeStatic, ModeNone:
		return p.Mode
	}
	return ModeAuto
}

// init sets the state the mode starts with.
func (p *Prefixes) init() {
	p.once.Do(func() {
		p.ready = make(chan struct{})
		switch p.mode() {
		case ModeStatic:
			for _, c := range p.Configured {
				if ValidPrefix(c) == nil && !slices.Contains(p.cur, c.Masked()) {
					p.cur = append(p.cur, c.Masked())
				}
			}
			p.src = SourceConfigured
			if len(p.cur) == 0 {
				p.src = SourceNone
			}
		case ModeNone:
			p.src = SourceNone
		default:
			p.cur, p.src = []netip.Prefix{WKP}, SourceWellKnown
		}
		p.Metrics.setPrefixes(p.cur, p.src)
	})
}

// Current returns a copy of the prefixes in use, first the one Synthesize uses.
func (p *Prefixes) Current() []netip.Prefix {
	p.init()
	p.mu.RLock()
	defer p.mu.RUnlock()
	return slices.Clone(p.cur)
}

// Source says how the current prefixes were found: SourceConfigured, SourceDiscovered,
// SourceWellKnown or SourceNone.
func (p *Prefixes) Source() string {
	p.init()
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.src
}

// HasPrefix reports whether any prefix is in use, so that IPv4 destinations can be synthesized.
func (p *Prefixes) HasPrefix() bool {
	p.init()
	p.mu.RLock()
	defer p.mu.RUnlock()
	return len(p.cur) > 0
}

// Synthesize embeds v4 into the first prefix in use. The error wraps ErrNoPrefix when there is
// none (mode none, or static with no prefix) and ErrPolicy when the policy refuses v4.
func (p *Prefixes) Synthesize(v4 netip.Addr) (netip.Addr, error) {
	p.init()
	p.mu.RLock()
	var first netip.Prefix
	if len(p.cur) > 0 {
		first = p.cur[0]
	}
	p.mu.RUnlock()
	if !first.IsValid() {
		return netip.Addr{}, fmt.Errorf("%w: cannot reach %s", ErrNoPrefix, v4)
	}
	if err := p.Policy.Check(first, v4); err != nil {
		p.Metrics.deniedOne()
		return netip.Addr{}, err
	}
	a, err := Compose(first, v4)
	if err == nil {
		p.Metrics.synthesizedOne()
	}
	return a, err
}

// Desynthesize returns the IPv4 address embedded in v6 if v6 lies inside any prefix in use
// (HEv3 §8.2: synthesized answers are sorted and de-duplicated as IPv4).
func (p *Prefixes) Desynthesize(v6 netip.Addr) (v4 netip.Addr, ok bool) {
	p.init()
	p.mu.RLock()
	defer p.mu.RUnlock()
	for _, pre := range p.cur {
		if v4, ok := Extract(pre, v6); ok {
			return v4, true
		}
	}
	return netip.Addr{}, false
}

// Ready is closed when the first discovery round has finished (at once in modes static and
// none, or without a Querier). Main waits on it, bounded by a startup timeout.
func (p *Prefixes) Ready() <-chan struct{} {
	p.init()
	return p.ready
}

func (p *Prefixes) markReady() {
	p.readyOnce.Do(func() { close(p.ready) })
}

// set installs a new state; it reports whether anything changed.
func (p *Prefixes) set(ps []netip.Prefix, src string) bool {
	p.mu.Lock()
	changed := src != p.src || !slices.Equal(ps, p.cur)
	if changed {
		p.cur, p.src = slices.Clone(ps), src
	}
	p.mu.Unlock()
	if changed {
		p.Metrics.setPrefixes(ps, src)
	}
	return changed
}

func (p *Prefixes) notify() {
	if p.OnChange != nil {
		p.OnChange(p.Current(), p.Source())
	}
}
