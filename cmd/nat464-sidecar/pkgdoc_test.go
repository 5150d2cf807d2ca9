package main

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
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
