package deploy

import (
	"bytes"
	"fmt"
	"maps"
	"net"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// targetLabels are labels Prometheus adds to every series of a target (job, instance) or that
// Kubernetes service discovery commonly adds by relabelling; the binary does not export them.
var targetLabels = wordSet("job instance namespace pod container service endpoint node")

// exported is what one scrape of /metrics shows: every series name (histograms as their
// _bucket, _sum and _count, summaries as name, _sum and _count) with the label names its
// samples carry.
type exported map[string]map[string]bool

func parseExposition(body []byte) (exported, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	out := exported{}
	add := func(name string, m *dto.Metric, extra ...string) {
		if out[name] == nil {
			out[name] = map[string]bool{}
		}
		for _, l := range m.GetLabel() {
			out[name][l.GetName()] = true
		}
		for _, l := range extra {
			out[name][l] = true
		}
	}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			switch f.GetType() {
			case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
				add(name+"_bucket", m, "le")
				add(name+"_sum", m)
				add(name+"_count", m)
			case dto.MetricType_SUMMARY:
				add(name, m, "quantile")
				add(name+"_sum", m)
				add(name+"_count", m)
			default:
				add(name, m)
			}
		}
	}
	return out, nil
}

// TestMonitoringMetricsExported runs the real sidecar on loopback, drives a little of every kind
// of traffic through it so that its labelled series exist, scrapes /metrics, and wants every
// series name each dashboard query and each alert expression reads to be exported, with every
// label they match on or group by.
func TestMonitoringMetricsExported(t *testing.T) {
	if runtime.GOOS != "linux" {
		cannotRun(t, "the process_* metrics, the splice engine and UDP pktinfo need Linux")
	}
	queries := monitoringQueries(t)
	got := scrapeDrivenSidecar(t)
	for _, where := range slices.Sorted(maps.Keys(queries)) {
		expr := queries[where]
		refs, err := parsePromQL(expr)
		if err != nil {
			t.Errorf("%s: %v", where, err)
			continue
		}
		known := maps.Clone(targetLabels)
		for _, m := range refs.metrics {
			labels, ok := got[m]
			if !ok {
				t.Errorf("%s reads %s, which the binary does not export (%q)", where, m, expr)
				continue
			}
			maps.Copy(known, labels)
			for _, l := range refs.matchers[m] {
				if !labels[l] && !targetLabels[l] {
					t.Errorf("%s matches %s on label %q, which it does not carry (it has %v)", where, m, l, slices.Sorted(maps.Keys(labels)))
				}
			}
		}
		for _, l := range refs.grouping {
			if !known[l] {
				t.Errorf("%s groups by %q, which none of %v carries", where, l, refs.metrics)
			}
		}
	}
	t.Logf("%d expressions checked against %d exported series names", len(queries), len(got))
}

// monitoringQueries returns every expression of the dashboard and the PrometheusRule.
func monitoringQueries(t *testing.T) map[string]string {
	t.Helper()
	out, err := loadDashboard(t).exprs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range loadPrometheusRule(t).alerts() {
		out["alert "+a.Alert] = a.Expr
	}
	return out
}

