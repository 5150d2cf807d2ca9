package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// ioTimeout bounds every single request or bulk write after connecting.
const ioTimeout = 5 * time.Second

// Window is the measurement window of a load run: warm-up first, then
// Duration of measurement. Mark, if set, is called right at the start and
// right at the end of the measured part (the driver samples the proxy's CPU
// there).
type Window struct {
	Warmup   time.Duration
	Duration time.Duration
	Mark     func(end bool)
}

func (w Window) mark(end bool) {
	if w.Mark != nil {
		w.Mark(end)
	}
}

// errCounter counts errors and keeps the first one as a sample.
type errCounter struct {
	n     atomic.Uint64
	once  sync.Once
	first string
}

func (e *errCounter) add(err error) {
	e.n.Add(1)
	e.once.Do(func() { e.first = err.Error() })
}

// RateConfig describes a connection-rate run.
type RateConfig struct {
	Target Target
	// Workers is the number of concurrent clients; if zero, 1.
	Workers int
	// ClientClose makes the client close first; by default the app closes
	// first and the client waits for its EOF.
	ClientClose bool
	Window      Window
}

// RateResult is what a rate run measured inside its window.
type RateResult struct {
	Conns       uint64
	Errors      uint64
	ErrorSample string
	Seconds     float64
	Hist        Hist
}

// Rate opens a new connection per request (64 B request, 64 B echo) from
// Workers clients. Only requests that started and finished inside the
// measured window count; errors count wherever they happen.
func Rate(ctx context.Context, cfg RateConfig) RateResult {
	workers := max(cfg.Workers, 1)
	start := time.Now()
	t0 := start.Add(cfg.Window.Warmup)
	t1 := t0.Add(cfg.Window.Duration)
	var errs errCounter
	hists := make([]Hist, workers)
	counts := make([]uint64, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			buf := make([]byte, 2*reqSize)
			for ctx.Err() == nil {
				s := time.Now()
				if s.After(t1) {
					return
				}
				lat, err := oneRequest(ctx, cfg.Target, cfg.ClientClose, buf)
				if err != nil {
					if ctx.Err() == nil {
						errs.add(err)
					}
					continue
				}
				if !s.Before(t0) && !s.Add(lat).After(t1) && time.Now().Before(t1) {
					hists[w].Record(lat)
					counts[w]++
				}
			}
		})
	}
	markWindow(ctx, cfg.Window, t0, t1)
	wg.Wait()
	var res RateResult
	for w := range workers {
		res.Hist.Merge(&hists[w])
		res.Conns += counts[w]
	}
	res.Errors = errs.n.Load()
	res.ErrorSample = errs.first
	res.Seconds = cfg.Window.Duration.Seconds()
	return res
}

// markWindow calls the window's marks at t0 and t1 unless ctx ends first.
func markWindow(ctx context.Context, w Window, t0, t1 time.Time) {
	for i, t := range []time.Time{t0, t1} {
		tm := time.NewTimer(time.Until(t))
		select {
		case <-ctx.Done():
			tm.Stop()
			return
		case <-tm.C:
		}
		w.mark(i == 1)
	}
}

// oneRequest runs one connection: dial (and handshake), send 64 bytes,
// read the 64-byte echo, then close in the configured order. The latency is
// measured from the dial to the last byte of the response.
func oneRequest(ctx context.Context, t Target, clientClose bool, buf []byte) (time.Duration, error) {
	start := time.Now()
	c, err := t.Dial(ctx)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(ioTimeout))
	req, resp := buf[:reqSize], buf[reqSize:2*reqSize]
	req[0] = ModeOnce
	if clientClose {
		req[0] = ModeEcho
	}
	for i := 1; i < reqSize; i++ {
		req[i] = byte(i)
	}
	if _, err := c.Write(req); err != nil {
		return 0, fmt.Errorf("bench: write request: %w", err)
	}
	if _, err := io.ReadFull(c, resp); err != nil {
		return 0, fmt.Errorf("bench: read response: %w", err)
	}
	lat := time.Since(start)
	if !bytes.Equal(req, resp) {
		return 0, errBadEcho
	}
	if clientClose {
		return lat, nil
	}
	var one [1]byte
	n, err := c.Read(one[:])
	if n != 0 || !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("%w: read %d bytes, %v", errNoEOF, n, err)
	}
	return lat, nil
}

// BulkConfig describes a bulk throughput run.
type BulkConfig struct {
	Target Target
	// Streams is the number of streams in each direction; if zero, 1.
	Streams int
	Window  Window
}

// BulkResult is what a bulk run measured inside its window.
type BulkResult struct {
	UpBytes     uint64 // client -> app
	DownBytes   uint64 // app -> client
	Seconds     float64
	Errors      uint64
	ErrorSample string
}

