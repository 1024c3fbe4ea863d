package linkem

import (
	"math"
	"testing"
	"time"
)

const ms = int64(time.Millisecond)

// TestShaperDelayOnly checks that without a rate every packet is due
// exactly Delay after its arrival.
func TestShaperDelayOnly(t *testing.T) {
	s := newShaper(Link{Delay: 25 * time.Millisecond}, 0, 1)
	for _, now := range []int64{0, 1, 5 * ms, 5 * ms, 100 * ms} {
		due, queued, v := s.admit(now, 1500)
		if v != pass || due != now+25*ms || queued != 0 {
			t.Fatalf("admit(%d) = %d, %d, %v; want %d, 0, pass", now, due, queued, v, now+25*ms)
		}
	}
}

// TestShaperSerialization checks the rate: back-to-back packets leave one
// serialization time apart, after the propagation delay.
func TestShaperSerialization(t *testing.T) {
	// 1250 bytes at 10 Mbit/s take exactly 1 ms.
	s := newShaper(Link{Delay: 10 * time.Millisecond, Rate: 10 * Mbit}, 1<<20, 1)
	for i := range int64(5) {
		due, queued, v := s.admit(0, 1250)
		if v != pass {
			t.Fatalf("packet %d: %v", i, v)
		}
		if want := (i+1)*ms + 10*ms; due != want {
			t.Errorf("packet %d due %v, want %v", i, time.Duration(due), time.Duration(want))
		}
		if want := (i + 1) * 1250; queued != want {
			t.Errorf("packet %d: queued %d bytes, want %d", i, queued, want)
		}
	}
	// After the bottleneck drains, a packet waits for its own
	// serialization only.
	due, _, _ := s.admit(100*ms, 1250)
	if want := 100*ms + ms + 10*ms; due != want {
		t.Errorf("packet on idle link due %v, want %v", time.Duration(due), time.Duration(want))
	}
	// Half-way through a packet's serialization, half of it is queued.
	if got := s.backlog(100*ms + ms/2); got != 625 {
		t.Errorf("backlog half-way = %d, want 625", got)
	}
}

// TestShaperLongRunRate checks that the carried remainder makes the rate
// exact over many packets whose serialization time is not a whole number
// of nanoseconds.
func TestShaperLongRunRate(t *testing.T) {
	const rate = 7 * Mbit
	s := newShaper(Link{Rate: rate}, 1<<40, 1)
	const n, size = 100000, 1337
	var due int64
	for range n {
		due, _, _ = s.admit(0, size)
	}
	want := int64(n) * size * 8 * 1e9 / int64(rate)
	if due != want {
		t.Fatalf("last of %d packets due %d ns, want %d ns", n, due, want)
	}
}

// TestShaperDropTail checks the drop-tail queue: packets that do not fit
// behind the bytes still waiting are dropped, and room frees as the
// bottleneck drains.
func TestShaperDropTail(t *testing.T) {
	s := newShaper(Link{Rate: 10 * Mbit}, 3750, 1) // room for three 1250-byte packets
	var got []verdict
	for range 5 {
		_, _, v := s.admit(0, 1250)
		got = append(got, v)
	}
	want := []verdict{pass, pass, pass, overflow, overflow}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("verdicts at t=0: %v, want %v", got, want)
		}
	}
	// At 1 ms one packet has left: exactly one more fits.
	if _, q, v := s.admit(ms, 1250); v != pass || q != 3750 {
		t.Fatalf("at 1ms: %v with %d queued, want pass with 3750", v, q)
	}
	if _, _, v := s.admit(ms, 1250); v != overflow {
		t.Fatalf("second packet at 1ms: %v, want overflow", v)
	}
	// A packet bigger than the whole queue still passes an empty link.
	s2 := newShaper(Link{Rate: 10 * Mbit}, 1000, 1)
	if _, _, v := s2.admit(0, 1500); v != pass {
		t.Fatalf("oversized packet on idle link: %v, want pass", v)
	}
}

