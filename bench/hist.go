package main

import (
	"math"
	"math/bits"
	"time"
)

// histSubBits sets the precision of Hist: each power-of-two range of values
// is split into 2^histSubBits linear buckets, so a recorded value is known to
// within 1/128 (0.8%) of itself.
const histSubBits = 7

// histMaxShift bounds the range: values up to 2^(histMaxShift+histSubBits+1)
// nanoseconds (about 4.9 hours) are kept exactly in their bucket; larger ones
// are clamped into the last bucket.
const histMaxShift = 36

const (
	histSub     = 1 << histSubBits
	histBuckets = (histMaxShift + 2) * histSub
)

// Hist is a log-linear latency histogram in the spirit of HDR histograms:
// linear buckets inside each power of two, so the relative error is bounded
// everywhere. The zero value is ready to use. A Hist is not safe for
// concurrent use: give each worker its own and Merge them afterwards.
type Hist struct {
	counts []uint64
	n      uint64
	min    uint64
	max    uint64
	sum    float64
}

// histIndex returns the bucket of v.
func histIndex(v uint64) int {
	if v < histSub {
		return int(v)
	}
	shift := bits.Len64(v) - histSubBits - 1
	if shift > histMaxShift {
		return histBuckets - 1
	}
	mant := v >> uint(shift)
	return (shift+1)*histSub + int(mant-histSub)
}

// histBounds returns the smallest value of bucket i and the bucket's width.
func histBounds(i int) (lo, width uint64) {
	if i < 2*histSub {
		return uint64(i), 1
	}
	shift := i/histSub - 1
	mant := uint64(histSub + i%histSub)
	return mant << uint(shift), 1 << uint(shift)
}

// Record adds one observation.
func (h *Hist) Record(d time.Duration) {
	v := uint64(0)
	if d > 0 {
		v = uint64(d)
	}
	if h.counts == nil {
		h.counts = make([]uint64, histBuckets)
	}
	h.counts[histIndex(v)]++
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.n++
	h.sum += float64(v)
}

// Merge adds all observations of o to h.
func (h *Hist) Merge(o *Hist) {
	if o == nil || o.n == 0 {
		return
	}
	if h.counts == nil {
		h.counts = make([]uint64, histBuckets)
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.n += o.n
	h.sum += o.sum
}

// Count returns the number of observations.
func (h *Hist) Count() uint64 { return h.n }

// Mean returns the mean observation, or 0 when empty.
func (h *Hist) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.n))
}

// Max returns the largest observation.
func (h *Hist) Max() time.Duration { return time.Duration(h.max) }

// Quantile returns the value below or at which a fraction q (0..1) of the
// observations lie: the midpoint of the bucket holding the ceil(q*n)-th
// smallest observation, clamped to the observed min and max. It returns 0
// when empty.
func (h *Hist) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	q = math.Min(math.Max(q, 0), 1)
	rank := uint64(math.Ceil(q * float64(h.n)))
	if rank == 0 {
		rank = 1
	}
	var cum uint64
	for i, c := range h.counts {
		cum += c
		if cum >= rank {
			lo, w := histBounds(i)
			v := lo + w/2
			v = max(v, h.min)
			v = min(v, h.max)
			return time.Duration(v)
		}
	}
	return time.Duration(h.max)
}

// CDFPoint is one step of a cumulative distribution.
type CDFPoint struct {
	Nanos    float64 `json:"ns"`
	Fraction float64 `json:"f"`
}

// CDF returns the cumulative distribution at the upper edge of every
// non-empty bucket, thinned to at most maxPoints points (the last point, at
// fraction 1, is always kept).
func (h *Hist) CDF(maxPoints int) []CDFPoint {
	if h.n == 0 {
		return nil
	}
	var pts []CDFPoint
	var cum uint64
	for i, c := range h.counts {
		if c == 0 {
			continue
		}
		cum += c
		lo, w := histBounds(i)
		upper := min(lo+w, h.max)
		f := math.Round(float64(cum)/float64(h.n)*1e5) / 1e5
		pts = append(pts, CDFPoint{Nanos: float64(upper), Fraction: f})
	}
	if maxPoints <= 1 || len(pts) <= maxPoints {
		return pts
	}
	step := float64(len(pts)-1) / float64(maxPoints-1)
	out := make([]CDFPoint, 0, maxPoints)
	for k := 0; k < maxPoints-1; k++ {
		out = append(out, pts[int(float64(k)*step)])
	}
	return append(out, pts[len(pts)-1])
}
