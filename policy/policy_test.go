package policy

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// The brief's example file, parsed into its rules.
const example = `# egress policy
allow *.example.com 443
deny  198.51.100.0/24
allow 2001:db8::/32 80,443,8000-8100
allow db.internal.example
default deny
`

func TestParseExample(t *testing.T) {
	p, err := Parse([]byte(example))
	if err != nil {
		t.Fatal(err)
	}
	want := &Policy{
		Names: []Rule{
			{Line: 2, Action: Allow, Name: "example.com", Wildcard: true, Ports: []PortRange{{443, 443}}},
			{Line: 5, Action: Allow, Name: "db.internal.example"},
		},
		Prefixes: []Rule{
			{Line: 3, Action: Deny, Prefix: netip.MustParsePrefix("198.51.100.0/24")},
			{Line: 4, Action: Allow, Prefix: netip.MustParsePrefix("2001:db8::/32"),
				Ports: []PortRange{{80, 80}, {443, 443}, {8000, 8100}}},
		},
		Default: Deny, DefaultLine: 6,
	}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("Parse:\n got %+v\nwant %+v", p, want)
	}
	var texts []string
	for _, r := range append(p.Names, p.Prefixes...) {
		texts = append(texts, r.String())
	}
	if got, w := strings.Join(texts, "|"), "allow *.example.com 443|allow db.internal.example|deny 198.51.100.0/24|allow 2001:db8::/32 80,443,8000-8100"; got != w {
		t.Errorf("String: %s, want %s", got, w)
	}
}

func TestParseForms(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"allow Example.COM.", "allow example.com"},
		{"deny *.Evil.Example. 1-65535", "deny *.evil.example 1-65535"},
		{"deny 192.0.2.7", "deny 192.0.2.7/32"},
		{"deny 2001:db8::7 22", "deny 2001:db8::7/128 22"},
		{"allow 0.0.0.0/0", "allow 0.0.0.0/0"},
		{"allow ::/0 80", "allow ::/0 80"},
		{"\tallow   a_b-c.example\t443 # comment", "allow a_b-c.example 443"},
		{"allow x.example 80\r", "allow x.example 80"},
	} {
		p, err := Parse([]byte(tc.in))
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		rs := append(p.Names, p.Prefixes...)
		if len(rs) != 1 || rs[0].String() != tc.want {
			t.Errorf("%q: %v, want %s", tc.in, rs, tc.want)
		}
	}
	p, err := Parse([]byte("# only comments\n\n   \n"))
	if err != nil || p.Rules() != 0 || p.Default != Allow || p.DefaultLine != 0 {
		t.Errorf("empty file: %+v %v, want no rules, default allow", p, err)
	}
}

// Every bad line is an error naming its line and what is wrong.
func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"permit x.example", `line 1: "permit": want allow, deny or default`},
		{"allow", "line 1: allow without a target"},
		{"\n\nallow x.example 80 90", `line 3: "90" after the ports`},
		{"allow x.example 0", `"0" is not a port`},
		{"allow x.example 65536", `"65536" is not a port`},
		{"allow x.example 90-80", "range 90-80 ends before it starts"},
		{"allow x.example 80,", `"" is not a port`},
		{"allow x.example http", `"http" is not a port`},
		{"deny 198.51.100.7/24", "host bits set (did you mean 198.51.100.0/24?)"},
		{"deny 198.51.100.0/33", "not a CIDR prefix"},
		{"deny 300.1.1.1", "not an IP address"},
		{"deny fe80::1%eth0", "not an IP address"},
		{"deny ::ffff:192.0.2.0/120", "write IPv4-mapped addresses as IPv4"},
		{"allow *", `character '*' not allowed`},
		{"allow *.", "want a host name"},
		{"allow a..example", "empty label"},
		{"allow a.*.example", `character '*' not allowed`},
		{"allow exa mple", `"mple" is not a port`},
		{"allow " + strings.Repeat("a", 64) + ".example", "longer than 63"},
		{"default", "want default allow or default deny"},
		{"default block", `default "block": want allow or deny`},
		{"default deny\ndefault allow", "line 2: a second default (the first is on line 1)"},
		{"Allow x.example", `"Allow": want allow, deny or default`},
	} {
		_, err := Parse([]byte(tc.in))
		var se *SyntaxError
		if err == nil || !errors.Is(err, ErrSyntax) || !errors.As(err, &se) || !strings.Contains(err.Error(), tc.want) ||
			!strings.HasPrefix(err.Error(), "policy: line ") {
			t.Errorf("%q: err %v, want a SyntaxError containing %q", tc.in, err, tc.want)
		}
	}
	if _, err := Parse(make([]byte, MaxFileBytes+1)); !errors.Is(err, ErrSyntax) {
		t.Errorf("oversized file: %v", err)
	}
	var b strings.Builder
	for range MaxRules + 1 {
		b.WriteString("deny 192.0.2.1\n")
	}
	if _, err := Parse([]byte(b.String())); err == nil || !strings.Contains(err.Error(), "more than 10000 rules") {
		t.Errorf("too many rules: %v", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy")
	if err := os.WriteFile(path, []byte("allow x.example\nbogus\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if want := "policy: " + path + ": line 2: "; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Load: %v, want prefix %q", err, want)
	}
	if _, err := Load(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if err := os.WriteFile(path, []byte(example), 0o600); err != nil {
		t.Fatal(err)
	}
	if p, err := Load(path); err != nil || p.Rules() != 4 {
		t.Errorf("Load(example): %v rules, %v", p.Rules(), err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(example))
	for _, s := range []string{"allow *.a 1-2,3", "deny ::/0", "default allow", "deny 1.2.3.4/32 80 # x\r\n",
		"allow *.", "deny 198.51.100.7/24", "allow a..b", "default deny\ndefault allow", "allow x 0"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrSyntax) {
				t.Fatalf("error without ErrSyntax: %v", err)
			}
			return
		}
		// Round trip: the canonical form of every rule parses to the same rule.
		var b strings.Builder
		for _, r := range append(append([]Rule(nil), p.Names...), p.Prefixes...) {
			b.WriteString(r.String() + "\n")
		}
		if p.DefaultLine > 0 {
			b.WriteString("default " + p.Default.String() + "\n")
		}
		q, err := Parse([]byte(b.String()))
		if err != nil {
			t.Fatalf("canonical form %q does not parse: %v", b.String(), err)
		}
		if len(q.Names) != len(p.Names) || len(q.Prefixes) != len(p.Prefixes) || q.Default != p.Default {
			t.Fatalf("round trip changed the policy: %q", b.String())
		}
		for i := range p.Names {
			if q.Names[i].String() != p.Names[i].String() {
				t.Fatalf("name rule %d: %s != %s", i, q.Names[i].String(), p.Names[i].String())
			}
		}
		for i := range p.Prefixes {
			if q.Prefixes[i].String() != p.Prefixes[i].String() {
				t.Fatalf("prefix rule %d: %s != %s", i, q.Prefixes[i].String(), p.Prefixes[i].String())
			}
		}
		// Matching never panics.
		p.MatchName("a.example", 443)
		p.MatchAddr(netip.MustParseAddr("198.51.100.1"), 80)
	})
}
