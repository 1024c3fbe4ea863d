package engine

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/chute/chute/engine/congestion"
	"github.com/chute/chute/engine/internal/ranges"
	"github.com/chute/chute/engine/internal/simnet"
	"github.com/chute/chute/engine/udpio"
	"github.com/chute/chute/engine/wire"
)

// memFile is an in-memory io.WriterAt.
type memFile struct {
	mu  sync.Mutex
	buf []byte
}

func (m *memFile) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if end := int(off) + len(p); end > len(m.buf) {
		m.buf = append(m.buf, make([]byte, end-len(m.buf))...)
	}
	copy(m.buf[off:], p)
	return len(p), nil
}

func (m *memFile) bytes() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]byte(nil), m.buf...)
}

var (
	hostA = netip.MustParseAddrPort("10.0.0.1:4000")
	hostB = netip.MustParseAddrPort("10.0.0.2:33001")
)

// quietLog discards the engine's logs; CHUTE_TEST_LOG=1 shows them all
// (the sender reports its rate, delivery and queue twice a second).
func quietLog() *slog.Logger {
	if os.Getenv("CHUTE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// pair makes two endpoints on a simulated network, with one session
// between them, a sending on A and b receiving on B.
type pair struct {
	net    *simnet.Network
	ea, eb *endpoint
	a, b   *session
}

func newPair(t testing.TB, link simnet.Link, back simnet.Link, lim congestion.Limits, cipher string) *pair {
	t.Helper()
	return newPairHolding(t, link, back, lim, cipher, false)
}

// newPairHolding is newPair with b holding data for streams not yet
// registered, as a server's sessions do.
func newPairHolding(t testing.TB, link simnet.Link, back simnet.Link, lim congestion.Limits, cipher string, holdEarly bool) *pair {
	t.Helper()
	n := simnet.New(1)
	n.SetLink(hostA.Addr(), hostB.Addr(), link)
	n.SetLink(hostB.Addr(), hostA.Addr(), back)
	ea, err := newEndpoint(n.Listen(hostA), udpio.Options{}, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	eb, err := newEndpoint(n.Listen(hostB), udpio.Options{}, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	id, c2s, s2c, err := newSessionKeys(cipher)
	if err != nil {
		t.Fatal(err)
	}
	a, err := newSession(ea, sessionParams{id: id, cipher: cipher, sendKey: c2s, recvKey: s2c, limits: lim, peer: hostB}, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	b, err := newSession(eb, sessionParams{id: id, cipher: cipher, sendKey: s2c, recvKey: c2s, limits: lim, peer: hostA, holdEarly: holdEarly}, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	p := &pair{net: n, ea: ea, eb: eb, a: a, b: b}
	return p
}

// payloadShare is the part of each data packet on the wire that is
// payload: the rest is header and authentication tag.
func (p *pair) payloadShare() float64 {
	return float64(p.a.payloadSize) / float64(p.a.payloadSize+wire.ClearLen(wire.TypeData)+16)
}

func (p *pair) close() {
	p.a.close(io.ErrClosedPipe)
	p.b.close(io.ErrClosedPipe)
	p.ea.close()
	p.eb.close()
}

// transfer sends data from a to b on stream id and returns the elapsed
// simulated time, or an error after timeout.
func (p *pair) transfer(id uint32, data []byte, timeout time.Duration) (time.Duration, *memFile, *sendStream, error) {
	size := int64(len(data))
	want := ranges.Of(ranges.Range{Off: 0, Len: size})
	dest := &memFile{buf: make([]byte, 0, size)}
	r := newRecvStream(id, dest, want, nil, false)
	p.b.addRecv(r)
	st := newSendStream(id, readerAtSource{r: bytes.NewReader(data), size: size}, want)
	start := time.Now()
	p.a.addStream(st)
	select {
	case <-r.done():
	case <-time.After(timeout):
		return 0, dest, st, fmt.Errorf("not complete after %v: received %d of %d bytes", timeout, r.received(), size)
	}
	elapsed := time.Since(start)
	select {
	case <-st.done:
	case <-time.After(10 * time.Second):
		return 0, dest, st, fmt.Errorf("sender not told of completion")
	}
	p.a.removeStream(st)
	p.b.removeRecv(id)
	r.close()
	return elapsed, dest, st, st.err
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// TestSessionDeliversUnderImpairment checks that every byte arrives intact
// over links with delay, loss, reordering and duplication.
func TestSessionDeliversUnderImpairment(t *testing.T) {
	for _, tc := range []struct {
		name string
		link simnet.Link
	}{
		{"clean", simnet.Link{Delay: 10 * time.Millisecond}},
		{"loss 1%", simnet.Link{Delay: 25 * time.Millisecond, Loss: 0.01}},
		{"loss 10%", simnet.Link{Delay: 25 * time.Millisecond, Loss: 0.10}},
		{"reorder", simnet.Link{Delay: 10 * time.Millisecond, Jitter: 5 * time.Millisecond}},
		{"duplicate", simnet.Link{Delay: 10 * time.Millisecond, Dup: 0.05}},
		{"all at once", simnet.Link{Delay: 50 * time.Millisecond, Jitter: 3 * time.Millisecond, Loss: 0.05, Dup: 0.02, Rate: 5e6}},
	} {
		for _, cipher := range []string{wire.AES256GCM, wire.None} {
			t.Run(tc.name+"/"+cipher, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					back := tc.link
					back.Rate = 0
					p := newPair(t, tc.link, back, congestion.Limits{Target: 100e6 / 8}, cipher)
					defer p.close()
					data := randomBytes(3<<20+123, 1)
					_, got, st, err := p.transfer(1, data, 5*time.Minute)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got.bytes(), data) {
						t.Fatalf("received bytes differ from those sent")
					}
					c := &p.a.counters
					t.Logf("lost by order %d, by time %d, by PTO %d", c.lostByOrder.Load(), c.lostByTime.Load(), c.lostByPTO.Load())
					if tc.link.Loss == 0 && tc.link.Dup == 0 && st.retrans > int64(len(data))/50 {
						t.Errorf("retransmitted %d bytes on a loss-free link", st.retrans)
					}
					if tc.link.Loss > 0 && st.retrans == 0 {
						t.Errorf("no retransmissions on a lossy link")
					}
				})
			})
		}
	}
}

// TestSessionGoodputNearBottleneck checks that a fair transfer over a long,
// lossy, rate-capped path keeps the bottleneck nearly full.
func TestSessionGoodputNearBottleneck(t *testing.T) {
	for _, tc := range []struct {
		loss    float64
		minFrac float64 // of the bottleneck rate
	}{
		{0, 0.85},
		{0.01, 0.85},
		{0.02, 0.82},
		{0.10, 0.70},
	} {
		t.Run(fmt.Sprintf("loss %.0f%%", tc.loss*100), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const rate = 20e6 / 8 // 20 Mbit/s bottleneck
				link := simnet.Link{Delay: 50 * time.Millisecond, Loss: tc.loss, Rate: rate}
				back := simnet.Link{Delay: 50 * time.Millisecond, Loss: tc.loss}
				p := newPair(t, link, back, congestion.Limits{Target: 1e9 / 8}, wire.AES128GCM)
				defer p.close()
				data := randomBytes(40<<20, 2)
				elapsed, got, st, err := p.transfer(1, data, 10*time.Minute)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got.bytes(), data) {
					t.Fatal("received bytes differ")
				}
				goodput := float64(len(data)) / elapsed.Seconds()
				// The wire carries headers too: compare payload goodput with the
				// payload share of the bottleneck.
				frac := goodput / (rate * p.payloadShare())
				t.Logf("loss %.0f%%: %.1f Mbit/s goodput in %v (%.0f%% of the payload bottleneck), %.1f%% retransmitted",
					tc.loss*100, goodput*8/1e6, elapsed, frac*100, 100*float64(st.retrans)/float64(len(data)))
				if frac < tc.minFrac {
					t.Errorf("goodput %.0f%% of the bottleneck, want ≥ %.0f%%", frac*100, tc.minFrac*100)
				}
			})
		})
	}
}

