package splice

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// engineCase builds one engine under test.
type engineCase struct {
	name string
	new  func(t testing.TB, o Options) Engine
	// fds: the engine takes raw fds and connecting upstreams (splice); the goroutine engine
	// takes connected net.Conns only.
	fds bool
}

// engines lists the engines every relay test runs against; splice only on Linux.
func engines(t testing.TB) []engineCase {
	cs := []engineCase{{"goroutine", func(t testing.TB, o Options) Engine {
		e := NewGoroutine(o)
		t.Cleanup(func() { e.Close() })
		return e
	}, false}}
	if runtime.GOOS == "linux" {
		cs = append([]engineCase{{"splice", func(t testing.TB, o Options) Engine {
			e, err := NewSplice(o)
			if err != nil {
				t.Fatalf("NewSplice: %v", err)
			}
			t.Cleanup(func() { e.Close() })
			return e
		}, true}}, cs...)
	} else if os.Getenv("CI") == "true" {
		t.Fatalf("splice engine needs Linux but runs on %s with CI=true", runtime.GOOS)
	}
	return cs
}

// fdEngines are the engines that take raw fds and connecting upstreams: the splice engine.
func fdEngines(t testing.TB) []engineCase {
	var cs []engineCase
	for _, c := range engines(t) {
		if c.fds {
			cs = append(cs, c)
		}
	}
	return cs
}

// fdCounts counts this process's open fds: all of them and the pipes among them.
func fdCounts(t testing.TB) (all, pipes int) {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1, -1
	}
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(l, "pipe:") {
			pipes++
		}
	}
	return len(ents) - 1, pipes // minus the directory being read
}

