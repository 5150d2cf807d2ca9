package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// /metrics is scraped while flows run: every family the operations guide lists is there, and
// the counters move with the traffic.
func TestMetricsScrape(t *testing.T) {
	requireLinux(t)
	app := echoApp(t)
	l := freePort(t)
	f := newProxyFixture(t, "splice", "--inbound", fmt.Sprintf("[::1]:%d=%s", l, app), "--pprof",
		"--nat64-prefix", "64:ff9b::/96")
	s := f.s
	before := s.metric("nat464_loop_flows_total", `kind="inbound"`)
	roundTrips(t, fmt.Sprintf("[::1]:%d", l), 20, 4)
	if got := settleF(func() float64 { return s.metric("nat464_loop_flows_total", `kind="inbound"`) }, before+20); got < before+20 {
		t.Errorf("flows_total{inbound} = %v, want >= %v", got, before+20)
	}
	if got := settleF(func() float64 { return s.metric("nat464_loop_bytes_total", `direction="up",kind="inbound"`) }, 100); got < 100 {
		t.Errorf("bytes_total{inbound,up} = %v, want >= 100 (20 flows x 5 bytes)", got)
	}
	curl(t, "-x", "socks5h://"+f.proxyAddr, f.url("app.test"))
	for _, sel := range []struct{ name, labels string }{
		{"nat464_loop_handshakes_total", `protocol="socks5"`},
		{"nat464_eyeballs_attempts_total", `family="ipv4"`},
		{"nat464_eyeballs_connect_duration_seconds_count", ""},
		{"nat464_loop_flow_duration_seconds_count", `kind="inbound"`},
	} {
		if v := settleF(func() float64 { return s.metric(sel.name, sel.labels) }, 1); v < 1 {
			t.Errorf("%s{%s} = %v, want >= 1", sel.name, sel.labels, v)
		}
	}
	_, body := s.Get("/metrics")
	for _, family := range []string{
		"nat464_build_info", "nat464_loop_flows_active", "nat464_loop_rejects_total",
		"nat464_splice_pipes_in_use", "nat464_splice_calls_total", "nat464_resolver_cache_misses_total",
		"nat464_nat64_prefix_info", "nat464_eyeballs_winners_total", "go_goroutines", "process_open_fds",
		"nat464_policy_decisions_total", "nat464_policy_rules",
		"nat464_admin_ready", "nat464_admin_ready_changes_total", "nat464_admin_draining", "nat464_admin_rejects_total",
	} {
		if !strings.Contains(body, "# TYPE "+family+" ") {
			t.Errorf("/metrics lacks %s", family)
		}
	}
	if !strings.Contains(body, `nat464_nat64_prefix_info{`) {
		t.Error("nat64 prefix info has no sample")
	}
	if code, _ := s.Get("/debug/pprof/cmdline"); code != http.StatusOK {
		t.Errorf("--pprof: /debug/pprof/cmdline = %d", code)
	}
}

func TestPprofOffByDefault(t *testing.T) {
	requireLinux(t)
	s := startSidecar(t, "--proxy-listen", "off", "--inbound", fmt.Sprintf("[::1]:%d=127.0.0.1:9", freePort(t)))
	if code, _ := s.Get("/debug/pprof/cmdline"); code != http.StatusNotFound {
		t.Errorf("/debug/pprof without --pprof = %d, want 404", code)
	}
	for _, p := range []string{"/livez", "/healthz", "/startupz"} {
		if code, body := s.Get(p); code != http.StatusOK {
			t.Errorf("%s = %d %s", p, code, body)
		}
	}
}

// settleF polls f until it reaches want or a few seconds pass (flow counters move when flows
// end, just after the client sees its data).
func settleF(f func() float64, want float64) float64 {
	var v float64
	for range 100 {
		if v = f(); v >= want {
			return v
		}
		sleep50()
	}
	return v
}
