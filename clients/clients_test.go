package clients

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

var (
	c1 = netip.MustParseAddr("2001:db8:2::20")
	c2 = netip.MustParseAddr("2001:db8:2::21")
	c3 = netip.MustParseAddr("2001:db8:3::1")
)

func src(t *testing.T, tb *Table, c netip.Addr) netip.Addr {
	t.Helper()
	a, ok := tb.Source(c)
	if !ok {
		t.Fatalf("Source(%v): none", c)
	}
	return a
}

func TestStableAndDistinct(t *testing.T) {
	var logs bytes.Buffer
	tb := New(Config{Range: netip.MustParsePrefix("127.128.0.0/9"), Mappings: []string{"[::]:8080"},
		Log: slog.New(slog.NewTextHandler(&logs, nil))})
	a1, a2 := src(t, tb, c1), src(t, tb, c2)
	if a1 != netip.MustParseAddr("127.128.0.1") || a2 != netip.MustParseAddr("127.128.0.2") {
		t.Errorf("first two sources %v %v", a1, a2)
	}
	for range 3 {
		if src(t, tb, c1) != a1 || src(t, tb, c2) != a2 {
			t.Fatal("a client's source changed")
		}
	}
	// An IPv4-mapped client is its IPv4 address; a zone does not make another client.
	v4 := src(t, tb, netip.MustParseAddr("192.0.2.7"))
	if src(t, tb, netip.MustParseAddr("::ffff:192.0.2.7")) != v4 {
		t.Error("IPv4-mapped client got another source than its IPv4 address")
	}
	if src(t, tb, netip.MustParseAddr("2001:db8:2::20%eth0")) != a1 {
		t.Error("a zone made a new client")
	}
	if _, ok := tb.Source(netip.Addr{}); ok {
		t.Error("the invalid address got a source")
	}
	if tb.Capacity() != DefaultMaxClients {
		t.Errorf("capacity of a /9: %d", tb.Capacity())
	}
	// One INFO line per assignment, naming client and source.
	if n := strings.Count(logs.String(), "inbound source assigned"); n != 3 {
		t.Errorf("%d assignment lines, want 3:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "client=2001:db8:2::20 source=127.128.0.1") {
		t.Errorf("log does not map the source back:\n%s", logs.String())
	}
	s, es := tb.Snapshot(nil)
	if s.Assigned != 3 || len(es) != 3 || es[0].Client != c1.String() || es[0].Source != "127.128.0.1" || es[0].Connections != 5 {
		t.Errorf("snapshot %+v %+v", s, es)
	}
}

// At the bound: every address handed out, the next new client gets none (it connects as
// without the option), is counted and warned about once a minute; the clients that have an
// address keep it, and no address is ever given to a second client.
func TestFullTable(t *testing.T) {
	var logs bytes.Buffer
	now := time.Date(2026, 12, 7, 20, 0, 0, 0, time.UTC)
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	tb := New(Config{Range: netip.MustParsePrefix("127.1.0.0/30"), Log: slog.New(slog.NewTextHandler(&logs, nil)),
		Metrics: m, Now: func() time.Time { return now }})
	if tb.Capacity() != 2 {
		t.Fatalf("capacity of a /30: %d, want 2 (first and last left out)", tb.Capacity())
	}
	a1, a2 := src(t, tb, c1), src(t, tb, c2)
	if a1 != netip.MustParseAddr("127.1.0.1") || a2 != netip.MustParseAddr("127.1.0.2") {
		t.Fatalf("sources %v %v", a1, a2)
	}
	for i := range 5 {
		if a, ok := tb.Source(c3); ok {
			t.Fatalf("attempt %d: a full table gave %v", i, a)
		}
	}
	if src(t, tb, c1) != a1 || src(t, tb, c2) != a2 {
		t.Error("existing clients lost their sources at the bound")
	}
	if n := strings.Count(logs.String(), "inbound source range full"); n != 1 {
		t.Errorf("%d WARN lines in the same minute, want 1:\n%s", n, logs.String())
	}
	now = now.Add(warnEvery)
	tb.Source(c3)
	if !strings.Contains(logs.String(), "overflows_since_last_warning=5") {
		t.Errorf("second WARN does not count the overflows since the first:\n%s", logs.String())
	}
	s, _ := tb.Snapshot(nil)
	if s.Overflows != 6 || s.Assigned != 2 || s.Capacity != 2 {
		t.Errorf("summary %+v", s)
	}
	if got := testutil.ToFloat64(m.overflows.WithLabelValues("127.1.0.0/30")); got != 6 {
		t.Errorf("overflows_total %v", got)
	}
	if got := testutil.ToFloat64(m.assignedNow.WithLabelValues("127.1.0.0/30")); got != 2 {
		t.Errorf("clients gauge %v", got)
	}
	small := New(Config{Range: netip.MustParsePrefix("127.2.0.0/24"), MaxClients: 10})
	if small.Capacity() != 10 {
		t.Errorf("MaxClients 10 on a /24: %d", small.Capacity())
	}
	for i := range 10 {
		src(t, small, netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i)}))
	}
	if _, ok := small.Source(c1); ok {
		t.Error("11th client got a source past MaxClients")
	}
}

