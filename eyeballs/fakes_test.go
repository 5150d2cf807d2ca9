package eyeballs

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/nat464/nat464-sidecar/nat64"
	"github.com/nat464/nat464-sidecar/resolver"
)

// timedAnswer is one scripted answer, sent at offset at from the Lookup call.
type timedAnswer struct {
	at  time.Duration
	ans resolver.Answer
}

// fakeResolver streams scripted answers per host, then closes the channel at closeAt (or
// right after the last answer). When the lookup's context ends first, it sends onCancel (as
// the real resolver answers the outstanding families of a cancelled lookup) and closes.
type fakeResolver struct {
	answers  map[string][]timedAnswer
	closeAt  time.Duration
	onCancel []resolver.Answer
}

func (f *fakeResolver) Lookup(ctx context.Context, host string) <-chan resolver.Answer {
	ch := make(chan resolver.Answer)
	script := slices.Clone(f.answers[host])
	slices.SortStableFunc(script, func(a, b timedAnswer) int { return int(a.at - b.at) })
	start := time.Now()
	go func() {
		defer close(ch)
		cancelled := func() {
			for _, a := range f.onCancel {
				ch <- a
			}
		}
		for _, s := range script {
			if !sleepUntil(ctx, start.Add(s.at)) {
				cancelled()
				return
			}
			select {
			case ch <- s.ans:
			case <-ctx.Done():
				cancelled()
				return
			}
		}
		if !sleepUntil(ctx, start.Add(f.closeAt)) {
			cancelled()
		}
	}()
	return ch
}

func sleepUntil(ctx context.Context, at time.Time) bool {
	t := time.NewTimer(time.Until(at))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func aaaa(addrs ...string) resolver.Answer { return resolver.Answer{Family: 6, Addrs: ips(addrs...)} }
func a4(addrs ...string) resolver.Answer   { return resolver.Answer{Family: 4, Addrs: ips(addrs...)} }

func ips(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// outcome scripts one target: after delay, fail with err or connect. A target without a
// script hangs until its context ends. ignoreCancel completes even after cancellation.
type outcome struct {
	delay        time.Duration
	err          error
	ignoreCancel bool
}

// attemptRec is one recorded DialAttempt call.
type attemptRec struct {
	at      time.Duration
	network string
	addr    netip.Addr
}

// fakeNet is a scripted DialAttempt that records starts, concurrency and connections.
type fakeNet struct {
	mu          sync.Mutex
	start       time.Time
	script      map[netip.Addr]outcome
	attempts    []attemptRec
	conns       []*fakeConn
	inflight    int
	maxInflight int
}

func newFakeNet(script map[string]outcome) *fakeNet {
	f := &fakeNet{start: time.Now(), script: map[netip.Addr]outcome{}}
	for k, v := range script {
		f.script[netip.MustParseAddr(k)] = v
	}
	return f
}

func (f *fakeNet) dial(ctx context.Context, network string, ap netip.AddrPort) (net.Conn, error) {
	f.mu.Lock()
	f.attempts = append(f.attempts, attemptRec{time.Since(f.start), network, ap.Addr()})
	f.inflight++
	f.maxInflight = max(f.maxInflight, f.inflight)
	o, ok := f.script[ap.Addr()]
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.inflight--
		f.mu.Unlock()
	}()
	if !ok {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	t := time.NewTimer(o.delay)
	defer t.Stop()
	if o.ignoreCancel {
		<-t.C
	} else {
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if o.err != nil {
		return nil, o.err
	}
	c := &fakeConn{remote: net.TCPAddrFromAddrPort(ap)}
	f.mu.Lock()
	f.conns = append(f.conns, c)
	f.mu.Unlock()
	return c, nil
}

// starts returns "offset addr" strings of the attempts, for compact comparisons.
func (f *fakeNet) starts() []attemptRec {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.attempts)
}

// fakeConn is a connection that only counts Close calls.
type fakeConn struct {
	remote net.Addr
	mu     sync.Mutex
	closes int
}

func (c *fakeConn) Read([]byte) (int, error)         { return 0, net.ErrClosed }
func (c *fakeConn) Write(b []byte) (int, error)      { return len(b), nil }
func (c *fakeConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *fakeConn) RemoteAddr() net.Addr             { return c.remote }
func (c *fakeConn) SetDeadline(time.Time) error      { return nil }
func (c *fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fakeConn) SetWriteDeadline(time.Time) error { return nil }
func (c *fakeConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closes++
	return nil
}

func (c *fakeConn) closeCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closes
}

// fakeNAT64 is a NAT64 with the WKP (or none), without policy.
type fakeNAT64 struct{ none bool }

var wkp = netip.MustParsePrefix("64:ff9b::/96")

func (f fakeNAT64) Synthesize(v4 netip.Addr) (netip.Addr, error) {
	if f.none {
		return netip.Addr{}, nat64.ErrNoPrefix
	}
	b := wkp.Addr().As16()
	four := v4.As4()
	copy(b[12:], four[:])
	return netip.AddrFrom16(b), nil
}

func (f fakeNAT64) Desynthesize(v6 netip.Addr) (netip.Addr, bool) {
	if f.none || !wkp.Contains(v6) {
		return netip.Addr{}, false
	}
	b := v6.As16()
	return netip.AddrFrom4([4]byte(b[12:])), true
}

func (f fakeNAT64) HasPrefix() bool { return !f.none }

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

// The real implementations satisfy the interfaces the Dialer declares.
var (
	_ Resolver = (*resolver.Resolver)(nil)
	_ NAT64    = (*nat64.Prefixes)(nil)
)
