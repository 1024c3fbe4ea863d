package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// localReport is what `chutebench local` (make bench) measured.
type localReport struct {
	Meta      *runMeta      `json:"meta"`
	Size      int64         `json:"size_bytes"`
	Repeat    int           `json:"repeat"`
	Loopback  []measurement `json:"loopback"`
	Link      *linkReport   `json:"link,omitempty"`
	S3        []measurement `json:"s3"`
	Mount     []measurement `json:"mount"`
	MountNote string        `json:"mount_note,omitempty"`
	GoBench   string        `json:"go_bench,omitempty"`
	Errors    []string      `json:"errors,omitempty"`
}

// linkReport is the emulated-link part of make bench.
type linkReport struct {
	Params  linkParams    `json:"link"`
	Size    int64         `json:"size_bytes"`
	Results []measurement `json:"results"`
}

const opTimeout = 15 * time.Minute

func runLocal(ctx context.Context, cfg config) (err error) {
	out, err := newScratch(cfg, "local")
	if err != nil {
		return err
	}
	defer clearScratch(out, true) // after the cleanups below; keeps the logs
	var cl cleanups
	defer cl.run()

	size := cfg.size("CHUTE_BENCH_SIZE")
	meta, endMeta := newMeta(ctx, cfg, "CHUTE_BENCH_SIZE", "CHUTE_BENCH_REPEAT", "CHUTE_BENCH_PARTS", "CHUTE_BENCH_LINK_SIZE",
		"CHUTE_BENCH_LINK_RTT", "CHUTE_BENCH_LINK_LOSS", "CHUTE_BENCH_LINK_RATE", "CHUTE_BENCH_SMALL_FILES",
		"CHUTE_BENCH_SMALL_SIZE", "CHUTE_BENCH_TREE")
	rep := &localReport{Meta: meta, Size: size, Repeat: cfg.int("CHUTE_BENCH_REPEAT")}
	bin := cfg.path("CHUTE_BIN")
	client, err := newChuteClient(ctx, bin, filepath.Join(out, "home"))
	if err != nil {
		return err
	}
	src := filepath.Join(out, "src.bin")
	logf("writing a %s test file", humanBytes(size))
	if err := makeFile(src, size, 1); err != nil {
		return err
	}
	note := func(part string, err error) {
		if err != nil && ctx.Err() == nil {
			logf("%s: %v", part, err)
			rep.Errors = append(rep.Errors, part+": "+err.Error())
		}
	}
	lo := &localRun{cfg: cfg, out: out, client: client, src: src, size: size, rep: rep}
	if cfg.has("CHUTE_BENCH_PARTS", "loopback") {
		note("loopback", lo.loopback(ctx))
	}
	if cfg.has("CHUTE_BENCH_PARTS", "link") && ctx.Err() == nil {
		note("link", lo.link(ctx))
	}
	if (cfg.has("CHUTE_BENCH_PARTS", "s3") || cfg.has("CHUTE_BENCH_PARTS", "mount")) && ctx.Err() == nil {
		note("s3", lo.s3AndMounts(ctx))
	}
	if cfg.has("CHUTE_BENCH_PARTS", "go") && ctx.Err() == nil {
		note("go", lo.goBench(ctx))
	}
	cl.run()
	endMeta()
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted; no results written")
	}
	md := localMarkdown(rep)
	t, _ := time.Parse(time.RFC3339, meta.Started)
	path, err := saveResults(cfg.path("CHUTE_BENCH_RESULTS"), "bench", t, rep, md)
	if err != nil {
		return err
	}
	logf("results: %s and bench-latest.{json,md}", strings.TrimSuffix(path, ".json")+".{json,md}")
	return updateDoc(cfg)
}

// localRun carries one make bench run.
type localRun struct {
	cfg    config
	out    string
	client *chuteClient
	src    string
	size   int64
	rep    *localReport
}

