package splice

import (
	"fmt"
	"runtime"
	"time"
)

// Engine states.
const (
	stateRunning = iota
	stateDraining
	stateClosed
)

// DefaultMaxPipes bounds the pipe pool when Options.MaxPipes is zero. Each pipe holds 2 fds, so
// the pool can hold 512; config sets the derived --max-conns aside for them.
const DefaultMaxPipes = 256

const (
	defaultPipeSize       = 1 << 20
	defaultConnectTimeout = 10 * time.Second
)

func (o *Options) pipeSize() int {
	if o.PipeSize > 0 {
		return o.PipeSize
	}
	return defaultPipeSize
}

func (o *Options) maxPipes() int {
	if o.MaxPipes > 0 {
		return o.MaxPipes
	}
	return DefaultMaxPipes
}

// DefaultLoops is the number of epoll loops when Options.Loops is zero: one per CPU the Go
// runtime may use (GOMAXPROCS, which follows a container's CPU limit), up to MaxLoops.
func DefaultLoops() int { return min(runtime.GOMAXPROCS(0), MaxLoops) }

// MaxLoops caps DefaultLoops: one pod's traffic gains nothing from more.
const MaxLoops = 4

func (o *Options) loops() int {
	if o.Loops > 0 {
		return o.Loops
	}
	return DefaultLoops()
}

// idleTimeout is 0 when flows never idle out.
func (o *Options) idleTimeout() time.Duration { return max(o.IdleTimeout, 0) }

func (o *Options) logf(format string, args ...any) {
	if o.Logf != nil {
		o.Logf(format, args...)
	}
}

// RaceGrace is how long past ConnectTimeout a racing flow's backstop waits for its Racer to end
// the race by itself: time for a silent resolver to say why (eyeballs gives it 100 ms).
const RaceGrace = time.Second

func (f *Flow) connectTimeout() time.Duration {
	if f.ConnectTimeout > 0 {
		return f.ConnectTimeout
	}
	return defaultConnectTimeout
}

// ResolveEngine names the engine NewEngine builds for name: "auto" (or empty) is "splice" on
// Linux, where the splice engine exists, and "goroutine" elsewhere; any other name is returned
// unchanged. It is the one place that says what auto means: config derives --max-conns from its
// answer and main plans its loops with it, so neither can disagree with the engine built.
func ResolveEngine(name string) string {
	if name != "auto" && name != "" {
		return name
	}
	if runtime.GOOS == "linux" {
		return "splice"
	}
	return "goroutine"
}

// NewEngine builds the engine called name: "splice" (Linux only), "goroutine", or "auto" (or
// empty), which is what ResolveEngine says.
func NewEngine(name string, o Options) (Engine, error) {
	switch ResolveEngine(name) {
	case "splice":
		e, err := NewSplice(o)
		if err != nil {
			return nil, err
		}
		return e, nil
	case "goroutine":
		return NewGoroutine(o), nil
	}
	return nil, fmt.Errorf("%w %q", ErrUnknownEngine, name)
}
