//go:build e2e && !linux

package e2e

import (
	"os"
	"runtime"
	"testing"
)

// TestE2E stands in for the suite on systems without network namespaces.
func TestE2E(t *testing.T) {
	reason := "e2e: the lab needs Linux network namespaces, this is " + runtime.GOOS
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true but the end-to-end suite cannot run: %s", reason)
	}
	t.Skip(reason)
}
