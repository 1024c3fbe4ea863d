package main

import (
	"fmt"
	"sort"
	"strings"

	"github.com/chute/chute/internal/linkem"
)

// localMarkdown renders a make bench run.
func localMarkdown(rep *localReport) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# make bench: %s\n\n", rep.Meta.Started)
	b.WriteString(metaSection(rep.Meta))
	b.WriteString("\n")
	b.WriteString(localBody(rep, "##"))
	return b.String()
}

// localBody is the run's tables, with headings at level h.
func localBody(rep *localReport, h string) string {
	var b strings.Builder
	gib := float64(rep.Size) / (1 << 30)
	if len(rep.Loopback) > 0 {
		fmt.Fprintf(&b, "%s Loopback: %s, %s\n\n", h, humanBytes(rep.Size), runsText(rep.Repeat))
		b.WriteString("chute to a `chute server` with the folder store on 127.0.0.1 (the server fsyncs each object before it commits it); " +
			"`cp` of the same file on the same disk, from the page cache; iperf3 over loopback. " +
			"Goodput is the file's bits over the whole command's wall time (SSH set-up included); " +
			"\"engine\" is chute's own figure for the transfer alone. CPU is user + system time, " +
			"from the client's rusage and the server's /proc/PID/stat.\n\n")
		var rows [][]string
		gs := groupMeasurements(rep.Loopback)
		for _, g := range gs {
			name := g.Tool + " " + g.Op
			if strings.HasPrefix(g.Tool, "iperf3") {
				name = g.Tool + " (5 s)"
			} else if g.Tool == "cp" || g.Tool == "cp + fsync" {
				name = g.Tool
			}
			rows = append(rows, []string{name, g.rateCell(), g.num(func(m measurement) float64 { return m.EngineMbps }, "%.0f Mbit/s"),
				g.num(func(m measurement) float64 { return m.Seconds }, "%.2f s"),
				g.num(func(m measurement) float64 { return m.SenderCPUPerGiB }, "%.2f"),
				g.num(func(m measurement) float64 { return m.RecvCPUPerGiB }, "%.2f"),
				g.num(func(m measurement) float64 { return pctOf(m.BytesRetrans, m.Bytes) }, "%.2f%%"),
				g.num(func(m measurement) float64 { return float64(m.UDPRcvbufErrors) }, "%.0f"),
				g.num(func(m measurement) float64 { return m.Load1 }, "%.1f") + noteOf(g), g.Ms[0].Extra})
		}
		b.WriteString(table([]string{"what", "goodput", "engine", "time", "sender CPU s/GiB", "receiver CPU s/GiB", "retransmitted",
			"UDP receive-buffer drops", "load (1 min)", "note"}, rows))
		b.WriteString("\nUDP receive-buffer drops: the kernel's RcvbufErrors counter over the transfer (the host's, so other UDP traffic on the machine counts too).\n")
		if r := ratios(gs); r != "" {
			b.WriteString("\n" + r + "\n")
		}
		b.WriteString("\n")
	}
	if rep.Link != nil && len(rep.Link.Results) > 0 {
		lr := rep.Link
		capMbps := rateMbps(lr.Params.Rate)
		fmt.Fprintf(&b, "%s Emulated link: %s, %s\n\n", h, lr.Params, humanBytes(lr.Size))
		b.WriteString("Server in the far namespace, client in the near one, through `linkem` (loss in each direction; " +
			"the rate counts whole IP packets, so payload can reach 95% of it for chute's 1400-byte datagrams " +
			"and about 96.5% for TCP). The TCP rows are one iperf3 flow of 20 s with the named congestion control.\n\n")
		var rows [][]string
		for _, g := range groupMeasurements(lr.Results) {
			rows = append(rows, []string{g.Tool + " " + g.Op, g.rateCell(),
				g.num(func(m measurement) float64 { return m.Mbps / capMbps * 100 }, "%.0f%%"),
				g.num(func(m measurement) float64 { return m.EngineMbps }, "%.0f Mbit/s"),
				g.num(func(m measurement) float64 { return pctOf(m.BytesRetrans, m.Bytes) }, "%.2f%%"),
				g.num(func(m measurement) float64 { return m.SenderCPUPerGiB }, "%.2f"),
				g.num(func(m measurement) float64 { return m.RecvCPUPerGiB }, "%.2f"),
				fmt.Sprint(g.Ms[0].LinkLostPackets), fmt.Sprint(g.Ms[0].LinkQueueDrops), fmt.Sprint(g.Ms[0].LinkKernelDrops),
				fmt.Sprint(g.Ms[0].UDPRcvbufErrors),
				fmt.Sprintf("%.1f", g.Ms[0].Load1) + noteOf(g), g.Ms[0].Extra})
		}
		b.WriteString(table([]string{"what", "goodput", "of the cap", "engine", "retransmitted", "sender CPU s/GiB", "receiver CPU s/GiB",
			"packets lost (link)", "queue drops", "kernel drops", "UDP receive-buffer drops", "load", "note"}, rows))
		b.WriteString("\n")
	}
	if len(rep.S3) > 0 {
		fmt.Fprintf(&b, "%s SeaweedFS on loopback: %s, %s\n\n", h, humanBytes(rep.Size), runsText(rep.Repeat))
		b.WriteString("`chute server --store s3` in front of SeaweedFS (an upload is timed until the object is committed in the store); " +
			"`curl --aws-sigv4` (one HTTP stream); `rclone copyto` with its defaults (multipart, 5 MiB parts, 4 at once; " +
			"downloads above 250 MiB in 4 streams). Client CPU is the tool's; the SeaweedFS column is its server's CPU.\n\n")
		var rows [][]string
		for _, g := range groupMeasurements(rep.S3) {
			rows = append(rows, []string{g.Tool + " " + g.Op, g.rateCell(), g.num(func(m measurement) float64 { return m.Seconds }, "%.2f s"),
				g.num(func(m measurement) float64 { return m.ClientCPU / gib }, "%.2f"),
				g.num(func(m measurement) float64 { return m.ServerCPU / gib }, "%.2f"),
				g.num(func(m measurement) float64 { return m.OtherCPUPerGiB }, "%.2f"),
				g.num(func(m measurement) float64 { return m.Load1 }, "%.1f") + noteOf(g)})
		}
		b.WriteString(table([]string{"what", "goodput", "time", "client CPU s/GiB", "chute server CPU s/GiB", "SeaweedFS CPU s/GiB", "load"}, rows))
		b.WriteString("\n")
	}
	if len(rep.Mount) > 0 || rep.MountNote != "" {
		fmt.Fprintf(&b, "%s Mounts against the same SeaweedFS\n\n", h)
		if rep.MountNote != "" {
			b.WriteString(rep.MountNote + ".\n\n")
		}
		b.WriteString("Each tool mounts the same bucket on the same path. A write is timed from the start of `cp` until the object " +
			"is in the bucket (rclone uploads after close); a read is `cp` out of a fresh mount; `cp -r` is timed until every " +
			"object is listed in the bucket; listings run on a fresh mount (cold), then again (warm). " +
			"`chute mount` with its defaults (close returns once the object is committed; listings trusted for 10 s), " +
			"`rclone mount --vfs-cache-mode writes --vfs-write-back 0s` (without the last flag rclone waits 5 s after close), " +
			"`s3fs` with its defaults. The big file's write and read: " + runsText(rep.Repeat) + "; `cp -r` and listings: one run.")
		for _, m := range rep.Mount {
			if m.Tool == besideTool {
				b.WriteString(" `" + besideTool + "` is `chute cp` of the same file, upload beside each write and download beside each read " +
					"(before it in even runs, after it in odd ones): the mount's reference, met by the store in the same state.")
				break
			}
		}
		b.WriteString("\n\n")
		var rows [][]string
		for _, g := range groupMeasurements(rep.S3) {
			if g.Tool == "chute cp" {
				rows = append(rows, []string{"chute cp (reference)", g.Op, g.rateCell(), g.num(func(m measurement) float64 { return m.Seconds }, "%.2f s"), ""})
			}
		}
		for _, g := range groupMeasurements(rep.Mount) {
			res := g.rateCell()
			if g.Ms[0].Bytes == 0 {
				res = "–"
				if len(g.ok()) == 0 {
					res = g.failure()
				}
			}
			note := g.Ms[0].Extra
			if len(g.Ms) > 1 && note != "" {
				var notes []string
				for _, m := range g.Ms {
					notes = append(notes, strings.TrimPrefix(m.Extra, "cp returned after "))
				}
				note = "cp returned after " + strings.Join(notes, ", ")
			}
			rows = append(rows, []string{g.Tool, g.Op, res, g.num(func(m measurement) float64 { return m.Seconds }, "%.2f s"), note})
		}
		b.WriteString(table([]string{"tool", "operation", "goodput", "time", "note"}, rows))
		b.WriteString("\n")
		if r := mountRatios(groupMeasurements(rep.Mount)); r != "" {
			b.WriteString(r + "\n\n")
		}
	}
	if rep.GoBench != "" {
		fmt.Fprintf(&b, "%s Go benchmarks\n\n```\n%s\n```\n\n", h, strings.TrimSpace(rep.GoBench))
	}
	if len(rep.Errors) > 0 {
		fmt.Fprintf(&b, "%s Errors\n\n", h)
		for _, e := range rep.Errors {
			fmt.Fprintf(&b, "- %s\n", shorten(e, 400))
		}
		b.WriteString("\n")
	}
	return b.String()
}

