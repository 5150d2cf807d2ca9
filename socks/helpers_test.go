package socks

import (
	"bytes"
	"errors"
	"os"
	"testing"
)

// parser is any of the package's parsers with its message type erased.
type parser func([]byte) (any, int, error)

func erase[T any](f func([]byte) (T, int, error)) parser {
	return func(b []byte) (any, int, error) { return f(b) }
}

// checkComplete asserts the contract on a valid message: every strict prefix asks for more and
// consumes nothing, the whole message parses, and bytes after it are left alone.
func checkComplete(t *testing.T, p parser, msg []byte) any {
	t.Helper()
	for i := 0; i < len(msg); i++ {
		_, n, err := p(msg[:i])
		if !errors.Is(err, ErrNeedMore) || n != 0 {
			t.Fatalf("prefix of %d/%d bytes: n=%d err=%v, want 0 and ErrNeedMore", i, len(msg), n, err)
		}
	}
	v, n, err := p(msg)
	if err != nil || n != len(msg) {
		t.Fatalf("whole message: n=%d err=%v, want %d and nil", n, err, len(msg))
	}
	extra := append(bytes.Clone(msg), "early data"...)
	if _, n2, err := p(extra); err != nil || n2 != len(msg) {
		t.Fatalf("with trailing data: n=%d err=%v, want %d and nil", n2, err, len(msg))
	}
	return v
}

// checkInvariants is what every parser guarantees on any input (used by the fuzz targets).
func checkInvariants(t *testing.T, b []byte, n int, err error) {
	t.Helper()
	if n < 0 || n > len(b) {
		t.Fatalf("n=%d outside [0, %d]", n, len(b))
	}
	if err != nil && n != 0 {
		t.Fatalf("error %v with n=%d, want 0", err, n)
	}
	if err == nil && n == 0 {
		t.Fatalf("success consuming 0 bytes")
	}
}

// truncationCases cuts a valid message at every offset, for fuzz seeds.
func truncationCases(msg []byte) [][]byte {
	out := make([][]byte, 0, len(msg))
	for i := range msg {
		out = append(out, msg[:i])
	}
	return out
}

// checkFDs fails t if it ends with more open file descriptors than it started with (Linux only:
// elsewhere /proc/self/fd is missing and the check is skipped).
func checkFDs(t *testing.T) {
	t.Helper()
	before, err := countFDs()
	if err != nil {
		return
	}
	t.Cleanup(func() {
		if after, err := countFDs(); err == nil && after > before {
			t.Errorf("fd leak: %d open fds at start, %d at end", before, after)
		}
	})
}

func countFDs() (int, error) {
	ents, err := os.ReadDir("/proc/self/fd")
	return len(ents), err
}