// TestShaperJitterKeepsOrder checks that jitter spreads delays within
// [Delay-Jitter, Delay+Jitter] for well-spaced packets and never lets a
// packet leave before the one ahead of it.
func TestShaperJitterKeepsOrder(t *testing.T) {
	l := Link{Delay: 20 * time.Millisecond, Jitter: 5 * time.Millisecond}
	s := newShaper(l, 0, 42)
	var last, sum int64
	const n = 20000
	lo, hi := int64(math.MaxInt64), int64(0)
	for i := range int64(n) {
		now := i * 20 * ms // far apart: FIFO order never binds
		due, _, _ := s.admit(now, 100)
		if due < last {
			t.Fatalf("packet %d due before its predecessor", i)
		}
		last = due
		d := due - now
		lo, hi = min(lo, d), max(hi, d)
		sum += d
	}
	if lo < 15*ms || hi > 25*ms {
		t.Errorf("delays in [%v, %v], want within [15ms, 25ms]", time.Duration(lo), time.Duration(hi))
	}
	if lo > 15*ms+ms/10 || hi < 25*ms-ms/10 {
		t.Errorf("delays in [%v, %v], want to span nearly all of [15ms, 25ms]", time.Duration(lo), time.Duration(hi))
	}
	mean := time.Duration(sum / n)
	// Uniform on ±5ms: standard error of the mean 2.9ms/√n ≈ 20µs.
	if mean < 20*time.Millisecond-100*time.Microsecond || mean > 20*time.Millisecond+100*time.Microsecond {
		t.Errorf("mean delay %v, want 20ms ± 100µs", mean)
	}

	// Packets 1µs apart with 5ms jitter: order holds.
	s = newShaper(l, 0, 7)
	last = 0
	for i := range int64(n) {
		due, _, _ := s.admit(i*1000, 100)
		if due < last {
			t.Fatalf("close packet %d due before its predecessor", i)
		}
		last = due
	}
}

// binomialOK reports whether k successes in n trials at probability p lie
// within z standard deviations.
func binomialOK(k, n int, p, z float64) bool {
	mean := float64(n) * p
	sd := math.Sqrt(float64(n) * p * (1 - p))
	return math.Abs(float64(k)-mean) <= z*sd
}

// TestShaperBernoulliLoss checks independent loss: the loss count within
// binomial bounds, and no more runs of losses than independence allows.
func TestShaperBernoulliLoss(t *testing.T) {
	for _, p := range []float64{0.005, 0.02, 0.1} {
		s := newShaper(Link{Loss: p}, 0, 99)
		const n = 200000
		lostN, pairs := 0, 0
		prev := false
		for i := range int64(n) {
			_, _, v := s.admit(i, 100)
			l := v == lost
			if l {
				lostN++
				if prev {
					pairs++
				}
			}
			prev = l
		}
		if !binomialOK(lostN, n, p, 5) {
			t.Errorf("loss %v: %d of %d lost, outside 5σ of %v", p, lostN, n, float64(n)*p)
		}
		// Consecutive losses occur at rate p² when independent.
		if !binomialOK(pairs, n, p*p, 5) {
			t.Errorf("loss %v: %d back-to-back losses, want about %v", p, pairs, float64(n)*p*p)
		}
	}
}

// TestShaperGilbertLoss checks bursty loss: the long-run loss rate is
// Loss and losses come in runs of mean length LossBurst.
func TestShaperGilbertLoss(t *testing.T) {
	l := Link{Loss: 0.02, LossBurst: 4}
	s := newShaper(l, 0, 5)
	const n = 1000000
	lostN, runs := 0, 0
	prev := false
	for i := range int64(n) {
		_, _, v := s.admit(i, 100)
		cur := v == lost
		if cur {
			lostN++
			if !prev {
				runs++
			}
		}
		prev = cur
	}
	rate := float64(lostN) / n
	if math.Abs(rate-0.02) > 0.002 {
		t.Errorf("loss rate %v, want 0.02 ± 0.002", rate)
	}
	burst := float64(lostN) / float64(runs)
	if math.Abs(burst-4) > 0.3 {
		t.Errorf("mean burst %v packets, want 4 ± 0.3", burst)
	}
}

// TestShaperDeterministic checks that one seed gives one sequence of
// decisions.
func TestShaperDeterministic(t *testing.T) {
	l := Link{Delay: 10 * time.Millisecond, Jitter: 2 * time.Millisecond, Loss: 0.1, Rate: 50 * Mbit}
	run := func() []int64 {
		s := newShaper(l, 64<<10, 1234)
		var out []int64
		for i := range int64(2000) {
			due, _, v := s.admit(i*50000, 1000)
			out = append(out, due, int64(v))
		}
		return out
	}
	a, b := run(), run()
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("runs differ at %d", i)
		}
	}
}

