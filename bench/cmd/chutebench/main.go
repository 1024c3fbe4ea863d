// Command chutebench measures chute beside the tools people would use
// instead (cp, iperf3, curl, rclone, rclone mount, s3fs) and writes the
// figures to files: scripts/bench.sh (make bench) and scripts/bench-wan.sh
// (make bench-wan) run it. Figures are measured, never asserted.
//
//	chutebench local    loopback, one emulated long lossy link, SeaweedFS, mounts, Go benchmarks
//	chutebench wan      the WAN grid: RTT × loss through the link emulator, every tool
//	chutebench fair     chute (fair, then low) sharing the bottleneck with one TCP flow
//	chutebench setup    many tiny copies across the emulated link: what each command pays besides its bytes
//	chutebench chart F  redraw the WAN chart from a wan-*.json file
//	chutebench doc      rewrite BENCHMARKS.md's generated sections from the latest results
//
// Settings come from CHUTE_BENCH_* environment variables (see the usage
// text and the scripts). It needs root: namespaces, FUSE mounts, and the
// host's list of allowed TCP congestion control algorithms.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/chute/chute/internal/linkem"
)

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	cmd, args := os.Args[1], os.Args[2:]
	var err error
	switch cmd {
	case "weed":
		err = runWeedHelper(args)
	case "s3":
		err = runS3Helper(args)
	case "local", "wan", "fair", "setup":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		cfg := loadConfig()
		switch cmd {
		case "local":
			err = runLocal(ctx, cfg)
		case "wan":
			err = runWAN(ctx, cfg)
		case "fair":
			err = runFair(ctx, cfg)
		case "setup":
			err = runSetup(ctx, cfg)
		}
		stop()
	case "chart":
		if len(args) != 2 {
			err = fmt.Errorf("usage: chutebench chart WAN.json OUT.svg")
			break
		}
		err = redrawChart(args[0], args[1])
	case "doc":
		err = updateDoc(loadConfig())
	case "help", "-h", "--help":
		usage()
		return
	default:
		usage()
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "chutebench:", err)
		os.Exit(1)
	}
}

// setting is one environment variable the driver reads.
type setting struct {
	name, def, help string
}

var settings = []setting{
	{"CHUTE_BENCH_OUT", "bench/out", "scratch folder (files, server data, mounts); emptied per run"},
	{"CHUTE_BENCH_RESULTS", "bench/results", "where results go"},
	{"CHUTE_BENCH_DOC", "BENCHMARKS.md", "the document whose generated sections are rewritten"},
	{"CHUTE_BIN", "bin/chute", "the chute binary"},
	{"CHUTE_WEED", ".cache/bin/weed", "the SeaweedFS binary"},
	{"LINKEM_BIN", "bench/out/bin/linkem", "the linkem binary"},
	{"CHUTE_BENCH_SIZE", "1G", "local: file size for loopback, S3 and mount runs"},
	{"CHUTE_BENCH_REPEAT", "3", "local: runs of each loopback and S3 measurement (the median is reported)"},
	{"CHUTE_BENCH_PARTS", "loopback,link,s3,mount,go", "local: parts to run"},
	{"CHUTE_BENCH_LINK_SIZE", "1G", "local: file size over the emulated link"},
	{"CHUTE_BENCH_LINK_RTT", "100ms", "local: emulated link's round-trip time"},
	{"CHUTE_BENCH_LINK_LOSS", "1%", "local: emulated link's random loss, each direction"},
	{"CHUTE_BENCH_LINK_RATE", "200mbit", "local: emulated link's rate cap, each direction"},
	{"CHUTE_BENCH_SMALL_FILES", "1000", "local: files copied with cp -r into each mount"},
	{"CHUTE_BENCH_SMALL_SIZE", "64K", "local: size of each of those files"},
	{"CHUTE_BENCH_TREE", "10000", "local: objects in the bucket listed with ls -lR and find"},
	{"CHUTE_BENCH_SERVER_FLAGS", "", "extra flags for every chute server (--debug: its log shows each part and commit)"},
	{"CHUTE_BENCH_GOFLAGS", "-benchtime=1s", "local: extra flags for go test -bench"},
	{"CHUTE_WAN_SIZE", "256M", "wan: file size"},
	{"CHUTE_WAN_RTTS", "0 50ms 100ms 200ms", "wan: round-trip times"},
	{"CHUTE_WAN_LOSSES", "0 0.5% 2%", "wan: random loss rates (each direction)"},
	{"CHUTE_WAN_RATE", "200mbit", "wan and fair: the bottleneck rate, each direction"},
	{"CHUTE_WAN_TIMEOUT", "60s", "wan: the longest one transfer may take"},
	{"CHUTE_WAN_TOOLS", "chute,chute-target,chute-fixed,curl,rclone,mounts", "wan: tools (chute-target: the default policy with --target-rate at the link rate; mounts: chute mount when it exists, rclone mount, s3fs; chute-mount: chute mount alone)"},
	{"CHUTE_WAN_CC", "cubic", "wan and fair: TCP congestion control in the namespaces (cubic, bbr, reno)"},
	{"CHUTE_FAIR_RTT", "50ms", "fair: round-trip time"},
	{"CHUTE_FAIR_SECONDS", "30", "fair: how long the TCP flow runs"},
	{"CHUTE_FAIR_LEAD", "10s", "fair: how long chute runs alone before the TCP flow starts, and after it ends"},
	{"CHUTE_FAIR_POLICIES", "fair,low", "fair: chute policies to try"},
	{"CHUTE_FAIR_CCS", "cubic", "fair: TCP congestion controls to compete against"},
	{"CHUTE_SETUP_RTT", "100ms", "setup: round-trip time"},
	{"CHUTE_SETUP_LOSSES", "0 2%", "setup: random loss rates (each direction)"},
	{"CHUTE_SETUP_RUNS", "100", "setup: uploads (and as many downloads) per loss rate"},
	{"CHUTE_SETUP_SIZE", "1K", "setup: size of the file copied"},
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: chutebench local|wan|fair|setup|doc|chart WAN.json OUT.svg")
	fmt.Fprintln(os.Stderr, "\nsettings (environment variables, default in brackets):")
	for _, s := range settings {
		fmt.Fprintf(os.Stderr, "  %-24s %s [%s]\n", s.name, s.help, s.def)
	}
}

