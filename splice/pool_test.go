package splice

import (
	"bytes"
	"io"
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

// TestRelayPoolExhausted: with a pool of one pipe, a backpressured direction keeps the pipe (its
// bytes stay in it) while another flow's bytes get through at once, copied through a buffer
// instead of waiting for the pipe; nothing is lost and the buffer is given back.
func TestRelayPoolExhausted(t *testing.T) {
	const size = 8 << 20
	want := streamSum(21, size)
	for _, eng := range engines(t) {
		t.Run(eng.name, func(t *testing.T) {
			checkLeaks(t)
			r := newRig(t)
			res := newResults(2)
			e := eng.new(t, Options{MaxPipes: 1})
			fa, a := r.flow(eng.fds)
			defer a.close()
			fb, b := r.flow(eng.fds)
			defer b.close()
			fa.Owner, fb.Owner = res, res
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
			waitStats(t, e, "a stuck with bytes in its pipe", func(s Stats) bool { return stuck(e, s) })
			// b needs a pipe for each direction while a holds the only one: both copy.
			msg := streamBytes(22, 100<<10)
			go func() { b.client.Write(msg); b.client.CloseWrite() }()
			got, err := io.ReadAll(b.server)
			if err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("b's server got %d of %d bytes (err %v) while a held the pipe", len(got), len(msg), err)
			}
			go func() { b.server.Write(msg); b.server.CloseWrite() }()
			if got, err = io.ReadAll(b.client); err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("b's client got %d of %d bytes (err %v) while a held the pipe", len(got), len(msg), err)
			}
			if sum, n, err := readSum(a.client); err != nil || n != size || sum != want {
				t.Fatalf("a: got %d bytes, err %v, hash match %v", n, err, sum == want)
			}
			if err := <-sent; err != nil {
				t.Fatal(err)
			}
			a.client.CloseWrite()
			for i := 0; i < 2; i++ {
				if r := res.wait(t); r.Err != nil {
					t.Errorf("flow err %v", r.Err)
				}
			}
			if s, ok := e.(*SpliceEngine); ok {
				st := s.Stats()
				if st.PoolExhausted == 0 || st.PipesInUse+st.PipesPooled > 1 || st.CopyBuffers != 0 {
					t.Errorf("stats %+v: want the pool found exhausted, never more than 1 pipe, no buffer lent at the end", st)
				}
			}
		})
	}
}

// stuck reports whether the one lent pipe stays lent across a short pause (its flow is
// backpressured, not between two rounds). The goroutine engine has no pool.
func stuck(e Engine, s Stats) bool {
	se, ok := e.(*SpliceEngine)
	if !ok {
		return true
	}
	time.Sleep(20 * time.Millisecond)
	return s.PipesInUse == 1 && se.Stats().PipesInUse == 1
}
