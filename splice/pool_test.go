package splice

import (
	"testing"
	"time"
)

// waitStats polls a splice engine's Stats until cond holds (state observation, bounded).
func waitStats(t *testing.T, e Engine, what string, cond func(Stats) bool) {
	t.Helper()
	s, ok := e.(*SpliceEngine)
	if !ok {
		return
	}
	for deadline := time.Now().Add(5 * time.Second); !cond(s.Stats()); {
		if time.Now().After(deadline) {
			t.Fatalf("never saw %s: %+v", what, s.Stats())
		}
		time.Sleep(time.Millisecond)
	}
}

// waitQueued reports true once a direction waits for a pipe, false if b's message got through
// first. The goroutine engine has no pool: its bytes always get through.
func waitQueued(t *testing.T, e Engine, bgot <-chan int, delivered *int) bool {
	t.Helper()
	s, ok := e.(*SpliceEngine)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		if ok && s.Stats().PipeWaiters == 1 {
			return true
		}
		select {
		case n := <-bgot:
			*delivered += n
			return !ok
		case <-time.After(time.Millisecond):
		}
	}
	t.Fatal("b's message neither queued nor delivered")
	return false
}

// TestRelayPoolExhausted: with a pool of one pipe, a backpressured direction keeps the pipe (its
// bytes stay in it) and another flow's direction queues until it is released; nothing is lost.
func TestRelayPoolExhausted(t *testing.T) {
	const size = 8 << 20
	want := streamSum(21, size)
	for _, eng := range engines(t) {
		t.Run(eng.name, func(t *testing.T) {
			checkLeaks(t)
			r := newRig(t)
			res := newResults(2)
			e := eng.new(t, Options{MaxPipes: 1})
			fa, a := r.flow(true)
			defer a.close()
			fb, b := r.flow(true)
			defer b.close()
			fa.Done, fb.Done = res.done, res.done
			if err := e.Relay(fa); err != nil {
				t.Fatal(err)
			}
			if err := e.Relay(fb); err != nil {
				t.Fatal(err)
			}
			sent := make(chan error, 1)
			go func() { sent <- sendStream(a.server, 21, size); a.server.CloseWrite() }()
			// a's client does not read yet: its direction fills the sockets and keeps the pipe.
			waitStats(t, e, "the pipe lent", func(s Stats) bool { return s.PipesInUse == 1 })
			// b's bytes need the pipe. Until a is really stuck, b may still get the pipe between
			// two of a's rounds; then b's server sees its message and b tries again.
			bgot := make(chan int, 64)
			go func() {
				buf := make([]byte, 64)
				for {
					n, err := b.server.Read(buf)
					if err != nil {
						close(bgot)
						return
					}
					bgot <- n
				}
			}()
			sentB, gotB, queued := 0, 0, false
			for try := 0; try < 100 && !queued; try++ {
				if _, err := b.client.Write([]byte("hello")); err != nil {
					t.Fatal(err)
				}
				sentB += 5
				queued = waitQueued(t, e, bgot, &gotB)
			}
			if !queued {
				t.Fatal("b never had to queue for the pipe")
			}
			if sum, n, err := readSum(a.client); err != nil || n != size || sum != want {
				t.Fatalf("a: got %d bytes, err %v, hash match %v", n, err, sum == want)
			}
			if err := <-sent; err != nil {
				t.Fatal(err)
			}
			a.client.CloseWrite()
			b.client.CloseWrite()
			b.server.CloseWrite()
			for n := range bgot {
				gotB += n
			}
			if gotB != sentB {
				t.Errorf("b's server got %d bytes, want %d", gotB, sentB)
			}
			for i := 0; i < 2; i++ {
				if r := res.wait(t); r.Err != nil {
					t.Errorf("flow err %v", r.Err)
				}
			}
			if s, ok := e.(*SpliceEngine); ok {
				if st := s.Stats(); st.PipeWaits == 0 || st.PipesInUse+st.PipesPooled > 1 {
					t.Errorf("stats %+v: want a wait and never more than 1 pipe", st)
				}
			}
		})
	}
}
