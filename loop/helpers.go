package loop

import (
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"syscall"
	"time"
)

// ErrFileLimit wraps EMFILE/ENFILE so the log says plainly that the open-file limit was hit.
var ErrFileLimit = errors.New("loop: open-file limit reached (each flow holds 2 fds, 4 while bytes are in flight); lower --max-conns or raise RLIMIT_NOFILE")

// fdErr makes an fd-exhaustion error say so; other errors pass through.
func fdErr(err error) error {
	if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
		return fmt.Errorf("%w: %w", ErrFileLimit, err)
	}
	return err
}

var lastFullWarning atomic.Int64

// warnFull logs, at most once a second, that the flow cap turned connections away.
func warnFull(lg *slog.Logger, l *Limiter) {
	now := time.Now().UnixNano()
	last := lastFullWarning.Load()
	if now-last < int64(time.Second) || !lastFullWarning.CompareAndSwap(last, now) {
		return
	}
	lg.Warn("max-conns reached: new connections are accepted and closed at once", "max_conns", l.Max())
}
