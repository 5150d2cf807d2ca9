package socks

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestLeaf holds the package to its doc: wire formats only. It lists what the package and its
// tests compile (the fuzz targets build with both) and fails on any other package of this
// module, and on the DNS and metrics libraries that an import of resolver or nat64 drags in.
// The error -> reply-code table lived here once and pulled in both; it is loop's now.
func TestLeaf(t *testing.T) {
	goTool := findGo(t)
	out, err := exec.Command(goTool, "list", "-deps", "-test",
		"-f", "{{.ImportPath}}\t{{with .Module}}{{.Path}}{{end}}", ".").Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("go list -deps: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list -deps: %v", err)
	}
	self, mod := selfModule(t, goTool)
	var bad []string
	for line := range strings.Lines(string(out)) {
		path, module, _ := strings.Cut(strings.TrimSpace(line), "\t")
		path, _, _ = strings.Cut(path, " ") // "p [p.test]": p compiled for the test binary
		if path == self || path == self+".test" || path == self+"_test" {
			continue
		}
		if forbiddenDep(path, module, mod) {
			bad = append(bad, path)
		}
	}
	if len(bad) > 0 {
		t.Errorf("package %s must be a leaf, but it compiles:\n\t%s", self, strings.Join(bad, "\n\t"))
	}
}

// forbiddenDep says whether socks may not depend on path, a package of module (empty for the
// standard library); mod is this repository's module.
func forbiddenDep(path, module, mod string) bool {
	if module == mod {
		return true
	}
	for _, p := range []string{"github.com/miekg/dns", "github.com/prometheus/", "golang.org/x/net/dns"} {
		if strings.HasPrefix(path, p) {
			return true
		}
	}
	return false
}

func TestForbiddenDep(t *testing.T) {
	const mod = "github.com/nat464/nat464-sidecar"
	for _, tt := range []struct {
		path, module string
		want         bool
	}{
		{mod + "/resolver", mod, true},
		{mod + "/internal/testnet", mod, true},
		{"github.com/miekg/dns", "github.com/miekg/dns", true},
		{"github.com/prometheus/client_golang/prometheus", "github.com/prometheus/client_golang", true},
		{"golang.org/x/net/dns/dnsmessage", "golang.org/x/net", true},
		{"golang.org/x/net/proxy", "golang.org/x/net", false},
		{"go.uber.org/goleak", "go.uber.org/goleak", false},
		{"vendor/golang.org/x/net/dns/dnsmessage", "", false}, // the standard library's own copy, for net
		{"net", "", false},
	} {
		if got := forbiddenDep(tt.path, tt.module, mod); got != tt.want {
			t.Errorf("forbiddenDep(%q, %q) = %v, want %v", tt.path, tt.module, got, tt.want)
		}
	}
}

// selfModule returns this package's import path and its module's path.
func selfModule(t *testing.T, goTool string) (path, module string) {
	out, err := exec.Command(goTool, "list", "-f", "{{.ImportPath}}\t{{.Module.Path}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	path, module, ok := strings.Cut(strings.TrimSpace(string(out)), "\t")
	if !ok || module == "" {
		t.Fatalf("go list printed %q, want an import path and a module", out)
	}
	return path, module
}

// findGo returns the go command: from PATH, else the toolchain this test was built with. Without
// one the test skips, loudly, and under CI=true it fails.
func findGo(t *testing.T) string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("no go command in PATH or at %s: the leaf check cannot run, and CI=true forbids skipping", p)
	}
	t.Skipf("SKIPPING the leaf check: no go command in PATH or at %s", p)
	return ""
}
