// Package admin serves the sidecar's operational HTTP endpoints on their own mux: Kubernetes
// probes (/livez and its alias /healthz, /readyz, /startupz), Prometheus /metrics and, on request,
// /debug/pprof. It is never in the data path.
package admin

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The endpoint paths are part of the product's interface (manifests probe them).
const (
	PathLivez    = "/livez"
	PathHealthz  = "/healthz"
	PathReadyz   = "/readyz"
	PathStartupz = "/startupz"
	PathMetrics  = "/metrics"
	PathPprof    = "/debug/pprof/"
	// PathClients maps --inbound-source loopback addresses back to the clients (Server.Clients).
	PathClients = "/clients"
)

// Check is one named probe condition; Fn returns nil when it holds.
type Check struct {
	Name string
	Fn   func(ctx context.Context) error
}

// Server is the admin HTTP server. Fill the fields, then Start. Zero values get the defaults
// their comments name.
type Server struct {
	// Addr to listen on, e.g. "[::]:9464".
	Addr string
	// Live checks answer /livez: the process and its event loops respond.
	Live []Check
	// Ready checks answer /readyz; their results are cached for ReadyCacheTTL.
	Ready []Check
	// ReadyCacheTTL bounds how often Ready checks run; if zero, 1s.
	ReadyCacheTTL time.Duration
	// CheckTimeout bounds each check; if zero, 800ms.
	CheckTimeout time.Duration
	// Info, if non-nil, adds facts (such as the NAT64 prefix in use) to the /readyz and
	// /startupz bodies.
	Info func() map[string]any
	// Gatherer serves /metrics; if nil, /metrics is not served.
	Gatherer prometheus.Gatherer
	// Pprof serves /debug/pprof when true.
	Pprof bool
	// Clients, if non-nil, serves GET /clients (the --inbound-source tables, clients.Handler).
	Clients http.Handler
	// MaxConns bounds the connections served at once; over it, new ones are closed at once. If
	// zero, DefaultMaxConns.
	MaxConns int
	// Rejects, if non-nil, counts the connections closed over MaxConns (see NewRejects).
	Rejects prometheus.Counter
	// Probes, if non-nil, records the /readyz answers and the drain (see NewProbeMetrics).
	Probes *ProbeMetrics

	started  atomic.Bool
	draining atomic.Bool

	mu        sync.Mutex
	readyAt   time.Time
	readyBody readiness

	srv *http.Server
	ln  net.Listener
}

type readiness struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks"`
	Info   map[string]any    `json:"info,omitempty"`
}

func (s *Server) readyCacheTTL() time.Duration {
	if s.ReadyCacheTTL > 0 {
		return s.ReadyCacheTTL
	}
	return time.Second
}

func (s *Server) checkTimeout() time.Duration {
	if s.CheckTimeout > 0 {
		return s.CheckTimeout
	}
	return 800 * time.Millisecond
}

// SetStarted marks start-up finished: /startupz answers 200 from now on.
func (s *Server) SetStarted() { s.started.Store(true) }

// SetDraining makes /readyz fail at once, for the whole shutdown.
func (s *Server) SetDraining() {
	s.draining.Store(true)
	s.Probes.setDraining()
}

// Handler returns the admin mux.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	live := func(w http.ResponseWriter, r *http.Request) { s.serveChecks(w, r, s.runChecks(r.Context(), s.Live)) }
	mux.HandleFunc("GET "+PathLivez, live)
	mux.HandleFunc("GET "+PathHealthz, live)
	mux.HandleFunc("GET "+PathReadyz, s.serveReady)
	mux.HandleFunc("GET "+PathStartupz, s.serveStartup)
	if s.Gatherer != nil {
		mux.Handle("GET "+PathMetrics, promhttp.HandlerFor(s.Gatherer, promhttp.HandlerOpts{}))
	}
	if s.Clients != nil {
		mux.Handle("GET "+PathClients, s.Clients)
	}
	if s.Pprof {
		mux.HandleFunc(PathPprof, pprof.Index)
		mux.HandleFunc(PathPprof+"cmdline", pprof.Cmdline)
		mux.HandleFunc(PathPprof+"profile", pprof.Profile)
		mux.HandleFunc(PathPprof+"symbol", pprof.Symbol)
		mux.HandleFunc(PathPprof+"trace", pprof.Trace)
	}
	return mux
}