// scrapeDrivenSidecar builds and starts the sidecar with inbound TCP and UDP mappings, the proxy,
// the pod DNS server of transparent egress and RFC 7050 discovery, all on loopback; makes one
// inbound flow, one inbound connect failure, one proxied flow to a name, one refused proxied
// connect, one DNS question and one UDP datagram; and returns what /metrics then shows.
func scrapeDrivenSidecar(t *testing.T) exported {
	t.Helper()
	bin := buildSidecarBinary(t)
	dir := t.TempDir()
	echo4 := echoServer(t, "tcp4", "127.0.0.1:0")
	echo6 := echoServer(t, "tcp6", "[::1]:0")
	hosts := filepath.Join(dir, "hosts")
	resolv := filepath.Join(dir, "resolv.conf")
	writeFile(t, hosts, "::1 echo.test\n")
	writeFile(t, resolv, "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
	var p sidecarPorts
	var admin string
	// A port found free may be taken by another process before the sidecar binds it: start
	// again on new ports then.
	for attempt := 1; ; attempt++ {
		p = pickPorts(t)
		args := []string{
			"--inbound", fmt.Sprintf("[::1]:%d=%s", p.inOK, echo4.String()),
			"--inbound", fmt.Sprintf("[::1]:%d=127.0.0.1:%d", p.inBad, p.closed4),
			"--inbound-udp", fmt.Sprintf("[::1]:%d=127.0.0.1:%d", p.inUDP, p.closedUDP),
			"--proxy-listen", fmt.Sprintf("127.0.0.1:%d", p.proxy),
			"--admin-listen", fmt.Sprintf("[::1]:%d", p.admin),
			"--hosts-file", hosts, "--resolv-conf", resolv,
			"--dns-listen", fmt.Sprintf("127.0.0.1:%d", p.dns),
			"--dns-upstream", fmt.Sprintf("127.0.0.1:%d", p.silentDNS),
			"--egress-ports", strconv.Itoa(p.egress),
			"--log-format", "text", "--drain-timeout", "1s", // the UDP session would hold a longer drain
		}
		var err error
		admin, err = startSidecar(t, bin, args, fmt.Sprintf("http://[::1]:%d", p.admin))
		if err == nil {
			break
		}
		if !strings.Contains(err.Error(), "address already in use") || attempt == 3 {
			t.Fatalf("sidecar did not start: %v", err)
		}
		t.Logf("attempt %d: %v; again on other ports", attempt, err)
	}

	// An inbound flow, and an inbound connect the app (a closed port) refuses.
	if err := echoOnce(fmt.Sprintf("[::1]:%d", p.inOK)); err != nil {
		t.Errorf("inbound flow: %v", err)
	}
	drain(t, fmt.Sprintf("[::1]:%d", p.inBad))
	// A proxied flow to a name (hosts file: ::1), and one the destination refuses.
	if c, rep, err := socks5Connect(fmt.Sprintf("127.0.0.1:%d", p.proxy), "echo.test", echo6.Port); err != nil || rep != 0 {
		t.Errorf("SOCKS5 to echo.test:%d: reply %d, %v", echo6.Port, rep, err)
	} else {
		if err := echoOn(c); err != nil {
			t.Errorf("SOCKS5 flow: %v", err)
		}
		c.Close()
	}
	if c, rep, err := socks5Connect(fmt.Sprintf("127.0.0.1:%d", p.proxy), "echo.test", p.closed6); err != nil || rep == 0 {
		t.Errorf("SOCKS5 to a closed port: reply %d, %v; want a refusal", rep, err)
	} else {
		c.Close()
	}
	// A question to the pod's DNS server, and a datagram to a UDP target nobody listens on.
	if err := dnsQuestion(fmt.Sprintf("127.0.0.1:%d", p.dns), "echo.test."); err != nil {
		t.Errorf("DNS question: %v", err)
	}
	if c, err := net.Dial("udp6", fmt.Sprintf("[::1]:%d", p.inUDP)); err != nil {
		t.Error(err)
	} else {
		_, _ = c.Write([]byte("ping"))
		c.Close()
	}

	// Flow counters move when flows end, just after the client saw its data: scrape until the
	// series the traffic makes are there.
	want := []string{"nat464_loop_flows_total", "nat464_loop_upstream_connect_failures_total",
		"nat464_eyeballs_winners_total", "nat464_eyeballs_race_failures_total", "nat464_dns_queries_total",
		"nat464_nat64_discovery_total", "nat464_resolver_queries_total"}
	var got exported
	deadline := time.Now().Add(15 * time.Second)
	for {
		body, err := httpGet(admin + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		if got, err = parseExposition(body); err != nil {
			t.Fatalf("/metrics: %v", err)
		}
		missing := slices.DeleteFunc(slices.Clone(want), func(m string) bool { return got[m] != nil })
		if len(missing) == 0 {
			return got
		}
		if time.Now().After(deadline) {
			t.Errorf("after the traffic, /metrics still lacks %v", missing)
			return got
		}
		time.Sleep(100 * time.Millisecond)
	}
}
