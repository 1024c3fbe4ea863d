package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/chute/chute/internal/linkem"
)

type upOptions struct {
	link          linkFlags
	name          string
	mtu           int
	nearAddr      string
	farAddr       string
	cc            string
	allowCC       bool
	sysctls       []string
	seed          uint64
	json          bool
	readyFile     string
	statsInterval time.Duration
	nice          int
	noOffload     bool
}

func (o *upOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.name, "name", "", "emulator name: namespaces chute-NAME-near and chute-NAME-far (default random)")
	o.link.AddFlags(fs)
	fs.IntVar(&o.mtu, "mtu", linkem.DefaultMTU, "MTU of the link")
	fs.StringVar(&o.nearAddr, "near-addr", "", "near end's IPv4 address (default 10.201.X.1)")
	fs.StringVar(&o.farAddr, "far-addr", "", "far end's IPv4 address (default 10.201.X.2)")
	fs.StringVar(&o.cc, "cc", "", "TCP congestion control for both namespaces: reno, cubic, bbr (default: the host's)")
	fs.BoolVar(&o.allowCC, "allow-cc", false, "add --cc to the host's net.ipv4.tcp_allowed_congestion_control (a host-wide setting) if missing")
	fs.StringArrayVar(&o.sysctls, "sysctl", nil, "KEY=VALUE net.* sysctl set in both namespaces (repeatable)")
	fs.Uint64Var(&o.seed, "seed", 0, "seed for loss and jitter draws (default random)")
	fs.BoolVar(&o.json, "json", false, "print the namespaces and addresses, and the final stats, as JSON lines")
	fs.StringVar(&o.readyFile, "ready-file", "", "write the JSON description to this file once the link is up")
	fs.DurationVar(&o.statsInterval, "stats-interval", 0, "log the counters this often (0: only at exit)")
	fs.BoolVar(&o.noOffload, "no-offload", false, "one packet per system call: no TCP segmentation offload between the kernels and the forwarder (slower)")
	fs.IntVar(&o.nice, "nice", -10, "scheduling niceness of the forwarder, so that a busy machine delays packets less (0: leave as is)")
}

func init() {
	o := &upOptions{}
	register(&command{
		Name:    "up",
		Usage:   "up [--rtt D] [--loss P] [--rate R] [--jitter D] [--queue B] [--name X] [flags]",
		Summary: "create the namespaces and forward in the foreground until SIGINT/SIGTERM",
		Flags:   o.AddFlags,
		Run: func(ctx context.Context, env *Env, args []string) error {
			if len(args) > 0 {
				return usagef("unexpected arguments %q", args)
			}
			return runUp(ctx, env, o)
		},
	})
}

// upDescription is what up prints with --json and writes to --ready-file.
type upDescription struct {
	linkem.Info
	Control   string      `json:"control"`
	NearToFar linkem.Link `json:"near_to_far"`
	FarToNear linkem.Link `json:"far_to_near"`
}

