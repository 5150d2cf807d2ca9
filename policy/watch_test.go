package policy

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestWatchConfigMapSwap: a ConfigMap update writes a new directory and swaps the ..data
// symlink; the file's own path (a symlink through ..data) never changes. Watch sees it, and
// an in-place rewrite and a removal too.
func TestWatchConfigMapSwap(t *testing.T) {
	dir := t.TempDir()
	write := func(sub, body string) {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, sub, "policy"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	swap := func(sub string) {
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(sub, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	write("..v1", "deny 192.0.2.0/24\n")
	swap("..v1")
	path := filepath.Join(dir, "policy")
	if err := os.Symlink("..data/policy", path); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	changed := make(chan struct{}, 8)
	done := make(chan struct{})
	w := NewWatcher(path)
	go func() {
		defer close(done)
		w.Run(ctx, 5*time.Millisecond, func() { changed <- struct{}{} })
	}()
	defer func() { cancel(); <-done }()
	wait := func(what string) {
		t.Helper()
		select {
		case <-changed:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no change seen", what)
		}
	}
	write("..v2", "deny 192.0.2.0/24\n") // same size, same content: only the inode differs
	swap("..v2")
	wait("symlink swap")
	if err := os.WriteFile(filepath.Join(dir, "..v2", "policy"), []byte("deny 198.51.100.0/24\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	wait("rewrite in place")
	if err := os.Remove(filepath.Join(dir, "..v2", "policy")); err != nil {
		t.Fatal(err)
	}
	wait("removal")
	select {
	case <-changed:
		t.Error("a change reported with nothing changed")
	case <-time.After(50 * time.Millisecond):
	}
}
