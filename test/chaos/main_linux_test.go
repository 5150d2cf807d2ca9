//go:build chaos && linux

package chaos

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/nat464/nat464-sidecar/internal/testnet"
)

// sidecarBin is the real binary, built once in TestMain.
var sidecarBin string

// engines are the relay engines the items run on.
var engines = []string{"splice", "goroutine"}

func TestMain(m *testing.M) {
	code := testnet.RunWithSidecar(m, "../../cmd/nat464-sidecar", &sidecarBin)
	if len(figures.rows) > 0 { // the table docs/operations.md shows
		fmt.Println("| scenario | peak fds | peak RSS | peak goroutines | outcome |\n|---|---|---|---|---|")
		fmt.Println(strings.Join(figures.rows, "\n"))
	}
	os.Exit(code)
}

// requireTool is testnet's, under the name the items use.
func requireTool(t *testing.T, name string) string { t.Helper(); return testnet.RequireTool(t, name) }

// sidecar is a running sidecar binary, with the chaos items' probes of it.
type sidecar struct {
	*testnet.Sidecar
	t *testing.T
}

// startSidecar runs the binary (through wrap, such as prlimit, when not nil) with args plus a
// free admin port and text logs, and waits for /startupz. A failed test prints the logs' last
// 8 KiB.
func startSidecar(t *testing.T, wrap []string, args ...string) *sidecar {
	t.Helper()
	l := testnet.Launcher{Bin: sidecarBin, Wrap: wrap, LogTailKiB: 8}
	return &sidecar{l.Start(t, args...), t}
}

// mustBeAlive fails t with the panic in the logs, or their tail, if the process has exited.
func (s *sidecar) mustBeAlive(t *testing.T, when string) {
	t.Helper()
	if !s.Alive() {
		t.Fatalf("sidecar died %s (exit %d); logs:\n%s", when, s.ExitCode(), crashLines(s.Logs.String()))
	}
}

// crashLines returns the panic and its first frames when the logs hold one, else their tail.
func crashLines(logs string) string {
	for _, mark := range []string{"panic:", "fatal error:", "SIGSEGV"} {
		if i := strings.Index(logs, mark); i >= 0 {
			return logs[i:min(len(logs), i+4<<10)]
		}
	}
	return testnet.Tail(logs, 4<<10)
}
