package resolver

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/nat464/nat464-sidecar/resolver/dnstest"
)

// A nameserver that never answers: each family's error names the server and its transport,
// the name and type asked and the tries made, wraps ErrTimeout, and comes after about
// timeout × attempts (the bound is generous: only that it is not much more is asserted).
func TestNoAnswerNamesServerAndName(t *testing.T) {
	leakCheck(t)
	const timeout, attempts = 100 * time.Millisecond, 2
	e := newEnv(t, func(c *Config) { c.Timeout, c.Attempts = timeout, attempts })
	e.srv.Set("api.example.com", 0, dnstest.Behavior{Drop: true})
	start := time.Now()
	v6, v4 := lookup(t, e.res, "api.example.com.")
	if elapsed, limit := time.Since(start), timeout*attempts+2*time.Second; elapsed > limit {
		t.Errorf("took %v, want at most timeout×attempts plus slack (%v)", elapsed, limit)
	}
	srv := e.srv.Addr().String() + " (udp)"
	for _, a := range []Answer{v6, v4} {
		var na *NoAnswerError
		if !errors.As(a.Err, &na) || !errors.Is(a.Err, ErrTimeout) || errors.Is(a.Err, context.DeadlineExceeded) {
			t.Fatalf("IPv%d error %v (%T), want a *NoAnswerError wrapping ErrTimeout only", a.Family, a.Err, a.Err)
		}
		qtype := map[int]string{6: "AAAA", 4: "A"}[a.Family]
		want := "resolver: no answer from " + srv + " for api.example.com. " + qtype + " within 200ms (2 tries of 100ms)"
		if a.Err.Error() != want {
			t.Errorf("IPv%d error\n got %q\nwant %q", a.Family, a.Err, want)
		}
	}
	joined := Join(v6.Err, v4.Err)
	if want := "resolver: no answer from " + srv + " for api.example.com. AAAA/A within 200ms (2 tries of 100ms)"; joined.Error() != want {
		t.Errorf("Join\n got %q\nwant %q", joined, want)
	}
	if n := e.srv.Count("api.example.com", dns.TypeA, "udp"); n != attempts {
		t.Errorf("%d A tries, want %d", n, attempts)
	}
}

// Every silent server is named, in the order asked.
func TestNoAnswerNamesEveryServer(t *testing.T) {
	leakCheck(t)
	other := dnstest.StartAt(t, "::1")
	e := newEnv(t, func(c *Config) {
		c.Timeout, c.Attempts = 50*time.Millisecond, 1
		c.Servers = append(c.Servers, other.Addr())
	})
	for _, s := range []*dnstest.Server{e.srv, other} {
		s.Set("api.example.com", 0, dnstest.Behavior{Drop: true})
	}
	_, v4 := lookup(t, e.res, "api.example.com.")
	want := "resolver: no answer from " + e.srv.Addr().String() + " (udp), " + other.Addr().String() +
		" (udp) for api.example.com. A within 100ms (2 tries of 50ms)"
	if v4.Err == nil || v4.Err.Error() != want {
		t.Errorf("error\n got %v\nwant %s", v4.Err, want)
	}
}

// When one server replies (SERVFAIL) and the other is silent, the servers did not all fail to
// answer: the error is the last try's, not a NoAnswerError.
func TestNoAnswerOnlyWhenAllSilent(t *testing.T) {
	leakCheck(t)
	silent := dnstest.Start(t)
	silent.Set("api.example.com", 0, dnstest.Behavior{Drop: true})
	e := newEnv(t, func(c *Config) {
		c.Timeout, c.Attempts = 50*time.Millisecond, 1
		c.Servers = append(c.Servers, silent.Addr())
	})
	e.srv.Set("api.example.com", 0, dnstest.Behavior{Rcode: dns.RcodeServerFailure})
	_, v4 := lookup(t, e.res, "api.example.com.")
	var na *NoAnswerError
	if errors.As(v4.Err, &na) || !errors.Is(v4.Err, ErrTimeout) {
		t.Errorf("error %v, want the last try's timeout, not a NoAnswerError", v4.Err)
	}
}

// The lookup's deadline before the resolver's own bound: the error says which servers it was
// waiting for and wraps both ErrTimeout and context.DeadlineExceeded.
func TestNoAnswerAtTheDeadline(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, func(c *Config) { c.Timeout, c.Attempts = 5*time.Second, 2 })
	e.srv.Set("api.example.com", 0, dnstest.Behavior{Drop: true})
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	as := collect(t, e.res.Lookup(ctx, "api.example.com."))
	for _, a := range as {
		var na *NoAnswerError
		if !errors.As(a.Err, &na) || !errors.Is(a.Err, ErrTimeout) || !errors.Is(a.Err, context.DeadlineExceeded) {
			t.Fatalf("error %v (%T), want a *NoAnswerError wrapping ErrTimeout and the deadline", a.Err, a.Err)
		}
		if na.Tries != 0 || na.Waited <= 0 || !strings.Contains(a.Err.Error(), "for api.example.com. ") ||
			!strings.Contains(a.Err.Error(), e.srv.Addr().String()+" (udp)") ||
			!strings.HasSuffix(a.Err.Error(), "(the lookup's deadline)") {
			t.Errorf("error %q, want the server, the name and the deadline", a.Err)
		}
	}
	if j := Join(as[0].Err, as[1].Err); !strings.Contains(j.Error(), " AAAA/A within ") &&
		!strings.Contains(j.Error(), " A/AAAA within ") {
		t.Errorf("Join = %q, want both types in one error", j)
	}
}

func TestJoin(t *testing.T) {
	a := &NoAnswerError{Name: "x.", Types: []string{"AAAA"}, Servers: []string{"s (udp)"}, Tries: 1, PerTry: time.Second}
	b := &NoAnswerError{Name: "x.", Types: []string{"A"}, Servers: []string{"s (udp)"}, Tries: 1, PerTry: time.Second}
	c := &NoAnswerError{Name: "y.", Types: []string{"A"}, Servers: []string{"s (udp)"}, Tries: 1, PerTry: time.Second}
	if Join() != nil || Join(nil, nil) != nil {
		t.Error("Join of nothing is not nil")
	}
	if got := Join(nil, ErrNoData); got != ErrNoData {
		t.Errorf("Join(nil, ErrNoData) = %v", got)
	}
	got := Join(a, ErrNoData, b, c)
	want := "resolver: no answer from s (udp) for x. AAAA/A within 1s (1 try of 1s); " + ErrNoData.Error() +
		"; resolver: no answer from s (udp) for y. A within 1s (1 try of 1s)"
	if got.Error() != want {
		t.Errorf("Join\n got %q\nwant %q", got, want)
	}
	if !errors.Is(got, ErrNoData) || !errors.Is(got, ErrTimeout) {
		t.Errorf("Join hides its parts: %v", got)
	}
	if len(a.Types) != 1 {
		t.Errorf("Join changed its argument: %v", a.Types)
	}
}
