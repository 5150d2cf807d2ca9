//go:build chaos && linux

package chaos

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The app protocol. A client opens with a header:
//
//	flags (1 byte) | up (8) | down (8) | seed (8)
//
// then sends up bytes of the stream (seed, dirUp). The app sends down bytes of the stream
// (seed, dirDown) at once, concurrently, checks every byte it receives, and after the last
// up byte (and, with flagHalfClose, the client's EOF: the half-close must pass through) sends a
// trailer — the count of up bytes that matched — and closes. A client that reads exactly down
// bytes that match, then a trailer equal to up, then EOF, has a flow that is whole both ways.
const (
	headerLen     = 25
	flagHalfClose = 1 << 0 // the client closes its write side after its up bytes
	dirUp         = 0x5550
	dirDown       = 0x444f
)

// fill writes the bytes of stream (seed, dir) at offset off into p. Byte i of a stream is byte
// i%8 of a splitmix64 of its block i/8, so any chunk can be produced or checked on its own.
func fill(p []byte, seed, dir uint64, off int64) {
	for len(p) > 0 {
		blk := uint64(off / 8)
		z := seed ^ dir<<48 + (blk+1)*0x9e3779b97f4a7c15
		z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
		z = (z ^ z>>27) * 0x94d049bb133111eb
		z ^= z >> 31
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], z)
		n := copy(p, b[off%8:])
		p, off = p[n:], off+int64(n)
	}
}

// app is the IPv4-only application behind the sidecar.
type app struct {
	t    testing.TB
	ln   net.Listener
	addr string // 127.0.0.1:P

	flows, bad       atomic.Int64 // flows finished; flows whose up bytes did not match
	bytesIn, bytesOu atomic.Int64

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// newApp serves the app protocol on 127.0.0.1 until the test ends.
func newApp(t testing.TB) *app {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &app{t: t, ln: ln, addr: ln.Addr().String(), conns: map[net.Conn]struct{}{}}
	a.wg.Add(1)
	go a.serve()
	t.Cleanup(a.close)
	return a
}

func (a *app) serve() {
	defer a.wg.Done()
	for {
		c, err := a.ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil { // EMFILE under a tight limit: rest, do not spin
			time.Sleep(10 * time.Millisecond)
			continue
		}
		a.mu.Lock()
		a.conns[c] = struct{}{}
		a.mu.Unlock()
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			a.handle(c.(*net.TCPConn))
			a.mu.Lock()
			delete(a.conns, c)
			a.mu.Unlock()
			c.Close()
		}()
	}
}

func (a *app) close() {
	a.ln.Close()
	a.mu.Lock()
	for c := range a.conns {
		c.Close()
	}
	a.mu.Unlock()
	a.wg.Wait()
}

// handle serves one connection; a peer that goes away mid-flow just ends it.
func (a *app) handle(c *net.TCPConn) {
	var h [headerLen]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		return
	}
	flags := h[0]
	up := int64(binary.BigEndian.Uint64(h[1:]))
	down := int64(binary.BigEndian.Uint64(h[9:]))
	seed := binary.BigEndian.Uint64(h[17:])
	if up < 0 || down < 0 || up > 1<<40 || down > 1<<40 {
		return
	}
	sent := make(chan error, 1)
	go func() {
		n, err := writeStream(c, seed, dirDown, down, pace{})
		a.bytesOu.Add(n)
		sent <- err
	}()
	good, err := readStream(c, seed, dirUp, up, pace{})
	a.bytesIn.Add(good)
	if err == nil && flags&flagHalfClose != 0 {
		var one [1]byte
		if n, e := c.Read(one[:]); n != 0 || e != io.EOF {
			err = fmt.Errorf("app: no EOF after the up bytes (n=%d, %v)", n, e)
		}
	}
	if werr := <-sent; werr != nil || err != nil {
		if !errors.Is(err, errMismatch) {
			return // the peer went away: nothing to report to
		}
		a.bad.Add(1)
	}
	var tr [8]byte
	binary.BigEndian.PutUint64(tr[:], uint64(good))
	c.Write(tr[:])
	a.flows.Add(1)
}

var errMismatch = errors.New("chaos: stream bytes do not match")

// writeStream sends n bytes of stream (seed, dir) at pace p. It returns how many were written.
func writeStream(w io.Writer, seed, dir uint64, n int64, p pace) (int64, error) {
	chunk := p.chunk
	if chunk <= 0 {
		chunk = 64 << 10
	}
	buf := make([]byte, min(int64(chunk), max(n, 1)))
	var off int64
	for off < n {
		b := buf[:min(int64(len(buf)), n-off)]
		fill(b, seed, dir, off)
		k, err := w.Write(b)
		off += int64(k)
		if err != nil {
			return off, err
		}
		p.wait()
	}
	return off, nil
}

// readStream reads n bytes at pace p and checks them against stream (seed, dir). It returns the
// count of matching bytes read; a short stream is io.ErrUnexpectedEOF, a wrong byte errMismatch.
func readStream(r io.Reader, seed, dir uint64, n int64, p pace) (int64, error) {
	chunk := p.chunk
	if chunk <= 0 {
		chunk = 64 << 10
	}
	size := min(int64(chunk), max(n, 1))
	buf, want := make([]byte, size), make([]byte, size)
	var off int64
	for off < n {
		k, err := r.Read(buf[:min(size, n-off)])
		if k > 0 {
			fill(want[:k], seed, dir, off)
			if !bytes.Equal(buf[:k], want[:k]) {
				i := 0
				for buf[i] == want[i] {
					i++
				}
				return off + int64(i), fmt.Errorf("%w at offset %d", errMismatch, off+int64(i))
			}
			off += int64(k)
		}
		if err == io.EOF {
			return off, io.ErrUnexpectedEOF
		}
		if err != nil {
			return off, err
		}
		p.wait()
	}
	return off, nil
}