// loopback: chute cp up and down through a folder-store server on
// 127.0.0.1, cp of the same file, iperf3 over loopback.
func (lo *localRun) loopback(ctx context.Context) error {
	port, err := freePort("127.0.0.1")
	if err != nil {
		return err
	}
	srv, err := startChuteServer(ctx, lo.client, serverOptions{place: host, data: filepath.Join(lo.out, "node-loop"),
		listen: fmt.Sprintf("127.0.0.1:%d", port), bucket: "bench", log: filepath.Join(lo.out, "server-loop.log")})
	if err != nil {
		return err
	}
	defer srv.stop(10 * time.Second)
	defer os.RemoveAll(srv.data)
	dst := filepath.Join(lo.out, "dl.bin")
	add := func(m measurement) {
		logf("loopback: %-10s %-8s %s", m.Tool, m.Op, describeM(m))
		lo.rep.Loopback = append(lo.rep.Loopback, m)
	}
	for i := 0; i < lo.rep.Repeat && ctx.Err() == nil; i++ {
		key := fmt.Sprintf("up-%d", i)
		add(udpDrops(ctx, []place{host}, func() measurement {
			return lo.client.cp(ctx, host, opTimeout, "chute cp", true, lo.size, srv.service, 0, nil, lo.src, srv.url("bench", key), nil)
		}))
		os.Remove(dst)
		add(udpDrops(ctx, []place{host}, func() measurement {
			return lo.client.cp(ctx, host, opTimeout, "chute cp", false, lo.size, srv.service, 0, nil, srv.url("bench", key), dst, nil)
		}))
		os.Remove(dst)
		os.Remove(filepath.Join(srv.data, "objects", "bench", key))
	}
	for i := 0; i < lo.rep.Repeat && ctx.Err() == nil; i++ {
		for _, v := range []struct {
			tool string
			args []string
		}{
			{"cp", []string{"cp", lo.src, dst}},
			{"cp + fsync", []string{"sh", "-c", `cp "$0" "$1" && sync "$1"`, lo.src, dst}},
		} {
			os.Remove(dst)
			m := newMeasurement(v.tool, "copy")
			r := run(ctx, host, opTimeout, toolEnv(), v.args[0], v.args[1:]...)
			m.Seconds, m.Bytes, m.ClientCPU = r.Wall.Seconds(), lo.size, r.CPU.Seconds()
			m.fail(r)
			m.setRate()
			add(m)
		}
		os.Remove(dst)
	}
	for _, extra := range [][]string{nil, {"-u", "-b", "0", "-l", "1400", "-w", "4M"}} {
		if ctx.Err() != nil {
			break
		}
		port, err := freePort("127.0.0.1")
		if err != nil {
			return err
		}
		m, _ := iperf(ctx, host, host, "127.0.0.1", port, lo.out, 5, extra...)
		add(m)
	}
	return nil
}

