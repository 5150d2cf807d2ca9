//go:build e2e && linux

package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestOutboundNames: curl --socks5-hostname from the pod; the sidecar resolves each name itself
// (search list, ndots:5, DNS64) and reaches IPv4-only servers through NAT64 and IPv6 servers
// natively.
func TestOutboundNames(t *testing.T) {
	startSidecar(t)
	pod := "[" + env(t, "LAB_POD6") + "]:"
	v4 := env(t, "LAB_V4SRV") + ":80"
	v6 := "[" + env(t, "LAB_V6SRV") + "]:80"
	for _, tc := range []struct {
		name, host, server, local, from string
	}{
		{"v4-only via DNS64", "v4only.example", "v4srv", v4, v4From},
		{"v6-only", "v6only.example", "v6srv", v6, pod},
		{"dual-stack prefers IPv6", "dual.example", "ds", "[" + env(t, "LAB_DS6") + "]:80", pod},
		{"service AAAA short name", "web", "v6srv", v6, pod},
		{"service AAAA namespace-qualified", "web.default", "v6srv", v6, pod},
		{"service A-only short name", "legacy", "v4srv", v4, v4From},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, _ := podCurl(t, "--socks5-hostname", "http://"+tc.host+"/")
			w.check(t, tc.server, tc.local, tc.from)
		})
	}
}

// TestIPv4Literal: curl --socks5 hands the sidecar an IPv4 address (ATYP 1), which it must
// synthesize with the NAT64 prefix. In nsp mode only RFC 7050 discovery can know the prefix
// (the Well-Known Prefix does not route there).
func TestIPv4Literal(t *testing.T) {
	requireBinary(t)
	for _, tc := range []struct {
		mode, prefix string
	}{
		{"wkp", "64:ff9b::/96"},
		{"nsp", "2001:db8:64::/96"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			labMode(t, tc.mode)
			s := startSidecar(t, "--nat64-prefix", "auto")
			if code, body := s.probe("/readyz"); code != http.StatusOK || !strings.Contains(body, tc.prefix) {
				t.Errorf("/readyz = %d %q; want 200 naming the discovered prefix %s", code, body, tc.prefix)
			}
			for _, dst := range []struct{ ip, server string }{
				{env(t, "LAB_V4SRV"), "v4srv"},
				{env(t, "LAB_DS4"), "ds"},
			} {
				w, _ := podCurl(t, "--socks5", "http://"+dst.ip+"/")
				w.check(t, dst.server, dst.ip+":80", v4From)
			}
			w, _ := podCurl(t, "--socks5-hostname", "http://v4only.example/")
			w.check(t, "v4srv", "", v4From)
		})
	}
}

// TestHappyEyeballs: with an address blackholed (SYNs silently dropped), the race moves on and
// the request still completes in under a second; without faults native IPv6 wins.
func TestHappyEyeballs(t *testing.T) {
	requireBinary(t)
	pod := "[" + env(t, "LAB_POD6") + "]:"
	ds6, ds4 := env(t, "LAB_DS6"), env(t, "LAB_DS4")
	two6a, two6b := env(t, "LAB_TWO6A"), env(t, "LAB_TWO6B")
	const bound = time.Second
	for _, tc := range []struct {
		name, blackhole, host, local, from string
	}{
		{"no fault dual-stack uses IPv6", "", "dual.example", "[" + ds6 + "]:80", pod},
		{"no fault first AAAA wins", "", "two6.example", "[" + two6a + "]:80", pod},
		{"dual-stack AAAA blackholed falls back to NAT64", ds6, "dual.example", ds4 + ":80", v4From},
		{"first of two AAAA blackholed", two6a, "two6.example", "[" + two6b + "]:80", pod},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.blackhole != "" {
				blackhole(t, tc.blackhole)
			}
			startSidecar(t) // fresh: no address history from an earlier case
			w, d := podCurl(t, "--socks5-hostname", "http://"+tc.host+"/")
			w.check(t, "ds", tc.local, tc.from)
			if d >= bound {
				t.Errorf("took %v, want under %v", d, bound)
			}
			t.Logf("%s answered by %s in %v", tc.host, w.local, d)
		})
	}
}