// ratios compares chute cp with cp, as the engine issue's aim reads.
func ratios(gs []*group) string {
	find := func(tool, op string) float64 {
		for _, g := range gs {
			if g.Tool == tool && g.Op == op {
				v, _, _, _ := g.median(func(m measurement) float64 { return m.Mbps })
				return v
			}
		}
		return 0
	}
	up, down := find("chute cp", "upload"), find("chute cp", "download")
	cp, cpSync := find("cp", "copy"), find("cp + fsync", "copy")
	if cp == 0 || up == 0 {
		return ""
	}
	s := fmt.Sprintf("chute cp against cp: upload %.0f%% of `cp` (%.0f%% of `cp + fsync`), download %.0f%% of `cp` (%.0f%% of `cp + fsync`).",
		up/cp*100, up/max(cpSync, 1e-9)*100, down/cp*100, down/max(cpSync, 1e-9)*100)
	return s
}

// mountRatios compares the mount with chute cp run beside it, pair by
// pair, as the mount issue's aim (the mount at least 80% of chute cp)
// reads.
func mountRatios(gs []*group) string {
	find := func(tool, op string) *group {
		for _, g := range gs {
			if g.Tool == tool && g.Op == op {
				return g
			}
		}
		return nil
	}
	var parts []string
	for _, p := range []struct{ mop, cop string }{{"write", "upload"}, {"read", "download"}} {
		mg, cg := find("chute mount", p.mop), find(besideTool, p.cop)
		if mg == nil || cg == nil || len(mg.Ms) != len(cg.Ms) {
			continue
		}
		var each []string
		var pct []float64
		for i := range mg.Ms {
			m, c := mg.Ms[i], cg.Ms[i]
			if m.Error != "" || m.TimedOut || c.Error != "" || c.TimedOut || c.Mbps == 0 {
				each = append(each, "–")
				continue
			}
			pct = append(pct, m.Mbps/c.Mbps*100)
			each = append(each, fmt.Sprintf("%.0f%%", m.Mbps/c.Mbps*100))
		}
		if len(pct) == 0 {
			continue
		}
		sort.Float64s(pct)
		med := quantile(pct, 0.5)
		parts = append(parts, fmt.Sprintf("%s %.0f%% of chute cp's %s (median of %d pairs; each: %s)",
			p.mop, med, p.cop, len(pct), strings.Join(each, ", ")))
	}
	if len(parts) == 0 {
		return ""
	}
	return "chute mount against `chute cp` of the same file run right beside it (the reference first in even runs, second in odd ones): " +
		strings.Join(parts, "; ") + "."
}

// noteOf flags a group whose measurements failed or timed out.
func noteOf(g *group) string {
	if n := len(g.ok()); n < len(g.Ms) && n > 0 {
		return fmt.Sprintf(" (%d failed)", len(g.Ms)-n)
	}
	return ""
}

func pctOf(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b) * 100
}

// rateMbps parses a linkem rate ("200mbit") into Mbit/s.
func rateMbps(s string) float64 {
	r, err := linkem.ParseBitrate(s)
	if err != nil {
		return 0
	}
	return float64(r) / 1e6
}

// runsText says how a figure summarizes repeated runs.
func runsText(n int) string {
	if n <= 1 {
		return "one run"
	}
	return fmt.Sprintf("median of %d runs (range)", n)
}
