package loop

import "sync/atomic"

// Limiter caps concurrent flows. A connection takes a slot at accept and gives it back when its
// flow ends (or its handshake fails).
type Limiter struct {
	max    int64
	active atomic.Int64
}

// NewLimiter returns a limiter of n slots.
func NewLimiter(n int) *Limiter { return &Limiter{max: int64(n)} }

// Acquire takes a slot; false means the cap is reached.
func (l *Limiter) Acquire() bool {
	if l.active.Add(1) > l.max {
		l.active.Add(-1)
		return false
	}
	return true
}

// Release gives a slot back.
func (l *Limiter) Release() { l.active.Add(-1) }

// Active reports the slots in use.
func (l *Limiter) Active() int { return int(l.active.Load()) }

// Max reports the cap.
func (l *Limiter) Max() int { return int(l.max) }
