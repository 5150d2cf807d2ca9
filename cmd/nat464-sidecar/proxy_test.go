package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/proxy"
)

// proxyFixture is a sidecar whose proxy port reaches an IPv4-only HTTP app, known by name as
// app.test through a hosts file.
type proxyFixture struct {
	s         *proc
	proxyAddr string // 127.0.0.1:P
	appPort   string
	page      string
}

func newProxyFixture(t *testing.T, eng string, extra ...string) *proxyFixture {
	t.Helper()
	const page = "hello through the proxy\n"
	app := httpApp(t, "127.0.0.1:0", page)
	_, appPort, _ := net.SplitHostPort(app)
	dir := t.TempDir()
	hosts := filepath.Join(dir, "hosts")
	os.WriteFile(hosts, []byte("127.0.0.1 app.test\n"), 0o644)
	resolv := filepath.Join(dir, "resolv.conf")
	os.WriteFile(resolv, []byte("nameserver ::1\noptions timeout:1 attempts:1\n"), 0o644)
	pa := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	args := append([]string{"--engine", eng, "--proxy-listen", pa, "--inbound", fmt.Sprintf("[::1]:%d=127.0.0.1:9", freePort(t)),
		"--hosts-file", hosts, "--resolv-conf", resolv, "--nat64-prefix", "none"}, extra...)
	return &proxyFixture{s: startSidecar(t, args...), proxyAddr: pa, appPort: appPort, page: page}
}

func (f *proxyFixture) url(host string) string {
	return "http://" + net.JoinHostPort(host, f.appPort) + "/"
}

// proxyVariants are the ways the binary runs its proxy port: each engine, and the splice
// engine with the handshakes on its relay loops (--proxy-handshakes relay).
func proxyVariants() [][]string {
	var vs [][]string
	for _, eng := range engines {
		vs = append(vs, []string{eng})
	}
	return append(vs, []string{"splice", "--proxy-handshakes", "relay"})
}

func TestProxyCurl(t *testing.T) {
	requireLinux(t)
	for _, v := range proxyVariants() {
		t.Run(strings.Join(v, " "), func(t *testing.T) {
			f := newProxyFixture(t, v[0], v[1:]...)
			for _, tc := range []struct{ name, proxy, host string }{
				{"socks5", "socks5://" + f.proxyAddr, "127.0.0.1"},
				{"socks5h", "socks5h://" + f.proxyAddr, "app.test"},
				{"socks4", "socks4://" + f.proxyAddr, "127.0.0.1"},
				{"socks4a", "socks4a://" + f.proxyAddr, "app.test"},
				{"http-connect", "http://" + f.proxyAddr, "app.test"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					if got := curl(t, "--noproxy", "", "-p", "-x", tc.proxy, f.url(tc.host)); got != f.page {
						t.Errorf("got %q", got)
					}
				})
			}
			if n := f.s.metric("nat464_loop_handshakes_total", `protocol="socks5"`); n < 2 {
				t.Errorf("handshakes_total{socks5} = %v, want >= 2", n)
			}
			// Plain HTTP: curl -x http:// without -p sends GET http://... and exits 0 on an
			// answer, so --fail makes a 405 or 502 a failure; two URLs on one curl reuse the
			// proxy connection.
			t.Run("http-forward", func(t *testing.T) {
				got := curl(t, "--noproxy", "", "--fail", "-x", "http://"+f.proxyAddr, f.url("app.test"), f.url("127.0.0.1"))
				if got != f.page+f.page {
					t.Errorf("got %q", got)
				}
				if n := f.s.metric("nat464_forward_requests_total", `outcome="forwarded"`); n != 2 {
					t.Errorf("forward_requests_total{forwarded} = %v, want 2", n)
				}
				if n := f.s.metric("nat464_loop_flows_total", `kind="forward"`); n != 1 {
					t.Errorf("flows_total{forward} = %v, want 1 (one kept-alive client connection)", n)
				}
			})
		})
	}
}

func TestProxyAuth(t *testing.T) {
	requireLinux(t)
	for _, handshakes := range []string{"gnet", "relay"} {
		t.Run(handshakes, func(t *testing.T) { testProxyAuth(t, handshakes) })
	}
}

