//go:build chaos && !linux

package chaos

import (
	"os"
	"runtime"
	"testing"
)

// The suite drives the splice engine, prlimit and /proc: Linux only.
func TestNeedsLinux(t *testing.T) {
	if os.Getenv("CI") == "true" {
		t.Fatalf("the chaos suite needs Linux and CI=true forbids skipping it (GOOS=%s)", runtime.GOOS)
	}
	t.Skip("the chaos suite needs Linux")
}
