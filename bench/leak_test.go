package main

import (
	"os"
	"runtime"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// needLinux skips a test that needs Linux, but fails it under CI=true, where
// a skip would hide a gap.
func needLinux(t *testing.T) {
	t.Helper()
	if runtime.GOOS == "linux" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true: this test needs Linux (/proc), but GOOS=%s; refusing to skip", runtime.GOOS)
	}
	t.Skipf("needs Linux (/proc), GOOS=%s", runtime.GOOS)
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("read /proc/self/fd: %v", err)
	}
	return len(ents)
}

// checkLeaks records the open fds now and, at cleanup, fails the test if
// goroutines or fds were left behind.
func checkLeaks(t *testing.T) {
	t.Helper()
	needLinux(t)
	before := openFDs(t)
	t.Cleanup(func() {
		goleak.VerifyNone(t, goleak.IgnoreCurrent())
		// Closed sockets leave the fd table synchronously, but give the
		// runtime's netpoller a moment to settle before failing.
		deadline := time.Now().Add(2 * time.Second)
		for openFDs(t) > before && time.Now().Before(deadline) {
			runtime.Gosched()
		}
		if after := openFDs(t); after > before {
			t.Errorf("fd leak: %d open before, %d after", before, after)
		}
	})
}
