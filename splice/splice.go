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
	"time"
)

// Flow is one connection pair handed to an Engine. From the call to Engine.Relay on, the engine
// owns both sockets (it closes them, also when Relay returns an error).
//
// Each side is given either as a raw file descriptor (ClientFD/UpstreamFD >= 0, non-blocking,
// close-on-exec, owned) or as a net.Conn (Client/Upstream non-nil). Engines accept both forms;
// the splice engine prefers fds, the goroutine engine prefers net.Conns, and each converts the
// other form at some cost. Set the unused fd field to -1.
type Flow struct {
	ClientFD   int
	UpstreamFD int
	Client     net.Conn
	Upstream   net.Conn

	// UpstreamConnecting says the upstream fd comes from a non-blocking connect(2) that may still
	// be in progress. The engine waits for it to finish (bounded by ConnectTimeout) and, when it
	// fails, closes the client and reports the error in Result.ConnectErr.
	UpstreamConnecting bool
	// ConnectTimeout bounds UpstreamConnecting; if zero, 10s.
	ConnectTimeout time.Duration
	// OnConnect, if non-nil, is called once when the connect of an UpstreamConnecting flow has
	// finished: err is nil on success, else what Result.ConnectErr will hold. It runs on an
	// engine goroutine and must not block. On failure, the bytes it returns (a proxy's failure
	// reply) are written to the client, which is then closed with a FIN; if it returns none, the
	// client is reset.
	OnConnect func(err error) (failReply []byte)

	// ToClient is written to the client before any relayed byte (for example a SOCKS reply).
	ToClient []byte
	// ToUpstream is written to the upstream before any relayed byte (optimistic data the client
	// sent together with its handshake).
	ToUpstream []byte

	// Kind labels the flow in results and metrics ("inbound", "outbound").
	Kind string
	// Target names the upstream for logs.
	Target string
	// Done, if non-nil, is called exactly once when the flow has ended and both sockets are closed.
	// It runs on an engine goroutine and must not block.
	Done func(Result)
}

// Result describes a finished flow.
type Result struct {
	Kind   string
	Target string
	// Up counts bytes client -> upstream (ToUpstream included); Down counts upstream -> client
	// (ToClient excluded).
	Up, Down int64
	Start    time.Time
	End      time.Time
	// ConnectErr is set when the upstream connect failed; nothing was relayed.
	ConnectErr error
	// Err is the first error that ended the flow abnormally (reset, idle timeout, drain cut);
	// nil for a flow where both sides closed cleanly.
	Err error
}

// Engine relays flows until they finish.
type Engine interface {
	// Relay takes ownership of f's sockets and relays between them. It does not block on I/O.
	// After Drain or Close has begun, it closes the sockets and returns ErrClosed. f.Done is called
	// exactly once in every case: when Relay fails, before it returns, with Result.Err = the error.
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
	ErrReset       = errors.New("splice: connection reset by peer")
	// ErrNoSocket is returned by Relay when a side of the flow has neither a conn nor an fd.
	ErrNoSocket = errors.New("splice: flow side has no socket")
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
