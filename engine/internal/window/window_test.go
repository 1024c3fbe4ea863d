package window

import (
	"math/rand/v2"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Both filters against a brute force over random samples and windows.
func TestAgainstBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, window := range []time.Duration{0, 5 * time.Millisecond, 50 * time.Millisecond, time.Second} {
		var mx Max[int]
		var mn Min[int]
		type s struct {
			at time.Time
			v  int
		}
		var all []s
		now := t0
		for i := 0; i < 2000; i++ {
			now = now.Add(time.Duration(r.IntN(10)) * time.Millisecond)
			v := r.IntN(100) - 50
			all = append(all, s{now, v})
			gotMax, gotMin := mx.Update(now, v, window), mn.Update(now, v, window)
			wantMax, wantMin := v, v
			for _, x := range all {
				if now.Sub(x.at) <= window {
					wantMax, wantMin = max(wantMax, x.v), min(wantMin, x.v)
				}
			}
			if gotMax != wantMax || mx.Get() != wantMax {
				t.Fatalf("window %v, sample %d: max %d (Get %d), want %d", window, i, gotMax, mx.Get(), wantMax)
			}
			if gotMin != wantMin || mn.Get() != wantMin {
				t.Fatalf("window %v, sample %d: min %d (Get %d), want %d", window, i, gotMin, mn.Get(), wantMin)
			}
		}
	}
}

func TestEmptyIsZero(t *testing.T) {
	var mx Max[float64]
	var mn Min[time.Duration]
	if mx.Get() != 0 || mn.Get() != 0 {
		t.Fatalf("empty filters: max %v, min %v, want zeros", mx.Get(), mn.Get())
	}
}

// The newest sample stays even when older than the window.
func TestKeepsNewest(t *testing.T) {
	var mn Min[int]
	mn.Update(t0, 5, time.Millisecond)
	if got := mn.Update(t0.Add(time.Hour), 9, time.Millisecond); got != 9 {
		t.Fatalf("after an hour's gap: %d, want the newest sample 9", got)
	}
}