func (o *upOptions) config() (linkem.Config, error) {
	cfg := linkem.Config{Name: o.name, MTU: o.mtu, Seed: o.seed, NoOffload: o.noOffload}
	if err := o.link.apply(&cfg.NearToFar, &cfg.FarToNear, true); err != nil {
		return cfg, err
	}
	if (o.nearAddr == "") != (o.farAddr == "") {
		return cfg, usagef("give both --near-addr and --far-addr, or neither")
	}
	if o.nearAddr != "" {
		var err error
		if cfg.NearAddr, err = netip.ParseAddr(o.nearAddr); err != nil {
			return cfg, usagef("--near-addr: %v", err)
		}
		if cfg.FarAddr, err = netip.ParseAddr(o.farAddr); err != nil {
			return cfg, usagef("--far-addr: %v", err)
		}
	}
	if len(o.sysctls) > 0 || o.cc != "" {
		cfg.Sysctls = map[string]string{}
	}
	for _, kv := range o.sysctls {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return cfg, usagef("--sysctl %q: want KEY=VALUE", kv)
		}
		cfg.Sysctls[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	if o.cc != "" {
		cfg.Sysctls["net.ipv4.tcp_congestion_control"] = o.cc
	}
	return cfg, nil
}

func runUp(ctx context.Context, env *Env, o *upOptions) error {
	cfg, err := o.config()
	if err != nil {
		return err
	}
	cfg.Logger = env.Logger
	if o.nice != 0 {
		if err := linkem.SetNice(o.nice); err != nil {
			env.Logger.Warn("linkem: cannot change niceness", "err", err)
		}
	}
	if o.cc != "" && o.allowCC {
		if err := allowCongestionControl(o.cc); err != nil {
			return err
		}
	}
	setupCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	e, err := linkem.New(setupCtx, cfg)
	cancel()
	if err != nil {
		if o.cc != "" && errors.Is(err, os.ErrPermission) {
			return fmt.Errorf("%w\n(the host may not allow %q in namespaces: rerun with --allow-cc, or sysctl -w net.ipv4.tcp_allowed_congestion_control=\"$(cat /proc/sys/net/ipv4/tcp_allowed_congestion_control) %s\")", err, o.cc, o.cc)
		}
		return err
	}
	defer e.Close()
	stopControl, err := serveControl(ctx, e, env.Logger)
	if err != nil {
		return err
	}
	defer stopControl()

	desc := upDescription{Info: e.Info(), Control: controlPath(e.Name()),
		NearToFar: e.Link(linkem.NearToFar), FarToNear: e.Link(linkem.FarToNear)}
	if o.readyFile != "" {
		b, _ := json.Marshal(desc)
		if err := writeFileAtomic(o.readyFile, append(b, '\n')); err != nil {
			return err
		}
	}
	if o.json {
		json.NewEncoder(env.Stdout).Encode(desc)
	} else {
		printUp(env.Stdout, desc)
	}

	var tick <-chan time.Time
	if o.statsInterval > 0 {
		t := time.NewTicker(o.statsInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return finishUp(env, o, e)
		case <-e.Done():
			finishUp(env, o, e)
			return e.Err()
		case <-tick:
			st := e.Stats()
			for _, d := range []linkem.Dir{linkem.NearToFar, linkem.FarToNear} {
				s := st.Dir(d)
				env.Logger.Info("linkem: stats", "dir", d.String(), "in", s.PacketsIn, "lost", s.Lost,
					"queue_drops", s.QueueDrops, "forwarded", s.Forwarded, "max_queue", s.MaxQueue,
					"late_p50", s.Late.P50, "late_p99", s.Late.P99, "stalls", s.Stalls, "kernel_drops", s.KernelDrops)
			}
		}
	}
}

// finishUp removes the emulator and prints its final counters.
func finishUp(env *Env, o *upOptions, e *linkem.Emulator) error {
	st := e.Stats()
	err := e.Close()
	if o.json {
		json.NewEncoder(env.Stdout).Encode(struct {
			Stats linkem.Stats `json:"stats"`
		}{st})
	} else {
		printStats(env.Stdout, st)
	}
	if o.readyFile != "" {
		os.Remove(o.readyFile)
	}
	return err
}

func printUp(w io.Writer, d upDescription) {
	fmt.Fprintf(w, "linkem %s up (pid %d, MTU %d)\n", d.Name, d.PID, d.MTU)
	fmt.Fprintf(w, "  near: netns %s  addr %s  (%s)\n", d.Near.Netns, d.Near.Addr, d.Near.Path)
	fmt.Fprintf(w, "  far:  netns %s  addr %s  (%s)\n", d.Far.Netns, d.Far.Addr, d.Far.Path)
	fmt.Fprintf(w, "  near→far: %s\n", describe(d.NearToFar))
	fmt.Fprintf(w, "  far→near: %s\n", describe(d.FarToNear))
	fmt.Fprintf(w, "run inside with: nsenter --net=%s COMMAND...\n", d.Far.Path)
}

func printStats(w io.Writer, st linkem.Stats) {
	for _, d := range []linkem.Dir{linkem.NearToFar, linkem.FarToNear} {
		s := st.Dir(d)
		fmt.Fprintf(w, "%s: in %d pkts/%d B, lost %d, queue drops %d, forwarded %d pkts/%d B, in flight %d, max queue %d/%d B, lateness p50 %v p99 %v max %v; %d reads, %d writes; overload: %d stalls, %d kernel drops\n",
			d, s.PacketsIn, s.BytesIn, s.Lost, s.QueueDrops, s.Forwarded, s.ForwardedBytes, s.InFlight,
			s.MaxQueue, s.QueueLimit, s.Late.P50, s.Late.P99, s.Late.Max, s.Reads, s.Writes, s.Stalls, s.KernelDrops)
	}
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// allowCongestionControl adds cc to the host's list of congestion
// control algorithms that namespaces may choose.
func allowCongestionControl(cc string) error {
	const path = "/proc/sys/net/ipv4/tcp_allowed_congestion_control"
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	list := strings.Fields(string(b))
	for _, a := range list {
		if a == cc {
			return nil
		}
	}
	if err := os.WriteFile(path, []byte(strings.Join(append(list, cc), " ")), 0o644); err != nil {
		return fmt.Errorf("allow congestion control %s: %w", cc, err)
	}
	return nil
}