// link: chute cp across an emulated long, lossy, rate-capped path, and
// one TCP flow (iperf3, CUBIC and BBR) on the same path for reference.
func (lo *localRun) link(ctx context.Context) error {
	rtt := lo.cfg.duration("CHUTE_BENCH_LINK_RTT")
	loss := lo.cfg.losses("CHUTE_BENCH_LINK_LOSS")
	if len(loss) != 1 {
		return fmt.Errorf("CHUTE_BENCH_LINK_LOSS: want one value")
	}
	p := linkParams{RTT: rtt, Loss: loss[0], Rate: lo.cfg.str("CHUTE_BENCH_LINK_RATE")}
	size := lo.cfg.size("CHUTE_BENCH_LINK_SIZE")
	lr := &linkReport{Params: p, Size: size}
	lo.rep.Link = lr
	src := lo.src
	if size != lo.size {
		src = filepath.Join(lo.out, "src-link.bin")
		if err := makeFile(src, size, 2); err != nil {
			return err
		}
		defer os.Remove(src)
	}
	logf("link: starting the emulator (%s)", p)
	l, err := startLink(ctx, lo.cfg.path("LINKEM_BIN"), fmt.Sprintf("bl%d", os.Getpid()%100000), lo.out, p, "")
	if err != nil {
		return err
	}
	defer l.stop()
	srv, err := startChuteServer(ctx, lo.client, serverOptions{place: l.far, data: filepath.Join(lo.out, "node-link"),
		listen: l.farAddr() + ":33001", bucket: "bench", log: filepath.Join(lo.out, "server-link.log")})
	if err != nil {
		return err
	}
	defer srv.stop(10 * time.Second)
	dst := filepath.Join(lo.out, "dl-link.bin")
	add := func(m measurement) {
		logf("link: %-10s %-8s %s", m.Tool, m.Op, describeM(m))
		lr.Results = append(lr.Results, m)
	}
	add(measureOnLink(ctx, l, func() measurement {
		return lo.client.cp(ctx, l.near, opTimeout, "chute cp", true, size, srv.service, 0, nil, src, srv.url("bench", "up"), nil)
	}))
	if ctx.Err() == nil {
		add(measureOnLink(ctx, l, func() measurement {
			return lo.client.cp(ctx, l.near, opTimeout, "chute cp", false, size, srv.service, 0, nil, srv.url("bench", "up"), dst, nil)
		}))
	}
	os.Remove(dst)
	for _, cc := range []string{"cubic", "bbr"} {
		if ctx.Err() != nil {
			break
		}
		add(measureOnLink(ctx, l, func() measurement {
			m, _ := iperf(ctx, l.near, l.far, l.farAddr(), 5201, lo.out, 20, "-C", cc)
			m.Tool = "iperf3 TCP " + cc
			m.Op = "upload"
			return m
		}))
	}
	return nil
}

// s3AndMounts: SeaweedFS on loopback; chute server --store s3 in front of
// it; chute cp, curl and rclone to the same bucket; then the mounts.
func (lo *localRun) s3AndMounts(ctx context.Context) error {
	logf("s3: starting SeaweedFS")
	w, err := startWeedHere(ctx, lo.cfg.path("CHUTE_WEED"), filepath.Join(lo.out, "weed"))
	if err != nil {
		return err
	}
	defer w.stop()
	if err := w.createBucket(ctx, "bench"); err != nil {
		return err
	}
	port, err := freePort("127.0.0.1")
	if err != nil {
		return err
	}
	srv, err := startChuteServer(ctx, lo.client, serverOptions{place: host, data: filepath.Join(lo.out, "node-s3"),
		listen: fmt.Sprintf("127.0.0.1:%d", port), bucket: "bench", s3: &w.s3Store, log: filepath.Join(lo.out, "server-s3.log")})
	if err != nil {
		return err
	}
	defer srv.stop(10 * time.Second)
	if lo.cfg.has("CHUTE_BENCH_PARTS", "s3") {
		if err := lo.s3(ctx, w, srv); err != nil {
			return err
		}
	}
	if lo.cfg.has("CHUTE_BENCH_PARTS", "mount") && ctx.Err() == nil {
		return lo.mounts(ctx, w, srv)
	}
	return nil
}

