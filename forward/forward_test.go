package forward

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// proxy serves a forward.Server on 127.0.0.1; every host dials to the origin named in
// origins (host:port of the request -> real address), anything else fails as a name that
// does not exist.
type proxy struct {
	addr  string
	srv   *Server
	dials atomic.Int32
}

var errNoSuchHost = errors.New("test: no such host")

func startProxy(t *testing.T, origins map[string]string, tweak func(*Config)) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{addr: ln.Addr().String()}
	cfg := Config{Dial: func(ctx context.Context, host string, port uint16) (net.Conn, error) {
		p.dials.Add(1)
		real, ok := origins[net.JoinHostPort(host, fmt.Sprint(port))]
		if !ok {
			return nil, fmt.Errorf("dial %s: %w", host, errNoSuchHost)
		}
		var d net.Dialer
		return d.DialContext(ctx, "tcp", real)
	}, HeaderTimeout: 5 * time.Second}
	if tweak != nil {
		tweak(&cfg)
	}
	p.srv = New(cfg)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.srv.Serve(c, nil)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := p.srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return p
}

// rawOrigin accepts connections and hands each to serve; it counts them.
type rawOrigin struct {
	addr    string
	accepts atomic.Int32
}

func startRawOrigin(t *testing.T, serve func(c net.Conn)) *rawOrigin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &rawOrigin{addr: ln.Addr().String()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			o.accepts.Add(1)
			go func() { defer c.Close(); serve(c) }()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return o
}

// exchange sends raw bytes to the proxy and reads until it closes (or d passes).
func exchange(t *testing.T, addr, req string, d time.Duration) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(d))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(c)
	return string(b)
}

func httpClient(proxyAddr string) *http.Client {
	u := &url.URL{Scheme: "http", Host: proxyAddr}
	return &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(u), DisableCompression: true}, Timeout: 10 * time.Second}
}

// TestForwardRewritesRequest: the origin sees origin form, the target's Host, no hop-by-hop
// field, a Via, and no User-Agent the client did not send.
func TestForwardRewritesRequest(t *testing.T) {
	seen := make(chan string, 1)
	origin := startRawOrigin(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		hdr, _ := readHeader(br, 1<<16)
		seen <- string(hdr)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\n\r\nok")
	})
	p := startProxy(t, map[string]string{"app.test:8080": origin.addr}, nil)
	got := exchange(t, p.addr, "GET http://app.test:8080/a/b?c=d HTTP/1.1\r\nHost: wrong.test\r\n"+
		"Proxy-Connection: keep-alive\r\nProxy-Authorization: Basic eDp5\r\nConnection: X-Secret\r\nX-Secret: 1\r\n"+
		"X-End: 2\r\nConnection: close\r\n\r\n", 5*time.Second)
	req := <-seen
	for _, want := range []string{"GET /a/b?c=d HTTP/1.1\r\n", "Host: app.test:8080\r\n", "X-End: 2\r\n", "Via: 1.1 nat464-sidecar\r\n"} {
		if !strings.Contains(req, want) {
			t.Errorf("origin got %q, want it to hold %q", req, want)
		}
	}
	for _, bad := range []string{"wrong.test", "Proxy-", "X-Secret", "Connection", "User-Agent"} {
		if strings.Contains(req, bad) {
			t.Errorf("origin got %q, which holds %q", req, bad)
		}
	}
	if !strings.HasPrefix(got, "HTTP/1.1 200 OK\r\n") || !strings.HasSuffix(got, "\r\n\r\nok") {
		t.Fatalf("client got %q", got)
	}
	for _, bad := range []string{"X-Hop", "Keep-Alive"} {
		if strings.Contains(got, bad) {
			t.Errorf("client got %q, which holds %q", got, bad)
		}
	}
	if !strings.Contains(got, "Via: 1.1 nat464-sidecar") || !strings.Contains(got, "Connection: close") {
		t.Errorf("client got %q, want Via and Connection: close", got)
	}
}

