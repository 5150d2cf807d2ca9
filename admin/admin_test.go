package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func get(t *testing.T, h http.Handler, path string) (int, readiness) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	var body readiness
	if rec.Code != http.StatusNotFound {
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("%s: body %q: %v", path, rec.Body, err)
		}
	}
	return rec.Code, body
}

func TestProbes(t *testing.T) {
	var failing atomic.Bool
	var runs atomic.Int32
	s := &Server{
		Live: []Check{{Name: "loops", Fn: func(context.Context) error { return nil }}},
		Ready: []Check{{Name: "target 127.0.0.1:80", Fn: func(context.Context) error {
			runs.Add(1)
			if failing.Load() {
				return errors.New("connection refused")
			}
			return nil
		}}},
		ReadyCacheTTL: time.Hour,
		Info:          func() map[string]any { return map[string]any{"nat64_prefixes": []string{"64:ff9b::/96"}} },
	}
	h := s.Handler()
	if code, body := get(t, h, PathStartupz); code != http.StatusServiceUnavailable || body.Status != "fail" {
		t.Errorf("startupz before start: %d %+v", code, body)
	}
	if code, _ := get(t, h, PathReadyz); code != http.StatusServiceUnavailable {
		t.Errorf("readyz before start: %d", code)
	}
	s.SetStarted()
	for _, p := range []string{PathLivez, PathHealthz, PathStartupz} {
		if code, _ := get(t, h, p); code != http.StatusOK {
			t.Errorf("%s: %d", p, code)
		}
	}
	code, body := get(t, h, PathReadyz)
	if code != http.StatusOK || body.Info["nat64_prefixes"] == nil {
		t.Errorf("readyz: %d %+v", code, body)
	}
	// Cached: a second probe runs no check.
	failing.Store(true)
	if code, _ := get(t, h, PathReadyz); code != http.StatusOK || runs.Load() != 1 {
		t.Errorf("readyz within the cache TTL: %d, checks run %d times", code, runs.Load())
	}
	s.ReadyCacheTTL = time.Nanosecond
	code, body = get(t, h, PathReadyz)
	if code != http.StatusServiceUnavailable || body.Checks["target 127.0.0.1:80"] != "connection refused" {
		t.Errorf("readyz with a failing check: %d %+v", code, body)
	}
	failing.Store(false)
	s.SetDraining()
	if code, body := get(t, h, PathReadyz); code != http.StatusServiceUnavailable || body.Checks["shutdown"] != "draining" {
		t.Errorf("readyz while draining: %d %+v", code, body)
	}
	if code, _ := get(t, h, PathLivez); code != http.StatusOK {
		t.Errorf("livez while draining: %d, want 200 (draining is not dead)", code)
	}
	if code, _ := get(t, h, PathPprof+"cmdline"); code != http.StatusNotFound {
		t.Errorf("pprof without Pprof: %d", code)
	}
	if code, _ := get(t, h, PathMetrics); code != http.StatusNotFound {
		t.Errorf("metrics without a Gatherer: %d", code)
	}
}

// A check that hangs is cut at CheckTimeout and reported.
func TestCheckTimeout(t *testing.T) {
	s := &Server{CheckTimeout: 20 * time.Millisecond,
		Live: []Check{{Name: "stuck", Fn: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }}}}
	code, body := get(t, s.Handler(), PathLivez)
	if code != http.StatusServiceUnavailable || body.Checks["stuck"] != context.DeadlineExceeded.Error() {
		t.Errorf("livez with a stuck check: %d %+v", code, body)
	}
}

func TestTCPCheck(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.Listener.Addr().String()
	c := TCPCheck("app", addr)
	if err := c.Fn(t.Context()); err != nil {
		t.Errorf("open port: %v", err)
	}
	srv.Close()
	if err := c.Fn(t.Context()); err == nil {
		t.Error("closed port reported ready")
	}
}

func TestClientsEndpoint(t *testing.T) {
	s := &Server{}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, PathClients, nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("/clients without tables: %d, want 404", rec.Code)
	}
	s.Clients = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{"clients":[]}`)) })
	rec = httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, PathClients, nil))
	if rec.Code != http.StatusOK || rec.Body.String() != `{"clients":[]}` {
		t.Errorf("/clients: %d %q", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, PathClients, nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /clients: %d", rec.Code)
	}
}

func TestTCPCheckHello(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		got <- string(b)
	}()
	if err := TCPCheckHello("app", ln.Addr().String(), []byte("PROXY UNKNOWN\r\n")).Fn(t.Context()); err != nil {
		t.Fatal(err)
	}
	if s := <-got; s != "PROXY UNKNOWN\r\n" {
		t.Errorf("the app read %q", s)
	}
}