func (lo *localRun) s3(ctx context.Context, w *weedServer, srv *chuteServer) error {
	dst := filepath.Join(lo.out, "dl-s3.bin")
	gib := float64(lo.size) / (1 << 30)
	add := func(f func() measurement) {
		before, _ := cpuOf(w.PID)
		m := udpDrops(ctx, []place{host}, f)
		after, _ := cpuOf(w.PID)
		m.OtherCPUPerGiB = (after - before).Seconds() / gib
		logf("s3: %-10s %-8s %s", m.Tool, m.Op, describeM(m))
		lo.rep.S3 = append(lo.rep.S3, m)
		os.Remove(dst)
	}
	for i := 0; i < lo.rep.Repeat && ctx.Err() == nil; i++ {
		key := func(tool string) string { return fmt.Sprintf("%s-up-%d", tool, i) }
		add(func() measurement {
			return lo.client.cp(ctx, host, opTimeout, "chute cp", true, lo.size, srv.service, 0, nil, lo.src, srv.url("bench", key("chute")), nil)
		})
		add(func() measurement {
			return lo.client.cp(ctx, host, opTimeout, "chute cp", false, lo.size, srv.service, 0, nil, srv.url("bench", key("chute")), dst, nil)
		})
		add(func() measurement { return w.curlPut(ctx, host, opTimeout, lo.src, "bench", key("curl"), lo.size) })
		add(func() measurement { return w.curlGet(ctx, host, opTimeout, "bench", key("curl"), dst, lo.size) })
		add(func() measurement {
			return w.rcloneCopy(ctx, host, opTimeout, lo.out, true, lo.src, "bench", key("rclone"), lo.size)
		})
		add(func() measurement {
			return w.rcloneCopy(ctx, host, opTimeout, lo.out, false, dst, "bench", key("rclone"), lo.size)
		})
		for _, t := range []string{"chute", "curl", "rclone"} {
			w.deleteObject(ctx, "bench", key(t))
		}
	}
	return nil
}

// besideTool names chute cp runs taken beside the mount's.
const besideTool = "chute cp beside the mount"

// mounts: 1 file of the run's size written and read through each mount,
// cp -r of many small files, ls -lR and find of a large bucket.
func (lo *localRun) mounts(ctx context.Context, w *weedServer, srv *chuteServer) error {
	withChute := hasMount(ctx, lo.client.bin)
	if !withChute {
		lo.rep.MountNote = "chute has no mount command yet: only rclone mount and s3fs were measured"
	}
	nSmall := lo.cfg.int("CHUTE_BENCH_SMALL_FILES")
	smallSize := lo.cfg.size("CHUTE_BENCH_SMALL_SIZE")
	nTree := lo.cfg.int("CHUTE_BENCH_TREE")
	small := filepath.Join(lo.out, "small")
	if err := makeTree(small, nSmall, smallSize); err != nil {
		return err
	}
	logf("mount: writing %d objects for the listing test", nTree)
	if err := w.fillTree(ctx, "bench", "tree/", nTree, 100, 1024); err != nil {
		return err
	}
	setup := mountSetup{place: host, scratch: lo.out, bucket: "bench", s3: &w.s3Store, chute: lo.client, server: srv}
	mnt := filepath.Join(lo.out, "mnt")
	for _, t := range setup.tools(withChute) {
		if ctx.Err() != nil {
			break
		}
		if t.name == "chute mount" {
			dst := filepath.Join(lo.out, "dl-beside.bin")
			t.beside = func(ctx context.Context, write bool, i int) measurement {
				url := srv.url("bench", fmt.Sprintf("beside-mount-%d", i))
				if write {
					return lo.client.cp(ctx, host, opTimeout, besideTool, true, lo.size, srv.service, 0, nil, lo.src, url, nil)
				}
				defer os.Remove(dst)
				return lo.client.cp(ctx, host, opTimeout, besideTool, false, lo.size, srv.service, 0, nil, url, dst, nil)
			}
		}
		for _, m := range mountOps(ctx, t, mnt, filepath.Join(lo.out, "cache-"+slug(t.name)), &w.s3Store, lo.src, lo.size, "",
			small, nSmall, smallSize, nTree, filepath.Join(lo.out, "dl-mnt.bin"), opTimeout, true, lo.rep.Repeat) {
			logf("mount: %-12s %-10s %s", m.Tool, m.Op, describeM(m))
			lo.rep.Mount = append(lo.rep.Mount, m)
		}
	}
	return nil
}

