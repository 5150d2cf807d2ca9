package splice

import (
	"errors"
	"runtime"
	"testing"
)

// TestResolveEngine: auto is splice on Linux and goroutine elsewhere, and NewEngine builds
// exactly the engine ResolveEngine names, so the callers that plan with ResolveEngine's answer
// (config's --max-conns, main's loop plan) cannot drift from the engine that runs.
func TestResolveEngine(t *testing.T) {
	auto := "goroutine"
	if runtime.GOOS == "linux" {
		auto = "splice"
	}
	for _, tt := range []struct{ name, want string }{
		{"auto", auto}, {"", auto}, {"splice", "splice"}, {"goroutine", "goroutine"}, {"turbo", "turbo"},
	} {
		if got := ResolveEngine(tt.name); got != tt.want {
			t.Errorf("ResolveEngine(%q) = %q, want %q", tt.name, got, tt.want)
		}
	}
	for _, name := range []string{"auto", "", "goroutine", "splice"} {
		if name == "splice" && runtime.GOOS != "linux" {
			continue
		}
		e, err := NewEngine(name, Options{Loops: 1})
		if err != nil {
			t.Fatalf("NewEngine(%q): %v", name, err)
		}
		if got := e.Name(); got != ResolveEngine(name) {
			t.Errorf("NewEngine(%q) built %q, ResolveEngine says %q", name, got, ResolveEngine(name))
		}
		e.Close()
	}
	if _, err := NewEngine("turbo", Options{}); !errors.Is(err, ErrUnknownEngine) {
		t.Errorf("NewEngine(turbo) = %v, want ErrUnknownEngine", err)
	}
}

// TestDefaultMaxPipes: a zero MaxPipes means DefaultMaxPipes, the one constant config's derived
// --max-conns sets fds aside for.
func TestDefaultMaxPipes(t *testing.T) {
	if got := (&Options{}).maxPipes(); got != DefaultMaxPipes {
		t.Errorf("zero Options: %d pipes, want DefaultMaxPipes (%d)", got, DefaultMaxPipes)
	}
	if got := (&Options{MaxPipes: 3}).maxPipes(); got != 3 {
		t.Errorf("MaxPipes 3: %d pipes", got)
	}
}
