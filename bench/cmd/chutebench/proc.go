package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// place is where a process runs: the host's network, or a network
// namespace entered with nsenter --net (which keeps the host's mounts, so
// FUSE mounts made inside are visible everywhere).
type place struct {
	name  string // "host", "near", "far"
	netns string // /run/netns/... or "" for the host
}

var host = place{name: "host"}

// command builds a command that runs in p.
func (p place) command(ctx context.Context, env []string, name string, args ...string) *exec.Cmd {
	var cmd *exec.Cmd
	if p.netns == "" {
		cmd = exec.CommandContext(ctx, name, args...)
	} else {
		cmd = exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + p.netns, "--", name}, args...)...)
	}
	cmd.Env = env
	// Die with the driver; stop politely when the context ends, then hard.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGINT) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// toolEnv is the environment for the tools the benchmarks run: the
// driver's, without proxies (all traffic is local) and without
// AWS_CA_BUNDLE, which makes rclone 1.60 refuse S3 ("unsupported
// transport").
func toolEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(k) {
		case "AWS_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY":
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// runResult is what a finished command did.
type runResult struct {
	Wall     time.Duration
	CPU      time.Duration // user + system time of the process (and its waited-for children)
	Stdout   []byte
	Stderr   []byte
	Err      error
	TimedOut bool
}

// run runs cmd to completion, bounded by timeout (0: none), and measures
// it. Stdout and stderr are kept (stderr's tail only).
func run(ctx context.Context, p place, timeout time.Duration, env []string, name string, args ...string) runResult {
	return runStream(ctx, p, timeout, env, nil, name, args...)
}

// runStream is run with each stdout line also passed to onLine, with the
// time it arrived.
func runStream(ctx context.Context, p place, timeout time.Duration, env []string, onLine func(time.Time, string), name string, args ...string) runResult {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	cmd := p.command(ctx, env, name, args...)
	var out bytes.Buffer
	errTail := &tailBuffer{max: 16 << 10}
	cmd.Stderr = errTail
	var wg sync.WaitGroup
	if onLine != nil {
		pr, pw := io.Pipe()
		cmd.Stdout = pw
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc := bufio.NewScanner(pr)
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			for sc.Scan() {
				line := sc.Text()
				onLine(time.Now(), line)
				out.WriteString(line)
				out.WriteByte('\n')
			}
			io.Copy(io.Discard, pr)
		}()
		defer pw.Close()
		start := time.Now()
		err := cmd.Start()
		if err == nil {
			err = cmd.Wait()
		}
		pw.Close()
		wg.Wait()
		return finish(ctx, cmd, start, err, out.Bytes(), errTail.Bytes())
	}
	cmd.Stdout = &out
	start := time.Now()
	err := cmd.Run()
	return finish(ctx, cmd, start, err, out.Bytes(), errTail.Bytes())
}

func finish(ctx context.Context, cmd *exec.Cmd, start time.Time, err error, stdout, stderr []byte) runResult {
	r := runResult{Wall: time.Since(start), Stdout: stdout, Stderr: stderr, Err: err}
	if cmd.ProcessState != nil {
		r.CPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		r.TimedOut = true
	}
	if err != nil {
		r.Err = fmt.Errorf("%s: %w: %s", cmd.Args[0], err, lastLines(stderr, 5))
	}
	return r
}

// lastLines returns the last n lines of b, trimmed, joined by " | ".
func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) Bytes() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]byte(nil), t.b...)
}

// service is a long-running process (a server, a mount) the driver owns.
type service struct {
	name string
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
	err  error
}

