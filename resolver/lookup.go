package resolver

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// families lists the query types of a lookup in the order they are sent (RFC 8305 §3).
var families = [2]struct {
	family int
	qtype  uint16
}{{6, dns.TypeAAAA}, {4, dns.TypeA}}

// Lookup resolves host and streams exactly one Answer per family (6 and 4) on the returned
// channel, each as soon as it is known, then closes it. The channel is buffered, so a caller
// may stop reading at any time without blocking the resolver.
//
// An IP literal (optionally in brackets) is answered at once. Otherwise the candidate names
// come from the search list and ndots (see Candidates); the hosts file is consulted for the
// host itself and then each candidate before any query is sent. For each candidate in turn
// AAAA and A are queried in parallel; a candidate where both are negative (NXDOMAIN, NODATA,
// SERVFAIL, REFUSED) moves on to the next, and the first candidate with any address wins.
// A timeout, network failure or cancellation of either family ends the search early. When no
// candidate wins, each family reports that error, else the first SERVFAIL or REFUSED seen,
// else the last candidate's negative answer.
// A family no server answered reports a *NoAnswerError naming the servers, the name and the
// type (it wraps ErrTimeout). Cancelling ctx answers the outstanding families with the context
// error, a deadline with a *NoAnswerError that also wraps context.DeadlineExceeded; the
// queries themselves still complete into the cache.
func (r *Resolver) Lookup(ctx context.Context, host string) <-chan Answer {
	ch := make(chan Answer, len(families))
	if a, ok := parseLiteral(host); ok {
		literalAnswers(ch, a)
		close(ch)
		return ch
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		failAll(ch, absName(host), ErrClosed)
		close(ch)
		return ch
	}
	r.wg.Add(1)
	r.mu.Unlock()
	start := time.Now()
	done := func() {
		close(ch)
		r.metrics.lookupDone(time.Since(start))
		r.wg.Done()
	}
	name, err := checkName(host)
	if err != nil {
		failAll(ch, host, err)
		done()
		return ch
	}
	st := r.files.get()
	cands := Candidates(name, st.rc)
	if r.fromHosts(st.hosts, name, cands, ch) || r.fromCache(cands, ch) {
		done()
		return ch
	}
	go func() {
		defer done()
		r.lookup(ctx, st.rc, cands, ch)
	}()
	return ch
}

// Candidates returns the absolute names Lookup tries for host, in order, under rc's search
// list and ndots: a name with a trailing dot only as is; one with at least ndots dots as is
// first, then with each search suffix; one with fewer dots with each suffix, then as is.
// Expansions longer than 254 bytes are skipped.
func Candidates(host string, rc *ResolvConf) []string {
	host = strings.ToLower(host)
	if strings.HasSuffix(host, ".") {
		return []string{host}
	}
	abs := host + "."
	asIs := strings.Count(host, ".") >= rc.Ndots
	out := make([]string, 0, len(rc.Search)+1)
	if asIs {
		out = append(out, abs)
	}
	for _, s := range rc.Search {
		if c := abs + s; len(c) <= 254 {
			out = append(out, c)
		}
	}
	if !asIs {
		out = append(out, abs)
	}
	return out
}

// lookup races the candidates in order (see Lookup) and sends the final Answers.
func (r *Resolver) lookup(ctx context.Context, rc *ResolvConf, cands []string, ch chan<- Answer) {
	var final [len(families)]Answer
	for i, cand := range cands {
		won, res := r.race(ctx, rc, cand, ch)
		if won {
			return
		}
		stop := false
		for f := range final {
			switch {
			case !isNegative(res[f].Err) && !isSoft(res[f].Err):
				final[f], stop = res[f], true // timeout, network, context: no point going on
			case i == 0 || !isSoft(final[f].Err):
				final[f] = res[f]
			}
		}
		if stop {
			break
		}
	}
	for _, a := range final {
		ch <- a
	}
}

