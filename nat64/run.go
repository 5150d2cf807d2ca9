package nat64

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"time"
)

// Run keeps the prefixes current; call it once. In ModeAuto with a Querier it discovers at once (RFC 7050),
// then again RefreshLead before the answer's TTL expires (never sooner than MinRefresh), holds
// a negative answer for its TTL, and retries a failed query after RetryInterval; it returns
// ctx.Err() when ctx is done. In the other modes it reports the state through OnChange and
// returns nil at once.
//
// When discovery finds no prefix (NXDOMAIN, NODATA, no well-known address in the answer, or no
// answer before the first round ends) the WKP is used and Source says SourceWellKnown. A
// prefix found earlier is kept through later timeouts and server failures, and replaced only
// by a new answer.
func (p *Prefixes) Run(ctx context.Context) error {
	p.init()
	if p.mode() != ModeAuto || p.Querier == nil {
		p.notify()
		p.markReady()
		return nil
	}
	for first := true; ; first = false {
		next, changed := p.discover(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if changed || first {
			p.notify()
		}
		p.markReady()
		if err := p.wait(ctx, next); err != nil {
			return err
		}
	}
}

// discover runs one query, installs its result and returns the wait before the next one and
// whether the prefixes or their source changed.
func (p *Prefixes) discover(ctx context.Context) (wait time.Duration, changed bool) {
	qctx, cancel := context.WithTimeout(ctx, p.queryTimeout())
	addrs, ttl, err := p.Querier.LookupAAAA(qctx, WellKnownName)
	cancel()
	if ctx.Err() != nil {
		return 0, false
	}
	switch {
	case err == nil:
		ps := FindPrefixes(addrs)
		if len(ps) == 0 {
			p.Metrics.discoveryRound(ResultNoWKA)
			changed = p.set([]netip.Prefix{WKP}, SourceWellKnown)
		} else {
			p.Metrics.discoveryRound(ResultOK)
			changed = p.set(ps, SourceDiscovered)
		}
		wait = max(ttl-RefreshLead, MinRefresh)
	case ttl > 0:
		// A negative answer (NXDOMAIN or NODATA): no DNS64 here. Held for its TTL.
		p.Metrics.discoveryRound(ResultNegative)
		changed = p.set([]netip.Prefix{WKP}, SourceWellKnown)
		wait = max(ttl, MinRefresh)
	default:
		p.Metrics.discoveryRound(failureResult(err))
		if p.Source() != SourceDiscovered {
			changed = p.set([]netip.Prefix{WKP}, SourceWellKnown)
		}
		wait = p.retryInterval()
	}
	return wait, changed
}

// failureResult labels a failed query that carried no TTL.
func failureResult(err error) string {
	var t interface{ Timeout() bool }
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		(errors.As(err, &t) && t.Timeout()) {
		return ResultTimeout
	}
	return ResultError
}

func (p *Prefixes) wait(ctx context.Context, d time.Duration) error {
	if p.Wait != nil {
		return p.Wait(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