// TestSessionFixedRate checks the fixed policy sends at the target.
func TestSessionFixedRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const target = 8e6 / 8 // 8 Mbit/s
		p := newPair(t, simnet.Link{Delay: 20 * time.Millisecond}, simnet.Link{Delay: 20 * time.Millisecond},
			congestion.Limits{Target: target, Policy: congestion.Fixed}, wire.AES256GCM)
		defer p.close()
		data := randomBytes(4<<20, 3)
		elapsed, _, _, err := p.transfer(1, data, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		rate := float64(len(data)) / elapsed.Seconds()
		// Payload rate is a little under the wire rate.
		if rate > target*1.02 || rate < target*0.85 {
			t.Errorf("fixed 8 Mbit/s sent payload at %.2f Mbit/s", rate*8/1e6)
		}
	})
}

// TestSessionConcurrentStreamsShare checks two transfers on one session
// both complete and share the budget.
func TestSessionConcurrentStreamsShare(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		link := simnet.Link{Delay: 20 * time.Millisecond, Rate: 10e6 / 8}
		p := newPair(t, link, simnet.Link{Delay: 20 * time.Millisecond}, congestion.Limits{Target: 1e9 / 8}, wire.AES256GCM)
		defer p.close()
		var wg sync.WaitGroup
		times := make([]time.Duration, 2)
		for i := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				data := randomBytes(4<<20, uint64(10+i))
				el, got, _, err := p.transfer(uint32(i+1), data, 5*time.Minute)
				if err != nil {
					t.Error(err)
					return
				}
				if !bytes.Equal(got.bytes(), data) {
					t.Error("bytes differ")
				}
				times[i] = el
			}()
		}
		wg.Wait()
		if r := float64(times[0]) / float64(times[1]); r > 1.25 || r < 0.8 {
			t.Errorf("equal transfers finished at %v and %v: not sharing", times[0], times[1])
		}
	})
}

