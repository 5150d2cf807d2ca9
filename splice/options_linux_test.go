package splice

import "testing"

// TestEnginePoolBound: the engine built from zero Options bounds its pool at DefaultMaxPipes.
func TestEnginePoolBound(t *testing.T) {
	e, err := NewSplice(Options{Loops: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if e.pool.max != DefaultMaxPipes {
		t.Errorf("pool bound %d, want DefaultMaxPipes (%d)", e.pool.max, DefaultMaxPipes)
	}
}
