package forward

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

// BenchmarkForwardKeepAlive is one kept-alive client forwarding small GETs to one origin: the
// forwarder's per-request cost (parse, rewrite, two writes, one read each way) on loopback.
// BenchmarkDirectKeepAlive is the same client without the proxy, for the ratio.
func BenchmarkForwardKeepAlive(b *testing.B) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer origin.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	srv := New(Config{Dial: func(ctx context.Context, host string, port uint16) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", origin.Listener.Addr().String())
	}})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go srv.Serve(c, nil)
		}
	}()
	cl := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: ln.Addr().String()})}}
	defer cl.CloseIdleConnections()
	benchGet(b, cl, "http://o.test/")
}

func BenchmarkDirectKeepAlive(b *testing.B) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer origin.Close()
	cl := &http.Client{Transport: &http.Transport{}}
	defer cl.CloseIdleConnections()
	benchGet(b, cl, origin.URL)
}

func benchGet(b *testing.B, cl *http.Client, u string) {
	b.ReportAllocs()
	for b.Loop() {
		resp, err := cl.Get(u)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}
