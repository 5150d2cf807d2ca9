package loop

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"syscall"
	"time"
)

// ErrRestarting is Ping's answer while the proxy port's event loops are being started again after
// they stopped by themselves (gnet ends its engine when accept(2) hits the open-file limit).
var ErrRestarting = errors.New("loop: proxy event loops stopped; starting them again")

// Alive is f.Ping for a liveness probe: a front end starting its event loops again is recovering
// by itself and counts as alive; readiness, which calls Ping itself, still reports it.
func Alive(f Frontend) func(context.Context) error {
	return func(ctx context.Context) error {
		if err := f.Ping(ctx); !errors.Is(err, ErrRestarting) {
			return err
		}
		return nil
	}
}

// ErrFileLimit wraps EMFILE/ENFILE so the log says plainly that the open-file limit was hit.
var ErrFileLimit = errors.New("loop: open-file limit reached (each flow holds 2 fds, 4 while bytes are in flight); lower --max-conns or raise RLIMIT_NOFILE")

// fdErr makes an fd-exhaustion error say so; other errors pass through.
func fdErr(err error) error {
	if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
		return fmt.Errorf("%w: %w", ErrFileLimit, err)
	}
	return err
}

// throttle lets one caller through per second; the others are told to stay quiet.
type throttle struct{ last atomic.Int64 }

func (t *throttle) allow() bool {
	now := time.Now().UnixNano()
	last := t.last.Load()
	return now-last >= int64(time.Second) && t.last.CompareAndSwap(last, now)
}

var fullWarnings, acceptErrors, connectWarnings, egressWarnings throttle

// warnFull logs, at most once a second, that the flow cap turned connections away.
func warnFull(lg *slog.Logger, l *Limiter) {
	if fullWarnings.allow() {
		lg.Warn("max-conns reached: new connections are accepted and closed at once", "max_conns", l.Max())
	}
}

// logAcceptError logs, at most once a second, an accept failure of an inbound listener: while
// the process is out of fds every relay loop meets one per pause.
func logAcceptError(lg *slog.Logger, listen string, err error) {
	if acceptErrors.allow() {
		lg.Error("accept failed", "listen", listen, "err", fdErr(err))
	}
}