// race queries both families of one candidate. It streams the candidate's Answers and
// reports true as soon as one family has addresses; if both fail it sends nothing and
// returns their Answers.
func (r *Resolver) race(ctx context.Context, rc *ResolvConf, cand string, ch chan<- Answer) (bool, [len(families)]Answer) {
	results := make(chan Answer, len(families))
	for _, f := range families {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			addrs, ttl, err := r.resolve(ctx, rc, cand, f.qtype)
			results <- Answer{Family: f.family, Name: cand, Addrs: slices.Clone(addrs), TTL: ttl, Err: err}
		}()
	}
	var held [len(families)]Answer
	var pending []Answer // negative answers of this candidate not sent yet
	won := false
	for range families {
		a := <-results
		switch {
		case won:
			ch <- a
		case a.Err == nil:
			won = true
			ch <- a
			for _, p := range pending {
				ch <- p
			}
		default:
			held[familyIndex(a.Family)] = a
			pending = append(pending, a)
		}
	}
	return won, held
}

// fromHosts answers both families from the hosts file for the first listed name among host
// itself and its candidates.
func (r *Resolver) fromHosts(h Hosts, host string, cands []string, ch chan<- Answer) bool {
	if len(h) == 0 {
		return false
	}
	for i := -1; i < len(cands); i++ {
		n := host
		if i >= 0 {
			n = cands[i]
		}
		if _, listed := h.Lookup(n, 6); !listed {
			continue
		}
		for _, f := range families {
			addrs, _ := h.Lookup(n, f.family)
			a := Answer{Family: f.family, Name: absName(n), Addrs: addrs}
			if len(addrs) == 0 {
				a.Err = fmt.Errorf("%w: %s in hosts file has no IPv%d address", ErrNoData, n, f.family)
			}
			ch <- a
		}
		return true
	}
	return false
}

// fromCache answers without a goroutine when the cache alone settles the lookup: the first
// candidate not cached as negative for both families has both families cached, one of them
// with addresses. Anything else goes to the full lookup.
func (r *Resolver) fromCache(cands []string, ch chan<- Answer) bool {
	if len(cands) == 0 {
		return false
	}
	now := r.cfg.now()
	var got [len(families)]Answer
	hits := 0
	r.mu.Lock()
	for _, cand := range cands {
		positive := false
		for i, f := range families {
			e, ok := r.entries[key{cand, f.qtype}]
			if !ok || !now.Before(e.expires) {
				r.mu.Unlock()
				return false
			}
			hits++
			got[i] = Answer{Family: f.family, Name: cand, Addrs: slices.Clone(e.addrs), TTL: e.expires.Sub(now), Err: e.err}
			positive = positive || e.err == nil
		}
		if positive {
			break
		}
	}
	r.mu.Unlock()
	if got[0].Err == nil || got[1].Err == nil {
		for range hits {
			r.metrics.cacheHit()
		}
		if got[0].Err != nil {
			got[0], got[1] = got[1], got[0] // the family with addresses first
		}
		ch <- got[0]
		ch <- got[1]
		return true
	}
	return false
}

func familyIndex(family int) int {
	if family == 6 {
		return 0
	}
	return 1
}

// isNegative reports an authoritative "no such records" answer.
func isNegative(err error) bool {
	return errors.Is(err, ErrNXDomain) || errors.Is(err, ErrNoData)
}

// isSoft reports a server-side failure that is specific to the name asked (try the next one).
func isSoft(err error) bool {
	return errors.Is(err, ErrServFail) || errors.Is(err, ErrRefused)
}

// parseLiteral accepts an IP address, optionally in brackets, with an optional zone.
func parseLiteral(host string) (netip.Addr, bool) {
	h := strings.TrimSpace(host)
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		h = h[1 : len(h)-1]
	}
	a, err := netip.ParseAddr(h)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// literalAnswers sends the literal's own family first, then NODATA for the other.
func literalAnswers(ch chan<- Answer, a netip.Addr) {
	fam := familyOf(a)
	ch <- Answer{Family: fam, Name: a.String(), Addrs: []netip.Addr{a}}
	other := 10 - fam
	ch <- Answer{Family: other, Name: a.String(),
		Err: fmt.Errorf("%w: %s is an IPv%d literal", ErrNoData, a, fam)}
}

func failAll(ch chan<- Answer, name string, err error) {
	for _, f := range families {
		ch <- Answer{Family: f.family, Name: name, Err: err}
	}
}