// TestForwardNetHTTPClient drives the forwarder with net/http's own proxy client: bodies of
// every framing both ways, checksummed, keep-alive to one origin, a second origin on the same
// client connection.
func TestForwardNetHTTPClient(t *testing.T) {
	var originConns atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		sum := sha256.New()
		n, _ := io.Copy(sum, r.Body)
		fmt.Fprintf(w, "%s %d %x %s", r.Method, n, sum.Sum(nil), r.Header.Get("Via"))
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) { // chunked: no length, flushed
		for i := 0; i < 100; i++ {
			fmt.Fprintf(w, "%04d\n", i)
			w.(http.Flusher).Flush()
		}
	})
	newOrigin := func() *httptest.Server {
		s := httptest.NewUnstartedServer(mux)
		s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				originConns.Add(1)
			}
		}
		s.Start()
		t.Cleanup(s.Close)
		return s
	}
	a, b := newOrigin(), newOrigin()
	p := startProxy(t, map[string]string{"a.test:80": a.Listener.Addr().String(), "b.test:80": b.Listener.Addr().String()}, nil)
	cl := httpClient(p.addr)
	defer cl.CloseIdleConnections()
	body := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	want := fmt.Sprintf("%x", sha256.Sum256(body))
	for i, tc := range []struct {
		name string
		req  func() *http.Request
	}{
		{"content-length", func() *http.Request {
			r, _ := http.NewRequest("POST", "http://a.test/echo", bytes.NewReader(body))
			return r
		}},
		{"chunked", func() *http.Request {
			r, _ := http.NewRequest("PUT", "http://a.test/echo", io.MultiReader(bytes.NewReader(body))) // no length: chunked
			return r
		}},
		{"expect 100-continue", func() *http.Request {
			r, _ := http.NewRequest("POST", "http://a.test/echo", bytes.NewReader(body))
			r.Header.Set("Expect", "100-continue")
			return r
		}},
		{"other origin", func() *http.Request {
			r, _ := http.NewRequest("POST", "http://b.test/echo", bytes.NewReader(body))
			return r
		}},
	} {
		resp, err := cl.Do(tc.req())
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if w := fmt.Sprintf("%s %d %s 1.1 nat464-sidecar", tc.req().Method, len(body), want); string(got) != w {
			t.Errorf("%d %s: got %q, want %q", i, tc.name, got, w)
		}
	}
	resp, err := cl.Get("http://b.test/stream")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if len(got) != 500 || !bytes.HasSuffix(got, []byte("0099\n")) || resp.TransferEncoding == nil {
		t.Errorf("stream: %d bytes, transfer encoding %v", len(got), resp.TransferEncoding)
	}
	if n := originConns.Load(); n != 2 {
		t.Errorf("%d origin connections for 2 origins, want 2 (keep-alive)", n)
	}
	if n := p.dials.Load(); n != 2 {
		t.Errorf("%d dials, want 2", n)
	}
}

