package udp

import (
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// The collectors add up every relay (closed ones too), and every family they export is in the
// operations guide's metrics table.
func TestMetrics(t *testing.T) {
	checkLeaks(t)
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	e := newEcho(t, "127.0.0.1:0")
	for range 2 {
		r := startRelay(t, Config{Listen: netip.MustParseAddrPort("[::1]:0"), Target: e.addr, Metrics: m})
		exchange(t, client(t, "udp6"), r.Addr(), []byte("12345"))
		eventually(t, 10*time.Second, "reply counted", func() bool { return r.Stats().DatagramsOut == 1 })
		if len(m.relays) == 2 {
			r.Close() // the second relay's counts stay after it closes
		}
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		for _, mt := range f.Metric {
			got[f.GetName()+labels(mt)] = mt.GetCounter().GetValue() + mt.GetGauge().GetValue()
		}
	}
	for k, want := range map[string]float64{
		"nat464_udp_sessions_active{kind=inbound}": 1, "nat464_udp_sessions_total{kind=inbound}": 2,
		"nat464_udp_datagrams_total{direction=in}{kind=inbound}": 2, "nat464_udp_datagrams_total{direction=out}{kind=inbound}": 2,
		"nat464_udp_bytes_total{direction=in}{kind=inbound}": 10, "nat464_udp_drops_total{kind=inbound}{reason=unreachable}": 0,
		"nat464_udp_sessions_total{kind=egress}": 0,
	} {
		if got[k] != want {
			t.Errorf("%s = %v, want %v", k, got[k], want)
		}
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
	for _, reason := range DropReasons {
		if !strings.Contains(string(doc), "`"+reason+"`") {
			t.Errorf("docs/operations.md does not explain drop reason %s", reason)
		}
	}
}

func labels(m *dto.Metric) string {
	var b strings.Builder
	for _, l := range m.Label {
		b.WriteString("{" + l.GetName() + "=" + l.GetValue() + "}")
	}
	return b.String()
}
