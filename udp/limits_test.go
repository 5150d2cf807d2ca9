package udp

import "testing"

// Limits takes a slot from every limiter or from none.
func TestLimits(t *testing.T) {
	a, b := &slots{max: 2}, &slots{max: 1}
	l := Limits(a, b)
	if !l.Acquire() {
		t.Fatal("first acquire refused")
	}
	if l.Acquire() {
		t.Fatal("second acquire granted over b's single slot")
	}
	if a.inUse() != 1 || b.inUse() != 1 {
		t.Fatalf("in use: a %d b %d, want 1 and 1 (a given back)", a.inUse(), b.inUse())
	}
	l.Release()
	if a.inUse() != 0 || b.inUse() != 0 {
		t.Fatalf("after release: a %d b %d", a.inUse(), b.inUse())
	}
}
