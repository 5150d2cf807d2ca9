// Package egress is transparent egress: apps that never look at proxy settings reach names
// through the sidecar because the pod's DNS server (the sidecar, Server) answers every A query
// for a reachable name with a loopback address of its own, one per name (Table), where the
// sidecar listens on the egress ports. A connection to such an address is relayed to the name
// behind it; that part belongs to the front end (package loop), which asks Table for the name.
//
// In scope: the name <-> address table and its state file, the static names of the hosts file,
// and the DNS server's answer rules. Out of scope: listening, dialing, relaying.
package egress

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/miekg/dns"
)

// Errors of the table.
var (
	// ErrExhausted is returned by Assign when no address is left for a new name: the range, or
	// the bound on names, is used up. Addresses are never taken back while names may hold them.
	ErrExhausted = errors.New("egress: no egress address left")
	// ErrBadName is returned by Assign for a string that is not a domain name.
	ErrBadName = errors.New("egress: not a domain name")
	// ErrState wraps every reason a state file is refused.
	ErrState = errors.New("egress: unusable state file")
)

// DefaultRange is the default --egress-range.
var DefaultRange = netip.MustParsePrefix("127.100.0.0/16")

// CheckRange reports whether p can hold egress addresses: IPv4, inside 127.0.0.0/8, not
// containing 127.0.0.1 (the app's and the sidecar's own loopback), and with at least one
// usable address.
func CheckRange(p netip.Prefix) error {
	loop := netip.MustParsePrefix("127.0.0.0/8")
	switch {
	case !p.IsValid() || !p.Addr().Is4():
		return errors.New("want an IPv4 prefix inside 127.0.0.0/8")
	case p.Bits() < loop.Bits() || !loop.Contains(p.Addr()):
		return errors.New("want a prefix inside 127.0.0.0/8")
	case p.Masked().Contains(netip.AddrFrom4([4]byte{127, 0, 0, 1})):
		return errors.New("the range must not contain 127.0.0.1")
	case p.Bits() > 30:
		return errors.New("want a prefix of /30 or larger")
	}
	return nil
}

// TableConfig configures a Table.
type TableConfig struct {
	// Range holds the egress addresses; it must pass CheckRange. Its first and last addresses
	// are never handed out.
	Range netip.Prefix
	// MaxNames bounds the names that get an address (each costs a listener per egress port);
	// if zero, every address of Range.
	MaxNames int
	// StatePath, if set, is the file that keeps the table across restarts: it is read by
	// NewTable and rewritten (atomically) before Assign returns a new address.
	StatePath string
	// Static are the hosts file's names whose address lies in Range (see StaticNames): they are
	// served as they are and their addresses are never handed to another name.
	Static map[netip.Addr]string
}

// Table maps names to egress addresses and back. An address, once given to a name, stays that
// name's for the life of the table, and with a state file across restarts too. It is safe for
// concurrent use.
type Table struct {
	cfg TableConfig

	mu     sync.Mutex
	byName map[string]netip.Addr
	byAddr map[netip.Addr]string
	static map[netip.Addr]bool
	next   netip.Addr // where the search for a free address starts
	dyn    int        // names Assign gave an address (static ones not counted)
}

