package main

import (
	"context"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/chute/chute/engine"
)

// progress reports a cp run: a bar with rate and ETA on a terminal, JSON
// events with --json, nothing with --quiet or when stderr is not a
// terminal.
type progress struct {
	r     *cpRun
	total int64
	files int
}

func newProgress(r *cpRun, total int64, files int) *progress {
	return &progress{r: r, total: total, files: files}
}

// done sums the bytes of finished files and of running transfers.
func (p *progress) done() (int64, []engine.Stats) {
	p.r.mu.Lock()
	d := p.r.doneBytes
	p.r.mu.Unlock()
	ts := p.r.c.Transfers()
	for _, t := range ts {
		if t.State == engine.StateRunning || t.State == engine.StatePaused {
			d += t.Done
		}
	}
	return min(d, p.total), ts
}

func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// start begins reporting; the returned function stops it.
func (p *progress) start(ctx context.Context) func() {
	o := p.r.o
	if o.quiet || (!o.json && !isTerminal(p.r.env.Stderr)) {
		return func() {}
	}
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if o.json {
			p.jsonLoop(quit)
		} else {
			p.barLoop(quit)
		}
	}()
	return func() {
		close(quit)
		wg.Wait()
	}
}

func (p *progress) barLoop(quit <-chan struct{}) {
	bar := progressbar.NewOptions64(p.total,
		progressbar.OptionSetWriter(p.r.env.Stderr),
		progressbar.OptionShowBytes(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(200*time.Millisecond),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionFullWidth(),
		progressbar.OptionClearOnFinish(),
	)
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-quit:
			d, _ := p.done()
			bar.Set64(d)
			bar.Finish()
			return
		case <-t.C:
			d, ts := p.done()
			desc := ""
			if len(ts) == 1 {
				desc = ts[0].Key
			} else if len(ts) > 1 {
				desc = itoa(len(ts)) + " files"
			}
			bar.Describe(desc)
			bar.Set64(d)
		}
	}
}

func itoa(n int) string {
	return string(appendInt(nil, n))
}

func appendInt(b []byte, n int) []byte {
	if n >= 10 {
		b = appendInt(b, n/10)
	}
	return append(b, byte('0'+n%10))
}

func (p *progress) jsonLoop(quit <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	start := time.Now()
	var lastDone int64
	lastAt := start
	for {
		select {
		case <-quit:
			return
		case now := <-t.C:
			d, ts := p.done()
			rate := float64(d-lastDone) * 8 / now.Sub(lastAt).Seconds()
			lastDone, lastAt = d, now
			ev := map[string]any{
				"type": "progress", "bytes_done": d, "bytes_total": p.total, "rate_bps": rate,
				"elapsed_seconds": now.Sub(start).Seconds(), "files_total": p.files,
			}
			if rate > 0 {
				ev["eta_seconds"] = float64(p.total-d) * 8 / rate
			}
			var xs []map[string]any
			for _, s := range ts {
				xs = append(xs, map[string]any{
					"id": s.ID, "direction": s.Direction, "key": s.Key, "state": s.State,
					"bytes_done": s.Done, "size": s.Size, "rate_bps": s.Rate, "bytes_retransmitted": s.Retrans,
					"rtt_ms": float64(s.RTT.Microseconds()) / 1000,
				})
			}
			ev["transfers"] = xs
			p.r.emit(ev)
		}
	}
}
