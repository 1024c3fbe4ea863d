package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// fairReport is what `chutebench fair` measured: chute and one TCP flow
// sharing the bottleneck, per policy.
type fairReport struct {
	Meta     *runMeta  `json:"meta"`
	Rate     string    `json:"rate"`
	RateMbps float64   `json:"rate_mbps"`
	RTTms    float64   `json:"rtt_ms"`
	Seconds  int       `json:"tcp_seconds"`
	Lead     float64   `json:"lead_seconds"` // chute alone before and after the TCP flow
	Runs     []fairRun `json:"runs"`
	Errors   []string  `json:"errors,omitempty"`
}

// fairRun is one policy against one TCP congestion control.
type fairRun struct {
	Policy  string       `json:"policy"`
	CC      string       `json:"tcp_cc"`
	Load1   float64      `json:"load1"`
	Samples []fairSample `json:"samples"`
	// Means over the seconds both flows ran (the TCP flow's first two
	// seconds, its slow start, left out), and chute's alone before.
	ChuteAlone  float64 `json:"chute_alone_mbps"`
	ChuteShared float64 `json:"chute_shared_mbps"`
	TCPShared   float64 `json:"tcp_shared_mbps"`
	TCPShare    float64 `json:"tcp_share_of_link"`
	TCPRetrans  int64   `json:"tcp_retransmits"`
	ChuteRetx   int64   `json:"chute_bytes_retransmitted"`
	KernelDrops uint64  `json:"link_kernel_drops"`
	QueueDrops  uint64  `json:"link_queue_drops"`
	Error       string  `json:"error,omitempty"`
}

// fairSample is one second: each flow's goodput over the second ending
// at T (seconds since chute started).
type fairSample struct {
	T     float64 `json:"t"`
	Chute float64 `json:"chute_mbps"`
	TCP   float64 `json:"tcp_mbps"`
	// Has says which flows reported in this second.
	HasChute bool `json:"has_chute"`
	HasTCP   bool `json:"has_tcp"`
}