// NewTable returns a table with the state file's entries (if any) and the static names.
// Warnings lists what was left out and why (entries outside the range, entries that a static
// name now holds); an unreadable or damaged state file is an error wrapping ErrState, never a
// guess.
func NewTable(cfg TableConfig) (t *Table, warnings []string, err error) {
	if err := CheckRange(cfg.Range); err != nil {
		return nil, nil, fmt.Errorf("egress: range %s: %w", cfg.Range, err)
	}
	cfg.Range = cfg.Range.Masked()
	t = &Table{cfg: cfg, byName: map[string]netip.Addr{}, byAddr: map[netip.Addr]string{},
		static: map[netip.Addr]bool{}, next: cfg.Range.Addr().Next()}
	for a, name := range cfg.Static {
		n, ok := staticName(name)
		if !ok || !t.usable(a) {
			warnings = append(warnings, fmt.Sprintf("hosts file entry %s %s is not usable as an egress name", a, name))
			continue
		}
		if old, taken := t.byName[n]; taken {
			warnings = append(warnings, fmt.Sprintf("hosts file gives %s two egress addresses; %s is used", n, old))
			continue
		}
		t.byName[n], t.byAddr[a], t.static[a] = a, n, true
	}
	if cfg.StatePath == "" {
		return t, warnings, nil
	}
	entries, err := readState(cfg.StatePath)
	if err != nil {
		return nil, nil, err
	}
	for _, e := range entries {
		switch {
		case !t.usable(e.addr):
			warnings = append(warnings, fmt.Sprintf("state entry %s %s is outside --egress-range %s: dropped", e.addr, e.name, cfg.Range))
		case t.static[e.addr] || t.byName[e.name].IsValid():
			warnings = append(warnings, fmt.Sprintf("state entry %s %s is overridden by the hosts file: dropped", e.addr, e.name))
		default:
			t.byName[e.name], t.byAddr[e.addr] = e.addr, e.name
			t.dyn++
		}
	}
	return t, warnings, nil
}

// usable reports whether a may be an egress address: inside the range, not its first or last.
func (t *Table) usable(a netip.Addr) bool {
	r := t.cfg.Range
	if !a.Is4() || !r.Contains(a) || a == r.Addr() {
		return false
	}
	return r.Contains(a.Next())
}

// canonical is name as the table keys a name the DNS server gives out: lower case, absolute.
func canonical(name string) (string, bool) {
	n, ok := staticName(name)
	if !ok {
		return "", false
	}
	return dns.Fqdn(n), true
}

// staticName is a hosts file name as the table keeps it: lower case and otherwise as written,
// so that a short name is dialed through the search list as the app would have resolved it.
func staticName(name string) (string, bool) {
	n := strings.ToLower(strings.TrimSpace(name))
	if n == "" || n == "." {
		return "", false
	}
	if _, ok := dns.IsDomainName(n); !ok {
		return "", false
	}
	return n, true
}

// Lookup returns the address of name, if it has one.
func (t *Table) Lookup(name string) (netip.Addr, bool) {
	n, ok := canonical(name)
	if !ok {
		return netip.Addr{}, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	a, ok := t.byName[n]
	return a, ok
}

// Name returns the name behind egress address a, if any: absolute and lower case for a name
// the DNS server gave out, as written in the hosts file (lower case) for a static one.
func (t *Table) Name(a netip.Addr) (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n, ok := t.byAddr[a.Unmap()]
	return n, ok
}

// Assign returns name's address, giving it the next free one if it has none (fresh is then
// true). With a state file, a fresh address is on disk before Assign returns; if the file
// cannot be written the address is not given out and the error says why.
func (t *Table) Assign(name string) (a netip.Addr, fresh bool, err error) {
	n, ok := canonical(name)
	if !ok {
		return netip.Addr{}, false, fmt.Errorf("%w: %q", ErrBadName, name)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if a, ok := t.byName[n]; ok {
		return a, false, nil
	}
	if t.cfg.MaxNames > 0 && t.dyn >= t.cfg.MaxNames {
		return netip.Addr{}, false, fmt.Errorf("%w: all %d names of the bound are given out", ErrExhausted, t.cfg.MaxNames)
	}
	a, ok = t.free()
	if !ok {
		return netip.Addr{}, false, fmt.Errorf("%w: every address of %s is given out", ErrExhausted, t.cfg.Range)
	}
	t.byName[n], t.byAddr[a] = a, n
	if t.cfg.StatePath != "" {
		if err := writeState(t.cfg.StatePath, t.cfg.Range, t.dynamicLocked()); err != nil {
			delete(t.byName, n)
			delete(t.byAddr, a)
			return netip.Addr{}, false, err
		}
	}
	t.dyn++
	t.next = a.Next()
	return a, true, nil
}

// free finds the next address no name holds, from t.next on, wrapping once.
func (t *Table) free() (netip.Addr, bool) {
	start := t.next
	if !t.usable(start) {
		start = t.cfg.Range.Addr().Next()
	}
	for a := start; ; {
		if _, taken := t.byAddr[a]; !taken {
			return a, true
		}
		a = a.Next()
		if !t.usable(a) {
			a = t.cfg.Range.Addr().Next()
		}
		if a == start {
			return netip.Addr{}, false
		}
	}
}

// Entry is one name and its address.
type Entry struct {
	Name   string
	Addr   netip.Addr
	Static bool // from the hosts file
}

// Entries returns every name with an address, ordered by address.
func (t *Table) Entries() []Entry {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Entry, 0, len(t.byAddr))
	for a, n := range t.byAddr {
		out = append(out, Entry{Name: n, Addr: a, Static: t.static[a]})
	}
	slices.SortFunc(out, func(x, y Entry) int { return x.Addr.Compare(y.Addr) })
	return out
}

// Len is the number of names with an address, static ones included.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.byAddr)
}

