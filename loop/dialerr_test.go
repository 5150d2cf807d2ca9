package loop

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/nat464/nat464-sidecar/nat64"
	"github.com/nat464/nat464-sidecar/resolver"
)

func TestDialLevel(t *testing.T) {
	opErr := func(err error) error { return &net.OpError{Op: "dial", Net: "tcp", Err: err} }
	cases := []struct {
		name string
		err  error
		want slog.Level
	}{
		{"nameserver silent", opErr(&resolver.NoAnswerError{Name: "x.", Types: []string{"A"}, Tries: 2}), slog.LevelWarn},
		{"no records and a timeout", errors.Join(resolver.ErrNoData, resolver.ErrTimeout), slog.LevelWarn},
		{"servfail", fmt.Errorf("q: %w", resolver.ErrServFail), slog.LevelWarn},
		{"itself", &selfError{}, slog.LevelWarn},
		{"host unreachable", opErr(os.NewSyscallError("connect", syscall.EHOSTUNREACH)), slog.LevelWarn},
		{"connect timed out", opErr(os.NewSyscallError("connect", syscall.ETIMEDOUT)), slog.LevelWarn},
		{"out of fds", opErr(os.NewSyscallError("socket", syscall.EMFILE)), slog.LevelWarn},
		{"nxdomain", fmt.Errorf("q: %w", resolver.ErrNXDomain), slog.LevelInfo},
		{"nodata", fmt.Errorf("q: %w", resolver.ErrNoData), slog.LevelInfo},
		{"refused", opErr(os.NewSyscallError("connect", syscall.ECONNREFUSED)), slog.LevelInfo},
		{"nat64 policy", fmt.Errorf("s: %w", nat64.ErrPolicy), slog.LevelInfo},
		{"client gone", opErr(context.Canceled), slog.LevelInfo},
	}
	for _, tc := range cases {
		if got := dialLevel(tc.err); got != tc.want {
			t.Errorf("%s: level %v, want %v", tc.name, got, tc.want)
		}
	}
}