// Bulk runs Streams uploads (to the app's sink) and Streams downloads (from
// its source) at the same time and counts the bytes moved in the window.
func Bulk(ctx context.Context, cfg BulkConfig) BulkResult {
	streams := max(cfg.Streams, 1)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var up, down atomic.Uint64
	var errs errCounter
	var stopping atomic.Bool
	var wg sync.WaitGroup
	for i := range 2 * streams {
		mode, ctr := ModeSink, &up
		if i%2 == 1 {
			mode, ctr = ModeSource, &down
		}
		wg.Go(func() {
			started, err := bulkStream(ctx, cfg.Target, mode, ctr)
			// A stream that never started is an error even if the run
			// is over by the time its dial gives up.
			if err != nil && (!started || !stopping.Load()) {
				errs.add(err)
			}
		})
	}
	start := time.Now()
	t0 := start.Add(cfg.Window.Warmup)
	t1 := t0.Add(cfg.Window.Duration)
	var u0, d0, u1, d1 uint64
	w := cfg.Window
	w.Mark = func(end bool) {
		if !end {
			u0, d0 = up.Load(), down.Load()
		} else {
			u1, d1 = up.Load(), down.Load()
		}
		cfg.Window.mark(end)
	}
	markWindow(ctx, w, t0, t1)
	stopping.Store(true)
	cancel()
	wg.Wait()
	return BulkResult{
		UpBytes:     u1 - u0,
		DownBytes:   d1 - d0,
		Seconds:     cfg.Window.Duration.Seconds(),
		Errors:      errs.n.Load(),
		ErrorSample: errs.first,
	}
}

// bulkStream moves bytes in one direction until ctx ends. started reports
// whether the stream got as far as moving data.
func bulkStream(ctx context.Context, t Target, mode byte, ctr *atomic.Uint64) (started bool, err error) {
	c, err := t.Dial(context.WithoutCancel(ctx))
	if err != nil {
		return false, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	buf := make([]byte, bulkChunk)
	buf[0] = mode
	if _, err := c.Write(buf[:1]); err != nil {
		return false, fmt.Errorf("bench: bulk start: %w", err)
	}
	for {
		var n int
		c.SetDeadline(time.Now().Add(ioTimeout))
		if ctx.Err() != nil {
			return started, nil
		}
		if mode == ModeSink {
			n, err = c.Write(buf)
		} else {
			n, err = c.Read(buf)
		}
		if n > 0 {
			started = true
			ctr.Add(uint64(n))
		}
		if err != nil {
			if ctx.Err() != nil && started {
				return started, nil
			}
			return started, fmt.Errorf("bench: bulk stream: %w", err)
		}
	}
}

// IdleConfig describes an idle-flows run.
type IdleConfig struct {
	Target Target
	// Flows is the number of idle flows to hold open.
	Flows int
	// Parallel bounds the connection setups in flight; if zero, 32.
	Parallel int
	// Hold, if set, is called once all flows are established (or failed),
	// while they are still open.
	Hold func(established int)
}

// idleMaxErrors stops opening idle flows after this many failures: the
// contender is broken and each failure may cost a full dial timeout.
const idleMaxErrors = 16

// IdleResult is what an idle run established.
type IdleResult struct {
	Established int
	Errors      uint64
	ErrorSample string
}

// Idle opens Flows flows to the app's hold mode, proves each one end to end
// (one byte there and back), calls Hold, then closes them all.
func Idle(ctx context.Context, cfg IdleConfig) IdleResult {
	par := cfg.Parallel
	if par <= 0 {
		par = 32
	}
	conns := make([]net.Conn, cfg.Flows)
	var errs errCounter
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	for i := range conns {
		if ctx.Err() != nil || errs.n.Load() >= idleMaxErrors {
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := holdFlow(ctx, cfg.Target)
			if err != nil {
				errs.add(err)
				return
			}
			conns[i] = c
		})
	}
	wg.Wait()
	res := IdleResult{Errors: errs.n.Load(), ErrorSample: errs.first}
	for _, c := range conns {
		if c != nil {
			res.Established++
		}
	}
	if cfg.Hold != nil {
		cfg.Hold(res.Established)
	}
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
	return res
}

func holdFlow(ctx context.Context, t Target) (net.Conn, error) {
	c, err := t.Dial(ctx)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(ioTimeout))
	b := []byte{ModeHold}
	if _, err := c.Write(b); err != nil {
		c.Close()
		return nil, fmt.Errorf("bench: idle write: %w", err)
	}
	if _, err := io.ReadFull(c, b); err != nil {
		c.Close()
		return nil, fmt.Errorf("bench: idle read: %w", err)
	}
	c.SetDeadline(time.Time{})
	return c, nil
}