// TestShaperRateChange checks that a new rate applies to packets arriving
// after the change while the packets already accepted keep their times.
func TestShaperRateChange(t *testing.T) {
	s := newShaper(Link{Rate: 10 * Mbit}, 1<<20, 1)
	d1, _, _ := s.admit(0, 1250) // 1 ms
	s.link.Rate = 20 * Mbit
	d2, _, _ := s.admit(0, 1250) // 0.5 ms behind the first
	if d1 != ms || d2 != ms+ms/2 {
		t.Fatalf("due %v, %v; want 1ms, 1.5ms", time.Duration(d1), time.Duration(d2))
	}
}

// TestQueueLimitDefault checks the default queue: one bandwidth-delay
// product over the round trip, at least MinQueueTime of the rate and at
// least MinQueue; an explicit Queue wins.
func TestQueueLimitDefault(t *testing.T) {
	l := Link{Delay: 50 * time.Millisecond, Rate: 100 * Mbit}
	if got, want := l.queueLimit(50*time.Millisecond), int64(100e6/8*0.1); got != want {
		t.Errorf("BDP queue %d, want %d", got, want)
	}
	if got := (Link{Rate: 100 * Mbit}).queueLimit(0); got != MinQueue {
		t.Errorf("zero-delay queue at 100 Mbit/s %d, want MinQueue %d", got, MinQueue)
	}
	if got, want := (Link{Rate: Gbit}).queueLimit(0), int64(1e9/8*0.002); got != want {
		t.Errorf("zero-delay queue at 1 Gbit/s %d, want %d (2 ms)", got, want)
	}
	l.Queue = 12345
	if got := l.queueLimit(50 * time.Millisecond); got != 12345 {
		t.Errorf("explicit queue %d, want 12345", got)
	}
}

// TestLinkValidate checks that out-of-range links are refused.
func TestLinkValidate(t *testing.T) {
	bad := []Link{
		{Delay: -1},
		{Jitter: -1},
		{Loss: -0.1},
		{Loss: 1},
		{Loss: math.NaN()},
		{Rate: -1},
		{Queue: -1},
		{Loss: 0.9, LossBurst: 2},
	}
	for _, l := range bad {
		if l.Validate() == nil {
			t.Errorf("%+v validated", l)
		}
	}
	good := []Link{{}, {Delay: time.Second, Loss: 0.5, Rate: Gbit}, {Loss: 0.5, LossBurst: 2}}
	for _, l := range good {
		if err := l.Validate(); err != nil {
			t.Errorf("%+v: %v", l, err)
		}
	}
}

// TestFIFO checks ring order across growth and wrap-around.
func TestFIFO(t *testing.T) {
	var f fifo
	next, want := 0, 0
	for round := range 50 {
		for range round * 3 {
			f.push(packet{n: next})
			next++
		}
		for range round * 2 {
			if got := f.pop().n; got != want {
				t.Fatalf("popped %d, want %d", got, want)
			}
			want++
		}
	}
	for f.len() > 0 {
		if got := f.pop().n; got != want {
			t.Fatalf("popped %d, want %d", got, want)
		}
		want++
	}
	if want != next {
		t.Fatalf("popped %d packets, pushed %d", want, next)
	}
}

// TestLateness checks the lateness summary.
func TestLateness(t *testing.T) {
	var r lateRecorder
	for i := range int64(1000) {
		r.add(i * 1000) // 0..999 µs
	}
	r.add(-5) // early counts as zero
	s := r.summary()
	if s.Count != 1001 || s.Max != 999*time.Microsecond {
		t.Fatalf("count %d max %v", s.Count, s.Max)
	}
	if s.P50 != 499*time.Microsecond && s.P50 != 500*time.Microsecond {
		t.Errorf("p50 %v, want about 500µs", s.P50)
	}
	if s.P99 < 985*time.Microsecond || s.P99 > 995*time.Microsecond {
		t.Errorf("p99 %v, want about 990µs", s.P99)
	}
	// The window keeps the recent samples only.
	for range lateWindow {
		r.add(int64(time.Millisecond * 7))
	}
	if s := r.summary(); s.P50 != 7*time.Millisecond || s.P99 != 7*time.Millisecond {
		t.Errorf("after window refill p50 %v p99 %v, want 7ms", s.P50, s.P99)
	}
}

func BenchmarkShaperAdmit(b *testing.B) {
	s := newShaper(Link{Delay: 25 * time.Millisecond, Jitter: time.Millisecond, Loss: 0.01, Rate: Gbit}, 1<<24, 1)
	var now int64
	for b.Loop() {
		now += 12000
		s.admit(now, 1500)
	}
}
