package main

import "testing"

func TestBucketsCoverValues(t *testing.T) {
	for _, v := range []uint64{0, 1, 63, 64, 65, 100, 1000, 49_999, 1 << 40} {
		i := bucketOf(v)
		if v > upperOf(i) || (i > 0 && v <= upperOf(i-1)) {
			t.Fatalf("%d in bucket %d: (%d, %d]", v, i, upperOf(i-1), upperOf(i))
		}
	}
	var h histogram
	for v := int64(1); v <= 10000; v++ {
		h.record(v)
	}
	if p := h.quantile(0.99); p < 9900 || p > 9900*103/100 {
		t.Fatalf("p99 of 1..10000 = %d", p)
	}
	if h.quantile(1) != 10000 {
		t.Fatalf("max = %d", h.quantile(1))
	}
}