func testProxyAuth(t *testing.T, handshakes string) {
	auth := filepath.Join(t.TempDir(), "auth")
	os.WriteFile(auth, []byte("# users\nalice:s3cret\n"), 0o600)
	f := newProxyFixture(t, "splice", "--proxy-auth-file", auth, "--proxy-handshakes", handshakes)
	for _, scheme := range []string{"socks5h", "http"} {
		t.Run(scheme, func(t *testing.T) {
			good := fmt.Sprintf("%s://alice:s3cret@%s", scheme, f.proxyAddr)
			modes := [][]string{{"-p"}}
			if scheme == "http" {
				modes = append(modes, []string{"--fail"}) // plain HTTP, forwarded
			}
			for _, mode := range modes {
				if got := curl(t, append(mode, "-x", good, f.url("app.test"))...); got != f.page {
					t.Errorf("%v good credentials: %q", mode, got)
				}
				for _, bad := range []string{fmt.Sprintf("%s://alice:wrong@%s", scheme, f.proxyAddr), scheme + "://" + f.proxyAddr} {
					args := append([]string{"-sS", "--fail", "--max-time", "5"}, mode...)
					out, err := exec.Command("curl", append(args, "-x", bad, f.url("app.test"))...).CombinedOutput()
					if err == nil {
						t.Errorf("%v %s: accepted: %s", mode, bad, out)
					}
					if mode[0] == "--fail" && !strings.Contains(string(out), "407") {
						t.Errorf("%v %s: %s, want a 407", mode, bad, out)
					}
				}
			}
		})
	}
	// SOCKS4 carries no password: refused when auth is on.
	if out, err := exec.Command("curl", "-sS", "--max-time", "5", "-x", "socks4a://"+f.proxyAddr, f.url("app.test")).CombinedOutput(); err == nil {
		t.Errorf("socks4a accepted with auth on: %s", out)
	}
	// A SOCKS5 client offering only "no auth" gets 0xFF.
	c, err := net.Dial("tcp", f.proxyAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte{5, 1, 0})
	reply := make([]byte, 2)
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.ReadFull(c, reply); err != nil || reply[1] != 0xFF {
		t.Errorf("offer of method 00 only: reply %x %v, want 05ff", reply, err)
	}
	if n := f.s.metric("nat464_loop_rejects_total", `reason="auth"`); n < 3 {
		t.Errorf("rejects_total{auth} = %v, want >= 3", n)
	}
}

// golang.org/x/net/proxy is an independent SOCKS5 client.
func TestProxyXNetClient(t *testing.T) {
	requireLinux(t)
	f := newProxyFixture(t, "splice")
	d, err := proxy.SOCKS5("tcp", f.proxyAddr, nil, proxy.Direct)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{Dial: d.Dial}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(f.url("app.test"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if b, _ := io.ReadAll(resp.Body); string(b) != f.page {
		t.Errorf("got %q", b)
	}
}

// proxychains4 runs a client that has no proxy settings of its own.
func TestProxychains(t *testing.T) {
	requireLinux(t)
	requireTool(t, "proxychains4")
	requireTool(t, "curl")
	f := newProxyFixture(t, "splice")
	host, port, _ := net.SplitHostPort(f.proxyAddr)
	conf := filepath.Join(t.TempDir(), "proxychains.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("strict_chain\nproxy_dns\ntcp_read_time_out 5000\ntcp_connect_time_out 5000\n[ProxyList]\nsocks5 %s %s\n", host, port)), 0o644)
	cmd := exec.Command("proxychains4", "-q", "-f", conf, "curl", "-sS", "--max-time", "10", f.url("app.test"))
	cmd.Env = cleanProxyEnv()
	out, err := cmd.Output()
	if err != nil || string(out) != f.page {
		t.Fatalf("proxychains4 curl: %q %v", out, err)
	}
}

// OpenBSD nc with -X 5 (SOCKS5) and -X connect (HTTP CONNECT).
func TestProxyNetcat(t *testing.T) {
	requireLinux(t)
	requireTool(t, "nc")
	if out, _ := exec.Command("nc", "-h").CombinedOutput(); !strings.Contains(string(out), "-X proto") {
		if os.Getenv("CI") == "true" {
			t.Fatal("nc is not OpenBSD netcat (netcat-openbsd); .ci/run installs it")
		}
		t.Skip("nc is not OpenBSD netcat")
	}
	f := newProxyFixture(t, "splice")
	for _, proto := range []string{"5", "connect"} {
		t.Run(proto, func(t *testing.T) {
			cmd := exec.Command("nc", "-X", proto, "-x", f.proxyAddr, "-w", "5", "app.test", f.appPort)
			cmd.Stdin = strings.NewReader("GET / HTTP/1.0\r\nHost: app.test\r\n\r\n")
			out, err := cmd.Output()
			if err != nil && len(out) == 0 {
				t.Fatal(err)
			}
			if !strings.HasSuffix(string(out), f.page) {
				t.Errorf("nc -X %s: %q", proto, out)
			}
		})
	}
}

// Optimistic data: greeting, request and payload in one write reach the app, in order.
func TestProxyOptimisticData(t *testing.T) {
	requireLinux(t)
	for _, eng := range engines {
		t.Run(eng, func(t *testing.T) {
			f := newProxyFixture(t, eng)
			c, err := net.Dial("tcp", f.proxyAddr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var msg []byte
			msg = append(msg, 5, 1, 0)       // greeting: no auth
			msg = append(msg, 5, 1, 0, 3, 8) // CONNECT, domain of 8 bytes
			msg = append(msg, "app.test"...) //
			var port int
			fmt.Sscan(f.appPort, &port)
			msg = append(msg, byte(port>>8), byte(port))
			msg = append(msg, "GET / HTTP/1.0\r\nHost: app.test\r\n\r\n"...)
			if _, err := c.Write(msg); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			br := bufio.NewReader(c)
			head := make([]byte, 2+10)
			if _, err := io.ReadFull(br, head); err != nil || head[1] != 0 || head[3] != 0 {
				t.Fatalf("handshake replies %x %v", head, err)
			}
			rest, _ := io.ReadAll(br)
			if !strings.HasSuffix(string(rest), f.page) {
				t.Errorf("optimistic request answered with %q", rest)
			}
		})
	}
}

func cleanProxyEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k := strings.ToLower(strings.SplitN(kv, "=", 2)[0])
		if strings.HasSuffix(k, "_proxy") {
			continue
		}
		env = append(env, kv)
	}
	return env
}
