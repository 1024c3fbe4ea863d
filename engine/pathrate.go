package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Path memory. Like Linux TCP's per-destination metrics, a client may keep
// the rate its recent transfers to each server reached (ClientConfig.
// PathMemory) and start its next session at half of that instead of at
// 10 Mbit/s (or at the user's target rate, capped by it): a long fat path
// then fills in a round trip or two, not six or seven. The search for the
// path's rate still runs from there, and a queue or heavy loss ends it as
// usual; a memory older than pathMemoryAge is not used (paths change).
const (
	pathMemoryAge = time.Hour
	// Transfers smaller than this measure their own start more than the
	// path, and are not remembered.
	pathMemoryMinBytes = 16 << 20
)

type pathRecord struct {
	Rate int64     `json:"rate_bps"`
	At   time.Time `json:"at"`
}

func readPaths(file string) (map[string]pathRecord, error) {
	b, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]pathRecord{}, nil
	}
	if err != nil {
		return nil, err
	}
	m := map[string]pathRecord{}
	if err := json.Unmarshal(b, &m); err != nil {
		// A damaged memory only costs a slower start: begin afresh.
		return map[string]pathRecord{}, nil
	}
	return m, nil
}

// pathStartRate returns the rate, in bits per second, to start a session to
// addr at, or 0 for the controller's own start (10 Mbit/s at most).
//
// A target the user gave is, as in Aspera, also the initial rate: they
// said what the path carries, and a long fat path then needs no search at
// all (a target above the path costs a round trip of loss before the
// controller comes down to what is delivered). What the last transfer to
// addr reached within the hour caps that start, since it is what the path
// carried. Without a target, the start is half of that memory, like TCP's
// careful resume.
func pathStartRate(file, addr string, target int64, now time.Time) int64 {
	remembered := rememberedRate(file, addr, now)
	switch {
	case target > 0 && remembered > 0:
		return min(target, remembered)
	case target > 0:
		return target
	default:
		return remembered / 2
	}
}

// rememberedRate is what the last transfer to addr reached within the
// hour, in bits per second; 0 if nothing usable is remembered.
func rememberedRate(file, addr string, now time.Time) int64 {
	if file == "" {
		return 0
	}
	m, err := readPaths(file)
	if err != nil {
		return 0
	}
	r, ok := m[addr]
	if !ok || r.Rate <= 0 || now.Sub(r.At) > pathMemoryAge || r.At.After(now) {
		return 0
	}
	return r.Rate
}

// rememberPathRate records that a transfer to addr reached rate bits per
// second. Entries past pathMemoryAge are dropped on the way. The file is
// replaced whole (write, then rename), so a reader never sees half of it;
// of two clients writing at once, the later wins.
func rememberPathRate(file, addr string, rate int64, now time.Time) error {
	m, err := readPaths(file)
	if err != nil {
		return fmt.Errorf("path memory %s: %w", file, err)
	}
	for k, r := range m {
		if now.Sub(r.At) > pathMemoryAge {
			delete(m, k)
		}
	}
	m[addr] = pathRecord{Rate: rate, At: now}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), ".paths-*")
	if err != nil {
		return fmt.Errorf("path memory %s: %w", file, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("path memory %s: %w", file, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("path memory %s: %w", file, err)
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return fmt.Errorf("path memory %s: %w", file, err)
	}
	return nil
}
