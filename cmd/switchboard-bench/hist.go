//go:build linux

package main

import (
	"math"
	"math/bits"
)

// Histogram is a log-linear histogram of non-negative values (nanoseconds):
// exact below 64, then 64 buckets per power of two, so a recorded value is
// known within 1/64 (1.6%). It has a fixed size (about 30 KB), records
// without allocating, and is not safe for concurrent use.
type Histogram struct {
	counts [histBuckets]uint64
	n      uint64
	sum    float64
	min    uint64
	max    uint64
}

const (
	histSubBits = 6
	histSub     = 1 << histSubBits // buckets per power of two
	histBuckets = histSub * (64 - histSubBits + 1)
)

// histIndex returns v's bucket.
func histIndex(v uint64) int {
	if v < 2*histSub {
		return int(v)
	}
	e := bits.Len64(v) - histSubBits - 1
	return histSub*(e+1) + int(v>>uint(e)) - histSub
}

// histBounds returns the smallest and largest value of bucket i.
func histBounds(i int) (lo, hi uint64) {
	if i < 2*histSub {
		return uint64(i), uint64(i)
	}
	e := uint(i/histSub - 1)
	m := uint64(i%histSub + histSub)
	return m << e, (m+1)<<e - 1
}

// Record adds one value; negative values count as 0.
func (h *Histogram) Record(v int64) {
	if v < 0 {
		v = 0
	}
	u := uint64(v)
	h.counts[histIndex(u)]++
	if h.n == 0 || u < h.min {
		h.min = u
	}
	if u > h.max {
		h.max = u
	}
	h.n++
	h.sum += float64(u)
}

// Count returns the number of recorded values.
func (h *Histogram) Count() uint64 { return h.n }

// Max returns the largest recorded value.
func (h *Histogram) Max() uint64 { return h.max }

// Mean returns the mean of recorded values, 0 when empty.
func (h *Histogram) Mean() float64 {
	if h.n == 0 {
		return 0
	}
	return h.sum / float64(h.n)
}

// Merge adds o's values to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.n == 0 {
		return
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

// Quantile returns the value at quantile q in [0,1]: the largest value of
// the bucket holding the ceil(q*n)-th value, capped by the recorded
// maximum. It returns 0 when empty.
func (h *Histogram) Quantile(q float64) uint64 {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			_, hi := histBounds(i)
			return min(max(hi, h.min), h.max)
		}
	}
	return h.max
}

// Bucket is one non-empty histogram bucket, for reports.
type Bucket struct {
	LoNS  uint64 `json:"lo_ns"`
	HiNS  uint64 `json:"hi_ns"`
	Count uint64 `json:"count"`
}

// Buckets returns the non-empty buckets in order, merging each group of
// merge adjacent buckets (a divisor of 64: 8 gives 8 buckets per power of
// two, within 12.5%).
func (h *Histogram) Buckets(merge int) []Bucket {
	if merge <= 0 || histSub%merge != 0 {
		merge = 1
	}
	var out []Bucket
	for i := 0; i < histBuckets; i += merge {
		var c uint64
		for _, v := range h.counts[i : i+merge] {
			c += v
		}
		if c != 0 {
			lo, _ := histBounds(i)
			_, hi := histBounds(i + merge - 1)
			out = append(out, Bucket{lo, hi, c})
		}
	}
	return out
}
