package linkem_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chute/chute/internal/linkem"
	"github.com/chute/chute/internal/linkem/linkemtest"
	"github.com/chute/chute/internal/testenv"
	"golang.org/x/sys/unix"
)

// childEnv makes the test binary act as an emulator owner for the
// cleanup tests: it starts an emulator with the given name, prints
// "ready", and closes it on SIGTERM.
const childEnv = "LINKEM_TEST_CHILD_NAME"

func TestMain(m *testing.M) {
	if name := os.Getenv(childEnv); name != "" {
		os.Exit(runChild(name))
	}
	os.Exit(m.Run())
}

func runChild(name string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	e, err := linkem.New(ctx, linkem.Config{Name: name})
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	fmt.Println("ready")
	<-ctx.Done()
	if err := e.Close(); err != nil {
		return 1
	}
	return 0
}

// startChild starts an emulator owner process and waits until it is up.
func startChild(t *testing.T, name string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+name)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		linkem.Cleanup(nil)
	})
	line, _ := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		t.Fatalf("child emulator: %q", line)
	}
	return cmd
}

func netnsExists(name string) bool {
	_, err := os.Stat("/run/netns/" + name)
	return err == nil
}

// TestCloseRemovesEverything checks that Close removes both namespaces and
// the record, stops forwarding, and that a second Close is harmless.
func TestCloseRemovesEverything(t *testing.T) {
	testenv.RequireRoot(t)
	e, err := linkem.New(context.Background(), linkem.Config{})
	if err != nil {
		t.Fatal(err)
	}
	near, far := e.Near().Name(), e.Far().Name()
	if !netnsExists(near) || !netnsExists(far) {
		t.Fatal("namespaces missing while the emulator runs")
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if netnsExists(near) || netnsExists(far) {
		t.Fatal("namespaces left after Close")
	}
	if _, err := os.Stat(linkem.RunDir + "/" + e.Name() + ".json"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("record left after Close: %v", err)
	}
	select {
	case <-e.Done():
	default:
		t.Fatal("Done not closed after Close")
	}
	if err := e.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestCleanupAfterCrash kills an emulator's owner with SIGKILL and checks
// that Cleanup removes what it left, and only that.
func TestCleanupAfterCrash(t *testing.T) {
	testenv.RequireRoot(t)
	live := linkemtest.New(t, linkem.Config{})
	name := fmt.Sprintf("crash%d", os.Getpid())
	child := startChild(t, name)
	near := linkem.NetnsName(name, "near")
	if !netnsExists(near) {
		t.Fatal("child's namespace missing")
	}
	child.Process.Kill()
	child.Wait()
	if !netnsExists(near) {
		t.Fatal("namespace vanished with its owner; nothing to clean up")
	}
	removed, err := linkem.Cleanup(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(removed, name) {
		t.Fatalf("Cleanup removed %v, want %s among them", removed, name)
	}
	if slices.Contains(removed, live.Name()) {
		t.Fatalf("Cleanup removed the live emulator %s", live.Name())
	}
	if netnsExists(near) || netnsExists(linkem.NetnsName(name, "far")) {
		t.Fatal("namespaces left after Cleanup")
	}
	if !netnsExists(live.Near().Name()) {
		t.Fatal("Cleanup removed a live emulator's namespace")
	}
}

// TestDownStopsOwner checks that Down asks a live owner in another process
// to stop, and that the owner removes its namespaces.
func TestDownStopsOwner(t *testing.T) {
	testenv.RequireRoot(t)
	name := fmt.Sprintf("down%d", os.Getpid())
	child := startChild(t, name)
	infos, err := linkem.List()
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(infos, func(in linkem.Info) bool { return in.Name == name })
	if i < 0 || !infos[i].Alive || infos[i].PID != child.Process.Pid {
		t.Fatalf("List does not show %s alive with pid %d: %+v", name, child.Process.Pid, infos)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := linkem.Down(ctx, name, nil); err != nil {
		t.Fatal(err)
	}
	if err := child.Wait(); err != nil {
		t.Fatalf("owner exited with %v", err)
	}
	if netnsExists(linkem.NetnsName(name, "near")) || netnsExists(linkem.NetnsName(name, "far")) {
		t.Fatal("namespaces left after Down")
	}
	if err := linkem.Down(ctx, name, nil); !errors.Is(err, linkem.ErrNotFound) {
		t.Fatalf("Down of a stopped emulator: %v, want ErrNotFound", err)
	}
}

// udpSink counts numbered datagrams arriving in ns and their arrival
// times.
type udpSink struct {
	pc    net.PacketConn
	mu    sync.Mutex
	seen  map[uint32]bool
	times []time.Time
	bytes []int
}

func newUDPSink(t *testing.T, ns *linkem.Namespace) *udpSink {
	t.Helper()
	pc, err := ns.ListenPacket(context.Background(), "udp4", netip.AddrPortFrom(ns.Addr(), 0).String())
	if err != nil {
		t.Fatal(err)
	}
	// Room for every datagram of a test even if this goroutine is held
	// up: SO_RCVBUFFORCE (root) passes the host's rmem_max.
	rc, err := pc.(*net.UDPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	rc.Control(func(fd uintptr) {
		err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 16<<20)
	})
	if err != nil {
		t.Fatal(err)
	}
	s := &udpSink{pc: pc, seen: map[uint32]bool{}}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 65536)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			now := time.Now()
			s.mu.Lock()
			if n >= 4 {
				s.seen[binary.BigEndian.Uint32(buf)] = true
			}
			s.times = append(s.times, now)
			s.bytes = append(s.bytes, n)
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *udpSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seen)
}

// waitSettled waits until direction d has seen want packets and holds
// none.
func waitSettled(t *testing.T, e *linkem.Emulator, d linkem.Dir, want uint64) linkem.DirStats {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := e.Stats().Dir(d)
		if st.PacketsIn >= want && st.InFlight == 0 {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v did not settle: %+v", d, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestLoss sends 5000 numbered datagrams across a link with 2% loss and
// checks that the number lost lies within binomial bounds (4.5σ) and that
// every packet is accounted for: received + lost = read by the emulator,
// and read + dropped by an overloaded kernel = sent.
func TestLoss(t *testing.T) {
	cfg := linkem.Config{NearToFar: linkem.Link{Delay: time.Millisecond, Loss: 0.02}}
	e := linkemtest.New(t, cfg)
	sink := newUDPSink(t, e.Far())
	c, err := e.Near().Dial(context.Background(), "udp4", sink.pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const n = 5000
	buf := make([]byte, 200)
	for i := range n {
		binary.BigEndian.PutUint32(buf, uint32(i))
		if _, err := c.Write(buf); err != nil {
			t.Fatal(err)
		}
		if i%10 == 9 {
			time.Sleep(500 * time.Microsecond)
		}
	}
	var st linkem.DirStats
	deadline := time.Now().Add(10 * time.Second)
	for {
		st = e.Stats().NearToFar
		if st.PacketsIn+st.KernelDrops >= n && st.InFlight == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("emulator did not settle: %+v", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // the last forwarded ones reach the socket
	got := sink.count()
	in := int(st.PacketsIn)
	mean, sd := float64(in)*0.02, math.Sqrt(float64(in)*0.02*0.98)
	t.Logf("sent %d, read %d (kernel dropped %d), received %d, lost %d (expected %.0f ± %.0f)",
		n, in, st.KernelDrops, got, st.Lost, mean, 4.5*sd)
	if st.PacketsIn+st.KernelDrops != n || in < n*9/10 {
		t.Fatalf("emulator read %d packets and the kernel dropped %d, of %d sent", in, st.KernelDrops, n)
	}
	if uint64(got)+st.Lost != st.PacketsIn || st.QueueDrops != 0 || st.Forwarded != uint64(got) {
		t.Fatalf("received %d + lost %d != read %d (stats %+v)", got, st.Lost, in, st)
	}
	if math.Abs(float64(st.Lost)-mean) > 4.5*sd {
		t.Fatalf("lost %d of %d, outside %.0f ± %.0f", st.Lost, in, mean, 4.5*sd)
	}
}

// TestRateCap offers about 80 Mbit/s of UDP to a 50 Mbit/s link and checks
// that what arrives comes at 50 Mbit/s (IP bytes) within 5%, that the
// queue overflowed, and that it never held more than its limit. The rate
// is the median over ten 100ms windows once the queue has filled, so that
// one scheduling hiccup of the busy machine does not decide it.
func TestRateCap(t *testing.T) {
	const rate = 50 * linkem.Mbit
	e := linkemtest.New(t, linkem.Config{NearToFar: linkem.Link{Delay: 5 * time.Millisecond, Rate: rate}})
	sink := newUDPSink(t, e.Far())
	c, err := e.Near().Dial(context.Background(), "udp4", sink.pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const payload, ipOverhead = 1400, 28
	buf := make([]byte, payload)
	start := time.Now()
	// Bursts of 10 every 1.4ms: 80 Mbit/s of IP packets.
	for i := 0; time.Since(start) < 1400*time.Millisecond; i++ {
		time.Sleep(time.Until(start.Add(time.Duration(i) * 1400 * time.Microsecond)))
		for range 10 {
			c.Write(buf)
		}
	}
	st := waitSettled(t, e, linkem.NearToFar, 1)
	time.Sleep(50 * time.Millisecond)
	sink.mu.Lock()
	times, sizes := slices.Clone(sink.times), slices.Clone(sink.bytes)
	sink.mu.Unlock()
	if len(times) < 1000 {
		t.Fatalf("only %d packets arrived", len(times))
	}
	const windows, width = 10, 100 * time.Millisecond
	var bits [windows]float64
	for i, tm := range times {
		w := int((tm.Sub(times[0]) - 200*time.Millisecond) / width)
		if tm.Sub(times[0]) >= 200*time.Millisecond && w < windows {
			bits[w] += float64(sizes[i]+ipOverhead) * 8
		}
	}
	rates := make([]float64, windows)
	for i := range bits {
		rates[i] = bits[i] / width.Seconds()
	}
	slices.Sort(rates)
	got := (rates[windows/2-1] + rates[windows/2]) / 2
	t.Logf("arrival rate median %.2f Mbit/s, windows %.1f…%.1f Mbit/s (link %v); stats %+v",
		got/1e6, rates[0]/1e6, rates[windows-1]/1e6, rate, st)
	if math.Abs(got-float64(rate))/float64(rate) > 0.05 {
		t.Errorf("arrival rate %.2f Mbit/s, want %v ± 5%%", got/1e6, rate)
	}
	if st.QueueDrops == 0 {
		t.Errorf("no queue drops at 80 Mbit/s offered to %v", rate)
	}
	if st.MaxQueue > st.QueueLimit || st.QueueLimit != linkem.MinQueue {
		t.Errorf("max queue %d, limit %d (want limit %d)", st.MaxQueue, st.QueueLimit, linkem.MinQueue)
	}
}

// iperfResult is the part of iperf3's JSON report the tests read.
type iperfResult struct {
	End struct {
		SumReceived struct {
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
		SumSent struct {
			Retransmits int `json:"retransmits"`
		} `json:"sum_sent"`
	} `json:"end"`
	Error string `json:"error"`
}

// runIperf runs an iperf3 server in e's far namespace and a client in the
// near one, sending near→far for secs seconds with extra client args.
func runIperf(ctx context.Context, t *testing.T, e *linkem.Emulator, port, secs int, args ...string) (iperfResult, error) {
	srv := e.Far().Command(ctx, "iperf3", "-s", "-1", "-B", e.FarAddr().String(), "-p", fmt.Sprint(port), "--forceflush")
	out, err := srv.StdoutPipe()
	if err != nil {
		return iperfResult{}, err
	}
	if err := srv.Start(); err != nil {
		return iperfResult{}, err
	}
	defer srv.Wait()
	defer srv.Process.Kill()
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil {
		return iperfResult{}, fmt.Errorf("iperf3 server: %q, %v", line, err)
	}
	a := append([]string{"-c", e.FarAddr().String(), "-p", fmt.Sprint(port), "-t", fmt.Sprint(secs), "-J"}, args...)
	b, err := e.Near().Command(ctx, "iperf3", a...).Output()
	var r iperfResult
	if jerr := json.Unmarshal(b, &r); jerr != nil {
		return r, fmt.Errorf("iperf3 client: %v, output %q", err, b)
	}
	if r.Error != "" {
		return r, errors.New("iperf3: " + r.Error)
	}
	return r, err
}

// mathis returns the Mathis et al. bound on one TCP flow's rate, in bit/s:
// MSS/RTT · C/√p.
func mathis(mss int, rtt time.Duration, p, c float64) float64 {
	return float64(mss) * 8 / rtt.Seconds() * c / math.Sqrt(p)
}

// TestTCPMathis runs iperf3 (one TCP flow, Reno and CUBIC side by side,
// chosen per socket with -C) for 8 seconds over 50 ms RTT with 1% random
// loss on the data direction, the first 2 seconds (slow start) left out
// of the figures, and checks each against the Mathis formula: between half the delayed-ACK figure (C = 0.87) and twice the
// per-packet-ACK figure (C = 1.22), with MSS 1448. The link's rate (100
// Mbit/s) is far above either, so loss alone limits them.
func TestTCPMathis(t *testing.T) {
	testenv.RequireTool(t, "iperf3", "apt-get install iperf3")
	const rtt, loss = 50 * time.Millisecond, 0.01
	e := linkemtest.New(t, linkem.Config{
		NearToFar: linkem.Link{Delay: rtt / 2, Loss: loss, Rate: 100 * linkem.Mbit},
		FarToNear: linkem.Link{Delay: rtt / 2, Rate: 100 * linkem.Mbit},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	lo, hi := mathis(1448, rtt, loss, 0.87)/2, mathis(1448, rtt, loss, 1.22)*2
	var wg sync.WaitGroup
	for i, cc := range []string{"reno", "cubic"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := runIperf(ctx, t, e, 5201+i, 6, "-O", "2", "-C", cc)
			if err != nil {
				t.Errorf("%s: %v", cc, err)
				return
			}
			got := r.End.SumReceived.BitsPerSecond
			t.Logf("%s: %.2f Mbit/s, %d retransmits; Mathis C=1.22: %.2f Mbit/s, accepted [%.2f, %.2f]",
				cc, got/1e6, r.End.SumSent.Retransmits, mathis(1448, rtt, loss, 1.22)/1e6, lo/1e6, hi/1e6)
			if got < lo || got > hi {
				t.Errorf("%s: %.2f Mbit/s outside [%.2f, %.2f]", cc, got/1e6, lo/1e6, hi/1e6)
			}
		}()
	}
	wg.Wait()
	t.Logf("stats %+v", e.Stats().NearToFar)
}

// TestTCPIntegrity sends 16 MiB of pseudo-random bytes over one TCP
// connection across a lossy, jittery, rate-limited link, with and without
// offload, and checks that the receiver gets exactly the bytes sent: the
// segmentation, coalescing and checksums keep data intact through
// retransmissions.
func TestTCPIntegrity(t *testing.T) {
	for _, offload := range []bool{false, true} {
		t.Run(fmt.Sprintf("offload=%v", offload), func(t *testing.T) {
			l := linkem.Link{Delay: 5 * time.Millisecond, Jitter: time.Millisecond, Loss: 0.01, Rate: 200 * linkem.Mbit}
			e := linkemtest.New(t, linkem.Config{NearToFar: l, FarToNear: l, NoOffload: !offload})
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			ln, err := e.Far().Listen(ctx, "tcp4", netip.AddrPortFrom(e.FarAddr(), 0).String())
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			type result struct {
				sum [32]byte
				n   int64
				err error
			}
			got := make(chan result, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					got <- result{err: err}
					return
				}
				defer c.Close()
				h := sha256.New()
				n, err := io.Copy(h, c)
				var r result
				copy(r.sum[:], h.Sum(nil))
				r.n, r.err = n, err
				got <- r
			}()
			c, err := e.Near().Dial(ctx, "tcp4", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			const size = 16 << 20
			src := rand.New(rand.NewPCG(7, 11))
			data := make([]byte, size)
			for i := range data {
				data[i] = byte(src.Uint32())
			}
			want := sha256.Sum256(data)
			if _, err := c.Write(data); err != nil {
				t.Fatal(err)
			}
			c.Close()
			r := <-got
			if r.err != nil || r.n != size || r.sum != want {
				t.Fatalf("received %d bytes (err %v), checksum match %v", r.n, r.err, r.sum == want)
			}
			st := e.Stats().NearToFar
			if st.Lost == 0 {
				t.Fatalf("no losses on a 1%% lossy link: %+v", st)
			}
			if offload && st.Reads >= st.PacketsIn {
				t.Errorf("offload on, yet %d reads for %d packets: no super-packets", st.Reads, st.PacketsIn)
			}
			if !offload && (st.Reads != st.PacketsIn || st.Writes != st.Forwarded) {
				t.Errorf("offload off, yet %d reads for %d packets, %d writes for %d", st.Reads, st.PacketsIn, st.Writes, st.Forwarded)
			}
			t.Logf("stats %+v", st)
		})
	}
}