// checkLeaks fails the test if goroutines or fds outlive it. Register it first so its cleanup
// runs last. Pipes the Go runtime keeps in its splice pool (goroutine engine) are freed by GC,
// so the check runs GC until they are gone.
func checkLeaks(t *testing.T) {
	t.Helper()
	all0, pipes0 := fdCounts(t)
	t.Cleanup(func() {
		goleak.VerifyNone(t)
		if all0 < 0 {
			return
		}
		deadline := time.Now().Add(3 * time.Second)
		for {
			all, pipes := fdCounts(t)
			if all == all0 && pipes == pipes0 {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("fd leak: %d open fds (%d pipes), want %d (%d pipes)", all, pipes, all0, pipes0)
				return
			}
			runtime.GC() // releases runtime splice pipes dropped from its sync.Pool
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// rig is a proxy listener (where test clients arrive: the flow's client side) and an upstream
// listener (the test server: the flow's upstream side).
type rig struct {
	t        testing.TB
	proxyLn  net.Listener
	serverLn net.Listener
}

func newRig(t testing.TB) *rig {
	t.Helper()
	p, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		p.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(); s.Close() })
	return &rig{t: t, proxyLn: p, serverLn: s}
}

// conns are the test's two ends of a relayed flow.
type conns struct {
	client *net.TCPConn // the app's end, talks to the flow's client side
	server *net.TCPConn // the upstream server's end
}

func (c conns) close() {
	c.client.Close()
	c.server.Close()
}

// flow builds a Flow from a fresh connection pair: accept on proxyLn (client side), dial
// serverLn (upstream side). With asFD the engine gets raw fds, else net.Conns.
func (r *rig) flow(asFD bool) (Flow, conns) {
	r.t.Helper()
	cl, side := r.client()
	up, err := net.Dial("tcp", r.serverLn.Addr().String())
	if err != nil {
		r.t.Fatal(err)
	}
	srv, err := r.serverLn.Accept()
	if err != nil {
		r.t.Fatal(err)
	}
	f := Flow{ClientFD: -1, UpstreamFD: -1, Client: side, Upstream: up}
	if asFD {
		f.Client, f.Upstream = nil, nil
		if f.ClientFD, err = DetachFD(side); err != nil {
			r.t.Fatal(err)
		}
		if f.UpstreamFD, err = DetachFD(up); err != nil {
			r.t.Fatal(err)
		}
	}
	return f, conns{client: cl, server: srv.(*net.TCPConn)}
}

// client connects a test client to proxyLn and returns it with the accepted side (the flow's
// client socket).
func (r *rig) client() (*net.TCPConn, net.Conn) {
	r.t.Helper()
	cl, err := net.Dial("tcp", r.proxyLn.Addr().String())
	if err != nil {
		r.t.Fatal(err)
	}
	side, err := r.proxyLn.Accept()
	if err != nil {
		cl.Close()
		r.t.Fatal(err)
	}
	return cl.(*net.TCPConn), side
}

// relayOne relays one fresh flow on e (see flow) and returns the test's ends, closed when the
// test ends, and the collector of the flow's Result.
func (r *rig) relayOne(e Engine, asFD bool) (conns, *results) {
	r.t.Helper()
	f, c := r.flow(asFD)
	r.t.Cleanup(c.close)
	res := newResults(1)
	f.Owner = res
	if err := e.Relay(f); err != nil {
		r.t.Fatal(err)
	}
	return c, res
}

// results is an Owner that collects what flows report: Connected is answered with no reply.
type results struct {
	mu  sync.Mutex
	got []Result
	ch  chan Result
}

func newResults(n int) *results { return &results{ch: make(chan Result, n)} }

func (r *results) Connected(error) []byte { return nil }

func (r *results) Ended(res Result) { r.done(res) }

func (r *results) done(res Result) {
	r.mu.Lock()
	r.got = append(r.got, res)
	r.mu.Unlock()
	r.ch <- res
}

// admitter is an Inbound front end: it admits while allow reports true (nil: always), every
// flow reporting to res, and counts accept failures.
type admitter struct {
	res      *results
	allow    func() bool
	failures atomic.Int64
}

func (a *admitter) Admit() Owner {
	if a.allow != nil && !a.allow() {
		return nil
	}
	return a.res
}

func (a *admitter) AcceptFailed(error) { a.failures.Add(1) }

// wait returns the next result, failing after a generous bound.
func (r *results) wait(t testing.TB) Result {
	t.Helper()
	select {
	case res := <-r.ch:
		return res
	case <-time.After(30 * time.Second):
		t.Fatal("no Done within 30s")
		return Result{}
	}
}

// Test streams: 64 KiB blocks, each a rotation of one random base block stamped with the stream
// seed and block number, so a lost, repeated or reordered block changes the hash.
const blockSize = 64 << 10

var baseBlock = func() []byte {
	b := make([]byte, blockSize)
	r := rand.NewChaCha8([32]byte{'n', 'a', 't', '4', '6', '4'})
	r.Read(b)
	return b
}()

func fillBlock(dst []byte, seed, k uint64) {
	off := int((seed*7919 + k*104729) % blockSize)
	n := copy(dst, baseBlock[off:])
	copy(dst[n:], baseBlock[:off])
	binary.BigEndian.PutUint64(dst[0:], seed)
	binary.BigEndian.PutUint64(dst[8:], k)
}

// sendStream writes size bytes of stream seed to w.
func sendStream(w io.Writer, seed uint64, size int64) error {
	buf := make([]byte, blockSize)
	for k := uint64(0); size > 0; k++ {
		fillBlock(buf, seed, k)
		n := int(min(size, blockSize))
		if _, err := w.Write(buf[:n]); err != nil {
			return err
		}
		size -= int64(n)
	}
	return nil
}

// streamSum is the SHA-256 of size bytes of stream seed.
func streamSum(seed uint64, size int64) [32]byte {
	h := sha256.New()
	sendStream(h, seed, size)
	return [32]byte(h.Sum(nil))
}

// streamBytes returns size bytes of stream seed (for small streams).
func streamBytes(seed uint64, size int64) []byte {
	var b bytes.Buffer
	sendStream(&b, seed, size)
	return b.Bytes()
}

// readSum reads r to EOF and returns the SHA-256 and count of what it read.
func readSum(r io.Reader) ([32]byte, int64, error) {
	h := sha256.New()
	n, err := io.CopyBuffer(h, r, make([]byte, 256<<10))
	return [32]byte(h.Sum(nil)), n, err
}