// startService starts a long-running process in p with its output in
// logPath. ready, when set, is polled until it returns nil, the process
// exits, or timeout passes.
func startService(ctx context.Context, p place, env []string, logPath string, ready func() error, timeout time.Duration, name string, args ...string) (*service, error) {
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	// Not tied to ctx: a service is stopped by stop, after the
	// measurements that use it, even when the run is interrupted.
	cmd := p.command(context.WithoutCancel(ctx), env, name, args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	s := &service{name: name, cmd: cmd, log: log, done: make(chan struct{})}
	go func() {
		s.err = cmd.Wait()
		close(s.done)
	}()
	if ready == nil {
		return s, nil
	}
	deadline := time.Now().Add(timeout)
	for {
		rerr := ready()
		if rerr == nil {
			return s, nil
		}
		select {
		case <-s.done:
			b, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("%s exited while starting (%v): %s", name, s.err, lastLines(b, 8))
		case <-ctx.Done():
			s.stop(5 * time.Second)
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stop(5 * time.Second)
			b, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("%s not ready after %v (%v): %s", name, timeout, rerr, lastLines(b, 8))
		}
	}
}

func (s *service) pid() int { return s.cmd.Process.Pid }

// alive reports whether the process still runs.
func (s *service) alive() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM, then SIGKILL after grace, and waits.
func (s *service) stop(grace time.Duration) {
	if s == nil {
		return
	}
	if s.alive() {
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(grace):
			s.cmd.Process.Kill()
			<-s.done
		}
	}
	s.log.Close()
}

// cpuOf returns the user + system CPU time a live process has used, from
// /proc/PID/stat (all its threads; clock ticks of 10 ms).
func cpuOf(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	return parseStatCPU(string(b))
}

// clockTick is the kernel's USER_HZ: 100 on every Linux architecture Go
// supports.
const clockTick = 10 * time.Millisecond

// parseStatCPU reads utime and stime (fields 14 and 15) from the text of
// /proc/PID/stat. The command name (field 2) may hold spaces and
// parentheses, so fields are counted after its last ')'.
func parseStatCPU(stat string) (time.Duration, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc stat %q", stat)
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state): utime is field 14, f[11]; stime f[12].
	if len(f) < 13 {
		return 0, fmt.Errorf("malformed /proc stat %q", stat)
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("malformed /proc stat %q", stat)
	}
	return time.Duration(u+s) * clockTick, nil
}

// loadAvg returns the 1-, 5- and 15-minute load averages.
func loadAvg() [3]float64 {
	var l [3]float64
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return l
	}
	f := strings.Fields(string(b))
	for i := 0; i < 3 && i < len(f); i++ {
		l[i], _ = strconv.ParseFloat(f[i], 64)
	}
	return l
}

// udpCounters are the kernel's UDP error counters of one network
// namespace (/proc/net/snmp).
type udpCounters struct {
	RcvbufErrors, SndbufErrors, InErrors uint64
}

// readUDPCounters reads p's UDP counters.
func readUDPCounters(ctx context.Context, p place) (udpCounters, error) {
	var text string
	if p.netns == "" {
		b, err := os.ReadFile("/proc/net/snmp")
		if err != nil {
			return udpCounters{}, err
		}
		text = string(b)
	} else {
		r := run(ctx, p, 10*time.Second, toolEnv(), "cat", "/proc/net/snmp")
		if r.Err != nil {
			return udpCounters{}, r.Err
		}
		text = string(r.Stdout)
	}
	return parseUDPCounters(text)
}

// parseUDPCounters finds the Udp: header and value lines of /proc/net/snmp.
func parseUDPCounters(text string) (udpCounters, error) {
	var names []string
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = f[1:]
			continue
		}
		var c udpCounters
		for i, v := range f[1:] {
			if i >= len(names) {
				break
			}
			n, _ := strconv.ParseUint(v, 10, 64)
			switch names[i] {
			case "RcvbufErrors":
				c.RcvbufErrors = n
			case "SndbufErrors":
				c.SndbufErrors = n
			case "InErrors":
				c.InErrors = n
			}
		}
		return c, nil
	}
	return udpCounters{}, fmt.Errorf("no Udp: lines in /proc/net/snmp")
}

// udpDrops measures how many datagrams the kernels of places dropped for
// full socket buffers while f ran.
func udpDrops(ctx context.Context, places []place, f func() measurement) measurement {
	before := make([]udpCounters, len(places))
	var err error
	for i, p := range places {
		if before[i], err = readUDPCounters(ctx, p); err != nil {
			return f()
		}
	}
	m := f()
	for i, p := range places {
		after, err := readUDPCounters(ctx, p)
		if err != nil {
			return m
		}
		m.UDPRcvbufErrors += after.RcvbufErrors - before[i].RcvbufErrors
		m.UDPSndbufErrors += after.SndbufErrors - before[i].SndbufErrors
	}
	return m
}
