// Package policy is the sidecar's egress policy: which destinations the proxy (every protocol),
// the SOCKS5 UDP relay and the transparent-egress addresses may reach.
//
// A policy file (--egress-policy) holds rules, one a line: ACTION TARGET [PORTS], where ACTION
// is allow or deny, TARGET a host name, a wildcard name (*.example.com) or an IPv4 or IPv6
// address or CIDR prefix, and PORTS a comma-separated list of ports and FIRST-LAST ranges
// (none: every port); `default allow|deny` sets what applies when no rule matches (allow
// without it). Parse reads it into a Policy; Engine holds the Policy in force (swapped
// atomically on reload), adds the built-in rules (the sidecar's own sockets, link-local
// addresses), counts every decision per rule and says why it refused (DeniedError). Watcher
// polls the file so that a changed file (a ConfigMap update) is re-read.
//
// In scope: the file format, matching and the hot swap. Not in scope: where the checks are
// made (eyeballs.Dialer asks Engine through its Policy field before every lookup and every
// connect), what a refused client is answered (loop's reply table) and logging.
package policy

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// Action is what a rule does with a destination it matches.
type Action uint8

const (
	Allow Action = iota
	Deny
)

func (a Action) String() string {
	if a == Deny {
		return "deny"
	}
	return "allow"
}

// PortRange is an inclusive range of ports, First <= Last.
type PortRange struct{ First, Last uint16 }

// Rule is one line of a policy file. Exactly one of Name and Prefix is set.
type Rule struct {
	// Line is the rule's line number in its file (1-based); 0 for a built-in rule.
	Line   int
	Action Action
	// Name is a host name, lowercase and without a trailing dot. With Wildcard it is the
	// suffix of `*.Name`: it matches every name below Name, at any depth, but not Name itself.
	Name     string
	Wildcard bool
	// Prefix is an address range; a bare address is a /32 or /128.
	Prefix netip.Prefix
	// Ports are the ports the rule applies to; empty means every port.
	Ports []PortRange
}

// IsName reports whether the rule matches names (not addresses).
func (r *Rule) IsName() bool { return r.Name != "" }

// String is the rule in its canonical form, as a file would write it: "allow *.example.com 443",
// "deny 198.51.100.0/24". It is the rule label of the decisions metric.
func (r *Rule) String() string {
	var b strings.Builder
	b.WriteString(r.Action.String())
	b.WriteByte(' ')
	switch {
	case r.Wildcard:
		b.WriteString("*." + r.Name)
	case r.Name != "":
		b.WriteString(r.Name)
	default:
		b.WriteString(r.Prefix.String())
	}
	for i, p := range r.Ports {
		if i == 0 {
			b.WriteByte(' ')
		} else {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(int(p.First)))
		if p.Last != p.First {
			b.WriteString("-" + strconv.Itoa(int(p.Last)))
		}
	}
	return b.String()
}

// port reports whether the rule applies to port.
func (r *Rule) port(port uint16) bool {
	if len(r.Ports) == 0 {
		return true
	}
	for _, p := range r.Ports {
		if port >= p.First && port <= p.Last {
			return true
		}
	}
	return false
}

// Policy is a parsed policy file. The zero value has no rules and allows everything.
type Policy struct {
	// Names and Prefixes are the name and address rules, each kind in file order: within a
	// kind the first matching rule decides.
	Names    []Rule
	Prefixes []Rule
	// Default applies when no rule of the kind asked matches; DefaultLine is the line of its
	// `default` line, 0 when the file had none (then Default is Allow).
	Default     Action
	DefaultLine int
}

// Rules returns how many rules the policy has, the default line not counted.
func (p *Policy) Rules() int { return len(p.Names) + len(p.Prefixes) }

// Bounds of a policy file.
const (
	MaxFileBytes = 1 << 20
	MaxRules     = 10000
	maxPorts     = 64 // port items on one line
)

// ErrSyntax is wrapped by every error Parse returns about the file's content.
var ErrSyntax = errors.New("policy: bad policy file")

// SyntaxError is a policy file that cannot be read as one: it names the file (when Load read
// it) and the line (0 when about the whole file). It wraps ErrSyntax.
type SyntaxError struct {
	File string
	Line int
	Err  error
}