// A table without a usable range (config never builds one) gives nothing and does not panic.
func TestNoRange(t *testing.T) {
	for _, r := range []netip.Prefix{{}, netip.MustParsePrefix("::1/128"), netip.MustParsePrefix("127.0.0.5/32")} {
		tb := New(Config{Range: r})
		if a, ok := tb.Source(c1); ok || tb.Capacity() != 0 {
			t.Errorf("%v: gave %v, capacity %d", r, a, tb.Capacity())
		}
		tb.Snapshot(nil)
	}
}

func TestConcurrentSources(t *testing.T) {
	tb := New(Config{Range: netip.MustParsePrefix("127.64.0.0/16")})
	var wg sync.WaitGroup
	got := make([][]netip.Addr, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				a, _ := tb.Source(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(i >> 8), 15: byte(i)}))
				got[g] = append(got[g], a)
			}
		}()
	}
	wg.Wait()
	seen := map[netip.Addr]bool{}
	for i := range 200 {
		for g := range 8 {
			if got[g][i] != got[0][i] {
				t.Fatalf("client %d: %v and %v", i, got[0][i], got[g][i])
			}
		}
		if seen[got[0][i]] {
			t.Fatalf("source %v given twice", got[0][i])
		}
		seen[got[0][i]] = true
	}
}

func TestHandler(t *testing.T) {
	t1 := New(Config{Range: netip.MustParsePrefix("127.128.0.0/9"), Mappings: []string{"[::]:8080"}})
	t2 := New(Config{Range: netip.MustParsePrefix("127.64.0.0/16"), Mappings: []string{"[::]:9090"}})
	src(t, t1, c1)
	src(t, t1, c2)
	src(t, t2, c1)
	h := Handler([]*Table{t1, t2})
	get := func(q string) (int, Response) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, Path+q, nil))
		var r Response
		if rec.Code == http.StatusOK {
			if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
				t.Fatal(err)
			}
		}
		return rec.Code, r
	}
	code, all := get("")
	if code != 200 || len(all.Tables) != 2 || len(all.Clients) != 3 || all.Tables[0].Assigned != 2 || all.Tables[1].Mappings[0] != "[::]:9090" {
		t.Fatalf("all: %d %+v", code, all)
	}
	if _, r := get("?source=127.128.0.2"); len(r.Clients) != 1 || r.Clients[0].Client != c2.String() {
		t.Errorf("by source: %+v", r.Clients)
	}
	if _, r := get("?client=2001:db8:2::20"); len(r.Clients) != 2 {
		t.Errorf("by client: %+v", r.Clients)
	}
	if _, r := get("?source=127.9.9.9"); r.Clients == nil || len(r.Clients) != 0 {
		t.Errorf("no match: %+v", r.Clients)
	}
	if code, _ := get("?source=nonsense"); code != http.StatusBadRequest {
		t.Errorf("bad source: %d", code)
	}
	rec := httptest.NewRecorder()
	Handler(nil).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, Path, nil))
	if strings.TrimSpace(rec.Body.String()) != `{"tables":[],"clients":[]}` {
		t.Errorf("no tables: %s", rec.Body.String())
	}
}

// TestEntryCost measures the heap a client costs, the number behind DefaultMaxClients.
func TestEntryCost(t *testing.T) {
	if testing.Short() {
		t.Skip("measures the heap")
	}
	const n = 20000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	tb := New(Config{Range: netip.MustParsePrefix("127.128.0.0/9")})
	for i := range n {
		tb.Source(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 13: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)}))
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("%.0f bytes of heap per client (%d clients)", per, n)
	if per > 250 {
		t.Errorf("%.0f bytes per client; DefaultMaxClients' comment assumes about 185", per)
	}
	runtime.KeepAlive(tb)
}

func ExampleTable_Source() {
	tb := New(Config{Range: netip.MustParsePrefix("127.128.0.0/9")})
	a, _ := tb.Source(netip.MustParseAddr("2001:db8:2::20"))
	b, _ := tb.Source(netip.MustParseAddr("2001:db8:2::21"))
	again, _ := tb.Source(netip.MustParseAddr("2001:db8:2::20"))
	fmt.Println(a, b, again)
	// Output: 127.128.0.1 127.128.0.2 127.128.0.1
}

// Every metric the package registers is documented in docs/operations.md.
func TestMetricsDocumented(t *testing.T) {
	reg := prometheus.NewRegistry()
	NewMetrics(reg).Init(netip.MustParsePrefix("127.128.0.0/9"))
	fams, err := reg.Gather()
	if err != nil || len(fams) != 2 {
		t.Fatalf("gathered %d families, %v", len(fams), err)
	}
	doc, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if !strings.Contains(string(doc), "`"+f.GetName()+"`") {
			t.Errorf("docs/operations.md does not document %s", f.GetName())
		}
	}
}
