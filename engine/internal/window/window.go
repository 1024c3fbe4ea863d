// Package window keeps the maximum or minimum of timed samples over a
// sliding time window, in constant amortised time per sample (a monotonic
// deque: a sample that a newer, at least as extreme one outlives can never
// be the answer again, and is dropped).
package window

import (
	"cmp"
	"time"
)

// Max is the maximum of the samples over the last window. The zero value
// is empty.
type Max[T cmp.Ordered] struct{ d deque[T] }

// Update adds v at now, forgets samples older than window (keeping the
// newest), and returns the maximum.
func (f *Max[T]) Update(now time.Time, v T, window time.Duration) T {
	return f.d.update(now, v, window, func(old, v T) bool { return old <= v })
}

// Get returns the maximum as of the last Update; the zero value if empty.
func (f *Max[T]) Get() T { return f.d.first() }

// Min is the minimum of the samples over the last window. The zero value
// is empty.
type Min[T cmp.Ordered] struct{ d deque[T] }

// Update adds v at now, forgets samples older than window (keeping the
// newest), and returns the minimum.
func (f *Min[T]) Update(now time.Time, v T, window time.Duration) T {
	return f.d.update(now, v, window, func(old, v T) bool { return old >= v })
}

// Get returns the minimum as of the last Update; the zero value if empty.
func (f *Min[T]) Get() T { return f.d.first() }

type sample[T any] struct {
	at time.Time
	v  T
}

// deque holds samples in order of time, each more extreme than every
// later one.
type deque[T any] struct{ s []sample[T] }

func (d *deque[T]) update(now time.Time, v T, window time.Duration, dominated func(old, v T) bool) T {
	for len(d.s) > 0 && dominated(d.s[len(d.s)-1].v, v) {
		d.s = d.s[:len(d.s)-1]
	}
	d.s = append(d.s, sample[T]{now, v})
	i := 0
	for i < len(d.s)-1 && now.Sub(d.s[i].at) > window {
		i++
	}
	if i > 0 {
		d.s = append(d.s[:0], d.s[i:]...)
	}
	return d.s[0].v
}

func (d *deque[T]) first() T {
	if len(d.s) == 0 {
		var zero T
		return zero
	}
	return d.s[0].v
}