// config is the settings, read once.
type config map[string]string

func loadConfig() config {
	c := config{}
	for _, s := range settings {
		v := os.Getenv(s.name)
		if v == "" {
			v = s.def
		}
		c[s.name] = v
	}
	return c
}

func (c config) str(name string) string { return c[name] }

// path returns a setting naming a file, made absolute.
func (c config) path(name string) string {
	p, err := filepath.Abs(c[name])
	if err != nil {
		return c[name]
	}
	return p
}

func (c config) size(name string) int64 {
	n, err := parseSize(c[name])
	if err != nil {
		fatalf("%s: %v", name, err)
	}
	return n
}

func (c config) int(name string) int {
	n, err := strconv.Atoi(c[name])
	if err != nil {
		fatalf("%s: %v", name, err)
	}
	return n
}

func (c config) duration(name string) time.Duration {
	d, err := parseDuration(c[name])
	if err != nil {
		fatalf("%s: %v", name, err)
	}
	return d
}

func (c config) durations(name string) []time.Duration {
	var ds []time.Duration
	for _, f := range splitList(c[name]) {
		d, err := parseDuration(f)
		if err != nil {
			fatalf("%s: %v", name, err)
		}
		ds = append(ds, d)
	}
	return ds
}

func (c config) losses(name string) []float64 {
	var ls []float64
	for _, f := range splitList(c[name]) {
		l, err := linkem.ParseLoss(f)
		if err != nil {
			fatalf("%s: %v", name, err)
		}
		ls = append(ls, l)
	}
	return ls
}

func (c config) list(name string) []string { return splitList(c[name]) }

func (c config) has(name, item string) bool {
	for _, x := range c.list(name) {
		if x == item {
			return true
		}
	}
	return false
}

// splitList splits on commas and spaces.
func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' })
}

func parseDuration(s string) (time.Duration, error) {
	if s == "0" {
		return 0, nil
	}
	return time.ParseDuration(s)
}

// parseSize parses a byte count with an optional K, M, G suffix (powers
// of 1024).
func parseSize(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "I")
	mult := int64(1)
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		}
		if mult > 1 {
			t = t[:n-1]
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("bad size %q (want e.g. 256M or 1G)", s)
	}
	return int64(v * float64(mult)), nil
}

func fatalf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "chutebench: "+format+"\n", a...)
	os.Exit(2)
}

// logf prints progress for the person running the benchmark.
func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, a...))
}

// cleanups runs registered functions in reverse order, once.
type cleanups struct{ fs []func() }

func (c *cleanups) add(f func()) { c.fs = append(c.fs, f) }

func (c *cleanups) run() {
	for i := len(c.fs) - 1; i >= 0; i-- {
		c.fs[i]()
	}
	c.fs = nil
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