func runFair(ctx context.Context, cfg config) error {
	out, err := newScratch(cfg, "fair")
	if err != nil {
		return err
	}
	defer clearScratch(out, true) // after the cleanups below; keeps the logs
	var cl cleanups
	defer cl.run()

	rate := cfg.str("CHUTE_WAN_RATE")
	rtt := cfg.duration("CHUTE_FAIR_RTT")
	secs := cfg.int("CHUTE_FAIR_SECONDS")
	lead := cfg.duration("CHUTE_FAIR_LEAD").Seconds()
	meta, endMeta := newMeta(ctx, cfg, "CHUTE_WAN_RATE", "CHUTE_FAIR_RTT", "CHUTE_FAIR_SECONDS", "CHUTE_FAIR_LEAD", "CHUTE_FAIR_POLICIES", "CHUTE_FAIR_CCS")
	rep := &fairReport{Meta: meta, Rate: rate, RateMbps: rateMbps(rate), RTTms: float64(rtt.Milliseconds()), Seconds: secs, Lead: lead}
	ccs := cfg.list("CHUTE_FAIR_CCS")
	for _, cc := range ccs {
		restore, err := allowCC(cc)
		if err != nil {
			return err
		}
		cl.add(restore)
	}
	p := linkParams{RTT: rtt, Rate: rate}
	l, client, srv, err := startLinkedNode(ctx, cfg, "fair", "bf", out, p, &cl)
	if err != nil {
		return err
	}
	// A file chute cannot finish before the end: sparse, so making it is
	// free (the bytes are encrypted on the wire all the same).
	src := filepath.Join(out, "big.bin")
	bigSize := int64(rep.RateMbps*1e6/8*(float64(secs)+2*lead+30)) + 1<<20
	f, err := os.Create(src)
	if err != nil {
		return err
	}
	err = f.Truncate(bigSize)
	f.Close()
	if err != nil {
		return err
	}

	for _, cc := range ccs {
		for i, policy := range cfg.list("CHUTE_FAIR_POLICIES") {
			if ctx.Err() != nil {
				break
			}
			logf("fair: chute --policy %s against one TCP flow (%s), %s", policy, cc, p)
			r := fairOnce(ctx, l, client, srv, out, src, policy, cc, secs, lead, fmt.Sprintf("%s-%d", cc, i))
			if r.Error != "" {
				logf("fair: %s", r.Error)
			}
			logf("fair: chute alone %.0f Mbit/s; together chute %.0f, TCP %.0f Mbit/s (TCP share %.0f%%)",
				r.ChuteAlone, r.ChuteShared, r.TCPShared, r.TCPShare*100)
			rep.Runs = append(rep.Runs, r)
		}
	}
	cl.run()
	endMeta()
	if ctx.Err() != nil && len(rep.Runs) == 0 {
		return fmt.Errorf("interrupted; no results written")
	}
	t, _ := time.Parse(time.RFC3339, meta.Started)
	results := cfg.path("CHUTE_BENCH_RESULTS")
	path, err := saveResults(results, "fair", t, rep, fairMarkdown(rep, "#"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(results, "fair-latest.svg"), []byte(fairChart(rep)), 0o644); err != nil {
		return err
	}
	logf("results: %s (and .md) and fair-latest.{json,md,svg}", path)
	return updateDoc(cfg)
}

// fairOnce runs chute with policy for lead + secs + lead seconds, and one
// iperf3 TCP flow with congestion control cc for secs seconds in the
// middle, both near → far.
func fairOnce(ctx context.Context, l *link, client *chuteClient, srv *chuteServer, out, src, policy, cc string, secs int, lead float64, tag string) fairRun {
	r := fairRun{Policy: policy, CC: cc, Load1: loadAvg()[0]}
	before, _ := l.stats(ctx)
	iperfSrv, err := startIperfServer(ctx, l.far, l.farAddr(), 5201, filepath.Join(out, "iperf3-"+tag+".log"))
	if err != nil {
		r.Error = err.Error()
		return r
	}
	defer iperfSrv.stop(5 * time.Second)

	type point struct {
		at  time.Time
		bps float64
	}
	var mu sync.Mutex
	var chutePts, tcpPts []point
	var chuteRetx int64
	chuteCtx, stopChute := context.WithCancel(ctx)
	defer stopChute()
	start := time.Now()
	chuteDone := make(chan runResult, 1)
	// The lead counts from the first second chute moves data: before that
	// it reads the file to hash it, which on a cold page cache takes
	// seconds that say nothing about sharing a link.
	flowing := make(chan struct{})
	var flowOnce sync.Once
	go func() {
		args := []string{"cp", "--json", "--resume", "none", "--policy", policy, src, srv.url("bench", "fair-"+tag)}
		res := runStream(chuteCtx, l.near, 0, client.env(), func(at time.Time, line string) {
			var ev cpProgress
			if json.Unmarshal([]byte(line), &ev) != nil || ev.Type != "progress" {
				return
			}
			mu.Lock()
			chutePts = append(chutePts, point{at, ev.RateBps})
			if ev.RateBps > 0 {
				flowOnce.Do(func() { close(flowing) })
			}
			for _, t := range ev.Transfers {
				chuteRetx = t.Retrans
			}
			mu.Unlock()
		}, client.bin, args...)
		chuteDone <- res
	}()
	select {
	case <-flowing:
	case <-time.After(2 * time.Minute):
	case <-ctx.Done():
	}
	select {
	case <-time.After(time.Duration(lead * float64(time.Second))):
	case <-ctx.Done():
	}
	var tcpRetrans int64
	ir := runStream(ctx, l.near, time.Duration(secs+30)*time.Second, toolEnv(), func(at time.Time, line string) {
		if end, bps, ok := parseIperfInterval(line); ok && end > 0 {
			mu.Lock()
			tcpPts = append(tcpPts, point{at, bps})
			mu.Unlock()
		}
	}, "iperf3", "-c", l.farAddr(), "-p", "5201", "-t", fmt.Sprint(secs), "-i", "1", "-f", "m", "--forceflush", "-C", cc)
	if ir.Err != nil {
		r.Error = "iperf3: " + ir.Err.Error()
	}
	for _, line := range strings.Split(string(ir.Stdout), "\n") {
		if strings.Contains(line, "sender") {
			var n int64
			f := strings.Fields(line)
			for i, x := range f {
				if x == "Mbits/sec" && i+1 < len(f) {
					fmt.Sscan(f[i+1], &n)
				}
			}
			tcpRetrans = n
		}
	}
	select {
	case <-time.After(time.Duration(lead * float64(time.Second))):
	case <-ctx.Done():
	}
	stopChute()
	cres := <-chuteDone
	if cres.Err != nil && r.Error == "" && len(chutePts) == 0 {
		r.Error = "chute cp: " + cres.Err.Error()
	}
	after, _ := l.stats(ctx)
	d := diffStats(before, after)
	r.KernelDrops, r.QueueDrops = d.KernelDrops, d.QueueDrops
	r.TCPRetrans, r.ChuteRetx = tcpRetrans, chuteRetx

	// One sample per second since chute started; each report lands in the
	// second it arrived in.
	n := int(math.Ceil(time.Since(start).Seconds()))
	r.Samples = make([]fairSample, n)
	for i := range r.Samples {
		r.Samples[i].T = float64(i + 1)
	}
	put := func(pts []point, set func(s *fairSample, v float64)) {
		for _, p := range pts {
			i := int(p.at.Sub(start).Seconds())
			if i >= 0 && i < n {
				set(&r.Samples[i], p.bps/1e6)
			}
		}
	}
	put(chutePts, func(s *fairSample, v float64) { s.Chute, s.HasChute = v, true })
	put(tcpPts, func(s *fairSample, v float64) { s.TCP, s.HasTCP = v, true })
	r.summarize()
	return r
}

// summarize computes the means: chute alone over the lead (from the second
// after its first moving one, the ramp, to the TCP flow's start), both
// flows over the seconds both reported after the TCP flow's first two.
func (r *fairRun) summarize() {
	var alone, ch, tcp float64
	var na, nb int
	tcpSeen, moving := 0, 0
	for _, s := range r.Samples {
		if s.HasTCP {
			tcpSeen++
		}
		if s.HasChute && s.Chute > 0 {
			moving++
		}
		switch {
		case !s.HasTCP && tcpSeen == 0 && s.HasChute && moving > 1:
			alone += s.Chute
			na++
		case s.HasTCP && s.HasChute && tcpSeen > 2:
			ch += s.Chute
			tcp += s.TCP
			nb++
		}
	}
	if na > 0 {
		r.ChuteAlone = alone / float64(na)
	}
	if nb > 0 {
		r.ChuteShared, r.TCPShared = ch/float64(nb), tcp/float64(nb)
		if sum := r.ChuteShared + r.TCPShared; sum > 0 {
			r.TCPShare = r.TCPShared / sum
		}
	}
}

// fairMarkdown renders the fairness runs: a summary, then per-second
// samples side by side.
func fairMarkdown(rep *fairReport, h string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s Fairness: chute and one TCP flow on a %s, %.0f ms bottleneck\n\n", h, rateText(rep.Rate), rep.RTTms)
	b.WriteString(metaSection(rep.Meta))
	b.WriteString("\n")
	b.WriteString(fairBody(rep, h+"#"))
	return b.String()
}

func fairBody(rep *fairReport, h string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "`chute cp` (upload, the given policy, no target rate) starts alone; %.0f s after its data starts to flow (it first reads the file to hash it), one iperf3 TCP flow "+
		"in the same direction joins for %d s; chute goes on %.0f s more. Link: %s each way, %.0f ms RTT, no random loss, "+
		"drop-tail queue of one bandwidth-delay product. Each flow's goodput is sampled every second (chute's `--json` progress, "+
		"iperf3's interval reports, placed by arrival time). Means while sharing leave out the TCP flow's first two seconds. "+
		"Aims: `fair` leaves TCP at least a third of the link, `low` most of it.\n\n",
		rep.Lead, rep.Seconds, rep.Lead, rateText(rep.Rate), rep.RTTms)
	var rows [][]string
	for _, r := range rep.Runs {
		verdict := ""
		switch r.Policy {
		case "fair":
			verdict = map[bool]string{true: "≥ 1/3: met", false: "< 1/3: missed"}[r.TCPShare >= 1.0/3]
		case "low":
			verdict = map[bool]string{true: "most: met", false: "not most: missed"}[r.TCPShare > 0.5]
		}
		errText := ""
		if r.Error != "" {
			errText = " (" + shorten(r.Error, 80) + ")"
		}
		rows = append(rows, []string{r.Policy, r.CC, mbps(r.ChuteAlone), mbps(r.ChuteShared), mbps(r.TCPShared),
			fmt.Sprintf("%.0f%%", r.TCPShare*100) + " " + verdict, fmt.Sprint(r.TCPRetrans),
			humanBytes(r.ChuteRetx), fmt.Sprint(r.KernelDrops), fmt.Sprintf("%.1f", r.Load1) + errText})
	}
	b.WriteString(table([]string{"chute policy", "TCP", "chute alone", "chute while shared", "TCP while shared", "TCP's share",
		"TCP retransmits", "chute retransmitted", "kernel drops", "load"}, rows))
	b.WriteString("\n")
	if len(rep.Runs) == 0 {
		return b.String()
	}
	fmt.Fprintf(&b, "%s Per second (Mbit/s)\n\n", h)
	header := []string{"t (s)"}
	for _, r := range rep.Runs {
		header = append(header, r.Policy+"/"+r.CC+": chute", r.Policy+"/"+r.CC+": TCP")
	}
	n := 0
	for _, r := range rep.Runs {
		n = max(n, len(r.Samples))
	}
	var srows [][]string
	for i := 0; i < n; i++ {
		row := []string{fmt.Sprint(i + 1)}
		for _, r := range rep.Runs {
			if i >= len(r.Samples) {
				row = append(row, "", "")
				continue
			}
			s := r.Samples[i]
			row = append(row, sampleText(s.Chute, s.HasChute), sampleText(s.TCP, s.HasTCP))
		}
		srows = append(srows, row)
	}
	b.WriteString(table(header, srows))
	return b.String()
}

