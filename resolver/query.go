package resolver

import (
	"context"
	"fmt"
	"math"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// result is the outcome of one name+type resolution: addresses with their TTL, or an error.
// A negative error (ErrNXDomain, ErrNoData) carries the negative-caching TTL, zero when the
// reply held no SOA (RFC 2308 §5: not cached).
type result struct {
	addrs []netip.Addr
	ttl   time.Duration
	err   error
}

// query resolves name (absolute) for qtype, following CNAME chains within each reply and
// re-querying a chain's target when the server did not include it, up to maxCNAMEDepth hops.
func (r *Resolver) query(ctx context.Context, rc *ResolvConf, name string, qtype uint16) result {
	target := name
	chainTTL := uint32(math.MaxUint32)
	hops := 0
	for {
		resp, err := r.exchange(ctx, rc, target, qtype)
		if err != nil {
			return result{err: err}
		}
		a := parseReply(resp, target, qtype)
		hops += a.hops
		chainTTL = min(chainTTL, a.ttl)
		switch {
		case hops > maxCNAMEDepth:
			return result{err: fmt.Errorf("%w: CNAME chain from %s longer than %d", ErrBadResponse, name, maxCNAMEDepth)}
		case len(a.addrs) > 0:
			return result{addrs: a.addrs, ttl: r.clampTTL(chainTTL)}
		case resp.Rcode == dns.RcodeNameError:
			return r.negative(ErrNXDomain, name, qtype, a.negTTL, a.hasSOA)
		case a.next != "" && !a.hasSOA:
			target = a.next // the server stopped at a CNAME without proof of absence
			continue
		}
		return r.negative(ErrNoData, name, qtype, a.negTTL, a.hasSOA)
	}
}

func (r *Resolver) negative(sentinel error, name string, qtype uint16, ttl uint32, hasSOA bool) result {
	res := result{err: fmt.Errorf("%w: %s %s", sentinel, name, dns.TypeToString[qtype])}
	if hasSOA {
		res.ttl = r.clampTTL(ttl)
	}
	return res
}

func (r *Resolver) clampTTL(ttl uint32) time.Duration {
	d := time.Duration(ttl) * time.Second
	return min(max(d, r.cfg.minTTL()), r.cfg.maxTTL())
}

// reply is what one response says about a name+type.
type reply struct {
	addrs  []netip.Addr
	ttl    uint32 // minimum TTL over the CNAMEs followed and the addresses returned
	hops   int    // CNAMEs followed
	next   string // where the chain ends when it ends in a CNAME without addresses
	negTTL uint32 // RFC 2308 §5: min(SOA TTL, SOA MINIMUM)
	hasSOA bool
}

// parseReply follows the CNAME chain for name through the answer section and collects the
// address records of qtype owned by its end, the first maxAddrs of them; records for other
// owners are ignored.
func parseReply(resp *dns.Msg, name string, qtype uint16) reply {
	out := reply{ttl: math.MaxUint32}
	cur := name
	for range maxCNAMEDepth + 1 {
		found := false
		for _, rr := range resp.Answer {
			h := rr.Header()
			if !strings.EqualFold(h.Name, cur) || h.Class != dns.ClassINET {
				continue
			}
			if a, ok := addrOf(rr, qtype); ok && len(out.addrs) < maxAddrs {
				out.addrs = append(out.addrs, a)
				out.ttl = min(out.ttl, wireTTL(h.Ttl))
			}
		}
		if len(out.addrs) > 0 {
			return out
		}
		for _, rr := range resp.Answer {
			if c, ok := rr.(*dns.CNAME); ok && strings.EqualFold(c.Hdr.Name, cur) {
				cur, found = dns.Fqdn(c.Target), true
				out.ttl = min(out.ttl, wireTTL(c.Hdr.Ttl))
				out.hops++
				break
			}
		}
		if !found {
			break
		}
	}
	if cur != name {
		out.next = cur
	}
	for _, rr := range resp.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			out.negTTL, out.hasSOA = min(wireTTL(soa.Hdr.Ttl), wireTTL(soa.Minttl)), true
			break
		}
	}
	return out
}

// wireTTL reads a TTL field as RFC 2181 §8 says: a value with the top bit set (2^31 and
// up) means zero, so a broken server's 2^32-1 is cached for MinTTL, not clamped to MaxTTL.
func wireTTL(ttl uint32) uint32 {
	if ttl > math.MaxInt32 {
		return 0
	}
	return ttl
}

func addrOf(rr dns.RR, qtype uint16) (netip.Addr, bool) {
	switch v := rr.(type) {
	case *dns.AAAA:
		if qtype == dns.TypeAAAA {
			return netip.AddrFromSlice(v.AAAA.To16())
		}
	case *dns.A:
		if qtype == dns.TypeA {
			if v4 := v.A.To4(); v4 != nil {
				return netip.AddrFrom4([4]byte(v4)), true
			}
		}
	}
	return netip.Addr{}, false
}