// mountOps measures one mount tool: a big file written (until it is in
// the bucket) and read back from a fresh mount; with listing set, also a
// tree of small files copied in and a large bucket listed.
// readKey is the object read back ("" for the one just written); the
// write and the read are measured repeat times.
func mountOps(ctx context.Context, t mountTool, mnt, cache string, s3 *s3Store, src string, size int64, readKey string,
	small string, nSmall int, smallSize int64, nTree int, dst string, timeout time.Duration, listing bool, repeat int) []measurement {
	var ms []measurement
	dir := "mnt-" + slug(t.name)
	fail := func(op string, err error) {
		m := newMeasurement(t.name, op)
		m.Error = err.Error()
		ms = append(ms, m)
	}
	// A copy through a mount can sit in an uninterruptible FUSE request
	// (a flush that uploads, a read that waits) that no signal to cp
	// ends: shortly after the time is up, kill the file system, which
	// fails its pending requests.
	guard := func(mt *mounted) func() {
		t := time.AfterFunc(timeout+3*time.Second, func() { mt.svc.cmd.Process.Kill() })
		return func() { t.Stop() }
	}
	// A mount whose operation failed or timed out may hold stuck
	// requests: kill it rather than wait for a clean unmount.
	closeMount := func(mt *mounted) {
		last := ms[len(ms)-1]
		if last.TimedOut || last.Error != "" {
			mt.kill()
			return
		}
		mt.close(ctx)
	}
	// The big file is written and read repeat times: from run to run the
	// store behind every tool varies by a fifth, and one run against a
	// median would compare noise.
	var mt *mounted
	var err error
	// The reference beside each big write and read goes first in even
	// runs and second in odd ones.
	var refs []measurement
	beside := func(write bool, i int, first bool) {
		if t.beside != nil && (i%2 == 0) == first && ctx.Err() == nil {
			refs = append(refs, t.beside(ctx, write, i))
		}
	}
	for i := 0; i < max(repeat, 1) && ctx.Err() == nil; i++ {
		// Write.
		beside(true, i, true)
		if mt, err = mount(ctx, t, mnt, cache); err != nil {
			fail("write", err)
			return ms
		}
		os.Mkdir(filepath.Join(mnt, dir), 0o755)
		key := fmt.Sprintf("%s/big-%d.bin", dir, i)
		s3.deleteObject(ctx, "bench", key)
		stop := guard(mt)
		ms = append(ms, timedCopy(ctx, t.name, "write", size, timeout, []string{"cp", src, filepath.Join(mnt, key)},
			func() bool { return s3.objectSize(ctx, "bench", key) == size }))
		stop()
		if i == 0 && listing && ctx.Err() == nil && mt.svc.alive() {
			sub := dir + "/small"
			stop := guard(mt)
			ms = append(ms, timedCopy(ctx, t.name, fmt.Sprintf("cp -r %d × %s", nSmall, humanBytes(smallSize)), int64(nSmall)*smallSize, timeout,
				[]string{"cp", "-r", small, filepath.Join(mnt, sub)},
				func() bool { n, _ := s3.countObjects(ctx, "bench", sub+"/"); return n >= nSmall }))
			stop()
		}
		closeMount(mt)
		beside(true, i, false)
		if ctx.Err() != nil {
			return append(ms, refs...)
		}
		// Read, from a fresh mount (no cached blocks, no page cache).
		beside(false, i, true)
		if mt, err = mount(ctx, t, mnt, cache); err != nil {
			fail("read", err)
			return ms
		}
		rk := readKey
		if rk == "" {
			rk = key
		}
		os.Remove(dst)
		stop = guard(mt)
		ms = append(ms, timedCopy(ctx, t.name, "read", size, timeout, []string{"cp", filepath.Join(mnt, rk), dst}, nil))
		stop()
		os.Remove(dst)
		closeMount(mt)
		beside(false, i, false)
	}
	ms = append(ms, refs...)
	if !listing || ctx.Err() != nil {
		return ms
	}
	// Listing: cold (fresh mount) then warm, for ls -lR and for find.
	for _, lister := range [][]string{{"ls", "-lR"}, {"find"}} {
		if mt, err = mount(ctx, t, mnt, cache); err != nil {
			fail(lister[0], err)
			return ms
		}
		for _, state := range []string{"cold", "warm"} {
			m := newMeasurement(t.name, fmt.Sprintf("%s of %d objects (%s)", strings.Join(lister, " "), nTree, state))
			stop := guard(mt)
			r := run(ctx, host, timeout, toolEnv(), lister[0], append(lister[1:], filepath.Join(mnt, "tree"))...)
			stop()
			m.Seconds = r.Wall.Seconds()
			m.fail(r)
			lines := strings.Count(string(r.Stdout), "\n")
			m.Extra = fmt.Sprintf("%d lines of output", lines)
			if m.Error == "" && !m.TimedOut && lines < nTree {
				m.Error = fmt.Sprintf("only %d lines listed, want at least %d", lines, nTree)
			}
			ms = append(ms, m)
		}
		closeMount(mt)
	}
	return ms
}