func sampleText(v float64, ok bool) string {
	if !ok {
		return ""
	}
	return fmt.Sprintf("%.0f", v)
}

// startLinkedNode starts the link emulator with p, a chute client with
// its own key, and a chute server (folder store, bucket "bench") in the
// far namespace that trusts it; cl stops them. tag names the emulator.
func startLinkedNode(ctx context.Context, cfg config, what, tag, out string, p linkParams, cl *cleanups) (*link, *chuteClient, *chuteServer, error) {
	logf("%s: starting the emulator (%s)", what, p)
	l, err := startLink(ctx, cfg.path("LINKEM_BIN"), fmt.Sprintf("%s%d", tag, os.Getpid()%100000), out, p, "")
	if err != nil {
		return nil, nil, nil, err
	}
	cl.add(l.stop)
	client, err := newChuteClient(ctx, cfg.path("CHUTE_BIN"), filepath.Join(out, "home"))
	if err != nil {
		return nil, nil, nil, err
	}
	srv, err := startChuteServer(ctx, client, serverOptions{place: l.far, data: filepath.Join(out, "node"),
		listen: l.farAddr() + ":33001", bucket: "bench", log: filepath.Join(out, "server.log")})
	if err != nil {
		return nil, nil, nil, err
	}
	cl.add(func() { srv.stop(10 * time.Second) })
	return l, client, srv, nil
}