// TestSessionDropsForgedAndReplayedPackets injects garbage, packets sealed
// under another key, and replays of real packets; the transfer still
// completes intact and the counters see them.
func TestSessionDropsForgedAndReplayedPackets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, simnet.Link{Delay: 5 * time.Millisecond}, simnet.Link{Delay: 5 * time.Millisecond},
			congestion.Limits{Target: 50e6 / 8}, wire.AES256GCM)
		defer p.close()
		attacker := p.net.Listen(netip.MustParseAddrPort("10.0.0.9:999"))
		defer attacker.Close()
		// Capture what A sends by tapping B's address: replay a real data
		// packet sealed by A's session, many times.
		data := randomBytes(1<<20, 4)
		forge := func() {
			bad, _ := wire.NewSealer(wire.AES256GCM, make([]byte, 32))
			for pn := uint64(0); pn < 200; pn++ {
				h := wire.Header{Type: wire.TypeData, Session: p.b.id, Number: pn}
				b := wire.DataHeader{Stream: 1, Offset: 0}.Append(h.Append(nil))
				b = bad.Seal(b, pn, bytes.Repeat([]byte{0xee}, 1000))
				attacker.WriteTo(b, udpAddr(hostB))
				attacker.WriteTo([]byte("garbage"), udpAddr(hostB))
				junk := wire.Header{Type: wire.TypeAck, Session: 42, Number: pn}.Append(nil)
				attacker.WriteTo(append(junk, 1, 2, 3), udpAddr(hostB))
			}
		}
		forge()
		// Capture genuine data packets from A to replay them later.
		var capMu sync.Mutex
		var captured [][]byte
		p.net.Tap = func(from, to netip.AddrPort, b []byte) {
			capMu.Lock()
			defer capMu.Unlock()
			if from == hostA && len(captured) < 5000 && len(b) > wire.HeaderLen && wire.Type(b[1]) == wire.TypeData {
				captured = append(captured, b)
			}
		}
		_, got, _, err := p.transfer(1, data, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.bytes(), data) {
			t.Fatal("forged packets changed the received bytes")
		}
		// Replay every captured packet: recent ones are caught by the replay
		// window, old ones are too old to accept; either way nothing changes.
		before := got.bytes()
		capMu.Lock()
		replays := captured
		capMu.Unlock()
		for _, b := range replays {
			attacker.WriteTo(b, udpAddr(hostB))
		}
		time.Sleep(time.Second)
		if !bytes.Equal(got.bytes(), before) {
			t.Fatal("replayed packets changed the received bytes")
		}
		c := &p.b.counters
		if c.replayed.Load() < int64(len(replays)) {
			t.Errorf("replays counted %d, want %d", c.replayed.Load(), len(replays))
		}
		if c.authFailures.Load() < 200 {
			t.Errorf("auth failures counted %d, want ≥ 200", c.authFailures.Load())
		}
		if p.eb.unknownSession.Load() < 200 {
			t.Errorf("unknown-session packets counted %d, want ≥ 200", p.eb.unknownSession.Load())
		}
	})
}

