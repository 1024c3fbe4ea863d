package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// wanReport is what `chutebench wan` (make bench-wan) measured.
type wanReport struct {
	Meta      *runMeta  `json:"meta"`
	Size      int64     `json:"size_bytes"`
	Rate      string    `json:"rate"`
	RateMbps  float64   `json:"rate_mbps"`
	CC        string    `json:"tcp_congestion_control"`
	Timeout   float64   `json:"timeout_seconds"`
	Store     string    `json:"store"`
	RTTs      []float64 `json:"rtts_ms"`
	Losses    []float64 `json:"losses"`
	Cells     []wanCell `json:"cells"`
	MountNote string    `json:"mount_note,omitempty"`
	Errors    []string  `json:"errors,omitempty"`
}

// wanCell is one link setting and what every tool did on it.
type wanCell struct {
	RTTms   float64       `json:"rtt_ms"`
	Loss    float64       `json:"loss"`
	Load1   float64       `json:"load1"`
	Results []measurement `json:"results"`
}

func runWAN(ctx context.Context, cfg config) error {
	out, err := newScratch(cfg, "wan")
	if err != nil {
		return err
	}
	defer clearScratch(out, true) // after the cleanups below; keeps the logs
	var cl cleanups
	defer cl.run()

	size := cfg.size("CHUTE_WAN_SIZE")
	rtts := cfg.durations("CHUTE_WAN_RTTS")
	losses := cfg.losses("CHUTE_WAN_LOSSES")
	rate := cfg.str("CHUTE_WAN_RATE")
	timeout := cfg.duration("CHUTE_WAN_TIMEOUT")
	cc := cfg.str("CHUTE_WAN_CC")
	meta, endMeta := newMeta(ctx, cfg, "CHUTE_WAN_SIZE", "CHUTE_WAN_RTTS", "CHUTE_WAN_LOSSES", "CHUTE_WAN_RATE",
		"CHUTE_WAN_TIMEOUT", "CHUTE_WAN_TOOLS", "CHUTE_WAN_CC")
	rep := &wanReport{Meta: meta, Size: size, Rate: rate, RateMbps: rateMbps(rate), CC: cc, Timeout: timeout.Seconds(),
		Store: "SeaweedFS in the far namespace; chute server --store s3 in front of it", Losses: losses}
	for _, r := range rtts {
		rep.RTTs = append(rep.RTTs, float64(r.Milliseconds()))
	}
	if rep.RateMbps == 0 {
		return fmt.Errorf("CHUTE_WAN_RATE %q: want a rate cap such as 200mbit", rate)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}

	restore, err := allowCC(cc)
	if err != nil {
		return err
	}
	cl.add(restore)
	if cc != "" {
		meta.Notes = append(meta.Notes, fmt.Sprintf("TCP congestion control in both namespaces: %s (the host's default is %s)", cc, hostCC()))
	}
	first := linkParams{RTT: rtts[0], Loss: losses[0], Rate: rate}
	logf("wan: starting the emulator (%s)", first)
	l, err := startLink(ctx, cfg.path("LINKEM_BIN"), fmt.Sprintf("bw%d", os.Getpid()%100000), out, first, cc)
	if err != nil {
		return err
	}
	cl.add(l.stop)
	logf("wan: starting SeaweedFS in %s", l.far.netns)
	w, err := startWeedIn(ctx, l.far, self, cfg.path("CHUTE_WEED"), filepath.Join(out, "weed"), l.farAddr())
	if err != nil {
		return err
	}
	cl.add(w.stop)
	w.at, w.self = l.far, self
	if err := w.createBucket(ctx, "bench"); err != nil {
		return err
	}
	client, err := newChuteClient(ctx, cfg.path("CHUTE_BIN"), filepath.Join(out, "home"))
	if err != nil {
		return err
	}
	srv, err := startChuteServer(ctx, client, serverOptions{place: l.far, data: filepath.Join(out, "node"),
		listen: l.farAddr() + ":33001", bucket: "bench", s3: &w.s3Store, log: filepath.Join(out, "server.log")})
	if err != nil {
		return err
	}
	cl.add(func() { srv.stop(10 * time.Second) })

	src := filepath.Join(out, "src.bin")
	logf("wan: writing a %s test file and the reference object", humanBytes(size))
	if err := makeFile(src, size, 3); err != nil {
		return err
	}
	if err := w.putFile(ctx, "bench", "ref.bin", src); err != nil {
		return err
	}
	dst := filepath.Join(out, "dl.bin")

	tools := cfg.list("CHUTE_WAN_TOOLS")
	var mountTools []mountTool
	if cfg.has("CHUTE_WAN_TOOLS", "mounts") || cfg.has("CHUTE_WAN_TOOLS", "chute-mount") {
		withChute := hasMount(ctx, client.bin)
		if !withChute {
			rep.MountNote = "chute has no mount command yet: the mount rows are rclone mount and s3fs only"
		}
		setup := mountSetup{place: l.near, scratch: out, bucket: "bench", s3: &w.s3Store, chute: client, server: srv}
		mountTools = setup.tools(withChute)
	}
	rateBits := fmt.Sprint(int64(rep.RateMbps * 1e6))

	for _, rtt := range rtts {
		for _, loss := range losses {
			if ctx.Err() != nil {
				break
			}
			p := linkParams{RTT: rtt, Loss: loss, Rate: rate}
			if err := l.set(ctx, p); err != nil {
				return err
			}
			cell := wanCell{RTTms: float64(rtt.Milliseconds()), Loss: loss, Load1: loadAvg()[0]}
			logf("wan: cell %s (load %.1f)", p, cell.Load1)
			add := func(f func() measurement) {
				if ctx.Err() != nil {
					return
				}
				m := measureOnLink(ctx, l, f)
				logf("wan:   %-14s %-9s %s", m.Tool, m.Op, describeM(m))
				cell.Results = append(cell.Results, m)
				os.Remove(dst)
			}
			key := func(tool string) string {
				return fmt.Sprintf("up/%s-%dms-%g", slug(tool), rtt.Milliseconds(), loss*100)
			}
			for _, tool := range tools {
				switch tool {
				case "chute", "chute-target", "chute-fixed":
					name, flags := "chute cp", []string(nil)
					switch tool {
					case "chute-target":
						// The default policy told the link rate, as ascp users
						// give -l: it starts there instead of searching.
						name, flags = "chute cp -l", []string{"--target-rate", rateBits}
					case "chute-fixed":
						name, flags = "chute cp fixed", []string{"--policy", "fixed", "--target-rate", rateBits}
					}
					add(func() measurement {
						return client.cp(ctx, l.near, timeout, name, true, size, srv.service, 0, flags, src, srv.url("bench", key(tool)), nil)
					})
					add(func() measurement {
						return client.cp(ctx, l.near, timeout, name, false, size, srv.service, 0, flags, srv.url("bench", "ref.bin"), dst, nil)
					})
				case "curl":
					add(func() measurement { return w.curlPut(ctx, l.near, timeout, src, "bench", key(tool), size) })
					add(func() measurement { return w.curlGet(ctx, l.near, timeout, "bench", "ref.bin", dst, size) })
				case "rclone":
					add(func() measurement {
						return w.rcloneCopy(ctx, l.near, timeout, out, true, src, "bench", key(tool), size)
					})
					add(func() measurement {
						return w.rcloneCopy(ctx, l.near, timeout, out, false, dst, "bench", "ref.bin", size)
					})
				case "mounts", "chute-mount":
					for _, t := range mountTools {
						if ctx.Err() != nil {
							break
						}
						if tool == "chute-mount" && t.name != "chute mount" {
							continue
						}
						before, _ := l.stats(ctx)
						ms := mountOps(ctx, t, filepath.Join(out, "mnt"), filepath.Join(out, "cache-"+slug(t.name)), &w.s3Store,
							src, size, "ref.bin", "", 0, 0, 0, dst, timeout, false, 1)
						after, _ := l.stats(ctx)
						d := diffStats(before, after)
						for _, m := range ms {
							m.LinkKernelDrops = d.KernelDrops
							logf("wan:   %-14s %-9s %s", m.Tool, m.Op, describeM(m))
							cell.Results = append(cell.Results, m)
						}
						w.deleteObject(ctx, "bench", "mnt-"+slug(t.name)+"/big-0.bin")
					}
				default:
					return fmt.Errorf("CHUTE_WAN_TOOLS: unknown tool %q (want chute, chute-target, chute-fixed, curl, rclone, mounts, chute-mount)", tool)
				}
				w.deleteObject(ctx, "bench", key(tool))
			}
			rep.Cells = append(rep.Cells, cell)
		}
	}
	cl.run()
	endMeta()
	if ctx.Err() != nil {
		if len(rep.Cells) == 0 {
			return fmt.Errorf("interrupted; no results written")
		}
		meta.Notes = append(meta.Notes, "interrupted: the grid is incomplete")
	}
	if kd := wanKernelDrops(rep); kd > 0 {
		meta.Notes = append(meta.Notes, fmt.Sprintf("the emulator's kernel queues dropped %d packets over the run: the machine, not the emulated link, limited some cells (see link_kernel_drops in the JSON)", kd))
	}
	t, _ := time.Parse(time.RFC3339, meta.Started)
	results := cfg.path("CHUTE_BENCH_RESULTS")
	path, err := saveResults(results, "wan", t, rep, wanMarkdown(rep, "#"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(results, "wan-latest.svg"), []byte(wanChart(rep)), 0o644); err != nil {
		return err
	}
	logf("results: %s (and .md) and wan-latest.{json,md,svg}", path)
	if err := updateDoc(cfg); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted; partial results written")
	}
	return nil
}