// Start binds Addr and serves in the background. It returns the bound address.
func (s *Server) Start() (net.Addr, error) {
	ln, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return nil, err
	}
	var over func()
	if s.Rejects != nil {
		over = s.Rejects.Inc
	}
	s.ln = newGuardedListener(ln, cmp.Or(s.MaxConns, DefaultMaxConns), over)
	s.srv = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      70 * time.Second, // a CPU profile may take 60s
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
	go func() { _ = s.srv.Serve(s.ln) }()
	return ln.Addr(), nil
}

// Shutdown stops the server, waiting for requests in flight until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.srv == nil {
		return nil
	}
	err := s.srv.Shutdown(ctx)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

func (s *Server) runChecks(ctx context.Context, checks []Check) readiness {
	res := readiness{Status: "ok", Checks: make(map[string]string, len(checks))}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, c := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, s.checkTimeout())
			defer cancel()
			msg := "ok"
			if err := c.Fn(cctx); err != nil {
				msg = err.Error()
			}
			mu.Lock()
			res.Checks[c.Name] = msg
			if msg != "ok" {
				res.Status = "fail"
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return res
}

func (s *Server) serveReady(w http.ResponseWriter, r *http.Request) {
	var res readiness
	switch {
	case s.draining.Load():
		res = readiness{Status: "fail", Checks: map[string]string{"shutdown": "draining"}}
	case !s.started.Load():
		res = readiness{Status: "fail", Checks: map[string]string{"startup": "not finished"}}
	default:
		res = s.cachedReady(r.Context())
	}
	s.Probes.answered(res.Status == "ok")
	s.serveChecks(w, r, res)
}

// cachedReady runs the Ready checks at most once per ReadyCacheTTL; concurrent probes share a run.
func (s *Server) cachedReady(ctx context.Context) readiness {
	s.mu.Lock()
	defer s.mu.Unlock()
	if time.Since(s.readyAt) < s.readyCacheTTL() && s.readyBody.Status != "" {
		return s.readyBody
	}
	s.readyBody = s.runChecks(ctx, s.Ready)
	s.readyAt = time.Now()
	return s.readyBody
}

func (s *Server) serveStartup(w http.ResponseWriter, r *http.Request) {
	res := readiness{Status: "ok", Checks: map[string]string{"startup": "ok"}}
	if !s.started.Load() {
		res = readiness{Status: "fail", Checks: map[string]string{"startup": "not finished"}}
	}
	s.serveChecks(w, r, res)
}

func (s *Server) serveChecks(w http.ResponseWriter, _ *http.Request, res readiness) {
	if s.Info != nil {
		res.Info = s.Info()
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if res.Status != "ok" {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(res)
}

// TCPCheck returns a check that holds when addr accepts a TCP connection.
func TCPCheck(name, addr string) Check { return TCPCheckHello(name, addr, nil) }

// TCPCheckHello is TCPCheck that writes hello before it closes: the PROXY protocol header of a
// health check, for an app that expects one on every connection.
func TCPCheckHello(name, addr string, hello []byte) Check {
	return Check{Name: name, Fn: func(ctx context.Context) error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		if len(hello) > 0 {
			if dl, ok := ctx.Deadline(); ok {
				_ = c.SetWriteDeadline(dl)
			}
			if _, err := c.Write(hello); err != nil {
				c.Close()
				return err
			}
		}
		return c.Close()
	}}
}

// NewRejects returns the counter of admin connections closed over Server.MaxConns, registered
// with reg if non-nil.
func NewRejects(reg prometheus.Registerer) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: "nat464", Subsystem: "admin", Name: "rejects_total",
		Help: "Admin connections closed at once because MaxConns were open."})
	if reg != nil {
		reg.MustRegister(c)
	}
	return c
}
