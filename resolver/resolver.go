// Package resolver is the sidecar's stub DNS resolver, built on github.com/miekg/dns.
//
// It reads resolv.conf (nameservers of both families, search, ndots, timeout, attempts,
// rotate, use-vc) and the hosts file, re-reading either when it changes. Lookup applies the
// search list with glibc/Kubernetes ndots semantics, consults the hosts file first, then asks
// AAAA and A in parallel for each candidate name and streams one Answer per family as soon as
// it is known, so that Happy Eyeballs (RFC 8305 §3) can start before both are in. Queries go
// over UDP with EDNS0 (1232 bytes) and are retried over TCP when truncated. Answers are cached
// per name and type with clamped TTLs, negative answers per RFC 2308; concurrent lookups of
// one name and type share a single upstream query, and a query whose callers went away keeps
// running briefly so its reply still fills the cache.
//
// LookupAAAA is the single-question primitive for RFC 7050 NAT64 prefix discovery.
//
// Out of scope: dialing, NAT64 synthesis, address sorting, DNSSEC validation, SVCB/HTTPS.
// The fake server for tests is in resolver/dnstest.
package resolver

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Answer is one family's result for a lookup, streamed as soon as it is known.
type Answer struct {
	// Family is 6 for AAAA, 4 for A.
	Family int
	// Name is the candidate name (after search-list expansion, absolute with a trailing dot)
	// the addresses belong to; for a failed lookup, the candidate whose error is reported.
	Name string
	// Addrs are in the server's order; an answer from DNS keeps its first 32 addresses (a
	// larger one would only give Happy Eyeballs more attempts than a race can make).
	Addrs []netip.Addr
	// TTL is how long the addresses (or the negative answer) stay valid: the remaining cache
	// lifetime, zero for IP literals, hosts-file entries and uncached failures.
	TTL time.Duration
	// Err is set (wrapping one of the sentinels) when this family yielded nothing.
	Err error
}

// Resolver is a caching stub resolver. It is safe for concurrent use; Close releases it.
type Resolver struct {
	cfg     Config
	files   *files
	metrics *Metrics
	sem     chan struct{}
	rotate  atomic.Uint32

	ctx    context.Context // cancelled by Close; parent of every upstream query
	cancel context.CancelFunc
	wg     sync.WaitGroup // lookup and query goroutines

	mu      sync.Mutex
	closed  bool
	entries map[key]entry
	calls   map[key]*call
}

// New reads the configured files and returns a Resolver. It fails only when a file exists
// but cannot be read; a missing resolv.conf selects the localhost servers (see ResolvConf).
func New(cfg Config) (*Resolver, error) {
	r := &Resolver{
		cfg:     cfg,
		metrics: cfg.Metrics,
		sem:     make(chan struct{}, cfg.maxInFlight()),
		entries: make(map[key]entry),
		calls:   make(map[key]*call),
	}
	r.cfg.Servers = slices.Clone(cfg.Servers)
	r.cfg.Search = slices.Clone(cfg.Search)
	if cfg.Search != nil && r.cfg.Search == nil {
		r.cfg.Search = []string{}
	}
	f, err := newFiles(&r.cfg)
	if err != nil {
		return nil, fmt.Errorf("resolver: %w", err)
	}
	r.files = f
	r.ctx, r.cancel = context.WithCancel(context.Background())
	return r, nil
}

// Close cancels every query in flight, makes pending and later lookups fail with ErrClosed,
// and waits for the resolver's goroutines to finish.
func (r *Resolver) Close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
}

// ResolvConf returns the settings in effect (resolv.conf with Config overrides applied);
// Missing reports that resolv.conf did not exist. The caller must not modify the slices.
func (r *Resolver) ResolvConf() ResolvConf {
	return *r.files.get().rc
}

// LookupAAAA asks one AAAA question for name, taken as absolute (no search list, no hosts
// file, CD bit clear), through the configured servers and the cache. It returns the
// addresses with the remaining TTL (the minimum over the answer's records, clamped), or an
// error wrapping ErrNXDomain or ErrNoData with the negative-caching TTL (zero when the reply
// had no SOA), or one wrapping ErrServFail, ErrRefused, ErrTimeout (a *NoAnswerError when no
// server replied) or ErrClosed.
func (r *Resolver) LookupAAAA(ctx context.Context, name string) ([]netip.Addr, time.Duration, error) {
	return r.lookupOne(ctx, name, dns.TypeAAAA)
}

// LookupA is LookupAAAA for A records: one question for name taken as absolute, through the
// configured servers and the cache (the egress DNS server asks both families this way).
func (r *Resolver) LookupA(ctx context.Context, name string) ([]netip.Addr, time.Duration, error) {
	return r.lookupOne(ctx, name, dns.TypeA)
}

func (r *Resolver) lookupOne(ctx context.Context, name string, qtype uint16) ([]netip.Addr, time.Duration, error) {
	n, err := checkName(name)
	if err != nil {
		return nil, 0, err
	}
	addrs, ttl, err := r.resolve(ctx, r.files.get().rc, absName(n), qtype)
	return slices.Clone(addrs), ttl, err
}

// checkName validates a host name for querying and returns it without surrounding space.
func checkName(host string) (string, error) {
	h := strings.TrimSpace(host)
	if h == "" || h == "." || len(strings.TrimSuffix(h, ".")) > 253 {
		return "", fmt.Errorf("%w: %q", ErrBadName, host)
	}
	if _, ok := dns.IsDomainName(h); !ok {
		return "", fmt.Errorf("%w: %q", ErrBadName, host)
	}
	return h, nil
}
