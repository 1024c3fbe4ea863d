package main

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"
)

// runMeta describes the machine and the conditions of a run.
type runMeta struct {
	Started   string            `json:"started"`
	Finished  string            `json:"finished"`
	Kernel    string            `json:"kernel"`
	CPU       string            `json:"cpu"`
	Cores     int               `json:"cores"`
	MemGiB    float64           `json:"mem_gib"`
	Commit    string            `json:"commit"`
	Dirty     bool              `json:"dirty_tree"`
	GoVersion string            `json:"go_version"`
	Tools     map[string]string `json:"tools"`
	Settings  map[string]string `json:"settings"`
	Load      loadSummary       `json:"load"`
	Notes     []string          `json:"notes,omitempty"`
}

// loadSummary is the 1-minute load average over the run.
type loadSummary struct {
	Start [3]float64 `json:"start"`
	End   [3]float64 `json:"end"`
	Min   float64    `json:"min_load1"`
	Mean  float64    `json:"mean_load1"`
	Max   float64    `json:"max_load1"`
}

// newMeta records the machine; the returned function samples the load
// until called, then fills in the end of the run.
func newMeta(ctx context.Context, cfg config, names ...string) (*runMeta, func()) {
	m := &runMeta{Started: time.Now().Format(time.RFC3339), Cores: runtime.NumCPU(), GoVersion: runtime.Version(),
		Tools: map[string]string{}, Settings: map[string]string{}}
	for _, n := range names {
		m.Settings[n] = cfg.str(n)
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var kb float64
			if n, _ := fmt.Sscanf(sc.Text(), "MemTotal: %f kB", &kb); n == 1 {
				m.MemGiB = kb / (1 << 20)
			}
		}
		f.Close()
	}
	r := run(ctx, host, 10*time.Second, toolEnv(), "git", "rev-parse", "--short", "HEAD")
	m.Commit = strings.TrimSpace(string(r.Stdout))
	// What the runs themselves write does not make the tree dirty.
	r = run(ctx, host, 30*time.Second, toolEnv(), "git", "status", "--porcelain", "--untracked-files=no",
		"--", ".", ":!BENCHMARKS.md", ":!bench/results")
	m.Dirty = len(strings.TrimSpace(string(r.Stdout))) > 0
	for tool, args := range map[string][]string{
		"chute": {cfg.path("CHUTE_BIN"), "version"}, "rclone": {"rclone", "version"}, "s3fs": {"s3fs", "--version"},
		"curl": {"curl", "--version"}, "iperf3": {"iperf3", "--version"},
	} {
		r := run(ctx, host, 10*time.Second, toolEnv(), args[0], args[1:]...)
		if line := strings.TrimSpace(strings.SplitN(string(r.Stdout), "\n", 2)[0]); line != "" {
			m.Tools[tool] = line
		}
	}
	m.Load.Start = loadAvg()
	var mu sync.Mutex
	var n int
	var sum float64
	m.Load.Min, m.Load.Max = m.Load.Start[0], m.Load.Start[0]
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				l := loadAvg()[0]
				mu.Lock()
				n++
				sum += l
				m.Load.Min = min(m.Load.Min, l)
				m.Load.Max = max(m.Load.Max, l)
				mu.Unlock()
			}
		}
	}()
	return m, func() {
		close(quit)
		<-done
		m.Load.End = loadAvg()
		if n > 0 {
			m.Load.Mean = sum / float64(n)
		} else {
			m.Load.Mean = m.Load.Start[0]
		}
		m.Finished = time.Now().Format(time.RFC3339)
	}
}

// makeFile writes size pseudo-random (incompressible) bytes to path.
func makeFile(path string, size int64, seed uint64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	rng := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), 'c', 'h', 'u', 't', 'e'})
	buf := make([]byte, 1<<20)
	for left := size; left > 0; {
		n := int64(len(buf))
		if left < n {
			n = left
		}
		rng.Read(buf[:n])
		if _, err := f.Write(buf[:n]); err != nil {
			f.Close()
			return err
		}
		left -= n
	}
	return f.Close()
}

// makeTree writes n files of size bytes into dir.
func makeTree(dir string, n int, size int64) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		if err := makeFile(dir+"/"+fileName(i), size, uint64(i)); err != nil {
			return err
		}
	}
	return nil
}

func fileName(i int) string { return fmt.Sprintf("f%05d", i) }