// timedCopy runs a copy command; when done is set, the clock runs until
// done reports true (the data is in the bucket), within timeout.
func timedCopy(ctx context.Context, tool, op string, size int64, timeout time.Duration, argv []string, done func() bool) measurement {
	m := newMeasurement(tool, op)
	start := time.Now()
	r := run(ctx, host, timeout, toolEnv(), argv[0], argv[1:]...)
	m.Bytes = size
	m.ClientCPU = r.CPU.Seconds()
	m.fail(r)
	if m.Error == "" && !m.TimedOut && done != nil {
		m.Extra = fmt.Sprintf("cp returned after %.1f s", r.Wall.Seconds())
		if !waitFor(ctx, timeout-time.Since(start), done) {
			m.TimedOut = true
		}
	}
	m.Seconds = time.Since(start).Seconds()
	if m.TimedOut {
		m.Seconds = timeout.Seconds()
	}
	m.setRate()
	return m
}

// goBench runs the engine's and the store's Go benchmarks.
func (lo *localRun) goBench(ctx context.Context) error {
	args := []string{"test", "-run", "XXX", "-bench", ".", "-timeout", "30m"}
	args = append(args, strings.Fields(lo.cfg.str("CHUTE_BENCH_GOFLAGS"))...)
	args = append(args, "./engine/...", "./cos/...")
	logf("go %s", strings.Join(args, " "))
	r := run(ctx, host, 40*time.Minute, toolEnv("CHUTE_WEED="+lo.cfg.path("CHUTE_WEED")), "go", args...)
	lo.rep.GoBench = "$ go " + strings.Join(args, " ") + "\n" + string(r.Stdout)
	if r.Err != nil {
		lo.rep.GoBench += "\n" + string(r.Stderr)
		return r.Err
	}
	return nil
}

// describeM is a one-line summary for the progress log.
func describeM(m measurement) string {
	s := ""
	switch {
	case m.TimedOut:
		s = timeoutCell(m)
	case m.Error != "":
		s = "FAILED: " + shorten(m.Error, 200)
	case m.Mbps > 0:
		s = fmt.Sprintf("%s in %.1f s", mbps(m.Mbps), m.Seconds)
	default:
		s = fmt.Sprintf("%.2f s", m.Seconds)
	}
	if m.BytesRetrans > 0 {
		s += fmt.Sprintf(", %s retransmitted", humanBytes(m.BytesRetrans))
	}
	if m.ServerCPU > 0 || m.ClientCPU > 0 {
		s += fmt.Sprintf(", CPU client %.1f s server %.1f s", m.ClientCPU, m.ServerCPU)
	}
	if m.LinkKernelDrops > 0 {
		s += fmt.Sprintf(", %d KERNEL DROPS at the emulator", m.LinkKernelDrops)
	}
	return s + fmt.Sprintf(" (load %.1f)", m.Load1)
}

// slug makes a tool name usable in file and key names.
func slug(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, " ", "-"), "/", "-")
}