func udpAddr(a netip.AddrPort) *net.UDPAddr { return net.UDPAddrFromAddrPort(a) }

// TestSessionHoldsDataForAStreamNotOpenYet: a receiver that holds early
// data acknowledges none of it until the stream is registered, then
// delivers it without waiting for it to be sent again; data for a stream
// that never opens is dropped after earlyMaxAge, still unacknowledged;
// data for a stream that came and went is acknowledged and dropped, as
// before.
func TestSessionHoldsDataForAStreamNotOpenYet(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		link := simnet.Link{Delay: 10 * time.Millisecond}
		p := newPairHolding(t, link, link, congestion.Limits{Target: 10e6, Policy: congestion.Fixed}, wire.AES256GCM, true)
		defer p.close()
		data := randomBytes(300<<10, 3)
		want := ranges.Of(ranges.Range{Off: 0, Len: int64(len(data))})
		acked := func(st *sendStream) int64 {
			p.a.mu.Lock()
			defer p.a.mu.Unlock()
			return st.ackedB
		}

		st := newSendStream(7, readerAtSource{r: bytes.NewReader(data), size: int64(len(data))}, want)
		p.a.addStream(st)
		time.Sleep(200 * time.Millisecond) // every byte sent once (30 ms at 10 MB/s) and arrived
		if n := acked(st); n != 0 {
			t.Fatalf("%d bytes acknowledged for a stream the receiver has not opened", n)
		}
		held := p.b.counters.earlyHeld.Load()
		if held < int64(len(data)/p.a.payloadSize) {
			t.Fatalf("receiver held %d packets; want every packet of the %d bytes sent", held, len(data))
		}
		sent := p.a.counters.dataPackets.Load()
		dest := &memFile{buf: make([]byte, 0, len(data))}
		r := newRecvStream(7, dest, want, nil, false)
		p.b.addRecv(r)
		select {
		case <-r.done():
		case <-time.After(20 * time.Millisecond): // at once, not with the sender's next probe
			t.Fatalf("held data not delivered: %d of %d bytes", r.received(), len(data))
		}
		<-st.done
		if st.err != nil || !bytes.Equal(dest.buf, data) {
			t.Fatalf("stream ended with %v; bytes equal: %v", st.err, bytes.Equal(dest.buf, data))
		}
		// Delivered from what was held: at most the few probes sent while
		// nothing was acknowledged went out again.
		if again := p.a.counters.dataPackets.Load() - sent; again > 8 {
			t.Errorf("%d packets sent after the stream opened; want the held ones used, not sent again", again)
		}
		p.a.removeStream(st)
		p.b.removeRecv(7)
		r.close()

		// A stream that never opens.
		never := newSendStream(8, readerAtSource{r: bytes.NewReader(data), size: int64(len(data))}, want)
		p.a.addStream(never)
		time.Sleep(earlyMaxAge + 10*time.Second) // the sender's probes back off: one comes after the age
		if n := acked(never); n != 0 {
			t.Errorf("%d bytes acknowledged for a stream that never opened", n)
		}
		if p.b.counters.earlyDropped.Load() == 0 {
			t.Error("data held for a stream that never opened was not dropped")
		}
		p.a.removeStream(never)

		// A stream that came and went (7): acknowledged, not held (held,
		// it would be dropped as gone and never acknowledged).
		late := newSendStream(7, readerAtSource{r: bytes.NewReader(data), size: int64(len(data))}, want)
		p.a.addStream(late)
		select {
		case <-late.done:
		case <-time.After(time.Second):
			t.Fatal("data for a finished stream was not acknowledged")
		}
		p.a.removeStream(late)
	})
}

