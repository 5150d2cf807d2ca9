// Package clients gives each inbound client address a loopback source address of its own
// (--inbound-source), so that an app which cannot read a PROXY protocol header can still tell
// its clients apart by the address they connect from: the Table (stable while the process runs,
// bounded, never reused), its metrics, and the /clients JSON that maps a loopback source back to
// the real client. It does not bind or connect sockets: the front end and the engine do, asking
// Table.Source.
package clients

import (
	"log/slog"
	"net/netip"
	"sync"
	"time"
)

// DefaultMaxClients bounds a table whose range is larger: 65,536 entries cost about 12 MB of
// heap (TestEntryCost measures it) and serve a /clients body of about 8 MB.
const DefaultMaxClients = 1 << 16

// warnEvery spaces the WARN lines about a full table.
const warnEvery = time.Minute

// Config configures a Table. Range is required; the rest is usable at its zero value.
type Config struct {
	// Range holds the source addresses, inside 127.0.0.0/8 and without 127.0.0.1 (config checks
	// it). Its first and last addresses are never handed out.
	Range netip.Prefix
	// Mappings name the inbound mappings that use the table, for /clients and the logs.
	Mappings []string
	// MaxClients bounds the table; if zero, DefaultMaxClients. It is never more than the range's
	// addresses less two.
	MaxClients int
	// Log receives an INFO line per new assignment and a WARN line (at most once a minute) while
	// the table is full; if nil, nothing is logged.
	Log *slog.Logger
	// Metrics, if not nil, counts assignments and overflows.
	Metrics *Metrics
	// Now, if not nil, replaces time.Now.
	Now func() time.Time
}

// Table maps client addresses to loopback source addresses. Once a client has an address it
// keeps it for the table's life, and no other client ever gets that address: an app that bans
// or rate-limits 127.128.0.7 never hits a second client by mistake. When every address is
// taken, new clients get none (Source's ok is false) and connect from the kernel's choice, as
// without --inbound-source: the app sees them all as one, 127.0.0.1, which it already treats
// as "the sidecar". Safe for concurrent use.
type Table struct {
	cfg   Config
	first uint32 // the first address handed out, as a number
	limit int    // how many addresses may be handed out

	mu        sync.Mutex
	byClient  map[netip.Addr]*entry
	order     []*entry // in assignment order, for /clients
	overflow  uint64   // connections of clients that found the table full
	warned    time.Time
	sinceWarn uint64 // overflows since the last WARN
}

type entry struct {
	client, source netip.Addr
	assigned, last time.Time
	conns          uint64
}

// New returns an empty table for cfg.Range.
func New(cfg Config) *Table {
	r := cfg.Range.Masked()
	t := &Table{cfg: cfg, byClient: map[netip.Addr]*entry{}}
	if !r.IsValid() || !r.Addr().Is4() {
		return t // no address to give: every client overflows (config never lets this through)
	}
	size := uint64(1) << (32 - r.Bits())
	limit := cfg.MaxClients
	if limit <= 0 {
		limit = DefaultMaxClients
	}
	t.limit = int(min(uint64(limit), max(size, 2)-2))
	a := r.Addr().As4()
	t.first = (uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])) + 1
	cfg.Metrics.Init(r)
	return t
}

// Capacity is how many clients the table can hold.
func (t *Table) Capacity() int { return t.limit }

// Range is the table's range.
func (t *Table) Range() netip.Prefix { return t.cfg.Range.Masked() }

func (t *Table) now() time.Time {
	if t.cfg.Now != nil {
		return t.cfg.Now()
	}
	return time.Now()
}

// Key is the form a client address is kept in: IPv4-mapped IPv6 as IPv4, without a zone.
func Key(client netip.Addr) netip.Addr { return client.Unmap().WithZone("") }

// Source returns the loopback address client's connection is to come from, assigning the next
// free one to a new client. ok is false for an invalid address, and when the table is full
// and client has no address yet: the caller then connects without binding (counted as an
// overflow, warned about at most once a minute).
func (t *Table) Source(client netip.Addr) (src netip.Addr, ok bool) {
	if !client.IsValid() {
		return netip.Addr{}, false
	}
	key := Key(client)
	now := t.now()
	t.mu.Lock()
	if e := t.byClient[key]; e != nil {
		e.conns++
		e.last = now
		t.mu.Unlock()
		return e.source, true
	}
	if len(t.order) >= t.limit {
		t.overflow++
		t.sinceWarn++
		warn := t.warned.IsZero() || now.Sub(t.warned) >= warnEvery
		var n uint64
		if warn {
			t.warned, n, t.sinceWarn = now, t.sinceWarn, 0
		}
		t.mu.Unlock()
		t.cfg.Metrics.overflowed(t.cfg.Range)
		if warn && t.cfg.Log != nil {
			t.cfg.Log.Warn("inbound source range full: new clients connect to the app from 127.0.0.1",
				"range", t.Range().String(), "capacity", t.limit, "client", key.String(), "overflows_since_last_warning", n)
		}
		return netip.Addr{}, false
	}
	v := t.first + uint32(len(t.order))
	src = netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	e := &entry{client: key, source: src, assigned: now, last: now, conns: 1}
	t.byClient[key] = e
	t.order = append(t.order, e)
	n := len(t.order)
	t.mu.Unlock()
	t.cfg.Metrics.assigned(t.cfg.Range, n)
	if t.cfg.Log != nil {
		t.cfg.Log.Info("inbound source assigned", "client", key.String(), "source", src.String(),
			"range", t.Range().String(), "mappings", t.cfg.Mappings, "assigned", n, "capacity", t.limit)
	}
	return src, true
}

// Entry is one client of a table, as /clients shows it.
type Entry struct {
	Client      string    `json:"client"`
	Source      string    `json:"source"`
	Range       string    `json:"range"`
	Assigned    time.Time `json:"assigned"`
	LastSeen    time.Time `json:"last_seen"`
	Connections uint64    `json:"connections"`
}

// Summary describes a table, as /clients shows it.
type Summary struct {
	Range    string   `json:"range"`
	Mappings []string `json:"mappings"`
	Capacity int      `json:"capacity"`
	Assigned int      `json:"assigned"`
	// Overflows counts connections of clients that found the table full.
	Overflows uint64 `json:"overflows"`
}

// Snapshot returns the table's summary and the entries keep accepts, in assignment order
// (keep nil: all).
func (t *Table) Snapshot(keep func(client, source netip.Addr) bool) (Summary, []Entry) {
	rng := t.Range().String()
	t.mu.Lock()
	defer t.mu.Unlock()
	s := Summary{Range: rng, Mappings: t.cfg.Mappings, Capacity: t.limit, Assigned: len(t.order), Overflows: t.overflow}
	var out []Entry
	for _, e := range t.order {
		if keep != nil && !keep(e.client, e.source) {
			continue
		}
		out = append(out, Entry{Client: e.client.String(), Source: e.source.String(), Range: rng,
			Assigned: e.assigned.UTC(), LastSeen: e.last.UTC(), Connections: e.conns})
	}
	return s, out
}