// TestProxyProtocols: HTTP CONNECT, SOCKS4 and SOCKS4a on the same port, and proxychains4
// driving an unmodified IPv4-only curl (no proxy flags, names resolved by the proxy).
func TestProxyProtocols(t *testing.T) {
	startSidecar(t)
	v4 := env(t, "LAB_V4SRV")
	for _, tc := range []struct {
		name, flag, url, server string
	}{
		{"http connect v6 name", "--proxytunnel --proxy", "http://v6only.example/", "v6srv"},
		{"http connect service name", "--proxytunnel --proxy", "http://legacy/", "v4srv"},
		{"socks4a name", "--socks4a", "http://v4only.example/", "v4srv"},
		{"socks4 literal", "--socks4", "http://" + v4 + "/", "v4srv"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := strings.Fields(tc.flag)
			proxy := proxyAddr
			if strings.Contains(tc.flag, "--proxy") {
				proxy = "http://" + proxyAddr
			}
			args = append(args, proxy, tc.url)
			body, _, err := curl(t, env(t, "LAB_NS_POD"), args...)
			if err != nil {
				t.Fatalf("curl %v: %v (body %q)", args, err, body)
			}
			parseWhoami(t, body).check(t, tc.server, "", "")
		})
	}
	conf := writeFile(t, "proxychains.conf", strings.Join([]string{
		"strict_chain",
		"proxy_dns",
		"remote_dns_subnet 224",
		"tcp_read_time_out 15000",
		"tcp_connect_time_out 8000",
		"[ProxyList]",
		"socks5 " + strings.Replace(proxyAddr, ":", " ", 1),
		"",
	}, "\n"))
	for _, tc := range []struct {
		host, server string
	}{
		{"v4only.example", "v4srv"},
		{"v6only.example", "v6srv"},
		{"web", "v6srv"},
	} {
		t.Run("proxychains4 "+tc.host, func(t *testing.T) {
			body, _, err := curlVia(t, env(t, "LAB_NS_POD"), []string{"proxychains4", "-q", "-f", conf}, "-4", "http://"+tc.host+"/")
			if err != nil {
				t.Fatalf("proxychains4 curl -4 http://%s/: %v (body %q)", tc.host, err, body)
			}
			parseWhoami(t, body).check(t, tc.server, "", "")
		})
	}
}

// TestEngines: the basic inbound and outbound paths with each relay engine chosen explicitly,
// so a failure elsewhere in the suite can be pinned on one engine.
func TestEngines(t *testing.T) {
	requireBinary(t)
	for _, engine := range []string{"splice", "goroutine"} {
		t.Run(engine, func(t *testing.T) {
			startSidecar(t, "--engine", engine)
			body, _, err := curl(t, env(t, "LAB_NS_CLIENT"), "http://["+env(t, "LAB_POD6")+"]:"+inboundPort+"/")
			if err != nil {
				t.Errorf("inbound: %v", err)
			} else {
				parseWhoami(t, body).check(t, "app", env(t, "LAB_APP"), "127.0.0.1:")
			}
			body, _, err = curl(t, env(t, "LAB_NS_POD"), "--max-time", "3", "--socks5-hostname", proxyAddr, "http://v4only.example/")
			if err != nil {
				t.Errorf("outbound socks5h: %v", err)
			} else {
				parseWhoami(t, body).check(t, "v4srv", "", v4From)
			}
		})
	}
}

// TestResolverFiles: --resolv-conf and --hosts-file point the sidecar at files other than the
// pod's /etc ones. The test's resolv.conf searches "example", which the pod's does not, so a
// short name only resolves if the flag is honoured; a hosts entry wins over DNS.
func TestResolverFiles(t *testing.T) {
	requireBinary(t)
	resolv := writeFile(t, "resolv.conf", "search example\nnameserver "+env(t, "LAB_DNS6")+"\noptions ndots:5\n")
	hosts := writeFile(t, "hosts", "127.0.0.1 localhost\n::1 localhost\n"+
		env(t, "LAB_V6SRV")+" pinned.example\n"+env(t, "LAB_V6SRV")+" v4only.example\n")
	startSidecar(t, "--resolv-conf", resolv, "--hosts-file", hosts)
	for _, tc := range []struct {
		host, server string
	}{
		{"pinned.example", "v6srv"}, // only in the hosts file
		{"v4only.example", "v6srv"}, // the hosts file overrides DNS
		{"v6only", "v6srv"},         // search list of --resolv-conf
		{"dual.example", "ds"},      // plain DNS
	} {
		t.Run(tc.host, func(t *testing.T) {
			w, _ := podCurl(t, "--socks5-hostname", "http://"+tc.host+"/")
			w.check(t, tc.server, "", "")
		})
	}
}
