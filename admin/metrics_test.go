package admin

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestProbeMetrics: the ready gauge follows the /readyz answers, every flip between 200 and 503
// is counted once, repeated answers are not, and SIGTERM's drain shows.
func TestProbeMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewProbeMetrics(reg)
	var failing atomic.Bool
	s := &Server{Probes: m, ReadyCacheTTL: time.Nanosecond,
		Ready: []Check{{Name: "app", Fn: func(context.Context) error {
			if failing.Load() {
				return errors.New("connection refused")
			}
			return nil
		}}}}
	h := s.Handler()
	want := func(step string, ready, changes, draining float64) {
		t.Helper()
		if got := testutil.ToFloat64(m.ready); got != ready {
			t.Errorf("%s: nat464_admin_ready %v, want %v", step, got, ready)
		}
		if got := testutil.ToFloat64(m.changes); got != changes {
			t.Errorf("%s: nat464_admin_ready_changes_total %v, want %v", step, got, changes)
		}
		if got := testutil.ToFloat64(m.draining); got != draining {
			t.Errorf("%s: nat464_admin_draining %v, want %v", step, got, draining)
		}
	}
	want("before any probe", 0, 0, 0)
	get(t, h, PathReadyz) // start-up not finished: 503
	want("503 before start", 0, 0, 0)
	s.SetStarted()
	get(t, h, PathReadyz)
	get(t, h, PathReadyz)
	want("200 twice", 1, 1, 0)
	failing.Store(true)
	get(t, h, PathReadyz)
	want("503", 0, 2, 0)
	failing.Store(false)
	get(t, h, PathReadyz)
	want("200 again", 1, 3, 0)
	get(t, h, PathLivez)
	get(t, h, PathStartupz)
	want("other probes", 1, 3, 0)
	s.SetDraining()
	want("draining, before a probe", 1, 3, 1)
	get(t, h, PathReadyz)
	want("draining", 0, 4, 1)
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 3 {
		t.Errorf("registered %d series (%v), want 3", n, err)
	}
	doc, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"nat464_admin_ready", "nat464_admin_ready_changes_total", "nat464_admin_draining"} {
		if !strings.Contains(string(doc), "`"+name+"`") {
			t.Errorf("docs/operations.md does not document %s", name)
		}
	}
	// A Server without ProbeMetrics answers as before.
	(&Server{}).SetDraining()
	get(t, (&Server{}).Handler(), PathReadyz)
}
