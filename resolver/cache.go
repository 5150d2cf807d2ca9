package resolver

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// key identifies a cached or in-flight question; name is absolute and lower-case.
type key struct {
	name  string
	qtype uint16
}

type entry struct {
	addrs   []netip.Addr
	err     error
	expires time.Time
}

// call is one upstream resolution shared by every lookup of its key while it runs.
// waiters and grace are guarded by Resolver.mu; res is written before done closes.
type call struct {
	done    chan struct{}
	res     result
	cancel  context.CancelFunc
	waiters int
	grace   *time.Timer
	sent    atomic.Bool // the query holds an in-flight slot (see limited)
}

// resolve answers name+qtype from the cache, or joins (or starts) the shared upstream query.
// The returned TTL is what remains of the cached entry (zero for uncached failures). The
// address slice is shared: callers must copy it before handing it out.
func (r *Resolver) resolve(ctx context.Context, rc *ResolvConf, name string, qtype uint16) ([]netip.Addr, time.Duration, error) {
	k := key{name, qtype}
	waitStart := time.Now()
	now := r.cfg.now()
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, 0, ErrClosed
	}
	if e, ok := r.entries[k]; ok {
		if now.Before(e.expires) {
			r.mu.Unlock()
			r.metrics.cacheHit()
			return e.addrs, e.expires.Sub(now), e.err
		}
		delete(r.entries, k)
	}
	c := r.calls[k]
	r.metrics.cacheMiss(c != nil)
	if c == nil {
		c = r.startCall(k, rc)
	}
	c.waiters++
	if c.grace != nil {
		c.grace.Stop()
		c.grace = nil
	}
	r.mu.Unlock()

	select {
	case <-c.done:
		return c.res.addrs, c.res.ttl, c.res.err
	case <-ctx.Done():
		r.leave(k, c)
		if errors.Is(ctx.Err(), context.DeadlineExceeded) && !c.sent.Load() {
			return nil, 0, fmt.Errorf("%w: %w (%d in flight) while %s %s waited %v for one: %w", ErrTimeout, ErrQueued,
				r.cfg.maxInFlight(), name, dns.TypeToString[qtype], time.Since(waitStart).Round(time.Millisecond), ctx.Err())
		}
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, 0, deadlineErr(rc, name, qtype, time.Since(waitStart))
		}
		return nil, 0, ctxErr(ctx)
	}
}

// startCall registers and starts the upstream query for k. r.mu is held.
func (r *Resolver) startCall(k key, rc *ResolvConf) *call {
	qctx, cancel := context.WithCancel(r.ctx)
	c := &call{done: make(chan struct{}), cancel: cancel}
	r.calls[k] = c
	r.wg.Add(1)
	go r.runCall(qctx, k, rc, c)
	return c
}

// leave drops one waiter; when none remain the query gets LateReplyWindow more to finish
// (so a late reply still fills the cache) and is then cancelled.
func (r *Resolver) leave(k key, c *call) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c.waiters--
	if c.waiters > 0 || c.grace != nil {
		return
	}
	c.grace = time.AfterFunc(r.cfg.lateReplyWindow(), func() {
		r.mu.Lock()
		abandon := c.waiters == 0 && r.calls[k] == c
		if abandon {
			delete(r.calls, k) // a later lookup starts afresh instead of joining
		}
		r.mu.Unlock()
		if abandon {
			c.cancel()
		}
	})
}

func (r *Resolver) runCall(ctx context.Context, k key, rc *ResolvConf, c *call) {
	defer r.wg.Done()
	defer c.cancel()
	res := r.limited(ctx, func() result {
		c.sent.Store(true)
		return r.query(ctx, rc, k.name, k.qtype)
	})
	r.mu.Lock()
	if r.calls[k] == c {
		delete(r.calls, k)
	}
	if c.grace != nil {
		c.grace.Stop()
		c.grace = nil
	}
	if res.ttl > 0 && ctx.Err() == nil {
		r.store(k, entry{addrs: res.addrs, err: res.err, expires: r.cfg.now().Add(res.ttl)})
	}
	c.res = res
	r.mu.Unlock()
	close(c.done)
}

// limited runs fn holding one of the MaxInFlight slots, waiting (with ctx) for one if needed.
func (r *Resolver) limited(ctx context.Context, fn func() result) result {
	select {
	case r.sem <- struct{}{}:
	default:
		r.metrics.inFlightWait()
		select {
		case r.sem <- struct{}{}:
		case <-ctx.Done():
			return result{err: r.ctxErr(ctx)}
		}
	}
	r.metrics.inFlight(1)
	defer func() {
		r.metrics.inFlight(-1)
		<-r.sem
	}()
	return fn()
}

// store adds e under k, making room first when the cache is full. r.mu is held.
func (r *Resolver) store(k key, e entry) {
	if limit := r.cfg.maxCacheEntries(); len(r.entries) >= limit {
		now := r.cfg.now()
		for ek, ev := range r.entries {
			if !now.Before(ev.expires) {
				delete(r.entries, ek)
			}
		}
		for ek := range r.entries { // still full: drop about an eighth, arbitrarily
			if len(r.entries) < limit-limit/8 {
				break
			}
			delete(r.entries, ek)
		}
	}
	r.entries[k] = e
}

// ctxErr is the error for a query whose context ended: ErrClosed after Close, otherwise the
// caller's context error.
func (r *Resolver) ctxErr(ctx context.Context) error {
	if ctx.Err() == nil {
		return nil
	}
	if r.ctx.Err() != nil {
		return ErrClosed
	}
	return ctxErr(ctx)
}

// ctxErr wraps a caller's context error; a deadline also wraps ErrTimeout.
func ctxErr(ctx context.Context) error {
	err := ctx.Err()
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	return fmt.Errorf("resolver: %w", err)
}