// Until the receiver has measured the path, a sender at a slow start's
// rate sends every batch as a packet train, not only its first flight:
// something on the way may spoil one train's spread, and at 10 Mbit/s a
// paced batch would otherwise hold a single packet, which measures
// nothing.
func TestSearchSendsTrainsUntilMeasured(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		link := simnet.Link{Delay: 50 * time.Millisecond}
		p := newPair(t, link, link, congestion.Limits{Target: 1e9 / 8}, wire.AES256GCM)
		defer p.close()
		// Data packets A sends in the first 90 ms, before any ack is back,
		// grouped by send time: a batch leaves at one instant.
		var mu sync.Mutex
		batches := map[time.Time]int{}
		start := time.Now()
		p.net.Tap = func(from, to netip.AddrPort, b []byte) {
			now := time.Now()
			if from != hostA || now.Sub(start) > 90*time.Millisecond || len(b) <= wire.HeaderLen || wire.Type(b[1]) != wire.TypeData {
				return
			}
			mu.Lock()
			batches[now]++
			mu.Unlock()
		}
		if _, _, _, err := p.transfer(1, randomBytes(4<<20, 9), time.Minute); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		var sizes []int
		for _, n := range batches {
			sizes = append(sizes, n)
		}
		slices.Sort(sizes)
		t.Logf("batches in the first 90 ms, by size: %v", sizes)
		if len(sizes) < 3 {
			t.Fatalf("%d batches in the first 90 ms, want several trains", len(sizes))
		}
		if sizes[0] < trainBurst {
			t.Errorf("a batch of %d packets before the path was measured, want every batch a train of %d", sizes[0], trainBurst)
		}
	})
}

// A first transfer over a long fat path: the receiver measures the path's
// rate from the spread of the sender's first flight, the ack carries it,
// and the sender's search starts from half of it instead of climbing from
// 10 Mbit/s.
func TestFirstFlightMeasuresThePath(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const rate = 25e6 // 200 Mbit/s, whole datagrams
		link := simnet.Link{Delay: 50 * time.Millisecond, Rate: rate}
		back := simnet.Link{Delay: 50 * time.Millisecond}
		p := newPair(t, link, back, congestion.Limits{Target: 1e9 / 8}, wire.AES256GCM)
		defer p.close()
		data := randomBytes(8<<20, 5)
		var dest *memFile
		done := make(chan error, 1)
		go func() {
			var err error
			_, dest, _, err = p.transfer(1, data, 10*time.Second)
			done <- err
		}()

		// The first acks are back one round trip and a little after the
		// first flight left.
		time.Sleep(130 * time.Millisecond)
		p.a.mu.Lock()
		cs := p.a.cc.State()
		p.a.mu.Unlock()
		// The capacity is in the pacer's units, whole datagrams, like the
		// link's rate.
		if math.Abs(cs.Capacity-rate)/rate > 0.05 {
			t.Fatalf("the sender knows a capacity of %.1f Mbit/s, want the link's %.1f", cs.Capacity*8/1e6, rate*8/1e6)
		}
		if cs.Rate < rate/2 {
			t.Fatalf("one round trip in, the rate is %.1f Mbit/s, want at least half the capacity", cs.Rate*8/1e6)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(dest.buf, data) {
			t.Fatal("data differs")
		}
	})
}

