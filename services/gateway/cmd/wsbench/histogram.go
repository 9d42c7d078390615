package main

import (
	"math/bits"
	"sync/atomic"
)

// histogram is a fixed-size log-linear histogram of microsecond values, safe for concurrent use: 64 exact
// buckets below 64 µs, then 32 sub-buckets per power of two (at most ~3% relative error), up to 2^63 µs.
type histogram struct {
	counts [64 + 58*32]atomic.Uint64
	max    atomic.Uint64
}

const subBuckets = 32

func bucketOf(us uint64) int {
	if us < 64 {
		return int(us)
	}
	shift := bits.Len64(us) - 6 // us >> shift is within [32, 63]
	return 64 + (shift-1)*subBuckets + int(us>>shift) - subBuckets
}

// upperOf is the largest value that falls in bucket i, in microseconds.
func upperOf(i int) uint64 {
	if i < 64 {
		return uint64(i)
	}
	shift := (i-64)/subBuckets + 1
	mant := uint64((i-64)%subBuckets + subBuckets)
	return (mant+1)<<shift - 1
}

// record adds one value in microseconds (negative values, from clock skew, count as zero).
func (h *histogram) record(us int64) {
	if us < 0 {
		us = 0
	}
	v := uint64(us)
	h.counts[bucketOf(v)].Add(1)
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			return
		}
	}
}

// quantile returns the upper bound of the bucket holding quantile q (0..1), in microseconds.
func (h *histogram) quantile(q float64) uint64 {
	var total uint64
	for i := range h.counts {
		total += h.counts[i].Load()
	}
	if total == 0 {
		return 0
	}
	rank := uint64(q*float64(total) + 0.5)
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			return min(upperOf(i), h.max.Load())
		}
	}
	return h.max.Load()
}
