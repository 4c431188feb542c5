package shrink

import (
	"runtime"
	"testing"
)

func TestMapRebuildsOnlyWhenMostlyEmpty(t *testing.T) {
	m := map[int]int{}
	peak := 0
	for i := range 1000 {
		m[i] = i
		peak = max(peak, len(m))
	}
	for i := range 700 {
		delete(m, i)
	}
	if got := Map(m, &peak); peak != 1000 || len(got) != 300 {
		t.Fatalf("rebuilt at 300 of 1000 (peak now %d)", peak)
	}
	for i := 700; i < 990; i++ {
		delete(m, i)
	}
	got := Map(m, &peak)
	if peak != 10 || len(got) != 10 {
		t.Fatalf("at 10 of 1000: %d entries, peak %d; want a rebuild to 10", len(got), peak)
	}
	for i := 990; i < 1000; i++ {
		if got[i] != i {
			t.Fatalf("entry %d lost in the rebuild", i)
		}
	}
	small := map[int]int{1: 1}
	smallPeak := 100
	if Map(small, &smallPeak); smallPeak != 100 {
		t.Fatal("a map that never held minPeak entries was rebuilt")
	}
}

// The point of it all: a rebuilt map gives its room back.
func TestMapGivesMemoryBack(t *testing.T) {
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	m := map[int][64]byte{}
	peak := 0
	for i := range 100000 {
		m[i] = [64]byte{}
	}
	peak = len(m)
	for i := range 100000 - 10 {
		delete(m, i)
	}
	kept := heap()
	m = Map(m, &peak)
	if freed := int64(kept) - int64(heap()); freed < 4<<20 {
		t.Fatalf("rebuilding a map emptied of 100,000 entries freed %d bytes", freed)
	}
	runtime.KeepAlive(m)
}