func wanKernelDrops(rep *wanReport) uint64 {
	var n uint64
	for _, c := range rep.Cells {
		for _, m := range c.Results {
			n += m.LinkKernelDrops
		}
	}
	return n
}

// hostCC is the host's default TCP congestion control.
func hostCC() string {
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_congestion_control")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

// wanSeries are the rows of the WAN tables and the lines of the chart: a
// tool and a direction.
type wanSeries struct {
	Tool, Op string
}

func (r *wanReport) series() []wanSeries {
	var ss []wanSeries
	seen := map[wanSeries]bool{}
	for _, c := range r.Cells {
		for _, m := range c.Results {
			s := wanSeries{m.Tool, m.Op}
			if !seen[s] {
				seen[s] = true
				ss = append(ss, s)
			}
		}
	}
	return ss
}

// find returns the measurement of s at rtt and loss.
func (r *wanReport) find(s wanSeries, rtt, loss float64) (measurement, bool) {
	for _, c := range r.Cells {
		if c.RTTms != rtt || c.Loss != loss {
			continue
		}
		for _, m := range c.Results {
			if m.Tool == s.Tool && m.Op == s.Op {
				return m, true
			}
		}
	}
	return measurement{}, false
}

// wanMarkdown renders the grid: one table per loss rate, a row per tool
// and direction, a column per RTT.
func wanMarkdown(rep *wanReport, h string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s WAN grid: %s per transfer, %s bottleneck\n\n", h, humanBytes(rep.Size), rateText(rep.Rate))
	b.WriteString(metaSection(rep.Meta))
	b.WriteString("\n")
	b.WriteString(wanBody(rep, h+"#"))
	return b.String()
}

func wanBody(rep *wanReport, h string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Goodput in Mbit/s (file bytes over the command's wall time, connection set-up included) through `linkem`: "+
		"%s each way, random loss in each direction, drop-tail queue of one bandwidth-delay product. Servers in the far namespace (%s), "+
		"clients in the near one. TCP tools ran with **%s** congestion control. curl is one HTTP stream; rclone uses its defaults "+
		"(multipart uploads of 5 MiB parts, 4 at once; downloads above 250 MiB in 4 streams). `chute cp` runs with no rate flags; "+
		"`chute cp -l` is the same default policy given `--target-rate` at the link rate, where it starts (as ascp users pass `-l`); "+
		"`chute cp fixed` sends at the link rate whatever happens. For chute, the share of bytes "+
		"retransmitted follows in brackets. A transfer still running after %.0f s was stopped: \"<\" marks an upper bound; curl "+
		"reports how much it moved, so its figure is the rate it had reached.\n\n",
		rateText(rep.Rate), rep.Store, rep.CC, rep.Timeout)
	if rep.MountNote != "" {
		b.WriteString(rep.MountNote + ".\n\n")
	}
	series := rep.series()
	for _, loss := range rep.Losses {
		fmt.Fprintf(&b, "%s Loss %s\n\n", h, pct(loss))
		header := []string{"tool"}
		for _, rtt := range rep.RTTs {
			header = append(header, fmt.Sprintf("RTT %.0f ms", rtt))
		}
		var rows [][]string
		for _, s := range series {
			row := []string{s.Tool + " " + s.Op}
			for _, rtt := range rep.RTTs {
				m, ok := rep.find(s, rtt, loss)
				row = append(row, wanCellText(m, ok))
			}
			rows = append(rows, row)
		}
		b.WriteString(table(header, rows))
		b.WriteString("\n")
	}
	if kd := wanKernelDrops(rep); kd > 0 {
		fmt.Fprintf(&b, "The emulator's kernel queues dropped %d packets during the run (machine overload, not the emulated link).\n\n", kd)
	}
	for _, e := range rep.Errors {
		fmt.Fprintf(&b, "- %s\n", shorten(e, 300))
	}
	return b.String()
}

// wanCellText formats one tool's result in one cell.
func wanCellText(m measurement, ok bool) string {
	switch {
	case !ok:
		return "–"
	case m.TimedOut && m.Partial:
		return fmt.Sprintf("%s (timed out, %.0f s)", mbpsNum(m.Mbps), m.Seconds)
	case m.TimedOut:
		return fmt.Sprintf("< %s (timed out, %.0f s)", mbpsNum(m.Mbps), m.Seconds)
	case m.Error != "":
		return "failed"
	}
	s := mbpsNum(m.Mbps)
	if strings.HasPrefix(m.Tool, "chute") && m.Bytes > 0 && m.BytesSent > 0 {
		s += fmt.Sprintf(" [%.1f%%]", pctOf(m.BytesRetrans, m.Bytes))
	}
	if m.LinkKernelDrops > 0 {
		s += fmt.Sprintf(" (%d kernel drops)", m.LinkKernelDrops)
	}
	return s
}