// TestForwardResponseFraming: what each framing of the origin becomes for HTTP/1.1 and 1.0
// clients.
func TestForwardResponseFraming(t *testing.T) {
	answers := map[string]string{
		"/cl":      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
		"/close":   "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello",
		"/chunked": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n5\r\nhello\r\n0\r\nX-Sum: 7\r\n\r\n",
		"/head":    "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n",
		"/304":     "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
	}
	origin := startRawOrigin(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.WriteString(c, answers[req.URL.Path])
	})
	p := startProxy(t, map[string]string{"o.test:80": origin.addr}, nil)
	tests := []struct {
		method, path, proto string
		want                []string
		body                string
	}{
		{"GET", "/cl", "HTTP/1.1", []string{"Content-Length: 5"}, "hello"},
		{"GET", "/close", "HTTP/1.1", []string{"Transfer-Encoding: chunked"}, "5\r\nhello\r\n0\r\n\r\n"},
		{"GET", "/close", "HTTP/1.0", []string{"Connection: close"}, "hello"},
		{"GET", "/chunked", "HTTP/1.1", []string{"Transfer-Encoding: chunked", "Trailer: X-Sum"}, "5\r\nhello\r\n0\r\nX-Sum: 7\r\n\r\n"},
		{"GET", "/chunked", "HTTP/1.0", []string{"Connection: close"}, "hello"},
		{"HEAD", "/head", "HTTP/1.1", []string{"Content-Length: 1234"}, ""},
		{"GET", "/304", "HTTP/1.1", []string{"304 Not Modified", "Etag: \"x\""}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+tt.path+tt.proto, func(t *testing.T) {
			got := exchange(t, p.addr, fmt.Sprintf("%s http://o.test%s %s\r\nConnection: close\r\n\r\n", tt.method, tt.path, tt.proto), 5*time.Second)
			head, body, ok := strings.Cut(got, "\r\n\r\n")
			if !ok {
				t.Fatalf("no header end in %q", got)
			}
			for _, w := range tt.want {
				if !strings.Contains(head, w) {
					t.Errorf("header %q lacks %q", head, w)
				}
			}
			if body != tt.body {
				t.Errorf("body %q, want %q", body, tt.body)
			}
		})
	}
}

