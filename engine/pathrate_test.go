package engine

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestPathMemory(t *testing.T) {
	file := filepath.Join(t.TempDir(), "paths.json")
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	if got := pathStartRate(file, "a:1", 0, now); got != 0 {
		t.Fatalf("no memory yet: start %d, want 0", got)
	}
	if err := rememberPathRate(file, "a:1", 180e6, now); err != nil {
		t.Fatal(err)
	}
	if err := rememberPathRate(file, "b:1", 40e6, now.Add(-2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		addr string
		at   time.Time
		want int64
	}{
		{"a:1", now.Add(time.Minute), 90e6},              // half of what it reached
		{"a:1", now.Add(pathMemoryAge + time.Second), 0}, // too old
		{"a:1", now.Add(-time.Minute), 0},                // from the future: a clock jumped
		{"c:1", now, 0},                                  // never seen
		{"b:1", now, 0},                                  // recorded too long ago
	}
	for _, tc := range tests {
		if got := pathStartRate(file, tc.addr, 0, tc.at); got != tc.want {
			t.Errorf("start for %s at %v: %d, want %d", tc.addr, tc.at.Sub(now), got, tc.want)
		}
	}
	// Stale entries are dropped when the file is next written.
	if err := rememberPathRate(file, "a:1", 100e6, now); err != nil {
		t.Fatal(err)
	}
	m, err := readPaths(file)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m["b:1"]; ok || len(m) != 1 || m["a:1"].Rate != 100e6 {
		t.Errorf("memory after a rewrite: %v, want only a:1 at 100 Mbit/s", m)
	}
	// A damaged file costs a slow start, nothing more, and is replaced.
	os.WriteFile(file, []byte("{not json"), 0o600)
	if got := pathStartRate(file, "a:1", 0, now); got != 0 {
		t.Errorf("damaged memory: start %d, want 0", got)
	}
	if err := rememberPathRate(file, "a:1", 50e6, now); err != nil {
		t.Fatalf("rewriting a damaged memory: %v", err)
	}
	if got := pathStartRate(file, "a:1", 0, now); got != 25e6 {
		t.Errorf("after rewriting a damaged memory: start %d, want 25e6", got)
	}
}

// A target the user gave is where the rate starts, capped by what the path
// was seen to carry.
func TestPathStartWithTarget(t *testing.T) {
	file := filepath.Join(t.TempDir(), "paths.json")
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		memory   int64 // 0: nothing remembered
		target   int64
		wantBits int64
	}{
		{"no target, no memory", 0, 0, 0},
		{"target, no memory", 0, 200e6, 200e6},
		{"no target, memory", 180e6, 0, 90e6},
		{"target below memory", 180e6, 100e6, 100e6},
		{"target above memory", 180e6, 1e9, 180e6},
	}
	for _, tc := range tests {
		os.Remove(file)
		if tc.memory > 0 {
			if err := rememberPathRate(file, "a:1", tc.memory, now); err != nil {
				t.Fatal(err)
			}
		}
		if got := pathStartRate(file, "a:1", tc.target, now.Add(time.Minute)); got != tc.wantBits {
			t.Errorf("%s: start %d, want %d", tc.name, got, tc.wantBits)
		}
	}
	// Without a memory file at all, a target still sets the start.
	if got := pathStartRate("", "a:1", 200e6, now); got != 200e6 {
		t.Errorf("no memory file, target 200 Mbit/s: start %d, want 200e6", got)
	}
}
