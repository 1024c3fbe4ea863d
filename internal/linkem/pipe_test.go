package linkem

import (
	"encoding/binary"
	"os"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// seqpacketPair returns two connected SOCK_SEQPACKET sockets as
// non-blocking files: like a TUN device, each read returns one whole
// packet. No privileges needed.
func seqpacketPair(t *testing.T) (*os.File, *os.File) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	a, b := os.NewFile(uintptr(fds[0]), "a"), os.NewFile(uintptr(fds[1]), "b")
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// pipeHarness runs one pipe between two socket pairs: the test writes
// packets into src and reads what the pipe forwards from dst.
type pipeHarness struct {
	p        *pipe
	src, dst *os.File
	pipeIn   *os.File
	wg       sync.WaitGroup
	errs     [2]error
}

func startPipe(t *testing.T, l Link, limit int64) *pipeHarness {
	t.Helper()
	src, pipeIn := seqpacketPair(t)
	pipeOut, dst := seqpacketPair(t)
	p, err := newPipe(NearToFar, pipeIn, pipeOut, 1500, false, newShaper(l, limit, 1), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	h := &pipeHarness{p: p, src: src, dst: dst, pipeIn: pipeIn}
	h.wg.Add(2)
	go func() { defer h.wg.Done(); h.errs[0] = p.readLoop() }()
	go func() { defer h.wg.Done(); h.errs[1] = p.writeLoop() }()
	t.Cleanup(func() { h.stop(t) })
	return h
}

func (h *pipeHarness) stop(t *testing.T) {
	h.p.close()
	h.pipeIn.Close()
	h.wg.Wait()
	for _, err := range h.errs {
		if err != nil {
			t.Errorf("loop ended with %v", err)
		}
	}
}

// TestPipeDelayAndOrder forwards numbered packets through a delaying pipe
// and checks that each arrives intact, in order, and no earlier than the
// delay after it was sent.
func TestPipeDelayAndOrder(t *testing.T) {
	const delay = 20 * time.Millisecond
	h := startPipe(t, Link{Delay: delay}, 0)
	const n = 300
	start := time.Now()
	go func() {
		buf := make([]byte, 1000)
		for i := range n {
			binary.BigEndian.PutUint32(buf, uint32(i))
			binary.BigEndian.PutUint64(buf[4:], uint64(time.Since(start)))
			buf[999] = byte(i)
			h.src.Write(buf)
			if i%10 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	buf := make([]byte, 2000)
	h.dst.SetReadDeadline(time.Now().Add(10 * time.Second))
	for i := range n {
		k, err := h.dst.Read(buf)
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		got := time.Since(start)
		if k != 1000 || buf[999] != byte(i) {
			t.Fatalf("packet %d: %d bytes, tail %d: corrupted", i, k, buf[999])
		}
		if seq := binary.BigEndian.Uint32(buf); seq != uint32(i) {
			t.Fatalf("got packet %d at position %d: reordered", seq, i)
		}
		sent := time.Duration(binary.BigEndian.Uint64(buf[4:]))
		if got-sent < delay {
			t.Fatalf("packet %d took %v, less than the delay %v", i, got-sent, delay)
		}
	}
	st := h.p.stats()
	if st.PacketsIn != n || st.Forwarded != n || st.ForwardedBytes != n*1000 || st.Lost != 0 || st.QueueDrops != 0 {
		t.Fatalf("stats %+v, want %d packets in and forwarded", st, n)
	}
	if st.Late.Count != n {
		t.Fatalf("lateness counted %d packets, want %d", st.Late.Count, n)
	}
	t.Logf("lateness %+v", st.Late)
}

// TestPipeQueueAndRate floods a rate-limited pipe with a small queue and
// checks the counters (every packet either dropped by the queue or
// forwarded) and that the forwarded ones left no earlier than their
// serialization allows: the k-th (from 1) not before k·8ms.
func TestPipeQueueAndRate(t *testing.T) {
	// 1000-byte packets at 1 Mbit/s: 8 ms each; room for 5.
	h := startPipe(t, Link{Rate: Mbit}, 5000)
	const n = 20
	buf := make([]byte, 1000)
	start := time.Now()
	for range n {
		if _, err := h.src.Write(buf); err != nil {
			t.Fatal(err)
		}
	}
	var arrivals []time.Duration
	h.dst.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	for {
		if _, err := h.dst.Read(buf); err != nil {
			break // deadline: everything accepted has long arrived
		}
		arrivals = append(arrivals, time.Since(start))
	}
	st := h.p.stats()
	if st.PacketsIn != n || st.QueueDrops+st.Forwarded != n || st.Forwarded != uint64(len(arrivals)) {
		t.Fatalf("stats %+v with %d received: packets unaccounted for", st, len(arrivals))
	}
	// The writes take microseconds, far less than one 8 ms serialization:
	// five fit, maybe a sixth if a packet left meanwhile.
	if len(arrivals) < 5 || len(arrivals) > 6 {
		t.Fatalf("%d packets passed a 5-packet queue", len(arrivals))
	}
	if st.MaxQueue > 5000 {
		t.Fatalf("max queue %d bytes above the 5000-byte limit", st.MaxQueue)
	}
	for k, a := range arrivals {
		if min := time.Duration(k+1) * 8 * time.Millisecond; a < min {
			t.Fatalf("packet %d arrived after %v, before its serialization ended at %v", k+1, a, min)
		}
	}
}

// TestPipeLossCounted checks that random losses are counted and the rest
// forwarded.
func TestPipeLossCounted(t *testing.T) {
	h := startPipe(t, Link{Loss: 0.25}, 0)
	const n = 2000
	buf := make([]byte, 100)
	got := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		rb := make([]byte, 200)
		h.dst.SetReadDeadline(time.Now().Add(10 * time.Second))
		for {
			if _, err := h.dst.Read(rb); err != nil {
				return
			}
			got++
			if got == n {
				return
			}
		}
	}()
	for i := range n {
		if _, err := h.src.Write(buf); err != nil {
			t.Fatal(err)
		}
		if i%50 == 0 {
			time.Sleep(time.Millisecond) // stay within the socket buffers
		}
	}
	// Wait until the pipe has seen and settled every packet.
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := h.p.stats()
		if st.PacketsIn == n && st.InFlight == 0 && st.Lost+st.Forwarded == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pipe did not settle: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	h.dst.SetReadDeadline(time.Now())
	<-done
	st := h.p.stats()
	if uint64(got) != st.Forwarded {
		t.Fatalf("received %d, forwarded %d", got, st.Forwarded)
	}
	if !binomialOK(int(st.Lost), n, 0.25, 5) {
		t.Fatalf("lost %d of %d at 25%%", st.Lost, n)
	}
}

// TestPipeJitterKeepsOrder sends packets 100µs apart through a link with
// 20ms ± 5ms delay: they arrive in order, none sooner than 15ms after it
// was sent, and their delays spread over most of the jitter range.
func TestPipeJitterKeepsOrder(t *testing.T) {
	h := startPipe(t, Link{Delay: 20 * time.Millisecond, Jitter: 5 * time.Millisecond}, 0)
	const n = 500
	start := time.Now()
	go func() {
		buf := make([]byte, 100)
		for i := range n {
			binary.BigEndian.PutUint32(buf, uint32(i))
			binary.BigEndian.PutUint64(buf[4:], uint64(time.Since(start)))
			h.src.Write(buf)
			time.Sleep(100 * time.Microsecond)
		}
	}()
	buf := make([]byte, 200)
	h.dst.SetReadDeadline(time.Now().Add(10 * time.Second))
	lo, hi := time.Hour, time.Duration(0)
	for i := range n {
		if _, err := h.dst.Read(buf); err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		took := time.Since(start) - time.Duration(binary.BigEndian.Uint64(buf[4:]))
		if seq := binary.BigEndian.Uint32(buf); seq != uint32(i) {
			t.Fatalf("got packet %d at position %d: reordered", seq, i)
		}
		if took < 15*time.Millisecond {
			t.Fatalf("packet %d took %v, less than delay - jitter", i, took)
		}
		lo, hi = min(lo, took), max(hi, took)
	}
	t.Logf("delays from %v to %v", lo, hi)
	if lo > 19*time.Millisecond || hi < 23*time.Millisecond {
		t.Fatalf("delays from %v to %v: jitter did not spread them", lo, hi)
	}
}
