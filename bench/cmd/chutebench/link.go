package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/chute/chute/internal/linkem"
)

// link is a running `linkem up` the driver started: two namespaces, near
// (clients) and far (servers), joined by an emulated link.
type link struct {
	bin  string
	name string
	svc  *service
	info linkem.Info
	near place
	far  place
}

// linkParams are one setting of the emulated link (both directions).
type linkParams struct {
	RTT  time.Duration `json:"rtt_ns"`
	Loss float64       `json:"loss"` // fraction
	Rate string        `json:"rate"` // "200mbit"
}

func (p linkParams) String() string {
	return fmt.Sprintf("RTT %v, loss %s, rate %s", p.RTT, pct(p.Loss), p.Rate)
}

// pct formats a fraction as a percentage: 0.005 → "0.5%".
func pct(f float64) string {
	return strings.TrimSuffix(strings.TrimSuffix(fmt.Sprintf("%.3f", f*100), "0"), "0") + "%"
}

// tcpSysctls lets one TCP flow fill a long fat path: buffers up to 64 MiB
// (a 200 ms, 200 Mbit/s path holds 5 MB, twice that with a full queue).
var tcpSysctls = []string{
	"net.ipv4.tcp_rmem=4096 131072 67108864",
	"net.ipv4.tcp_wmem=4096 16384 67108864",
}

// startLink runs `linkem up` with p, and TCP congestion control cc in both
// namespaces ("" keeps the host's).
func startLink(ctx context.Context, bin, name, scratch string, p linkParams, cc string) (*link, error) {
	readyFile := scratch + "/linkem-" + name + ".json"
	os.Remove(readyFile)
	args := []string{"up", "--name", name, "--rtt", p.RTT.String(), "--loss", lossArg(p.Loss), "--rate", p.Rate,
		"--json", "--ready-file", readyFile}
	for _, s := range tcpSysctls {
		args = append(args, "--sysctl", s)
	}
	if cc != "" {
		args = append(args, "--cc", cc)
	}
	ready := func() error { _, err := os.Stat(readyFile); return err }
	svc, err := startService(ctx, host, toolEnv(), scratch+"/linkem-"+name+".log", ready, time.Minute, bin, args...)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(readyFile)
	if err != nil {
		svc.stop(10 * time.Second)
		return nil, err
	}
	l := &link{bin: bin, name: name, svc: svc}
	if err := json.Unmarshal(b, &l.info); err != nil {
		svc.stop(10 * time.Second)
		return nil, fmt.Errorf("linkem ready file: %w", err)
	}
	l.near = place{name: "near", netns: l.info.Near.Path}
	l.far = place{name: "far", netns: l.info.Far.Path}
	return l, nil
}

func lossArg(f float64) string { return fmt.Sprintf("%g", f) }

func (l *link) nearAddr() string { return l.info.Near.Addr.String() }
func (l *link) farAddr() string  { return l.info.Far.Addr.String() }

// set changes the link.
func (l *link) set(ctx context.Context, p linkParams) error {
	r := run(ctx, host, 30*time.Second, toolEnv(), l.bin, "set", "--name", l.name,
		"--rtt", p.RTT.String(), "--loss", lossArg(p.Loss), "--rate", p.Rate)
	return r.Err
}

// stats returns the emulator's counters.
func (l *link) stats(ctx context.Context) (linkem.Stats, error) {
	r := run(ctx, host, 30*time.Second, toolEnv(), l.bin, "stats", "--name", l.name, "--json")
	if r.Err != nil {
		return linkem.Stats{}, r.Err
	}
	var rep struct {
		Stats linkem.Stats `json:"stats"`
	}
	err := json.Unmarshal(r.Stdout, &rep)
	return rep.Stats, err
}

// stop removes the namespaces.
func (l *link) stop() {
	if l != nil {
		l.svc.stop(20 * time.Second)
	}
}

// linkDelta is what the link did between two snapshots, both directions
// added up.
type linkDelta struct {
	KernelDrops, QueueDrops, Lost, Forwarded uint64
}

func diffStats(a, b linkem.Stats) linkDelta {
	var d linkDelta
	for _, dir := range []linkem.Dir{linkem.NearToFar, linkem.FarToNear} {
		x, y := a.Dir(dir), b.Dir(dir)
		d.KernelDrops += y.KernelDrops - x.KernelDrops
		d.QueueDrops += y.QueueDrops - x.QueueDrops
		d.Lost += y.Lost - x.Lost
		d.Forwarded += y.Forwarded - x.Forwarded
	}
	return d
}

// measureOnLink runs f and records in its measurement what the link did
// meanwhile, and what the kernels at both ends dropped.
func measureOnLink(ctx context.Context, l *link, f func() measurement) measurement {
	before, err1 := l.stats(ctx)
	m := udpDrops(ctx, []place{l.near, l.far}, f)
	after, err2 := l.stats(ctx)
	if err1 == nil && err2 == nil {
		d := diffStats(before, after)
		m.LinkKernelDrops, m.LinkQueueDrops, m.LinkLostPackets, m.LinkForwardedPkt = d.KernelDrops, d.QueueDrops, d.Lost, d.Forwarded
	}
	return m
}

// allowCC makes sure namespaces may choose cc (a host-wide list); it
// returns a function that puts the list back as it was.
func allowCC(cc string) (restore func(), err error) {
	const path = "/proc/sys/net/ipv4/tcp_allowed_congestion_control"
	if cc == "" {
		return func() {}, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	orig := strings.TrimSpace(string(b))
	for _, a := range strings.Fields(orig) {
		if a == cc {
			return func() {}, nil
		}
	}
	if err := os.WriteFile(path, []byte(orig+" "+cc), 0o644); err != nil {
		return nil, fmt.Errorf("allow TCP congestion control %s: %w", cc, err)
	}
	return func() { os.WriteFile(path, []byte(orig), 0o644) }, nil
}

// rateText formats a linkem rate for people: "200mbit" → "200 Mbit/s".
func rateText(r string) string {
	v, err := linkem.ParseBitrate(r)
	if err != nil || v == 0 {
		return r
	}
	return mbps(float64(v) / 1e6)
}