func (e *SyntaxError) Error() string {
	var b strings.Builder
	b.WriteString("policy: ")
	if e.File != "" {
		b.WriteString(e.File + ": ")
	}
	if e.Line > 0 {
		b.WriteString("line " + strconv.Itoa(e.Line) + ": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *SyntaxError) Unwrap() []error { return []error{ErrSyntax, e.Err} }

// Load reads and parses the policy file at path. Errors name the file (and the line).
func Load(path string) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("policy: %s: %w", path, err)
	}
	p, err := Parse(data)
	var se *SyntaxError
	if errors.As(err, &se) {
		se.File = path
	}
	return p, err
}

// Parse reads a policy file. Blank lines and everything from a '#' on are ignored, as is a
// trailing CR. Each other line is `allow|deny TARGET [PORTS]` or `default allow|deny` (at most
// once, wherever it stands). An error is a *SyntaxError naming the line: "policy: line 3: ...".
func Parse(data []byte) (*Policy, error) {
	if len(data) > MaxFileBytes {
		return nil, &SyntaxError{Err: fmt.Errorf("larger than %d bytes", MaxFileBytes)}
	}
	p := &Policy{}
	for i, line := range strings.Split(string(data), "\n") {
		if err := p.parseLine(line, i+1); err != nil {
			return nil, &SyntaxError{Line: i + 1, Err: err}
		}
	}
	return p, nil
}

func (p *Policy) parseLine(line string, n int) error {
	if i := strings.IndexByte(line, '#'); i >= 0 {
		line = line[:i]
	}
	f := strings.Fields(line)
	if len(f) == 0 {
		return nil
	}
	if f[0] == "default" {
		return p.parseDefault(f, n)
	}
	r := Rule{Line: n}
	switch f[0] {
	case "allow":
		r.Action = Allow
	case "deny":
		r.Action = Deny
	default:
		return fmt.Errorf("%q: want allow, deny or default", clip(f[0]))
	}
	if len(f) < 2 {
		return fmt.Errorf("%s without a target (a name, *.name, address or CIDR prefix)", f[0])
	}
	if len(f) > 3 {
		return fmt.Errorf("%q after the ports: want ACTION TARGET [PORTS] (ports are comma-separated, no spaces)", clip(f[3]))
	}
	if err := r.parseTarget(f[1]); err != nil {
		return err
	}
	if len(f) == 3 {
		ports, err := parsePorts(f[2])
		if err != nil {
			return err
		}
		r.Ports = ports
	}
	if p.Rules() >= MaxRules {
		return fmt.Errorf("more than %d rules", MaxRules)
	}
	if r.IsName() {
		p.Names = append(p.Names, r)
	} else {
		p.Prefixes = append(p.Prefixes, r)
	}
	return nil
}

func (p *Policy) parseDefault(f []string, n int) error {
	switch {
	case p.DefaultLine != 0:
		return fmt.Errorf("a second default (the first is on line %d)", p.DefaultLine)
	case len(f) != 2:
		return errors.New("want default allow or default deny")
	case f[1] == "allow":
		p.Default = Allow
	case f[1] == "deny":
		p.Default = Deny
	default:
		return fmt.Errorf("default %q: want allow or deny", clip(f[1]))
	}
	p.DefaultLine = n
	return nil
}

// parseTarget sets the rule's name or prefix from s.
func (r *Rule) parseTarget(s string) error {
	if strings.ContainsAny(s, ":/") || looksNumeric(s) {
		pfx, err := parsePrefix(s)
		if err != nil {
			return err
		}
		r.Prefix = pfx
		return nil
	}
	name, wild := strings.CutPrefix(s, "*.")
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if err := checkName(name); err != nil {
		return fmt.Errorf("target %q: %w", clip(s), err)
	}
	r.Name, r.Wildcard = name, wild
	return nil
}

// looksNumeric reports a target made of digits and dots only: an IPv4 address, never a name.
func looksNumeric(s string) bool {
	return !strings.ContainsFunc(s, func(c rune) bool { return c != '.' && (c < '0' || c > '9') })
}

func parsePrefix(s string) (netip.Prefix, error) {
	var pfx netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if pfx, err = netip.ParsePrefix(s); err != nil {
			return pfx, fmt.Errorf("target %q: not a CIDR prefix (want 198.51.100.0/24 or 2001:db8::/32)", clip(s))
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return pfx, fmt.Errorf("target %q: not an IP address", clip(s))
		}
		pfx = netip.PrefixFrom(a, a.BitLen())
	}
	switch {
	case pfx.Addr().Zone() != "":
		return pfx, fmt.Errorf("target %q: a zone is not allowed", clip(s))
	case pfx.Addr().Is4In6():
		return pfx, fmt.Errorf("target %q: write IPv4-mapped addresses as IPv4 (%s)", clip(s), pfx.Addr().Unmap())
	case pfx.Masked() != pfx:
		return pfx, fmt.Errorf("target %q: host bits set (did you mean %s?)", clip(s), pfx.Masked())
	}
	return pfx, nil
}

// checkName accepts a DNS name of letters, digits, '-' and '_' in labels of 1 to 63 bytes, at
// most 253 bytes in all.
func checkName(name string) error {
	if name == "" || len(name) > 253 {
		return errors.New("want a host name of 1 to 253 bytes, *.name, an address or a CIDR prefix")
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 {
			return errors.New("empty label or label longer than 63 bytes")
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("character %q not allowed in a name (only *. as the first label)", c)
			}
		}
	}
	return nil
}

// parsePorts reads "80,443,8000-8100".
func parsePorts(s string) ([]PortRange, error) {
	items := strings.Split(s, ",")
	if len(items) > maxPorts {
		return nil, fmt.Errorf("more than %d port items", maxPorts)
	}
	out := make([]PortRange, 0, len(items))
	for _, it := range items {
		lo, hi, isRange := strings.Cut(it, "-")
		first, err := parsePort(lo)
		if err != nil {
			return nil, fmt.Errorf("ports %q: %w", clip(s), err)
		}
		last := first
		if isRange {
			if last, err = parsePort(hi); err != nil {
				return nil, fmt.Errorf("ports %q: %w", clip(s), err)
			}
			if last < first {
				return nil, fmt.Errorf("ports %q: range %s ends before it starts", clip(s), clip(it))
			}
		}
		out = append(out, PortRange{first, last})
	}
	return out, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q is not a port (1-65535)", clip(s))
	}
	return uint16(n), nil
}

// clip shortens what an error quotes from the file.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
