// Package splice relays established TCP flows. It owns both sockets of a flow from the moment it
// receives them until both directions are done, and knows nothing of the protocol they speak.
//
// Two engines implement [Engine]: on Linux an epoll loop that moves bytes with splice(2) through
// pipes borrowed from a pool only while data is in flight (engine_linux.go, loop_linux.go,
// flow_linux.go, step_linux.go, pipe_linux.go), and everywhere a
// portable engine that runs two io.Copy goroutines per flow (goroutine.go). On Linux the engine
// also accepts inbound ports itself (inbound_linux.go), and Connect starts the non-blocking
// connects both it and the proxy front end use (connect_linux.go).
package splice

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"time"
)

// Flow is one connection pair handed to an Engine. From the call to Engine.Relay on, the engine
// owns both sockets (it closes them, also when Relay returns an error).
//
// Each side is given either as a raw file descriptor (ClientFD/UpstreamFD >= 0, non-blocking,
// close-on-exec, owned) or as a net.Conn (Client/Upstream non-nil); set the unused fd field to
// -1. The splice engine takes both forms (fds from the event loop, conns from a dial goroutine);
// the goroutine engine takes conns only, which is all its front end has.
type Flow struct {
	ClientFD   int
	UpstreamFD int
	Client     net.Conn
	Upstream   net.Conn

	// UpstreamConnecting says the upstream fd comes from a non-blocking connect(2) that may still
	// be in progress (splice engine only). The engine waits for it to finish, bounded by
	// ConnectTimeout, and tells Owner.Connected the outcome.
	UpstreamConnecting bool
	// ConnectTimeout bounds UpstreamConnecting; if zero, 10s.
	ConnectTimeout time.Duration

	// ToClient is written to the client before any relayed byte (for example a SOCKS reply);
	// for a connecting flow, once the connect succeeded.
	ToClient []byte
	// ToUpstream is written to the upstream before any relayed byte (optimistic data the client
	// sent together with its handshake).
	ToUpstream []byte

	// Racer, if not nil, chooses the upstream by racing connects on the flow's loop (splice
	// engine only): leave UpstreamFD -1 and Upstream nil. The flow is connecting until an
	// attempt wins (ToClient goes out then); Owner.Connected hears the winner or the race's
	// error. The Racer keeps its own deadline (its Next says when the race is lost, and why);
	// ConnectTimeout plus RaceGrace is a backstop, after which the engine cancels the race with
	// context.DeadlineExceeded.
	Racer Racer

	// Target names the upstream in connect errors.
	Target string
	// Owner is told how the flow goes; required.
	Owner Owner
}

// Owner is the front end's record of one connection, the only party an engine reports to. The
// engine calls Connected at most once, and only for a flow handed over UpstreamConnecting (or
// accepted by the engine itself, see Inbound), then Ended exactly once, also when Relay
// refuses the flow. Both run on an engine goroutine and must not block.
type Owner interface {
	// Connected reports that the upstream connect finished: err is nil on success, else what
	// Result.ConnectErr will hold. On failure the bytes it returns (a proxy's failure reply)
	// are written to the client, which is then closed with a FIN; if it returns none, the
	// client is reset.
	Connected(err error) (failReply []byte)
	// Ended reports that the flow is over and both sockets are closed.
	Ended(Result)
}

// Racer is a race of connection attempts (Happy Eyeballs) that the splice engine carries out on
// the loop that will relay the flow: non-blocking connects, a timer, no goroutine. The engine
// makes the connects and reports their ends; the Racer decides what to try and when, and who
// won. Its methods other than the wake function run on that loop, one at a time.
type Racer interface {
	// Start is called once, first, on the flow's loop. wake may be called from any goroutine
	// (for example when a DNS answer arrives) to have Next called again soon on the loop.
	Start(wake func())
	// Next returns the connects to start now (attempt IDs are 0, 1, 2... in start order across
	// calls), and when to call Next again if no other event comes first (zero: only after an
	// event). done means the race is over without a winner, and err says why.
	Next(now time.Time) (start []netip.AddrPort, wake time.Time, done bool, err error)
	// Finished reports that attempt id ended: err nil means its TCP handshake completed. It
	// returns whether that attempt won; the engine closes every other attempt then.
	Finished(id int, err error, now time.Time) (won bool)
	// Cancel ends a race the flow outlived (drain, engine closed, client gone, connect
	// timeout) and returns the error to report for it.
	Cancel(err error, now time.Time) error
}

// Handshaker is the Owner of a connection that begins with a handshake the splice loop carries
// out itself (a proxy port the engine serves, Inbound.Handshake): the loop reads what the
// client sends and feeds it here, writes the answer, and once the request is complete starts
// the upstream it names, as for a Flow handed over connecting (a literal) or with a Racer (a
// name). Its methods run on that loop and must not block.
type Handshaker interface {
	Owner
	// Feed is given the client's bytes that earlier calls did not use. It returns how many it
	// used, bytes to write to the client, and, once the request is complete, the upstream; the
	// bytes after the request go to the upstream first. An error ends the connection once out
	// is written (with a FIN); the Handshaker has counted it.
	Feed(b []byte) (used int, out []byte, up *Upstream, err error)
	// Cut reports a handshake the loop ended: ErrHandshakeTimeout or ErrHandshakeTooLarge.
	// The loop closes the client and then calls Ended.
	Cut(err error)
}

