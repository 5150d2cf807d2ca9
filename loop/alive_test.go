package loop

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

// pinger is a Frontend whose Ping answers err.
type pinger struct {
	Frontend
	err error
}

func (p pinger) Ping(context.Context) error { return p.err }

// Alive passes a front end that restarts its event loops (readiness still fails on Ping) and
// fails one that does not answer.
func TestAlive(t *testing.T) {
	hung := errors.New("loop: event loop unresponsive")
	for _, tc := range []struct {
		ping, want error
	}{
		{nil, nil},
		{ErrRestarting, nil},
		{fmt.Errorf("wrapped: %w", ErrRestarting), nil},
		{hung, hung},
	} {
		if got := Alive(pinger{err: tc.ping})(t.Context()); !errors.Is(got, tc.want) || (tc.want == nil) != (got == nil) {
			t.Errorf("Alive with Ping %v = %v, want %v", tc.ping, got, tc.want)
		}
	}
}
