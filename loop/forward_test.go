package loop

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nat464/nat464-sidecar/forward"
	"github.com/nat464/nat464-sidecar/resolver"
)

// TestProxyForwardsPlainHTTP: on every pairing, an http:// request in absolute form reaches
// an IPv6-only origin by name through the resolver and Happy Eyeballs, on the proxy's IPv4
// and IPv6 addresses, with keep-alive, counted as one forward flow per client connection; a
// request for the proxy's own port is refused 403 without a connect; and the flow slot is
// given back when the client leaves.
func TestProxyForwardsPlainHTTP(t *testing.T) {
	for _, eng := range pairings(t) {
		t.Run(eng, func(t *testing.T) {
			checkFDs(t)
			st := newOutboundStack(t, resolver.Config{})
			ln := v6Origin(t, func(w http.ResponseWriter, r *http.Request) {
				n, _ := io.Copy(io.Discard, r.Body)
				fmt.Fprintf(w, "%s %s %s %d", r.Method, r.Host, r.URL.RequestURI(), n)
			})
			st.dns.AddAAAA("v6.test", time.Minute, "::1")
			port := ln.Addr().(*net.TCPAddr).Port
			own := &OwnSockets{}
			st.dialer.Approve = own.Check
			freg := prometheus.NewRegistry()
			fm := forward.NewMetrics(freg)
			fx := start(t, eng, nil, func(c *Config) {
				c.Dialer, c.Own, c.Log, c.ForwardMetrics = st.dialer, own, st.logger(), fm
			})
			for _, proxy := range []string{fx.proxy, fx.proxy6} {
				tr := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: proxy})}
				cl := &http.Client{Transport: tr, Timeout: 10 * time.Second}
				for i, body := range []string{"", strings.Repeat("x", 100000)} {
					req, _ := http.NewRequest("POST", fmt.Sprintf("http://v6.test:%d/p?q=%d", port, i), bytes.NewReader([]byte(body)))
					resp, err := cl.Do(req)
					if err != nil {
						t.Fatalf("via %s: %v", proxy, err)
					}
					got, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if want := fmt.Sprintf("POST v6.test:%d /p?q=%d %d", port, i, len(body)); string(got) != want {
						t.Errorf("via %s: %q, want %q", proxy, got, want)
					}
				}
				self := "http://" + fx.proxy + "/"
				resp, err := cl.Get(self)
				if err != nil {
					t.Fatal(err)
				}
				msg, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 403 || !strings.Contains(string(msg), "sidecar") {
					t.Errorf("GET %s via %s: %d %q, want 403 naming the sidecar", self, proxy, resp.StatusCode, msg)
				}
				tr.CloseIdleConnections()
			}
			if got := gathered(t, fx.reg, "nat464_loop_flows_total", "forward"); got < 2 {
				t.Errorf("forward flows = %v, want one per client connection, at least one per proxy address", got)
			}
			if got := gathered(t, freg, "nat464_forward_requests_total", "forwarded"); got != 4 {
				t.Errorf("forwarded requests = %v, want 4", got)
			}
			if got := gathered(t, freg, "nat464_forward_requests_total", "403"); got != 2 {
				t.Errorf("403 answers = %v, want 2", got)
			}
			if got := gathered(t, fx.reg, "nat464_loop_rejects_total", RejectSelf); got != 2 {
				t.Errorf("self rejects = %v, want 2", got)
			}
			deadline := time.Now().Add(5 * time.Second)
			for fx.limit.Active() != 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if n := fx.limit.Active(); n != 0 {
				t.Errorf("%d flow slots still held after every client left", n)
			}
			if !strings.Contains(st.logs.String(), "http-forward") {
				t.Errorf("the refusal was not logged with its protocol: %s", st.logs.String())
			}
		})
	}
}