// Range is the table's range, masked.
func (t *Table) Range() netip.Prefix { return t.cfg.Range }

func (t *Table) dynamicLocked() []entry {
	out := make([]entry, 0, t.dyn+1)
	for a, n := range t.byAddr {
		if !t.static[a] {
			out = append(out, entry{name: n, addr: a})
		}
	}
	slices.SortFunc(out, func(x, y entry) int { return x.addr.Compare(y.addr) })
	return out
}

// The state file is JSON, written whole to a temporary file in the same directory, synced and
// renamed over the old one, so a reader sees the old table or the new one, never a torn mix.
type stateFile struct {
	Version int               `json:"version"`
	Range   string            `json:"range"`
	Names   map[string]string `json:"names"` // absolute name -> address
}

const stateVersion = 1

type entry struct {
	name string
	addr netip.Addr
}

// readState returns the entries of path; a missing file is an empty table. Anything else that
// cannot be taken whole (not JSON, another version, a bad name or address, an address or name
// twice) is refused: a table half read could hand an address someone still uses to another name.
func readState(path string) ([]entry, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrState, path, err)
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w %s: %s; move it away to start with an empty table (apps that still hold its addresses then fail until they resolve again)",
			ErrState, path, fmt.Sprintf(format, args...))
	}
	var sf stateFile
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sf); err != nil {
		return nil, bad("not a state file (%v)", err)
	}
	if dec.More() {
		return nil, bad("trailing data after the table")
	}
	if sf.Version != stateVersion {
		return nil, bad("version %d, want %d", sf.Version, stateVersion)
	}
	seen := map[netip.Addr]string{}
	out := make([]entry, 0, len(sf.Names))
	for name, as := range sf.Names {
		n, ok := canonical(name)
		if !ok || n != name {
			return nil, bad("%q is not an absolute lower-case domain name", name)
		}
		a, err := netip.ParseAddr(as)
		if err != nil || !a.Is4() {
			return nil, bad("%s has address %q, want IPv4", name, as)
		}
		if other, dup := seen[a]; dup {
			return nil, bad("%s is given to both %s and %s", a, other, name)
		}
		seen[a] = name
		out = append(out, entry{name: n, addr: a})
	}
	slices.SortFunc(out, func(x, y entry) int { return x.addr.Compare(y.addr) })
	return out, nil
}

func writeState(path string, r netip.Prefix, entries []entry) error {
	sf := stateFile{Version: stateVersion, Range: r.String(), Names: make(map[string]string, len(entries))}
	for _, e := range entries {
		sf.Names[e.name] = e.addr.String()
	}
	b, err := json.MarshalIndent(sf, "", "\t")
	if err != nil {
		return fmt.Errorf("egress: state file %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("egress: state file %s: %w", path, err)
	}
	fail := func(err error) error {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("egress: state file %s: %w", path, err)
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		return fail(err)
	}
	if err := tmp.Sync(); err != nil {
		return fail(err)
	}
	if err := tmp.Close(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("egress: state file %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil { // the rename itself is durable once the directory is
		_ = d.Sync()
		d.Close()
	}
	return nil
}