// A session whose data packet numbers run out ends its streams with an
// error that says what to do, and never sends a number twice or one from
// the control packets' space.
func TestSessionEndsStreamsWhenNumbersRunOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		link := simnet.Link{Delay: 10 * time.Millisecond}
		p := newPair(t, link, link, congestion.Limits{Target: 100e6 / 8, Policy: congestion.Fixed}, wire.AES256GCM)
		defer p.close()
		const left = 40
		p.a.mu.Lock()
		p.a.dataPN = dataNumbers - left
		p.a.mu.Unlock()
		var mu sync.Mutex
		seen := map[uint64]bool{}
		var twice, beyond int
		p.net.Tap = func(from, to netip.AddrPort, b []byte) {
			h, err := wire.ParseHeader(b)
			if from != hostA || err != nil || h.Type != wire.TypeData {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if seen[h.Number] {
				twice++
			}
			seen[h.Number] = true
			if h.Number >= dataNumbers {
				beyond++
			}
		}
		const size = 1 << 20
		want := ranges.Of(ranges.Range{Off: 0, Len: size})
		p.b.addRecv(newRecvStream(1, &memFile{}, want, nil, false))
		st := newSendStream(1, readerAtSource{r: bytes.NewReader(randomBytes(size, 4)), size: size}, want)
		p.a.addStream(st)
		select {
		case <-st.done:
		case <-time.After(10 * time.Second):
			t.Fatal("the stream did not end")
		}
		if err := st.err; !errors.Is(err, errNumbersSpent) || !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "run the command again") {
			t.Fatalf("transfer past the last packet number: %v, want errNumbersSpent", err)
		}
		time.Sleep(time.Second) // anything still to come is in the tap by now
		mu.Lock()
		defer mu.Unlock()
		if len(seen) != left || twice > 0 || beyond > 0 {
			t.Fatalf("sent %d distinct data numbers (want %d), %d twice, %d in the control space", len(seen), left, twice, beyond)
		}
	})
}

// Session ids are 32 random bits, so two may meet on a node's endpoint:
// the second is refused (the node draws again), and closing one session
// never unregisters another that holds its id.
func TestEndpointRefusesATakenSessionID(t *testing.T) {
	n := simnet.New(1)
	ep, err := newEndpoint(n.Listen(hostB), udpio.Options{}, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	defer ep.close()
	_, c2s, s2c, err := newSessionKeys(wire.AES128GCM)
	if err != nil {
		t.Fatal(err)
	}
	params := sessionParams{id: 0x5eed, cipher: wire.AES128GCM, sendKey: s2c, recvKey: c2s}
	first, err := newSession(ep, params, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newSession(ep, params, quietLog()); !errors.Is(err, errSessionTaken) {
		t.Fatalf("a second session with id %x: %v, want errSessionTaken", params.id, err)
	}
	if ep.lookup(params.id) != first {
		t.Fatal("the refused session replaced the live one")
	}
	first.close(io.ErrClosedPipe)
	if ep.lookup(params.id) != nil {
		t.Fatal("a closed session is still registered")
	}
	again, err := newSession(ep, params, quietLog())
	if err != nil {
		t.Fatalf("the id once its session closed: %v", err)
	}
	defer again.close(io.ErrClosedPipe)
	ep.remove(first)
	if ep.lookup(params.id) != again {
		t.Fatal("removing an old session unregistered the new one with its id")
	}
}
