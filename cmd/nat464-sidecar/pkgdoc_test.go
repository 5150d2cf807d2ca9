package main

import (
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Every package of the sidecar module says what it is for in exactly one package doc comment.
func TestEveryPackageHasOneDoc(t *testing.T) {
	root := filepath.Join("..", "..")
	dirs := map[string][]string{} // dir -> files carrying a package doc
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			// Nested modules and non-code trees are not this module's packages.
			if path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "bench" ||
				name == "deploy" || name == "bin" || name == "dist") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.PackageClauseOnly|parser.ParseComments)
		if err != nil {
			return err
		}
		dir := filepath.Dir(path)
		if _, ok := dirs[dir]; !ok {
			dirs[dir] = nil
		}
		if f.Doc != nil && strings.TrimSpace(f.Doc.Text()) != "" && !strings.HasPrefix(f.Doc.Text(), "Code generated") {
			dirs[dir] = append(dirs[dir], filepath.Base(path))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) < 10 {
		t.Fatalf("found only %d packages; is the walk rooted right?", len(dirs))
	}
	for dir, docs := range dirs {
		if len(docs) != 1 {
			t.Errorf("package %s has %d package doc comments (%v), want exactly 1", dir, len(docs), docs)
		}
	}
}

// make help lists every .PHONY target and every target with a ## comment, and prints no
// unexpanded make variable: its awk pattern once skipped names with digits (test-e2e) and a
// comment once showed $(DIST) literally.
func TestMakeHelpListsEveryTarget(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("make not found (required when CI=true)")
		}
		t.Skip("make not found")
	}
	root := filepath.Join("..", "..")
	makefile, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	documented := regexp.MustCompile(`^([^\s:#=]+):.*## `)
	for _, line := range strings.Split(string(makefile), "\n") {
		if rest, ok := strings.CutPrefix(line, ".PHONY:"); ok {
			for _, name := range strings.Fields(rest) {
				want[name] = true
			}
		}
		if m := documented.FindStringSubmatch(line); m != nil {
			want[m[1]] = true
		}
	}
	if len(want) < 10 {
		t.Fatalf("found only %d targets in the Makefile", len(want))
	}
	out, err := exec.Command("make", "-s", "--no-print-directory", "-C", root, "help").CombinedOutput()
	if err != nil {
		t.Fatalf("make help: %v\n%s", err, out)
	}
	listed := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			listed[f[0]] = true
		}
	}
	for name := range want {
		if !listed[name] {
			t.Errorf("make help does not list %s", name)
		}
	}
	if strings.Contains(string(out), "$(") {
		t.Errorf("make help prints an unexpanded variable:\n%s", out)
	}
}