// TestForwardAtMaxConns: plain-HTTP client connections hold their flow slot while kept alive;
// at the bound the next connection is closed unanswered and counted, and a slot freed is
// usable again; 250 slow clients (headers in three pieces) under a bound of 300 are all served
// and leave no slot or fd behind. Every pairing.
func TestForwardAtMaxConns(t *testing.T) {
	for _, eng := range pairings(t) {
		t.Run(eng, func(t *testing.T) {
			checkFDs(t)
			st := newOutboundStack(t, resolver.Config{})
			ln := v6Origin(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
			const bound = 20
			fx := start(t, eng, nil, func(c *Config) { c.Dialer, c.Limit = st.dialer, NewLimiter(bound) })
			get := fmt.Sprintf("GET http://%s/ HTTP/1.1\r\n\r\n", ln.Addr())
			ask := func(c net.Conn) error {
				c.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := io.WriteString(c, get); err != nil {
					return err
				}
				buf := make([]byte, 512)
				n, err := c.Read(buf)
				if err != nil {
					return err
				}
				if !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 200 ") || !strings.HasSuffix(string(buf[:n]), "ok") {
					return fmt.Errorf("answer %q", buf[:n])
				}
				return nil
			}
			var kept []net.Conn
			for range bound {
				c := dialOK(t, "tcp", fx.proxy)
				if err := ask(c); err != nil {
					t.Fatal(err)
				}
				kept = append(kept, c)
			}
			over := dialOK(t, "tcp", fx.proxy)
			if err := ask(over); err == nil {
				t.Fatal("a connection past the bound was served")
			}
			over.Close()
			if got := gathered(t, fx.reg, "nat464_loop_rejects_total", RejectMaxConns); got < 1 {
				t.Errorf("max_conns rejects = %v", got)
			}
			for _, c := range kept[:5] {
				c.Close()
			}
			waitSlots(t, fx.limit, bound-5)
			again := dialOK(t, "tcp", fx.proxy)
			if err := ask(again); err != nil {
				t.Errorf("after 5 slots were freed: %v", err)
			}
			again.Close()
			for _, c := range kept[5:] {
				c.Close()
			}
			waitSlots(t, fx.limit, 0)
		})
	}
}

// v6Origin serves h on [::1] (an IPv6-only origin) until the test ends.
func v6Origin(t *testing.T, h http.HandlerFunc) net.Listener {
	t.Helper()
	origin := httptest.NewUnstartedServer(h)
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	origin.Listener = ln
	origin.Start()
	t.Cleanup(origin.Close)
	return ln
}

func waitSlots(t *testing.T, l *Limiter, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for l.Active() != want && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := l.Active(); n != want {
		t.Fatalf("%d flow slots held, want %d", n, want)
	}
}

func TestForwardSlowClients(t *testing.T) {
	for _, eng := range pairings(t) {
		t.Run(eng, func(t *testing.T) {
			checkFDs(t)
			st := newOutboundStack(t, resolver.Config{})
			ln := v6Origin(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
			fx := start(t, eng, nil, func(c *Config) { c.Dialer, c.Limit = st.dialer, NewLimiter(300) })
			get := fmt.Sprintf("GET http://%s/ HTTP/1.1\r\nConnection: close\r\n\r\n", ln.Addr())
			errs := make(chan error, 250)
			for range 250 {
				go func() {
					c, err := net.Dial("tcp", fx.proxy)
					if err != nil {
						errs <- err
						return
					}
					defer c.Close()
					c.SetDeadline(time.Now().Add(10 * time.Second))
					for _, part := range []string{get[:3], get[3:20], get[20:]} {
						io.WriteString(c, part)
						time.Sleep(20 * time.Millisecond)
					}
					b, err := io.ReadAll(c)
					if err == nil && !strings.HasSuffix(string(b), "ok") {
						err = fmt.Errorf("answer %q", b)
					}
					errs <- err
				}()
			}
			for range 250 {
				if err := <-errs; err != nil {
					t.Error(err)
				}
			}
			waitSlots(t, fx.limit, 0)
		})
	}
}
