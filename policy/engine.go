package policy

import (
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// ErrDenied is wrapped by every refusal of the Engine (*DeniedError).
var ErrDenied = errors.New("policy: destination denied")

// The built-in rules. They apply with or without a policy file.
var (
	// LinkLocal4 and LinkLocal6 are denied so that cloud metadata services (169.254.169.254,
	// fd00:ec2::254 aside) and link-local neighbours are never reachable through the sidecar.
	// A file rule overrides them only when it is an allow whose prefix lies inside them
	// (`allow 169.254.169.254/32`, `allow 169.254.0.0/16`): a broad `allow 0.0.0.0/0` does not
	// open metadata.
	LinkLocal4 = netip.MustParsePrefix("169.254.0.0/16")
	LinkLocal6 = netip.MustParsePrefix("fe80::/10")
)

// Rule labels of the built-in rules, as the decisions metric and DeniedError name them.
const (
	RuleSelf       = "deny self (built-in)"
	RuleLinkLocal4 = "deny 169.254.0.0/16 (built-in)"
	RuleLinkLocal6 = "deny fe80::/10 (built-in)"
)

// Engine decides destinations by the Policy in force plus the built-in rules. Its zero value
// has no policy (allow) and the link-local rules; set the fields before the first check. It is
// safe for concurrent use: Set swaps the policy atomically, and a check in progress finishes
// with the policy it started with. A nil *Engine allows everything.
type Engine struct {
	// Self, if not nil, is the built-in self rule, asked first about every address as it will
	// be connected: a non-nil error (the sidecar's own listening socket) denies, whatever the
	// file says. If nil, no such rule.
	Self func(netip.AddrPort) error
	// Desynthesize, if not nil, maps an address inside a NAT64 prefix to the IPv4 address it
	// stands for, which the address rules then judge (*nat64.Prefixes.Desynthesize), when
	// CheckAddr is not told (a literal inside the prefix, a DNS64 answer for a scoped IPv4).
	Desynthesize func(netip.Addr) (netip.Addr, bool)
	// Metrics may be nil.
	Metrics *Metrics

	mu  sync.Mutex // serialises Set
	cur atomic.Pointer[table]
}

// table is a Policy with its counters looked up once.
type table struct {
	p        *Policy
	names    []prometheus.Counter // by index of p.Names
	prefixes []prometheus.Counter // by index of p.Prefixes
	def      prometheus.Counter
	labels   [][2]string // every (rule, action) series of this table
}

var emptyPolicy = &Policy{}

// Set puts p in force (nil: no policy file, allow by default). Series of the decisions metric
// whose rule is gone are deleted, so the metric has one series per rule in force (plus the
// built-in ones).
func (e *Engine) Set(p *Policy) {
	if p == nil {
		p = emptyPolicy
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	t := e.Metrics.table(p)
	old := e.cur.Swap(t)
	if old != nil {
		e.Metrics.forget(old.labels, t.labels)
	}
	e.Metrics.setRules(p.Rules())
}

// Policy returns the policy in force (nil when none was Set).
func (e *Engine) Policy() *Policy {
	if e == nil {
		return nil
	}
	if t := e.cur.Load(); t != nil && t.p != emptyPolicy {
		return t.p
	}
	return nil
}

// table is the table in force; an Engine never Set gets the empty policy's, installed once
// (never over a policy Set meanwhile).
func (e *Engine) table() *table {
	if t := e.cur.Load(); t != nil {
		return t
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if t := e.cur.Load(); t != nil {
		return t
	}
	t := e.Metrics.table(emptyPolicy)
	e.cur.Store(t)
	return t
}

// CheckName decides a request for host (a name, not an address) on port by the name rules:
// the first that matches, else the default. It returns nil or a *DeniedError.
func (e *Engine) CheckName(host string, port uint16) error {
	if e == nil {
		return nil
	}
	t := e.table()
	if i := t.p.matchName(host, port); i >= 0 {
		r := &t.p.Names[i]
		inc(t.names[i])
		if r.Action == Allow {
			return nil
		}
		return &DeniedError{Dest: joinHostPort(host, port), Name: host, Rule: r.String(), Line: r.Line}
	}
	inc(t.def)
	if t.p.Default == Allow {
		return nil
	}
	return &DeniedError{Dest: joinHostPort(host, port), Name: host, Rule: defaultLabel(t.p.Default), Line: t.p.DefaultLine}
}

// CheckAddr decides an address about to be connected (after NAT64 synthesis). v4, when valid,
// is the IPv4 address a synthesized dest stands for (the dialer knows it); otherwise
// Desynthesize is asked. name is the host name the request was for, "" when it was for an
// address. In order:
//
//  1. the self rule (Self) on dest as connected;
//  2. the address rules, on the IPv4 address dest stands for when it is NAT64-synthesized (and
//     on IPv4 for an IPv4-mapped one): the first that matches decides, except that an allow
//     does not open a link-local address unless its prefix lies inside the link-local range;
//  3. the built-in link-local rules;
//  4. no rule matched: an address of a name is allowed (its name passed CheckName, which
//     applied the default) and not counted again; an address asked for as such gets the
//     default.
//
// It returns nil or a *DeniedError.
func (e *Engine) CheckAddr(name string, dest netip.AddrPort, v4 netip.Addr) error {
	if e == nil {
		return nil
	}
	if e.Self != nil {
		if err := e.Self(dest); err != nil {
			e.Metrics.builtin(RuleSelf)
			return &DeniedError{Dest: dest.String(), Name: name, Rule: RuleSelf, Builtin: true, Err: err}
		}
	}
	t := e.table()
	a := dest.Addr().Unmap().WithZone("")
	var stands netip.Addr
	switch {
	case v4.Is4():
		a, stands = v4, v4
	case e.Desynthesize != nil && a.Is6():
		if v4, ok := e.Desynthesize(a); ok {
			a, stands = v4, v4
		}
	}
	var r *Rule
	i := t.p.matchAddr(a, dest.Port())
	if i >= 0 {
		r = &t.p.Prefixes[i]
	}
	if ll, label := linkLocal(a); ll.IsValid() && (r == nil || r.Action == Allow && !inside(r.Prefix, ll)) {
		e.Metrics.builtin(label)
		return &DeniedError{Dest: dest.String(), Name: name, Stands: stands, Rule: label, Builtin: true}
	}
	if r != nil {
		inc(t.prefixes[i])
		if r.Action == Allow {
			return nil
		}
		return &DeniedError{Dest: dest.String(), Name: name, Stands: stands, Rule: r.String(), Line: r.Line}
	}
	if name != "" {
		return nil
	}
	inc(t.def)
	if t.p.Default == Allow {
		return nil
	}
	return &DeniedError{Dest: dest.String(), Name: name, Stands: stands, Rule: defaultLabel(t.p.Default), Line: t.p.DefaultLine}
}

func joinHostPort(host string, port uint16) string { return host + ":" + strconv.Itoa(int(port)) }

func defaultLabel(a Action) string { return "default " + a.String() }

// linkLocal returns the built-in link-local prefix holding a and its label, if any.
func linkLocal(a netip.Addr) (netip.Prefix, string) {
	switch {
	case a.Is4() && LinkLocal4.Contains(a):
		return LinkLocal4, RuleLinkLocal4
	case a.Is6() && LinkLocal6.Contains(a):
		return LinkLocal6, RuleLinkLocal6
	}
	return netip.Prefix{}, ""
}

// inside reports whether p lies within q.
func inside(p, q netip.Prefix) bool { return p.Bits() >= q.Bits() && q.Contains(p.Addr()) }

func inc(c prometheus.Counter) {
	if c != nil {
		c.Inc()
	}
}

// DeniedError is a destination the Engine refused, and the rule that refused it. It wraps
// ErrDenied (and Err, the self rule's reason).
type DeniedError struct {
	// Dest is what was refused: host:port for a name, address:port for an address.
	Dest string
	// Name is the host name the request was for, "" for an address.
	Name string
	// Stands is the IPv4 address a NAT64-synthesized Dest stands for, which the rules judged.
	Stands netip.Addr
	// Rule is the deciding rule in its canonical form ("deny 198.51.100.0/24", "default deny",
	// RuleSelf, RuleLinkLocal4, RuleLinkLocal6); Line its line in the file, 0 for a built-in
	// rule or a default the file did not write.
	Rule    string
	Line    int
	Builtin bool
	Err     error
}

func (e *DeniedError) Error() string {
	s := "policy: " + e.Dest
	if e.Stands.IsValid() {
		s += " (NAT64 for " + e.Stands.String() + ")"
	}
	if e.Name != "" && !strings.HasPrefix(e.Dest, e.Name+":") {
		s += " (" + e.Name + ")"
	}
	s += " denied by rule \"" + e.Rule + "\""
	if e.Line > 0 {
		s += " (line " + strconv.Itoa(e.Line) + ")"
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *DeniedError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrDenied, e.Err}
	}
	return []error{ErrDenied}
}
