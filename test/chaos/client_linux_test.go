//go:build chaos && linux

package chaos

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// flow is what one client asks the app for.
type flow struct {
	up, down  int64
	seed      uint64
	halfClose bool
}

// randomFlow draws a flow: 2% empty both ways, then per direction 85% up to 16 KiB, 12% 16-256
// KiB and 3% 256 KiB-4 MiB (about 88 KiB a direction on average); 30% half-close.
func randomFlow(r *rand.Rand) flow {
	size := func() int64 {
		switch p := r.IntN(100); {
		case p < 85:
			return r.Int64N(16 << 10)
		case p < 97:
			return 16<<10 + r.Int64N(240<<10)
		default:
			return 256<<10 + r.Int64N(3840<<10+1)
		}
	}
	f := flow{seed: r.Uint64(), halfClose: r.IntN(10) < 3}
	if r.IntN(50) != 0 {
		f.up, f.down = size(), size()
	}
	return f
}

func (f flow) header() []byte {
	h := make([]byte, headerLen)
	if f.halfClose {
		h[0] = flagHalfClose
	}
	binary.BigEndian.PutUint64(h[1:], uint64(f.up))
	binary.BigEndian.PutUint64(h[9:], uint64(f.down))
	binary.BigEndian.PutUint64(h[17:], f.seed)
	return h
}

// pace slows a client down: chunk bytes (if zero, 64 KiB) per read or write with pause after
// each, until until (if zero, to the end).
type pace struct {
	chunk int
	pause time.Duration
	until time.Time
}

func (p pace) wait() {
	if p.pause > 0 && (p.until.IsZero() || time.Now().Before(p.until)) {
		time.Sleep(p.pause)
	}
}

// dialer opens a connection to the app through one of the sidecar's paths.
type dialer func() (net.Conn, error)

// inboundDialer dials the inbound mapping on [::1].
func inboundDialer(port int) dialer {
	addr := net.JoinHostPort("::1", strconv.Itoa(port))
	return func() (net.Conn, error) { return net.DialTimeout("tcp6", addr, 10*time.Second) }
}

// socksDialer runs a SOCKS5 CONNECT through proxy to host:port (a name or an IPv4 literal).
func socksDialer(proxy, host string, port int) dialer {
	return func() (net.Conn, error) {
		c, err := net.DialTimeout("tcp4", proxy, 10*time.Second)
		if err != nil {
			return nil, err
		}
		c.SetDeadline(time.Now().Add(15 * time.Second))
		if err := socks5Connect(c, host, port); err != nil {
			c.Close()
			return nil, err
		}
		c.SetDeadline(time.Time{})
		return c, nil
	}
}

var errSocksRefused = errors.New("chaos: SOCKS5 request not granted")

// socks5Connect is a minimal no-auth SOCKS5 client (RFC 1928): greeting, CONNECT, reply.
func socks5Connect(c net.Conn, host string, port int) error {
	req := []byte{5, 1, 0, 5, 1, 0}
	if ip, err := netip.ParseAddr(host); err == nil && ip.Is4() {
		a := ip.As4()
		req = append(append(req, 1), a[:]...)
	} else {
		req = append(append(req, 3, byte(len(host))), host...)
	}
	req = binary.BigEndian.AppendUint16(req, uint16(port))
	if _, err := c.Write(req); err != nil {
		return err
	}
	var rep [5]byte // method choice (2), then VER REP RSV of the reply
	if _, err := io.ReadFull(c, rep[:]); err != nil {
		return err
	}
	if rep[0] != 5 || rep[1] != 0 {
		return fmt.Errorf("%w: method %#x", errSocksRefused, rep[1])
	}
	if rep[3] != 0 {
		return fmt.Errorf("%w: reply %#x", errSocksRefused, rep[3])
	}
	var atyp [1]byte
	if _, err := io.ReadFull(c, atyp[:]); err != nil {
		return err
	}
	rest := map[byte]int{1: 4 + 2, 4: 16 + 2}[atyp[0]]
	if rest == 0 {
		return fmt.Errorf("%w: bound address type %#x", errSocksRefused, atyp[0])
	}
	_, err := io.ReadFull(c, make([]byte, rest))
	return err
}

// outcome classifies how a flow ended.
type outcome int