// TestForwardErrors: every refusal is an HTTP answer with a body that says why, and the
// connection closes.
func TestForwardErrors(t *testing.T) {
	origin := startRawOrigin(t, func(c net.Conn) { io.Copy(io.Discard, c) }) // never answers
	slow := func(c *Config) { c.ResponseTimeout = 200 * time.Millisecond; c.MaxHeaderBytes = 4 << 10 }
	p := startProxy(t, map[string]string{"silent.test:80": origin.addr}, slow)
	timeout := startProxy(t, nil, func(c *Config) {
		c.Dial = func(ctx context.Context, _ string, _ uint16) (net.Conn, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		c.DialTimeout = 100 * time.Millisecond
	})
	tests := []struct {
		name, addr, req string
		status          string
		body            string
	}{
		{"origin form", p.addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", "400", "not a proxy request"},
		{"https absolute", p.addr, "GET https://x.test/ HTTP/1.1\r\n\r\n", "400", "CONNECT"},
		{"ftp", p.addr, "GET ftp://x.test/ HTTP/1.1\r\n\r\n", "400", "scheme"},
		{"CL and TE", p.addr, "POST http://x.test/ HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n", "400", "both Content-Length and Transfer-Encoding"},
		{"two lengths", p.addr, "POST http://x.test/ HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n", "400", "Content-Length"},
		{"TE gzip", p.addr, "POST http://x.test/ HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "400", "Transfer-Encoding"},
		{"obs-fold", p.addr, "GET http://x.test/ HTTP/1.1\r\nX-A: 1\r\n continued\r\n\r\n", "400", "folding"},
		{"space before colon", p.addr, "GET http://x.test/ HTTP/1.1\r\nHost : x\r\n\r\n", "400", "malformed header"},
		{"TE on 1.0", p.addr, "POST http://x.test/ HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", "400", "HTTP/1.0"},
		{"header too large", p.addr, "GET http://x.test/ HTTP/1.1\r\nX-Big: " + strings.Repeat("a", 8<<10) + "\r\n\r\n", "431", "too large"},
		{"no such host", p.addr, "GET http://nosuch.test/ HTTP/1.1\r\n\r\n", "502", "no such host"},
		{"origin silent", p.addr, "GET http://silent.test/ HTTP/1.1\r\n\r\n", "504", "no response header in time"},
		{"dial timeout", timeout.addr, "GET http://x.test/ HTTP/1.1\r\n\r\n", "504", "deadline exceeded"},
		{"garbage", p.addr, "\x16\x03\x01 nonsense\r\n\r\n", "400", "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := exchange(t, tt.addr, tt.req, 5*time.Second)
			if !strings.HasPrefix(got, "HTTP/1.1 "+tt.status+" ") || !strings.Contains(got, tt.body) || !strings.Contains(got, "Connection: close") {
				t.Errorf("got %q, want status %s and a body with %q", got, tt.status, tt.body)
			}
		})
	}
}

type creds map[string]string

func (c creds) Check(u, p string) bool { return c[u] == p && p != "" }

// TestForwardAuth: 407 with a Basic challenge without valid credentials; with them, the
// request goes through and the credentials do not.
func TestForwardAuth(t *testing.T) {
	seen := make(chan string, 1)
	origin := startRawOrigin(t, func(c net.Conn) {
		hdr, _ := readHeader(bufio.NewReader(c), 1<<16)
		seen <- string(hdr)
		io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
	})
	p := startProxy(t, map[string]string{"a.test:80": origin.addr}, func(c *Config) {
		c.Auth = func() Checker { return creds{"alice": "s3cret"} }
	})
	for _, hdr := range []string{"", "Proxy-Authorization: Basic YWxpY2U6d3Jvbmc=\r\n", "Proxy-Authorization: Bearer x\r\n"} {
		got := exchange(t, p.addr, "GET http://a.test/ HTTP/1.1\r\n"+hdr+"\r\n", 5*time.Second)
		if !strings.HasPrefix(got, "HTTP/1.1 407 ") || !strings.Contains(got, `Proxy-Authenticate: Basic realm="nat464"`) {
			t.Errorf("with %q: got %q, want 407 and a Basic challenge", hdr, got)
		}
	}
	got := exchange(t, p.addr, "GET http://a.test/ HTTP/1.1\r\nProxy-Authorization: Basic YWxpY2U6czNjcmV0\r\nConnection: close\r\n\r\n", 5*time.Second)
	if !strings.HasPrefix(got, "HTTP/1.1 204 ") {
		t.Fatalf("good credentials: got %q", got)
	}
	if req := <-seen; strings.Contains(req, "Proxy-Authorization") {
		t.Errorf("credentials forwarded to the origin: %q", req)
	}
}

// TestForwardRetriesClosedKeepAlive: an origin that closed a kept connection gets the next
// request (no body) on a fresh one.
func TestForwardRetriesClosedKeepAlive(t *testing.T) {
	origin := startRawOrigin(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") // then closes: keep-alive lost
	})
	p := startProxy(t, map[string]string{"a.test:80": origin.addr}, nil)
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	for i := range 3 {
		io.WriteString(c, "GET http://a.test/ HTTP/1.1\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(b) != "ok" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, b)
		}
		time.Sleep(20 * time.Millisecond) // let the origin's close arrive before the next request
	}
	if n := origin.accepts.Load(); n != 3 {
		t.Errorf("%d origin connections, want 3", n)
	}
}

// TestForwardConnectOnForwardingConn: a client that reuses its proxy connection for CONNECT
// gets a tunnel.
func TestForwardConnectOnForwardingConn(t *testing.T) {
	origin := startRawOrigin(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		if req.URL.Path == "/first" {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nfirst")
			return
		}
		io.Copy(c, br) // the tunnel: echo
	})
	p := startProxy(t, map[string]string{"a.test:80": origin.addr, "a.test:443": origin.addr}, nil)
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	io.WriteString(c, "GET http://a.test/first HTTP/1.1\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	io.WriteString(c, "CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\nGET /tunnel HTTP/1.1\r\n\r\nping")
	resp, err = http.ReadResponse(br, &http.Request{Method: "CONNECT"})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	c.(*net.TCPConn).CloseWrite()
	rest, _ := io.ReadAll(br)
	if string(rest) != "ping" {
		t.Errorf("tunnel echoed %q, want ping", rest)
	}
}

// TestForwardClientsVanish: 200 clients that hang up mid-body or mid-response (some with RST)
// leave no goroutine (TestMain's goleak), no connection and no gauge behind.
func TestForwardClientsVanish(t *testing.T) {
	origin := startRawOrigin(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", 1<<20)
			c.Write(make([]byte, 1<<20))
		}
	})
	p := startProxy(t, map[string]string{"a.test:80": origin.addr}, nil)
	done := make(chan struct{})
	for i := range 200 {
		go func() {
			defer func() { done <- struct{}{} }()
			c, err := net.Dial("tcp", p.addr)
			if err != nil {
				return
			}
			if i%2 == 0 {
				c.(*net.TCPConn).SetLinger(0)
			}
			if i%4 < 2 { // hang up while sending the body
				io.WriteString(c, "POST http://a.test/ HTTP/1.1\r\nContent-Length: 100000\r\n\r\n")
				c.Write(make([]byte, 5000))
			} else { // hang up while the response streams
				io.WriteString(c, "GET http://a.test/ HTTP/1.1\r\n\r\n")
				c.Read(make([]byte, 1000))
			}
			c.Close()
		}()
	}
	for range 200 {
		<-done
	}
	deadline := time.Now().Add(20 * time.Second) // generous: 200 MiB of answers may be in flight on a loaded machine
	for p.srv.Active() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := p.srv.Active(); n != 0 {
		pprof.Lookup("goroutine").WriteTo(os.Stderr, 1) // where the exchange is stuck
		t.Fatalf("%d connections still served after every client left", n)
	}
}

