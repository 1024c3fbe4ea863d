package cache

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// TestQueueBackoff: a failing put is retried with doubling delays until it
// succeeds; nothing is dropped.
func TestQueueBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var at []time.Duration
		start := time.Now()
		fails := 4
		q := NewQueue(func(ctx context.Context, id string) error {
			mu.Lock()
			defer mu.Unlock()
			at = append(at, time.Since(start))
			if fails > 0 {
				fails--
				return errors.New("server away")
			}
			return nil
		}, 2, time.Second, 5*time.Second, nil)
		defer q.Stop()
		q.Add("a", 0)
		if err := q.Drain(context.Background()); err != nil {
			t.Fatal(err)
		}
		want := []time.Duration{0, 1 * time.Second, 3 * time.Second, 7 * time.Second, 12 * time.Second}
		mu.Lock()
		defer mu.Unlock()
		if len(at) != len(want) {
			t.Fatalf("attempts at %v, want %v", at, want)
		}
		for i := range want {
			if at[i] != want[i] {
				t.Fatalf("attempts at %v, want %v (doubling from 1 s, capped at 5 s)", at, want)
			}
		}
	})
}

// TestQueueConcurrencyLimit: no more than limit puts run at once, and all
// run.
func TestQueueConcurrencyLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		running, peak, done := 0, 0, 0
		q := NewQueue(func(ctx context.Context, id string) error {
			mu.Lock()
			running++
			peak = max(peak, running)
			mu.Unlock()
			time.Sleep(time.Second)
			mu.Lock()
			running--
			done++
			mu.Unlock()
			return nil
		}, 3, time.Second, time.Minute, nil)
		defer q.Stop()
		for _, id := range []string{"a", "b", "c", "d", "e", "f", "g"} {
			q.Add(id, 0)
		}
		start := time.Now()
		if err := q.Drain(context.Background()); err != nil {
			t.Fatal(err)
		}
		if peak != 3 || done != 7 {
			t.Fatalf("peak %d running (want 3), %d done (want 7)", peak, done)
		}
		if d := time.Since(start); d != 3*time.Second {
			t.Fatalf("7 one-second puts, 3 at a time, took %v, want 3s", d)
		}
	})
}

// TestQueueAddWhileRunning: an id added while its put runs runs once more;
// ids are not run twice at once.
func TestQueueAddWhileRunning(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		runs, concurrent, maxConcurrent := 0, 0, 0
		q := NewQueue(func(ctx context.Context, id string) error {
			mu.Lock()
			runs++
			concurrent++
			maxConcurrent = max(maxConcurrent, concurrent)
			mu.Unlock()
			time.Sleep(time.Second)
			mu.Lock()
			concurrent--
			mu.Unlock()
			return nil
		}, 4, time.Second, time.Minute, nil)
		defer q.Stop()
		q.Add("a", 0)
		time.Sleep(500 * time.Millisecond)
		q.Add("a", 0)
		q.Add("a", 0)
		if err := q.Drain(context.Background()); err != nil {
			t.Fatal(err)
		}
		if runs != 2 || maxConcurrent != 1 {
			t.Fatalf("runs %d (want 2), at once %d (want 1)", runs, maxConcurrent)
		}
	})
}

// TestQueueDrainTimeoutAndRemove: Drain gives up when its context ends,
// leaving the id queued; Remove forgets it.
func TestQueueDrainTimeoutAndRemove(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := NewQueue(func(ctx context.Context, id string) error { return errors.New("no") }, 1, time.Minute, time.Hour, nil)
		defer q.Stop()
		q.Add("a", 0)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := q.Drain(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("drain: %v", err)
		}
		if w, r := q.Len(); w+r != 1 {
			t.Fatalf("queue holds %d+%d, want the failing id kept", w, r)
		}
		q.Remove("a")
		if err := q.Drain(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}