const (
	whole     outcome = iota // every byte both ways, checked, then a clean end
	reset                    // ECONNRESET (or EPIPE after one)
	corrupt                  // a byte differed, or the app saw a wrong byte
	truncated                // a clean EOF before the end: looks complete to a naive client
	failed                   // anything else (dial error, timeout)
	hungUp                   // the client hung up as planned; what it had read was right
)

var outcomeNames = [...]string{"whole", "reset", "corrupt", "truncated", "failed", "hung up"}

func (o outcome) String() string { return outcomeNames[o] }

func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func classify(err error) outcome {
	switch {
	case err == nil:
		return whole
	case isReset(err):
		return reset
	case errors.Is(err, errMismatch):
		return corrupt
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return truncated
	}
	return failed
}

// run carries out f over c (which it closes) within timeout: the header and up bytes at
// upPace, the down bytes checked at downPace, the trailer, the app's EOF. The error tells why
// the flow is not whole; down is how many down bytes matched.
func (f flow) run(c net.Conn, timeout time.Duration, upPace, downPace pace) (down int64, err error) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	wrote := make(chan error, 1)
	go func() {
		if _, err := c.Write(f.header()); err != nil {
			wrote <- err
			return
		}
		_, err := writeStream(c, f.seed, dirUp, f.up, upPace)
		if err == nil && f.halfClose {
			err = c.(interface{ CloseWrite() error }).CloseWrite()
		}
		wrote <- err
	}()
	down, err = readStream(c, f.seed, dirDown, f.down, downPace)
	if err == nil {
		var tr [8]byte
		if _, err = io.ReadFull(c, tr[:]); err == nil {
			if got := int64(binary.BigEndian.Uint64(tr[:])); got != f.up {
				err = fmt.Errorf("%w: the app checked %d of %d up bytes", errMismatch, got, f.up)
			}
		}
	}
	if err == nil {
		var one [1]byte
		switch n, e := c.Read(one[:]); {
		case n != 0:
			err = fmt.Errorf("chaos: %d bytes after the trailer, want EOF", n)
		case e != io.EOF:
			err = fmt.Errorf("chaos: no EOF after the trailer: %w", e) // a deadline stays a deadline
		}
	}
	if err != nil {
		c.Close() // unblocks the writer
		<-wrote
		return down, err
	}
	return down, <-wrote
}

// tally counts the flows of a batch by outcome, with their bytes.
type tally struct {
	n       [len(outcomeNames)]atomic.Int64
	up, dn  atomic.Int64
	mu      sync.Mutex
	samples []string // the first few failures, for the log
}

func (t *tally) add(f flow, down int64, err error) { t.addAs(classify(err), f, down, err) }

func (t *tally) addAs(o outcome, f flow, down int64, err error) {
	t.n[o].Add(1)
	if o == whole {
		t.up.Add(f.up)
		t.dn.Add(f.down)
	} else {
		t.dn.Add(down)
	}
	if o != whole && o != hungUp {
		t.mu.Lock()
		if len(t.samples) < 5 {
			t.samples = append(t.samples, fmt.Sprintf("%s: up %d down %d half-close %v: %v", o, f.up, f.down, f.halfClose, err))
		}
		t.mu.Unlock()
	}
}

func (t *tally) count(o outcome) int64 { return t.n[o].Load() }

func (t *tally) String() string {
	s := ""
	for o := range outcomeNames {
		s += fmt.Sprintf("%s %d, ", outcome(o), t.n[o].Load())
	}
	return fmt.Sprintf("%sbytes up %s down %s", s, mib(t.up.Load()), mib(t.dn.Load()))
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// runFlows runs n random flows (seeded by seed), conc at a time, through dial.
func runFlows(n, conc int, seed uint64, dial dialer) *tally {
	t := &tally{}
	jobs := make(chan flow)
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range jobs {
				c, err := dial()
				if err != nil {
					t.add(f, 0, err)
					continue
				}
				down, err := f.run(c, 60*time.Second, pace{}, pace{})
				t.add(f, down, err)
			}
		}()
	}
	r := rand.New(rand.NewPCG(seed, 0xc4a05))
	for range n {
		jobs <- randomFlow(r)
	}
	close(jobs)
	wg.Wait()
	return t
}
