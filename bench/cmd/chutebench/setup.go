package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// setupReport is what `chutebench setup` measured: the wall time of many
// `chute cp` commands that move almost nothing across the emulated link,
// so that what every command pays before and after its bytes (TCP, SSH,
// the hello, the commit, and the repair of a lost control segment) shows
// as a distribution rather than one run's luck.
type setupReport struct {
	Meta   *runMeta    `json:"meta"`
	RTTms  float64     `json:"rtt_ms"`
	Rate   string      `json:"rate"`
	Size   int64       `json:"file_bytes"`
	Runs   int         `json:"runs_per_cell"`
	Cells  []setupCell `json:"cells"`
	Errors []string    `json:"errors,omitempty"`
}

// setupCell is one loss rate and direction.
type setupCell struct {
	Loss    float64   `json:"loss"`
	Op      string    `json:"op"`      // upload or download
	Seconds []float64 `json:"seconds"` // each successful command's wall time, in run order
	Failed  int       `json:"failed"`
	Errors  []string  `json:"errors,omitempty"` // the first few
	Min     float64   `json:"min_s"`
	Median  float64   `json:"median_s"`
	Mean    float64   `json:"mean_s"`
	P90     float64   `json:"p90_s"`
	Max     float64   `json:"max_s"`
}

func runSetup(ctx context.Context, cfg config) error {
	out, err := newScratch(cfg, "setup")
	if err != nil {
		return err
	}
	defer clearScratch(out, true) // after the cleanups below; keeps the logs
	var cl cleanups
	defer cl.run()

	rate := cfg.str("CHUTE_WAN_RATE")
	rtt := cfg.duration("CHUTE_SETUP_RTT")
	runs := cfg.int("CHUTE_SETUP_RUNS")
	size := cfg.size("CHUTE_SETUP_SIZE")
	meta, endMeta := newMeta(ctx, cfg, "CHUTE_WAN_RATE", "CHUTE_SETUP_RTT", "CHUTE_SETUP_LOSSES", "CHUTE_SETUP_RUNS", "CHUTE_SETUP_SIZE")
	rep := &setupReport{Meta: meta, RTTms: float64(rtt.Milliseconds()), Rate: rate, Size: size, Runs: runs}

	p := linkParams{RTT: rtt, Rate: rate}
	l, client, srv, err := startLinkedNode(ctx, cfg, "setup", "bs", out, p, &cl)
	if err != nil {
		return err
	}
	src := filepath.Join(out, "small.bin")
	data := make([]byte, size)
	rand.Read(data)
	if err := os.WriteFile(src, data, 0o644); err != nil {
		return err
	}
	dst := filepath.Join(out, "back.bin")

	for _, loss := range cfg.losses("CHUTE_SETUP_LOSSES") {
		p.Loss = loss
		if err := l.set(ctx, p); err != nil {
			return err
		}
		logf("setup: %d uploads and downloads of %s (%s)", runs, humanBytes(size), p)
		up, down := setupCell{Loss: loss, Op: "upload"}, setupCell{Loss: loss, Op: "download"}
		for i := range runs {
			if ctx.Err() != nil {
				break
			}
			url := srv.url("bench", fmt.Sprintf("setup-%d", i))
			// --resume none: nothing is checked first, as a script copying
			// a new file would.
			up.add(run(ctx, l.near, time.Minute, client.env(), client.bin, "cp", "--resume", "none", src, url))
			os.Remove(dst)
			down.add(run(ctx, l.near, time.Minute, client.env(), client.bin, "cp", "--resume", "none", url, dst))
		}
		for _, c := range []*setupCell{&up, &down} {
			c.summarize()
			logf("setup: loss %s %s: median %.2f s, mean %.2f, 90th percentile %.2f, max %.2f (%d failed)",
				pct(loss), c.Op, c.Median, c.Mean, c.P90, c.Max, c.Failed)
			rep.Cells = append(rep.Cells, *c)
		}
	}
	cl.run()
	endMeta()
	if ctx.Err() != nil && len(rep.Cells) == 0 {
		return fmt.Errorf("interrupted; no results written")
	}
	t, _ := time.Parse(time.RFC3339, meta.Started)
	path, err := saveResults(cfg.path("CHUTE_BENCH_RESULTS"), "setup", t, rep, setupMarkdown(rep))
	if err != nil {
		return err
	}
	logf("results: %s (and .md) and setup-latest.{json,md}", path)
	return nil
}

func (c *setupCell) add(r runResult) {
	if r.Err != nil {
		c.Failed++
		if len(c.Errors) < 3 {
			c.Errors = append(c.Errors, r.Err.Error())
		}
		return
	}
	c.Seconds = append(c.Seconds, r.Wall.Seconds())
}

func (c *setupCell) summarize() {
	s := slices.Clone(c.Seconds)
	if len(s) == 0 {
		return
	}
	slices.Sort(s)
	sum := 0.0
	for _, v := range s {
		sum += v
	}
	c.Min, c.Max, c.Mean = s[0], s[len(s)-1], sum/float64(len(s))
	c.Median = quantile(s, 0.5)
	c.P90 = quantile(s, 0.9)
}

func setupMarkdown(rep *setupReport) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Set-up cost: %s copies through the link emulator\n\n", humanBytes(rep.Size))
	b.WriteString(metaSection(rep.Meta))
	fmt.Fprintf(&b, "\nEach cell is %d `chute cp` commands, one after another, each copying one %s file "+
		"across %d ms of round trip at %s with random loss in each direction: what a command pays besides its bytes "+
		"(TCP and SSH set-up, the hello, the request and commit, and the repair of any of those segments lost). "+
		"Wall time of the whole command, in seconds.\n\n",
		rep.Runs, humanBytes(rep.Size), int(rep.RTTms), rateText(rep.Rate))
	b.WriteString("| loss | direction | min | median | mean | 90th percentile | max | failed |\n|--:|---|--:|--:|--:|--:|--:|--:|\n")
	for _, c := range rep.Cells {
		fmt.Fprintf(&b, "| %s | %s | %.2f | %.2f | %.2f | %.2f | %.2f | %d |\n", pct(c.Loss), c.Op, c.Min, c.Median, c.Mean, c.P90, c.Max, c.Failed)
	}
	for _, c := range rep.Cells {
		for _, e := range c.Errors {
			fmt.Fprintf(&b, "\n- %s %s: %s", pct(c.Loss), c.Op, shorten(e, 300))
		}
	}
	b.WriteString("\n")
	return b.String()
}
