package splice

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// gflow is one flow of the goroutine engine.
type gflow struct {
	e    *GoroutineEngine
	f    Flow
	conn [2]net.Conn  // sideClient, sideUpstream
	last atomic.Int64 // UnixNano of the last activity seen
	dirs [2]gdir

	mu      sync.Mutex
	err     error
	aborted bool
}

// gdir is the shared state of one copy direction (dirUp or dirDown).
type gdir struct {
	n     int64       // written by its goroutine only; read after both ended
	idle  atomic.Bool // its last read timeout saw nothing move for a whole idle period
	poked atomic.Bool // the other direction asked it to report
	done  atomic.Bool // it has returned
}

// Sides of a flow and directions through it (both engines).
const (
	sideClient   = 0
	sideUpstream = 1
	dirUp        = 0 // client -> upstream
	dirDown      = 1 // upstream -> client
)

func srcOf(dir int) int { return dir }     // dirUp reads the client, dirDown the upstream
func dstOf(dir int) int { return 1 - dir } // and writes the other side

func (g *gflow) run() {
	defer g.e.wg.Done()
	start := time.Now()
	g.last.Store(start.UnixNano())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		g.copy(dirDown)
	}()
	g.copy(dirUp)
	wg.Wait()
	g.mu.Lock()
	err, aborted := g.err, g.aborted
	g.mu.Unlock()
	if !aborted {
		closeConns(g.conn[0], g.conn[1])
	}
	g.e.flowEnding(g)
	g.f.Owner.Ended(Result{
		Up: g.dirs[dirUp].n, Down: g.dirs[dirDown].n,
		Start: start, End: time.Now(), Err: err,
	})
	g.e.flowSettled()
}

// fail records err (the first one wins; nil only aborts) and closes both sockets abortively,
// which unblocks both copies.
func (g *gflow) fail(err error) {
	g.mu.Lock()
	if g.err == nil && err != nil {
		g.err = classify(err)
	}
	first := !g.aborted
	g.aborted = true
	g.mu.Unlock()
	if first {
		abortConn(g.conn[0])
		abortConn(g.conn[1])
	}
}

func (g *gflow) isAborted() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.aborted
}

// copy runs direction dir: the pre bytes, then io.Copy in rounds of at most chunk bytes (each
// round is one splice on Linux), then CloseWrite on the destination at EOF.
func (g *gflow) copy(dir int) {
	d := &g.dirs[dir]
	defer d.done.Store(true)
	src, dst := g.conn[srcOf(dir)], g.conn[dstOf(dir)]
	if pre := g.pre(dir); len(pre) > 0 {
		n, err := dst.Write(pre)
		if dir == dirUp {
			d.n += int64(n)
		}
		if err != nil {
			g.fail(err)
			return
		}
		g.last.Store(time.Now().UnixNano())
	}
	idle := g.e.opts.idleTimeout()
	var refreshed time.Time
	if idle > 0 {
		refreshed = time.Now()
		src.SetReadDeadline(refreshed.Add(idle))
	}
	lr := io.LimitedReader{R: src}
	for {
		lr.N = chunk
		n, err := io.Copy(dst, &lr)
		d.n += n
		now := time.Now()
		if n > 0 {
			g.last.Store(now.UnixNano())
			d.idle.Store(false)
		}
		switch {
		case err == nil && lr.N > 0: // EOF
			if cw, ok := dst.(interface{ CloseWrite() error }); ok {
				if err := cw.CloseWrite(); err != nil && !g.isAborted() {
					g.fail(err)
				}
			}
			return
		case err == nil:
			if idle > 0 && now.Sub(refreshed) >= time.Second {
				refreshed = now
				src.SetReadDeadline(now.Add(idle))
			}
		case idle > 0 && deadlineErr(err) && !g.isAborted():
			if !g.idleCheck(dir, n > 0, now) {
				return
			}
			refreshed = now
		default:
			g.fail(err)
			return
		}
	}
}

func (g *gflow) pre(dir int) []byte {
	if dir == dirUp {
		return g.f.ToUpstream
	}
	return g.f.ToClient
}

// idleCheck runs after a read timeout of direction dir; it reports whether the copy goes on.
// See GoroutineEngine for the protocol.
func (g *gflow) idleCheck(dir int, moved bool, now time.Time) bool {
	d, o := &g.dirs[dir], &g.dirs[1-dir]
	src, osrc := g.conn[srcOf(dir)], g.conn[srcOf(1-dir)]
	idle := g.e.opts.idleTimeout()
	poked := d.poked.Swap(false)
	last := time.Unix(0, g.last.Load())
	if moved || now.Sub(last) < idle {
		src.SetReadDeadline(last.Add(idle))
		return true
	}
	d.idle.Store(true)
	if o.done.Load() || (o.idle.Load() && poked) || o.poked.Load() {
		g.fail(ErrIdleTimeout)
		return false
	}
	o.poked.Store(true)
	osrc.SetReadDeadline(now) // the other direction reports at once
	src.SetReadDeadline(now.Add(idle))
	return true
}
