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

const (
	defaultPipeSize       = 1 << 20
	defaultMaxPipes       = 256
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
	return defaultMaxPipes
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

func (f *Flow) connectTimeout() time.Duration {
	if f.ConnectTimeout > 0 {
		return f.ConnectTimeout
	}
	return defaultConnectTimeout
}

// NewEngine builds the engine called name: "splice" (Linux only), "goroutine", or "auto" (or
// empty), which is splice on Linux and goroutine elsewhere.
func NewEngine(name string, o Options) (Engine, error) {
	switch name {
	case "auto", "":
		if runtime.GOOS != "linux" {
			return NewGoroutine(o), nil
		}
		return NewEngine("splice", o)
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