// Upstream is what a complete handshake asks the loop to reach.
type Upstream struct {
	// Racer, when set, races the upstream (a name); else Target is connected (a literal).
	Racer  Racer
	Target netip.AddrPort
	// ToClient is written to the client before any relayed byte (the success reply).
	ToClient []byte
	// Handoff, when set, takes the client's socket away from the loop instead (a plain-HTTP
	// proxy request, which package forward serves on a goroutine): the flow leaves the loop
	// without Owner.Ended, and Handoff, run on a goroutine of its own, owns the fd, the bytes
	// read after the consumed ones, and the owner. Racer and Target are ignored.
	Handoff func(fd int, buffered []byte)
}

// Result describes a finished flow.
type Result struct {
	// Up counts bytes client -> upstream (ToUpstream included); Down counts upstream -> client
	// (ToClient excluded).
	Up, Down int64
	Start    time.Time
	End      time.Time
	// ConnectErr is set when the upstream connect failed; nothing was relayed.
	ConnectErr error
	// Err is the first error that ended the flow abnormally (reset, idle timeout, drain cut,
	// or why Relay refused it); nil for a flow where both sides closed cleanly.
	Err error
}

// Engine relays flows until they finish.
type Engine interface {
	// Relay takes ownership of f's sockets and relays between them. It does not block on I/O.
	// After Drain or Close has begun, it closes the sockets and returns ErrClosed. f.Owner.Ended
	// is called exactly once in every case: when Relay fails, before it returns, with
	// Result.Err = the error.
	Relay(f Flow) error
	// Active reports how many flows are being relayed now.
	Active() int
	// Drain refuses new flows, waits for active flows to end by themselves until ctx is done,
	// then closes what remains abortively (RST) and returns ctx's error if any flow was cut.
	Drain(ctx context.Context) error
	// Close ends every flow at once and releases the engine's resources.
	Close() error
	// Name is "splice" or "goroutine".
	Name() string
}

// Errors reported in Result.Err.
var (
	ErrClosed      = errors.New("splice: engine closed")
	ErrIdleTimeout = errors.New("splice: idle timeout")
	ErrDrainCut    = errors.New("splice: cut at drain timeout")
	// ErrReset wraps the socket error (ECONNRESET, EPIPE) that ended a flow; its own text does
	// not repeat that error's, which follows it in the message.
	ErrReset = errors.New("splice: flow reset")
	// ErrHandshakeTimeout and ErrHandshakeTooLarge end a handshake on the loop (Handshaker.Cut).
	ErrHandshakeTimeout  = errors.New("splice: handshake timeout")
	ErrHandshakeTooLarge = errors.New("splice: handshake too large")
	// ErrNoSocket is returned by Relay when a side of the flow has neither a conn nor an fd.
	ErrNoSocket = errors.New("splice: flow side has no socket")
	// ErrNoOwner is returned by Relay for a flow without an Owner (its sockets are closed).
	ErrNoOwner = errors.New("splice: flow has no owner")
	// ErrNeedConn is returned by the goroutine engine's Relay for a side given as a raw fd or
	// an upstream still connecting: only the splice engine takes those.
	ErrNeedConn = errors.New("splice: the goroutine engine relays connected net.Conns only")
	// ErrUnknownEngine is returned by NewEngine for a name it does not know.
	ErrUnknownEngine = errors.New("splice: unknown engine")
	// ErrUnsupported is returned by NewSplice where splice(2) does not exist (not Linux).
	ErrUnsupported = errors.New("splice: splice engine is linux-only")
)

// Stats is a snapshot of an engine, for metrics and tests. The goroutine engine reports only
// Active (its pipes belong to the Go runtime).
type Stats struct {
	// Active is the number of flows being relayed.
	Active int
	// PipesInUse are pipes lent to a direction that has bytes in flight.
	PipesInUse int
	// PipesPooled are idle pipes kept for reuse.
	PipesPooled int
	// CopyBuffers are directions relaying through a copy buffer because the pool had no pipe
	// when they needed one (they hold it only while bytes are in flight).
	CopyBuffers int
	// SpliceCalls counts successful splice(2) calls since the engine started.
	SpliceCalls uint64
	// PoolExhausted counts the times a direction found every pipe lent and copied instead.
	PoolExhausted uint64
}

// Options configure an engine. The zero value is usable.
type Options struct {
	// IdleTimeout closes a flow after no byte moved in either direction for this long; if zero,
	// never.
	IdleTimeout time.Duration
	// PipeSize is the capacity asked for each pooled pipe (F_SETPIPE_SZ); if zero, 1 MiB.
	PipeSize int
	// MaxPipes bounds the pool; a direction that finds every pipe lent copies through a buffer
	// instead. If zero, DefaultMaxPipes (256; config's derived flow cap counts on it).
	MaxPipes int
	// Loops is the number of epoll loops; if zero, DefaultLoops.
	Loops int
	// Logf, if non-nil, receives debug lines.
	Logf func(format string, args ...any)
	// Metrics, if non-nil, is fed from the engine's Stats when scraped.
	Metrics *Metrics
}
