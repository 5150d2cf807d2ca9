package egress

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func mustTable(t *testing.T, cfg TableConfig) *Table {
	t.Helper()
	if !cfg.Range.IsValid() {
		cfg.Range = DefaultRange
	}
	tb, warnings, err := NewTable(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range warnings {
		t.Log("warning:", w)
	}
	return tb
}

func TestCheckRange(t *testing.T) {
	for _, tc := range []struct {
		p  string
		ok bool
	}{
		{"127.100.0.0/16", true}, {"127.200.0.0/24", true}, {"127.128.0.0/9", true}, {"127.0.1.0/30", true},
		{"127.0.0.0/8", false}, {"127.0.0.0/16", false}, {"10.0.0.0/16", false}, {"126.0.0.0/7", false},
		{"127.0.1.0/31", false}, {"::1/128", false}, {"127.0.0.1/32", false},
	} {
		err := CheckRange(netip.MustParsePrefix(tc.p))
		if (err == nil) != tc.ok {
			t.Errorf("CheckRange(%s) = %v, want ok=%v", tc.p, err, tc.ok)
		}
	}
}

func TestAssignStable(t *testing.T) {
	tb := mustTable(t, TableConfig{})
	a1, fresh, err := tb.Assign("Example.COM")
	if err != nil || !fresh {
		t.Fatalf("Assign: %v %v %v", a1, fresh, err)
	}
	if a1 != netip.MustParseAddr("127.100.0.1") {
		t.Errorf("first address %s, want 127.100.0.1 (the range's first is never given)", a1)
	}
	a2, fresh, err := tb.Assign("example.com.")
	if err != nil || fresh || a2 != a1 {
		t.Errorf("the same name again: %v fresh=%v %v, want %v", a2, fresh, err, a1)
	}
	b, _, _ := tb.Assign("example.org")
	if b == a1 {
		t.Errorf("two names share %s", b)
	}
	if n, ok := tb.Name(a1); !ok || n != "example.com." {
		t.Errorf("Name(%s) = %q %v", a1, n, ok)
	}
	if _, ok := tb.Name(netip.MustParseAddr("127.100.9.9")); ok {
		t.Error("an address no name holds has a name")
	}
	if a, ok := tb.Lookup("EXAMPLE.org"); !ok || a != b {
		t.Errorf("Lookup = %v %v", a, ok)
	}
	for _, bad := range []string{"", ".", "a..b", strings.Repeat("x", 64) + ".com"} {
		if _, _, err := tb.Assign(bad); !errors.Is(err, ErrBadName) {
			t.Errorf("Assign(%q) = %v, want ErrBadName", bad, err)
		}
	}
}

// TestAssignConcurrent: racing askers of one name get one address, and no address goes to two
// names.
func TestAssignConcurrent(t *testing.T) {
	tb := mustTable(t, TableConfig{StatePath: filepath.Join(t.TempDir(), "state.json")})
	var wg sync.WaitGroup
	got := make([]netip.Addr, 64)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, _, err := tb.Assign(fmt.Sprintf("n%d.example", i%8))
			if err != nil {
				t.Error(err)
			}
			got[i] = a
		}()
	}
	wg.Wait()
	byName := map[string]netip.Addr{}
	seen := map[netip.Addr]string{}
	for i, a := range got {
		n := fmt.Sprintf("n%d.example", i%8)
		if prev, ok := byName[n]; ok && prev != a {
			t.Errorf("%s got %s and %s", n, prev, a)
		}
		byName[n] = a
		if other, ok := seen[a]; ok && other != n {
			t.Errorf("%s given to %s and %s", a, other, n)
		}
		seen[a] = n
	}
	if tb.Len() != 8 {
		t.Errorf("Len = %d, want 8", tb.Len())
	}
}

// TestExhaustion: at the range's end and at MaxNames, a new name gets ErrExhausted while the names
// that hold addresses keep them.
func TestExhaustion(t *testing.T) {
	tb := mustTable(t, TableConfig{Range: netip.MustParsePrefix("127.0.1.0/30")})
	a, _, err1 := tb.Assign("a.example")
	b, _, err2 := tb.Assign("b.example")
	if err1 != nil || err2 != nil || a == b {
		t.Fatalf("the /30's two addresses: %v %v %v %v", a, err1, b, err2)
	}
	if _, _, err := tb.Assign("c.example"); !errors.Is(err, ErrExhausted) {
		t.Errorf("third name in a /30: %v, want ErrExhausted", err)
	}
	if got, _, err := tb.Assign("a.example"); err != nil || got != a {
		t.Errorf("a name that holds an address, at exhaustion: %v %v", got, err)
	}

	tb = mustTable(t, TableConfig{MaxNames: 3, Static: map[netip.Addr]string{netip.MustParseAddr("127.100.0.1"): "db.internal"}})
	for i := range 3 {
		a, _, err := tb.Assign(fmt.Sprintf("n%d.example", i))
		if err != nil {
			t.Fatalf("name %d of 3: %v", i, err)
		}
		if a == netip.MustParseAddr("127.100.0.1") {
			t.Errorf("the hosts file's address went to n%d", i)
		}
	}
	if _, _, err := tb.Assign("n3.example"); !errors.Is(err, ErrExhausted) {
		t.Errorf("name 4 with MaxNames 3: %v, want ErrExhausted", err)
	}
}

func TestStateRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	tb := mustTable(t, TableConfig{StatePath: path})
	want := map[string]netip.Addr{}
	for _, n := range []string{"a.example.", "b.example.", "c.example."} {
		a, _, err := tb.Assign(n)
		if err != nil {
			t.Fatal(err)
		}
		want[n] = a
	}
	// A restart: every address reaches the same name, and a new name never gets an old address.
	tb2 := mustTable(t, TableConfig{StatePath: path})
	for n, a := range want {
		if got, ok := tb2.Name(a); !ok || got != n {
			t.Errorf("after restart %s -> %q %v, want %s", a, got, ok, n)
		}
	}
	d, fresh, err := tb2.Assign("d.example")
	if err != nil || !fresh {
		t.Fatal(err)
	}
	for n, a := range want {
		if d == a {
			t.Errorf("a new name got %s, which %s holds", d, n)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".state.json.*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// TestStateRefused: a state file that cannot be taken whole is an error naming the file and the
// way out, never a table built from part of it.
func TestStateRefused(t *testing.T) {
	for name, body := range map[string]string{
		"not JSON":      "{\"version\":1,\"names\":{\"a.example.\":\"127.100.0.1\"",
		"torn":          "{\"version\":1,\"range\":\"127.100.0.0/16\",\"names\":{\"a.example.\":\"127.10",
		"empty":         "",
		"other version": `{"version":2,"range":"127.100.0.0/16","names":{}}`,
		"address twice": `{"version":1,"range":"127.100.0.0/16","names":{"a.example.":"127.100.0.1","b.example.":"127.100.0.1"}}`,
		"bad address":   `{"version":1,"range":"127.100.0.0/16","names":{"a.example.":"::1"}}`,
		"bad name":      `{"version":1,"range":"127.100.0.0/16","names":{"a..example.":"127.100.0.1"}}`,
		"relative name": `{"version":1,"range":"127.100.0.0/16","names":{"a.example":"127.100.0.1"}}`,
		"unknown field": `{"version":1,"range":"127.100.0.0/16","names":{},"extra":1}`,
		"trailing data": `{"version":1,"range":"127.100.0.0/16","names":{}} {}`,
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.json")
			if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			_, _, err := NewTable(TableConfig{Range: DefaultRange, StatePath: path})
			if !errors.Is(err, ErrState) || !strings.Contains(err.Error(), path) {
				t.Errorf("NewTable = %v, want ErrState naming %s", err, path)
			}
		})
	}
}

// TestStateOutsideRange: after --egress-range changed, entries outside it are dropped with a
// warning, and the ones inside are kept.
func TestStateOutsideRange(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	body := `{"version":1,"range":"127.100.0.0/16","names":{"a.example.":"127.100.0.7","b.example.":"127.100.200.1"}}`
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	tb, warnings, err := NewTable(TableConfig{Range: netip.MustParsePrefix("127.100.0.0/24"), StatePath: path})
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := tb.Name(netip.MustParseAddr("127.100.0.7")); !ok || n != "a.example." {
		t.Errorf("entry inside the new range: %q %v", n, ok)
	}
	if _, ok := tb.Lookup("b.example"); ok || len(warnings) != 1 {
		t.Errorf("entry outside the range kept, or warnings %q", warnings)
	}
}

// TestStateWriteFails: a fresh address that cannot be saved is not given out.
func TestStateWriteFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gone", "state.json")
	tb := mustTable(t, TableConfig{StatePath: path})
	if _, _, err := tb.Assign("a.example"); err == nil {
		t.Fatal("Assign succeeded without its state file")
	}
	if tb.Len() != 0 {
		t.Errorf("the unsaved name is in the table")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if a, _, err := tb.Assign("a.example"); err != nil || a != netip.MustParseAddr("127.100.0.1") {
		t.Errorf("once the directory exists: %v %v", a, err)
	}
}

func TestStaticNames(t *testing.T) {
	hosts := "127.0.0.1 localhost\n127.100.0.9 db.internal db # the database\n127.100.0.9 other\n" +
		"127.100.0.10 cache\n192.0.2.1 v4.example\n::ffff:127.100.0.11 mapped.example\n"
	st, err := parseStatic(strings.NewReader(hosts), DefaultRange)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"127.100.0.9": "db.internal", "127.100.0.10": "cache", "127.100.0.11": "mapped.example"}
	if len(st) != len(want) {
		t.Errorf("static names %v, want %v", st, want)
	}
	for a, n := range want {
		if st[netip.MustParseAddr(a)] != n {
			t.Errorf("%s -> %q, want %q", a, st[netip.MustParseAddr(a)], n)
		}
	}
	// A state entry on a static address is dropped: the hosts file wins.
	path := filepath.Join(t.TempDir(), "state.json")
	body := `{"version":1,"range":"127.100.0.0/16","names":{"old.example.":"127.100.0.9","kept.example.":"127.100.0.3"}}`
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	tb, warnings, err := NewTable(TableConfig{Range: DefaultRange, Static: st, StatePath: path})
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := tb.Name(netip.MustParseAddr("127.100.0.9")); n != "db.internal" || len(warnings) != 1 {
		t.Errorf("static address -> %q, warnings %q", n, warnings)
	}
	if n, _ := tb.Name(netip.MustParseAddr("127.100.0.3")); n != "kept.example." {
		t.Errorf("state entry -> %q", n)
	}
	for i := range 5 {
		a, _, err := tb.Assign(fmt.Sprintf("x%d.example", i))
		if err != nil {
			t.Fatal(err)
		}
		if _, static := st[a]; static || a == netip.MustParseAddr("127.100.0.3") {
			t.Errorf("Assign handed out %s, which is taken", a)
		}
	}
}
