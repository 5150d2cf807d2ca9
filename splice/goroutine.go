package splice

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// chunk is how much one io.Copy call may move before the copy loop looks at the clock; it matches
// the standard library's splice round.
const chunk = 1 << 20

// GoroutineEngine relays each flow with two io.Copy goroutines. Between *net.TCPConns the standard
// library splices on Linux, so it is zero-copy there too, at the cost of two goroutines and up to
// two runtime-owned pipes per busy flow.
//
// Idle timeout uses read deadlines only (a write deadline could strand bytes in the runtime's
// splice pipe): a direction whose read times out with nothing moved, and the flow's last activity
// older than the timeout, marks itself idle and pokes the other direction (a read deadline in the
// past) so that it reports too. The flow is cut when both agree, when the other direction is done,
// or when the other direction did not answer a poke for a whole idle period (it is stuck writing
// to a peer that does not read). Activity is seen per io.Copy call, so a cut can come up to about
// one idle period late, never early, except for a direction that trickles into a stalled writer.
type GoroutineEngine struct {
	opts Options
	wg   sync.WaitGroup
	cut  int64 // flows cut by Drain; guarded by mu

	lifecycle
	flows map[*gflow]struct{} // the active flows, for cutAll; guarded by mu
}

var _ Engine = (*GoroutineEngine)(nil)

// NewGoroutine returns a goroutine engine; it starts no goroutine until a flow arrives.
func NewGoroutine(o Options) *GoroutineEngine {
	e := &GoroutineEngine{opts: o, flows: make(map[*gflow]struct{})}
	e.zero = make(chan struct{})
	o.Metrics.attach(e.Stats)
	return e
}

// Name returns "goroutine".
func (e *GoroutineEngine) Name() string { return "goroutine" }

// Relay starts the flow's goroutines. Both sides must be net.Conns with their connects done:
// this engine serves the goroutine front end, which has nothing else (a flow with raw fds or an
// UpstreamConnecting upstream is refused with ErrNeedConn). On error the sockets are closed and
// f.Owner.Ended is still called (once, before Relay returns, with Result.Err set to the error).
func (e *GoroutineEngine) Relay(f Flow) error {
	if f.Owner == nil {
		closeFlow(&f)
		return ErrNoOwner
	}
	if f.Client == nil || f.Upstream == nil || f.UpstreamConnecting {
		closeFlow(&f)
		return refuse(&f, ErrNeedConn)
	}
	g := &gflow{e: e, f: f, conn: [2]net.Conn{f.Client, f.Upstream}}
	e.mu.Lock()
	if e.state != stateRunning {
		e.mu.Unlock()
		closeConns(f.Client, f.Upstream)
		return refuse(&f, ErrClosed)
	}
	defer e.mu.Unlock()
	e.flows[g] = struct{}{}
	e.active++
	e.wg.Add(1)
	go g.run()
	return nil
}

// refuse reports a flow that Relay did not take to its Owner and returns err.
func refuse(f *Flow, err error) error {
	now := time.Now()
	f.Owner.Ended(Result{Start: now, End: now, Err: err})
	return err
}

// closeFlow closes every socket f carries.
func closeFlow(f *Flow) {
	closeConns(f.Client, f.Upstream)
	for _, fd := range [2]int{f.ClientFD, f.UpstreamFD} {
		if fd >= 0 {
			closeFD(fd)
		}
	}
}

func closeConns(cs ...net.Conn) {
	for _, c := range cs {
		if c != nil {
			c.Close()
		}
	}
}

// abortConn closes c so that its peer gets an RST rather than a FIN.
func abortConn(c net.Conn) {
	if l, ok := c.(interface{ SetLinger(int) error }); ok {
		l.SetLinger(0)
	}
	c.Close()
}

// Stats returns a snapshot; only Active is known to this engine.
func (e *GoroutineEngine) Stats() Stats { return Stats{Active: e.Active()} }

// flowEnding drops g from Active before its Done runs; flowSettled follows Done.
func (e *GoroutineEngine) flowEnding(g *gflow) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.flows, g)
	e.active--
	e.settling++
}

// cutAll ends every flow abortively with err.
func (e *GoroutineEngine) cutAll(err error) {
	e.mu.Lock()
	flows := make([]*gflow, 0, len(e.flows))
	for g := range e.flows {
		flows = append(flows, g)
	}
	if errors.Is(err, ErrDrainCut) {
		e.cut += int64(len(flows))
	}
	e.mu.Unlock()
	for _, g := range flows {
		g.fail(err)
	}
}

// Drain refuses new flows and waits for the active ones to end until ctx is done; then it cuts
// the rest abortively (Result.Err wraps ErrDrainCut) and returns ctx.Err().
func (e *GoroutineEngine) Drain(ctx context.Context) error {
	e.stopAccepting(stateDraining)
	select {
	case <-e.zero:
		return nil
	case <-ctx.Done():
	}
	e.cutAll(ErrDrainCut)
	<-e.zero
	e.mu.Lock()
	cut := e.cut
	e.mu.Unlock()
	if cut > 0 {
		return ctx.Err()
	}
	return nil
}

// Close cuts every flow (Result.Err wraps ErrClosed) and waits for their goroutines to exit.
func (e *GoroutineEngine) Close() error {
	e.stopAccepting(stateClosed)
	e.cutAll(ErrClosed)
	e.wg.Wait()
	return nil
}

// classify wraps resets with ErrReset; engine sentinels pass through.
func classify(err error) error {
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return fmt.Errorf("%w: %w", ErrReset, err)
	}
	return err
}

// deadlineErr reports whether err is a deadline expiry rather than a socket failure.
func deadlineErr(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }
