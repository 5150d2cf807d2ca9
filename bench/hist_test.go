package main

import (
	"math"
	"testing"
	"time"
)

func TestHistIndexRoundTrip(t *testing.T) {
	tests := []uint64{0, 1, 127, 128, 255, 256, 257, 1000, 12345, 1 << 20, 999_999_999, 1 << 40}
	for _, v := range tests {
		i := histIndex(v)
		lo, w := histBounds(i)
		if v < lo || v >= lo+w {
			t.Errorf("value %d: bucket %d covers [%d, %d)", v, i, lo, lo+w)
		}
		if v >= histSub && float64(w)/float64(lo) > 1.0/histSub+1e-12 {
			t.Errorf("value %d: bucket width %d too coarse for %d", v, w, lo)
		}
	}
}

func TestHistQuantiles(t *testing.T) {
	tests := []struct {
		name   string
		values func(record func(time.Duration))
		q      float64
		want   time.Duration
		relErr float64
	}{
		{"empty", func(func(time.Duration)) {}, 0.5, 0, 0},
		{"single", func(r func(time.Duration)) { r(42 * time.Microsecond) }, 0.99, 42 * time.Microsecond, 0},
		{"small exact", func(r func(time.Duration)) {
			for v := 1; v <= 100; v++ {
				r(time.Duration(v))
			}
		}, 0.5, 50, 0},
		{"uniform p50", uniform(100_000), 0.5, 50_000 * time.Nanosecond, 0.01},
		{"uniform p99", uniform(100_000), 0.99, 99_000 * time.Nanosecond, 0.01},
		{"uniform p999", uniform(100_000), 0.999, 99_900 * time.Nanosecond, 0.01},
		{"uniform max", uniform(100_000), 1, 100_000 * time.Nanosecond, 0},
		{"bimodal p50 low", func(r func(time.Duration)) {
			for i := 0; i < 900; i++ {
				r(10 * time.Microsecond)
			}
			for i := 0; i < 100; i++ {
				r(10 * time.Millisecond)
			}
		}, 0.5, 10 * time.Microsecond, 0.01},
		{"bimodal p95 high", func(r func(time.Duration)) {
			for i := 0; i < 900; i++ {
				r(10 * time.Microsecond)
			}
			for i := 0; i < 100; i++ {
				r(10 * time.Millisecond)
			}
		}, 0.95, 10 * time.Millisecond, 0.01},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Hist
			tt.values(h.Record)
			got := h.Quantile(tt.q)
			if !within(got, tt.want, tt.relErr) {
				t.Fatalf("Quantile(%v) = %v, want %v (±%.1f%%)", tt.q, got, tt.want, tt.relErr*100)
			}
		})
	}
}

func TestHistMerge(t *testing.T) {
	var a, b, all Hist
	for v := 1; v <= 50_000; v++ {
		a.Record(time.Duration(v))
		all.Record(time.Duration(v))
	}
	for v := 50_001; v <= 100_000; v++ {
		b.Record(time.Duration(v))
		all.Record(time.Duration(v))
	}
	var m Hist
	m.Merge(&a)
	m.Merge(&b)
	m.Merge(nil)
	if m.Count() != all.Count() || m.Max() != all.Max() || m.Mean() != all.Mean() {
		t.Fatalf("merged count/max/mean = %d/%v/%v, want %d/%v/%v",
			m.Count(), m.Max(), m.Mean(), all.Count(), all.Max(), all.Mean())
	}
	for _, q := range []float64{0.01, 0.5, 0.9, 0.99, 0.999} {
		if m.Quantile(q) != all.Quantile(q) {
			t.Errorf("q=%v: merged %v, direct %v", q, m.Quantile(q), all.Quantile(q))
		}
	}
}

func TestHistCDF(t *testing.T) {
	var h Hist
	uniform(10_000)(h.Record)
	pts := h.CDF(50)
	if len(pts) != 50 {
		t.Fatalf("got %d points, want 50", len(pts))
	}
	if last := pts[len(pts)-1]; last.Fraction != 1 || last.Nanos != 10_000 {
		t.Fatalf("last point %+v, want fraction 1 at 10000ns", last)
	}
	for i := 1; i < len(pts); i++ {
		if pts[i].Fraction < pts[i-1].Fraction || pts[i].Nanos < pts[i-1].Nanos {
			t.Fatalf("CDF not monotonic at %d: %+v then %+v", i, pts[i-1], pts[i])
		}
	}
}

func BenchmarkHistRecord(b *testing.B) {
	var h Hist
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		h.Record(time.Duration(i&0xfffff) * time.Nanosecond)
	}
}

func uniform(n int) func(func(time.Duration)) {
	return func(r func(time.Duration)) {
		for v := 1; v <= n; v++ {
			r(time.Duration(v))
		}
	}
}

func within(got, want time.Duration, rel float64) bool {
	if want == 0 {
		return got == 0
	}
	return math.Abs(float64(got-want))/float64(want) <= rel
}