// TestForwardShutdown: an idle kept-alive connection is closed at once; a busy one finishes
// its answer with Connection: close.
func TestForwardShutdown(t *testing.T) {
	release := make(chan struct{})
	origin := startRawOrigin(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if req.URL.Path == "/slow" {
				<-release
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	p := startProxy(t, map[string]string{"a.test:80": origin.addr}, nil)
	idle, _ := net.Dial("tcp", p.addr)
	defer idle.Close()
	idle.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(idle, "GET http://a.test/ HTTP/1.1\r\n\r\n")
	ibr := bufio.NewReader(idle)
	if resp, err := http.ReadResponse(ibr, nil); err != nil || resp.Close {
		t.Fatalf("idle conn's first answer: %v %v", resp, err)
	} else {
		io.ReadAll(resp.Body)
	}
	busy, _ := net.Dial("tcp", p.addr)
	defer busy.Close()
	busy.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(busy, "GET http://a.test/slow HTTP/1.1\r\n\r\n")
	for p.srv.Active() < 2 {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // the busy request reaches the origin
	shut := make(chan error, 1)
	go func() { shut <- p.srv.Shutdown(context.Background()) }()
	if _, err := ibr.ReadByte(); err == nil {
		t.Error("the idle connection was not closed by Shutdown")
	}
	close(release)
	resp, err := http.ReadResponse(bufio.NewReader(busy), nil)
	if err != nil || !resp.Close {
		t.Fatalf("busy conn: %v %v, want its answer with Connection: close", resp, err)
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
}

// TestForwardExpectContinue: a client that waits for 100 Continue before its body gets the
// origin's 100 passed on, then its body through, then the final answer.
func TestForwardExpectContinue(t *testing.T) {
	origin := startRawOrigin(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		hdr, err := readHeader(br, 1<<16)
		if err != nil || !strings.Contains(string(hdr), "Expect: 100-continue") {
			return
		}
		br.Discard(len(hdr))
		io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\n")
		body := make([]byte, 5)
		if _, err := io.ReadFull(br, body); err != nil {
			return
		}
		fmt.Fprintf(c, "HTTP/1.1 201 Created\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	})
	p := startProxy(t, map[string]string{"a.test:80": origin.addr}, nil)
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "PUT http://a.test/x HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("first answer %q (%v), want 100 Continue before any body byte was sent", line, err)
	}
	for line != "\r\n" {
		if line, err = br.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	io.WriteString(c, "hello")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 201 || string(b) != "hello" {
		t.Errorf("final answer %d %q", resp.StatusCode, b)
	}
}
