//go:build linux

package splice

import (
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

// socketAndPipeFDs counts this process's open sockets and pipes.
func socketAndPipeFDs(t testing.TB) (sockets, pipes int) {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		l, _ := os.Readlink("/proc/self/fd/" + e.Name())
		switch {
		case strings.HasPrefix(l, "socket:"):
			sockets++
		case strings.HasPrefix(l, "pipe:"):
			pipes++
		}
	}
	return sockets, pipes
}

// TestIdleFlowFDs holds idle flows (each has moved a byte both ways first) and counts fds: the
// splice engine must hold exactly 2 per flow, plus its pipe pool, which does not grow with flows.
func TestIdleFlowFDs(t *testing.T) {
	for _, eng := range engines(t) {
		t.Run(eng.name, func(t *testing.T) {
			checkLeaks(t)
			flows := 1000
			if eng.name != "splice" {
				flows = 200 // reported only
			}
			r := newRig(t)
			res := newResults(flows)
			e := eng.new(t, Options{MaxPipes: 8})
			sock0, pipes0 := socketAndPipeFDs(t)
			all := make([]conns, 0, flows)
			defer func() {
				for _, c := range all {
					c.close()
				}
			}()
			one := make([]byte, 1)
			for i := 0; i < flows; i++ {
				f, c := r.flow(eng.fds && i%2 == 0)
				all = append(all, c)
				f.Owner = res
				if err := e.Relay(f); err != nil {
					t.Fatal(err)
				}
				c.client.Write([]byte{'u'})
				c.server.Write([]byte{'d'})
				if _, err := io.ReadFull(c.server, one); err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadFull(c.client, one); err != nil {
					t.Fatal(err)
				}
			}
			sock1, pipes1 := socketAndPipeFDs(t)
			engineSockets := sock1 - sock0 - 2*flows // minus the test's client and server ends
			perFlow := float64(engineSockets+pipes1-pipes0) / float64(flows)
			t.Logf("%s: %d idle flows: engine holds %d sockets and %d pipe fds (%.2f fds per flow)",
				eng.name, flows, engineSockets, pipes1-pipes0, perFlow)
			if s, ok := e.(*SpliceEngine); ok {
				if engineSockets != 2*flows {
					t.Errorf("engine holds %d sockets for %d flows, want exactly 2 per flow", engineSockets, flows)
				}
				// A pipe is released in the same loop turn that empties it; wait for that turn.
				st := s.Stats()
				for deadline := time.Now().Add(2 * time.Second); st.PipesInUse > 0 && time.Now().Before(deadline); {
					time.Sleep(time.Millisecond)
					st = s.Stats()
				}
				if st.PipesInUse != 0 {
					t.Errorf("%d pipes still lent while every flow is idle", st.PipesInUse)
				}
				if got := pipes1 - pipes0; got != 2*(st.PipesInUse+st.PipesPooled) || st.PipesPooled > 8 {
					t.Errorf("%d pipe fds for %+v", got, st)
				}
				t.Logf("stats: %+v", st)
			}
			for _, c := range all {
				c.client.CloseWrite()
				c.server.CloseWrite()
			}
			for i := 0; i < flows; i++ {
				if got := res.wait(t); got.Err != nil || got.Up != 1 || got.Down != 1 {
					t.Errorf("flow: up %d down %d err %v", got.Up, got.Down, got.Err)
				}
			}
		})
	}
}
