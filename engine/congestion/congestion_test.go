package congestion

import (
	"fmt"
	"math"
	"slices"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const mbit = 1e6 / 8 // bytes per second in one Mbit/s

// feed runs n feedback steps of dt each with a fixed report.
func feed(c *Controller, now time.Time, n int, dt time.Duration, f Feedback) time.Time {
	for i := 0; i < n; i++ {
		now = now.Add(dt)
		c.OnFeedback(now, f)
	}
	return now
}

func TestFixedIgnoresTheNetwork(t *testing.T) {
	c := New(Limits{Target: 100 * mbit, Policy: Fixed}, t0)
	if c.Rate() != 100*mbit {
		t.Fatalf("fixed starts at %v, want the target", c.Rate())
	}
	feed(c, t0, 100, time.Millisecond, Feedback{Queue: time.Second, RTT: 100 * time.Millisecond, Sent: 1e4, Delivered: 1e3, Lost: 9e3})
	c.OnSilence(t0.Add(time.Second), time.Second, 100*time.Millisecond)
	if c.Rate() != 100*mbit {
		t.Fatalf("fixed moved to %v", c.Rate())
	}
}

func TestEmptyQueueRampsToTarget(t *testing.T) {
	for _, policy := range []string{Fair, High, Low} {
		c := New(Limits{Target: 1000 * mbit, Policy: policy}, t0)
		start := c.Rate()
		rtt := 100 * time.Millisecond
		// 20 round trips of feedback every 5 ms with no queue.
		feed(c, t0, 400, 5*time.Millisecond, Feedback{RTT: rtt})
		if c.Rate() != 1000*mbit {
			t.Errorf("%s: after 20 RTTs with an empty queue rate is %.0f Mbit/s (started %.0f), want the target",
				policy, c.Rate()/mbit, start/mbit)
		}
	}
}

func TestQueueBeyondTargetBacksOffToMin(t *testing.T) {
	// low yields to any standing queue for as long as it stands.
	c := New(Limits{Target: 1000 * mbit, Min: 5 * mbit, Policy: Low}, t0)
	now := feed(c, t0, 200, 5*time.Millisecond, Feedback{RTT: 50 * time.Millisecond})
	feed(c, now, 4000, 5*time.Millisecond, Feedback{RTT: 50 * time.Millisecond, Queue: 40 * time.Millisecond})
	if c.Rate() != 5*mbit {
		t.Fatalf("under a persistent 40 ms queue the rate is %.1f Mbit/s, want the 5 Mbit/s minimum", c.Rate()/mbit)
	}
}

func TestFairCompetesWithAStandingQueue(t *testing.T) {
	// A 40 ms queue that stays whatever we send is someone else's: fair
	// backs off at first, then aims above it instead of yielding for good,
	// and looks again every few seconds.
	for _, policy := range []string{Fair, High} {
		c := New(Limits{Target: 100 * mbit, Min: 1 * mbit, Policy: policy}, t0)
		now := feed(c, t0, 200, 5*time.Millisecond, Feedback{RTT: 50 * time.Millisecond})
		q := Feedback{RTT: 90 * time.Millisecond, Queue: 40 * time.Millisecond}
		now = feed(c, now, 60, 5*time.Millisecond, q) // 300 ms: backs off
		cut := c.Rate()
		if cut > 70*mbit {
			t.Errorf("%s: 300 ms into a 40 ms queue the rate is %.1f Mbit/s, want it cut", policy, cut/mbit)
		}
		if st := c.State(); st.Competing != 0 {
			t.Errorf("%s: competing after 300 ms, want only after a window of standing queue", policy)
		}
		lowest := cut
		for range 800 { // 4 s more
			now = now.Add(5 * time.Millisecond)
			c.OnFeedback(now, q)
			lowest = min(lowest, c.Rate())
		}
		if st := c.State(); st.Competing != q.Queue {
			t.Errorf("%s: 4 s into a standing queue of %v: competing with %v, want that queue", policy, q.Queue, st.Competing)
		}
		if c.Rate() < 2*lowest {
			t.Errorf("%s: 4 s into a standing 40 ms queue the rate is %.1f Mbit/s, want it well above the %.1f it was cut to", policy, c.Rate()/mbit, lowest/mbit)
		}
	}
}

func TestRandomLossDoesNotCutTheRate(t *testing.T) {
	for _, loss := range []float64{0.01, 0.05, 0.10} {
		c := New(Limits{Target: 200 * mbit}, t0)
		now := t0
		rtt := 100 * time.Millisecond
		for i := 0; i < 2000; i++ { // 10 s of feedback every 5 ms
			now = now.Add(5 * time.Millisecond)
			sent := c.Rate() * 0.005
			c.OnFeedback(now, Feedback{RTT: rtt, Queue: time.Millisecond, Sent: sent, Delivered: sent * (1 - loss), Lost: sent * loss})
		}
		if c.Rate() < 199*mbit {
			t.Errorf("loss %.0f%% with no queue: rate %.1f Mbit/s, want the 200 Mbit/s target", loss*100, c.Rate()/mbit)
		}
	}
}

func TestHeavyLossWithLowDeliveryCaps(t *testing.T) {
	c := New(Limits{Target: 1000 * mbit}, t0)
	now := t0
	for i := 0; i < 400; i++ {
		now = now.Add(5 * time.Millisecond)
		sent := c.Rate() * 0.005
		// The receiver only keeps up with 100 Mbit/s; the rest is dropped
		// before any queue is seen (a CPU-bound receiver).
		delivered := math.Min(sent, 100*mbit*0.005)
		c.OnFeedback(now, Feedback{RTT: time.Millisecond, Sent: sent, Delivered: delivered, Lost: sent - delivered})
	}
	if r := c.Rate(); r > 100*mbit*lossyHeadroom*1.1 || r < 100*mbit*0.5 {
		t.Fatalf("rate %.1f Mbit/s, want near the 100 Mbit/s that gets through", r/mbit)
	}
}

// shallowPath is a path whose buffer is too shallow to show a queue: it
// drops whatever exceeds capacity, after random loss, and reports to c
// every 5 ms with a 1 ms round trip.
type shallowPath struct {
	c                *Controller
	now              time.Time
	capacity, random float64
}

// step feeds one report with the given queueing delay and returns what
// was sent and delivered meanwhile.
func (p *shallowPath) step(queue time.Duration) (sent, delivered float64) {
	const dt = 5 * time.Millisecond
	p.now = p.now.Add(dt)
	s := p.c.Rate() * dt.Seconds()
	d := math.Min(s*(1-p.random), p.capacity*dt.Seconds())
	p.c.OnFeedback(p.now, Feedback{RTT: time.Millisecond, Queue: queue, Sent: s, Delivered: d, Lost: s - d})
	return s, d
}

// A buffer too shallow to show a queue (a switch, a short forwarder
// queue) drops whatever exceeds the path's rate. The rate must still fill
// the path, but not by sending a sixth more than it carries: the probe
// finds what random loss there is, and the ceiling sits just above it.
func TestShallowBufferLosesLittle(t *testing.T) {
	const capacity = 200 * mbit
	for _, random := range []float64{0, 0.02, 0.10} {
		t.Run(fmt.Sprintf("random loss %g%%", random*100), func(t *testing.T) {
			p := &shallowPath{c: New(Limits{Target: 1000 * mbit}, t0), now: t0, capacity: capacity, random: random}
			var sent, delivered float64
			for i := 0; i < 4000; i++ { // 20 s; the last 10 count
				s, d := p.step(0)
				if i >= 2000 {
					sent += s
					delivered += d
				}
			}
			use := delivered / (capacity * 10)
			lost := 1 - delivered/sent
			t.Logf("link used %.1f%%, %.1f%% of what was sent lost", use*100, lost*100)
			if use < 0.95 {
				t.Errorf("the path carried %.1f%% of its rate, want ≥ 95%%", use*100)
			}
			if excess := lost - random; excess > 0.06 {
				t.Errorf("%.1f%% of what was sent was lost beyond the %g%% random loss, want ≤ 6%%", excess*100, random*100)
			}
		})
	}
}

// Once a lasting queue shows, the delay law has its signal: the ceiling a
// probe of a shallow buffer set no longer applies, and a brief queue (a
// receiver held up for a moment) does not end it.
func TestShallowModeEndsOnALastingQueue(t *testing.T) {
	c := New(Limits{Target: 1000 * mbit}, t0)
	p := &shallowPath{c: c, now: t0, capacity: 200 * mbit}
	for i := 0; i < 1000; i++ { // 5 s
		p.step(0)
	}
	if c.State().Shallow == 0 {
		t.Fatal("5 s of heavy loss without a queue, and no probe has set a ceiling")
	}
	for i := 0; i < 3; i++ { // 15 ms
		p.step(2 * fairQueue)
	}
	for i := 0; i < 10; i++ {
		p.step(0)
	}
	if c.State().Shallow == 0 {
		t.Fatal("a queue of 15 ms ended the shallow buffer's ceiling")
	}
	for i := 0; i < int(shallowQueue/(5*time.Millisecond))+2; i++ {
		p.step(2 * fairQueue)
	}
	if h := c.State().Shallow; h != 0 {
		t.Fatalf("after %v of a queue twice the target the shallow buffer's ceiling %.3f still applies", shallowQueue, h)
	}
}

func TestLowYieldsWhereFairHolds(t *testing.T) {
	// A 6 ms standing queue built by someone else: fair stays, low yields.
	fair := New(Limits{Target: 100 * mbit, Min: 1 * mbit}, t0)
	low := New(Limits{Target: 100 * mbit, Min: 1 * mbit, Policy: Low}, t0)
	f := Feedback{RTT: 50 * time.Millisecond, Queue: 6 * time.Millisecond}
	feed(fair, t0, 1000, 5*time.Millisecond, f)
	feed(low, t0, 1000, 5*time.Millisecond, f)
	if fair.Rate() < 99*mbit {
		t.Errorf("fair under a 6 ms queue: %.1f Mbit/s, want near its 100 Mbit/s target", fair.Rate()/mbit)
	}
	if low.Rate() != 1*mbit {
		t.Errorf("low under a 6 ms queue: %.1f Mbit/s, want its 1 Mbit/s minimum", low.Rate()/mbit)
	}
}

func TestSilenceHalvesPerRTT(t *testing.T) {
	c := New(Limits{Target: 100 * mbit, Min: mbit}, t0)
	feed(c, t0, 400, 5*time.Millisecond, Feedback{RTT: 20 * time.Millisecond})
	before := c.Rate()
	c.OnSilence(t0.Add(3*time.Second), 40*time.Millisecond, 20*time.Millisecond)
	if got := c.Rate(); math.Abs(got-before/4) > 1 {
		t.Fatalf("two RTTs of silence: %.1f → %.1f Mbit/s, want a quarter", before/mbit, got/mbit)
	}
}

func TestSetLimitsDuringTransfer(t *testing.T) {
	c := New(Limits{Target: 100 * mbit}, t0)
	now := feed(c, t0, 400, 5*time.Millisecond, Feedback{RTT: 20 * time.Millisecond})
	c.SetLimits(Limits{Target: 20 * mbit, Min: 10 * mbit})
	if c.Rate() != 20*mbit {
		t.Fatalf("lowered target: rate %.1f, want 20 Mbit/s at once", c.Rate()/mbit)
	}
	c.SetLimits(Limits{Target: 50 * mbit, Policy: Fixed})
	if c.Rate() != 50*mbit {
		t.Fatalf("switch to fixed: rate %.1f, want 50", c.Rate()/mbit)
	}
	c.SetLimits(Limits{Target: 50 * mbit, Min: 30 * mbit, Policy: Low})
	feed(c, now, 400, 5*time.Millisecond, Feedback{RTT: 20 * time.Millisecond, Queue: time.Second})
	if c.Rate() != 30*mbit {
		t.Fatalf("raised minimum: rate %.1f, want 30 under congestion", c.Rate()/mbit)
	}
}

// fluidLink is a bottleneck with a drop-tail queue, for flows given as
// controllers: each millisecond every flow offers rate·dt bytes; the link
// drains capacity·dt; the queueing delay reaches the flows' controllers
// one RTT later. With tcp set, a loss-based TCP flow competes too; its
// share is the last one returned.
type fluidLink struct {
	capacity float64 // bytes per second
	buffer   float64 // bytes
	rtt      time.Duration
	tcp      *cubicFlow
	trace    func(ms int, rates []float64, queue float64)
}

// cubicFlow is a window-based TCP flow with CUBIC's window growth and
// multiplicative decrease on a drop (at most once per round trip), seen
// through the fluid model: it sends its window once per round trip,
// queueing delay included.
type cubicFlow struct {
	mss      float64
	w, wmax  float64 // bytes
	epoch    time.Time
	lastCut  time.Time
	started  bool
	startsAt time.Time
}

func (f *cubicFlow) rate(now time.Time, rtt time.Duration) float64 {
	if now.Before(f.startsAt) {
		return 0
	}
	if !f.started {
		f.started, f.w, f.wmax, f.epoch = true, 10*f.mss, 0, now
	}
	return f.w / rtt.Seconds()
}

// grow advances the window by dt, as CUBIC does between losses (slow start
// until the first one).
func (f *cubicFlow) grow(now time.Time, dt, rtt time.Duration) {
	if !f.started {
		return
	}
	if f.wmax == 0 { // slow start: doubles per round trip
		f.w *= math.Pow(2, dt.Seconds()/rtt.Seconds())
		return
	}
	const c, beta = 0.4, 0.7
	wmax := f.wmax / f.mss
	k := math.Cbrt(wmax * (1 - beta) / c)
	t := now.Sub(f.epoch).Seconds()
	f.w = math.Max(f.mss, (c*math.Pow(t-k, 3)+wmax)*f.mss)
}

func (f *cubicFlow) drop(now time.Time, rtt time.Duration) {
	if !f.started || now.Sub(f.lastCut) < rtt {
		return
	}
	f.lastCut, f.wmax, f.epoch = now, f.w, now
	f.w *= 0.7
}

func (l fluidLink) run(cs []*Controller, d time.Duration) (shares []float64, meanQueue time.Duration) {
	dt := time.Millisecond
	steps := int(d / dt)
	lag := int(l.rtt / dt)
	n := len(cs)
	if l.tcp != nil {
		n++
	}
	queue := 0.0
	history := make([]float64, 0, steps) // queueing delay in seconds per step
	drops := make([]bool, 0, steps)      // whether the queue overflowed
	deliv := make([][]float64, 0, steps) // bytes delivered per flow per step
	sentH := make([][]float64, 0, steps)
	got := make([]float64, n)
	var qsum float64
	now := t0
	for i := 0; i < steps; i++ {
		now = now.Add(dt)
		offered := 0.0
		offers := make([]float64, n)
		for j, c := range cs {
			offers[j] = c.Rate() * dt.Seconds()
			offered += offers[j]
		}
		if l.tcp != nil {
			offers[n-1] = l.tcp.rate(now, l.rtt+time.Duration(queue/l.capacity*float64(time.Second))) * dt.Seconds()
			offered += offers[n-1]
		}
		queue += offered
		drained := math.Min(queue, l.capacity*dt.Seconds())
		queue -= drained
		dropped := queue > l.buffer
		if dropped {
			queue = l.buffer
		}
		drops = append(drops, dropped)
		d := make([]float64, n)
		for j := range d {
			if offered > 0 {
				d[j] = drained * offers[j] / offered
			}
			if i >= steps/2 {
				got[j] += d[j]
			}
		}
		deliv = append(deliv, d)
		sentH = append(sentH, offers)
		history = append(history, queue/l.capacity)
		if l.trace != nil {
			rs := make([]float64, n)
			for j := range rs {
				rs[j] = offers[j] / dt.Seconds()
			}
			l.trace(i, rs, queue/l.capacity)
		}
		seen := 0.0
		if i >= lag {
			seen = history[i-lag]
		}
		if i >= steps/2 {
			qsum += seen
		}
		rtt := l.rtt + time.Duration(seen*float64(time.Second))
		for j, c := range cs {
			f := Feedback{RTT: rtt, Queue: time.Duration(seen * float64(time.Second))}
			if i >= lag {
				f.Delivered, f.Sent = deliv[i-lag][j], sentH[i-lag][j]
			}
			c.OnFeedback(now, f)
		}
		if l.tcp != nil {
			l.tcp.grow(now, dt, rtt)
			if i >= lag && drops[i-lag] {
				l.tcp.drop(now, rtt)
			}
		}
	}
	total := l.capacity * (d / 2).Seconds()
	for j := range got {
		got[j] /= total
	}
	return got, time.Duration(qsum / float64(steps-steps/2) * float64(time.Second))
}

func TestFluidOneFlowFillsTheLink(t *testing.T) {
	link := fluidLink{capacity: 200 * mbit, buffer: 200 * mbit * 0.1, rtt: 100 * time.Millisecond}
	shares, q := link.run([]*Controller{New(Limits{Target: 1000 * mbit}, t0)}, 30*time.Second)
	if shares[0] < 0.95 {
		t.Errorf("one fair flow uses %.1f%% of the link, want ≥ 95%%", shares[0]*100)
	}
	if q > 4*fairQueue {
		t.Errorf("mean queueing delay %v, want near the %v target", q, fairQueue)
	}
}

func TestFluidFairFlowsShare(t *testing.T) {
	link := fluidLink{capacity: 100 * mbit, buffer: 100 * mbit * 0.1, rtt: 40 * time.Millisecond}
	a := New(Limits{Target: 1000 * mbit}, t0)
	b := New(Limits{Target: 1000 * mbit}, t0)
	// b starts late, at a tenth of a's rate: the classic latecomer case.
	b.rate = a.rate / 10
	shares, _ := link.run([]*Controller{a, b}, 120*time.Second)
	if shares[0]+shares[1] < 0.9 {
		t.Errorf("two flows use %.1f%% together, want ≥ 90%%", (shares[0]+shares[1])*100)
	}
	if r := shares[0] / shares[1]; r > 1.5 || r < 1/1.5 {
		t.Errorf("shares %.2f / %.2f: ratio %.2f, want within 1.5×", shares[0], shares[1], r)
	}
}

func TestFluidLowYieldsToFair(t *testing.T) {
	link := fluidLink{capacity: 100 * mbit, buffer: 100 * mbit * 0.1, rtt: 40 * time.Millisecond}
	fair := New(Limits{Target: 1000 * mbit}, t0)
	low := New(Limits{Target: 1000 * mbit, Policy: Low}, t0)
	shares, _ := link.run([]*Controller{fair, low}, 60*time.Second)
	if shares[0] < 0.8 {
		t.Errorf("fair gets %.1f%% beside a low flow, want ≥ 80%%", shares[0]*100)
	}
}

func TestPacer(t *testing.T) {
	p := NewPacer(1e6, t0) // 1 MB/s: the burst is the 24000-byte minimum
	if got := p.Available(t0); got != minBurstBytes {
		t.Fatalf("starts with %v tokens, want a full burst", got)
	}
	p.Spend(t0, minBurstBytes+1000)
	if w := p.Wait(t0, 1000); w != 2*time.Millisecond {
		t.Fatalf("Wait = %v, want 2ms (1000 owed + 1000 wanted at 1 MB/s)", w)
	}
	if got := p.Available(t0.Add(time.Hour)); got != minBurstBytes {
		t.Fatalf("after an hour idle: %v tokens, want the burst cap", got)
	}
	p.SetRate(1e9) // burst becomes 8 ms at 1 GB/s = 8 MB
	if got := p.Available(t0.Add(time.Hour + time.Second)); got != 8e6 {
		t.Fatalf("after raising the rate: %v tokens, want 8e6", got)
	}
}

// TestPacerCatchUp: a sender stalled for 40 ms loses that allowance
// beyond the burst, unless the pacer has a catch-up horizon; then it makes
// the time up, no faster than catchUpPeak times the rate.
func TestPacerCatchUp(t *testing.T) {
	const rate, pkt = 10e6, 1500.0 // 10 MB/s: the burst is 8 ms, 80 kB
	const stall = 40 * time.Millisecond
	for _, tc := range []struct {
		horizon  time.Duration
		wantLost float64 // allowance lost to the stall
	}{
		{0, rate*stall.Seconds() - rate*burstTime.Seconds()},
		{50 * time.Millisecond, 0},
	} {
		p := NewPacer(rate, t0)
		p.SetCatchUp(tc.horizon)
		sent := p.Available(t0)
		p.Spend(t0, sent)
		now := t0.Add(stall)
		end := t0.Add(500 * time.Millisecond)
		var window []time.Time // send times of the last 10 ms
		fastest := 0.0
		for now.Before(end) {
			if p.Available(now) >= pkt {
				p.Spend(now, pkt)
				sent += pkt
				window = append(window, now)
				for now.Sub(window[0]) >= 10*time.Millisecond {
					window = window[1:]
				}
				fastest = max(fastest, float64(len(window))*pkt)
				continue
			}
			now = now.Add(max(p.Wait(now, pkt), time.Microsecond))
		}
		allowed := rate*burstTime.Seconds() + rate*end.Sub(t0).Seconds()
		if lost := allowed - sent; math.Abs(lost-tc.wantLost) > 2*pkt {
			t.Errorf("horizon %v: %.0f bytes of allowance lost, want %.0f", tc.horizon, lost, tc.wantLost)
		}
		if u := p.Unused(); math.Abs(u-tc.wantLost) > 2*pkt {
			t.Errorf("horizon %v: Unused() = %.0f, want %.0f", tc.horizon, u, tc.wantLost)
		}
		// The debt is not sent at once: no 10 ms carry more than a burst
		// and catchUpPeak times the rate (a packet of rounding aside).
		if limit := rate*burstTime.Seconds() + catchUpPeak*rate*0.01 + pkt; fastest > limit {
			t.Errorf("horizon %v: %.0f bytes in 10 ms, want at most %.0f", tc.horizon, fastest, limit)
		}
	}
}

// A loss-based TCP flow (CUBIC) keeps a drop-tail queue of one
// bandwidth-delay product standing; a delay-based flow that only yields
// to it would be starved. fair must keep a real share and leave TCP at
// least a third; low must leave TCP most of the link.
func TestFluidBesideCubic(t *testing.T) {
	for _, tc := range []struct {
		policy     string
		minChute   float64
		maxChute   float64
		minTCPLeft float64
	}{
		{Fair, 0.25, 0.67, 1.0 / 3},
		{Low, 0, 0.10, 0.85},
	} {
		rtt := 50 * time.Millisecond
		link := fluidLink{capacity: 200 * mbit, buffer: 200 * mbit * rtt.Seconds(), rtt: rtt,
			tcp: &cubicFlow{mss: 1448, startsAt: t0.Add(5 * time.Second)}}
		c := New(Limits{Target: 1000 * mbit, Policy: tc.policy}, t0)
		shares, _ := link.run([]*Controller{c}, 80*time.Second)
		t.Logf("%s beside CUBIC: chute %.0f%%, TCP %.0f%% of the link", tc.policy, shares[0]*100, shares[1]*100)
		if shares[0] < tc.minChute || shares[0] > tc.maxChute {
			t.Errorf("%s beside CUBIC: chute has %.0f%% of the link, want %.0f–%.0f%%", tc.policy, shares[0]*100, tc.minChute*100, tc.maxChute*100)
		}
		if shares[1] < tc.minTCPLeft {
			t.Errorf("%s beside CUBIC: TCP has %.0f%% of the link, want ≥ %.0f%%", tc.policy, shares[1]*100, tc.minTCPLeft*100)
		}
	}
}

// TestSearchOutlastsAReceiverPause: one report of a queue (a receiver that
// paused for a disk write) does not end the search for the path's rate; a
// queue that lasts does.
func TestSearchOutlastsAReceiverPause(t *testing.T) {
	rtt := 100 * time.Millisecond
	c := New(Limits{Target: 1000 * mbit}, t0)
	now := feed(c, t0, 20, 5*time.Millisecond, Feedback{RTT: rtt})
	now = feed(c, now, 1, 5*time.Millisecond, Feedback{RTT: rtt, Queue: 20 * time.Millisecond})
	now = feed(c, now, 1, 5*time.Millisecond, Feedback{RTT: rtt})
	if c.State().Found {
		t.Fatal("a single 20 ms queue report ended the search")
	}
	before := c.Rate()
	now = feed(c, now, 20, 5*time.Millisecond, Feedback{RTT: rtt})
	if grew := c.Rate() / before; grew < 1.5 {
		t.Errorf("after the pause the search grew the rate %.2f× in one round trip, want ≥ 1.5×", grew)
	}
	// A queue standing for a quarter of a round trip ends it.
	feed(c, now, int(rtt/4/(5*time.Millisecond))+1, 5*time.Millisecond, Feedback{RTT: rtt, Queue: 8 * time.Millisecond})
	if !c.State().Found {
		t.Error("a queue standing for a quarter of a round trip did not end the search")
	}
}

// laggedPath feeds a controller a report every step as a path of a
// capacity would: the sender sends at the rate, and the receiver gets what
// was sent a round trip before (up to the capacity), times a share (less
// than 1 for a receiver that pauses).
type laggedPath struct {
	c         *Controller
	now       time.Time
	rtt, step time.Duration
	capacity  float64
	rates     []float64
}

// newLaggedPath is a 200 Mbit/s path with a 100 ms round trip, reported on
// every 5 ms, and a fair controller searching from 40 Mbit/s.
func newLaggedPath() *laggedPath {
	return &laggedPath{c: New(Limits{Target: 1000 * mbit, Start: 40 * mbit}, t0), now: t0,
		rtt: 100 * time.Millisecond, step: 5 * time.Millisecond, capacity: 200 * mbit}
}

func (p *laggedPath) run(n int, f Feedback, share float64) {
	for range n {
		p.now = p.now.Add(p.step)
		p.rates = append(p.rates, p.c.Rate())
		if lag := int(p.rtt / p.step); len(p.rates) > lag {
			f.Delivered = math.Min(p.rates[len(p.rates)-1-lag], p.capacity) * share * p.step.Seconds()
		}
		f.RTT, f.Sent = p.rtt, p.c.Rate()*p.step.Seconds()
		p.c.OnFeedback(p.now, f)
	}
}

// TestSearchHoldsThroughABriefQueue: a search sending near the capacity
// measured, whose delivery rate trails it by a round trip, meets a queue
// for one report (a forwarder held up for a moment). The queue is too
// brief to end the search, and it must not cut the rate either: a cut
// aims below the delivery rate, which at that point reads what was sent a
// round trip earlier, at half the rate or less.
func TestSearchHoldsThroughABriefQueue(t *testing.T) {
	path := newLaggedPath()
	c, rtt, step, capacity := path.c, path.rtt, path.step, path.capacity
	run := func(n int, f Feedback) { path.run(n, f, 1) }
	run(int(2*rtt/step), Feedback{})
	run(1, Feedback{Capacity: capacity})
	for c.Rate() < capacity*capacityShort {
		run(1, Feedback{})
	}
	run(int(rtt/2/step), Feedback{}) // sends at least capacityShort of it
	before := c.Rate()
	run(1, Feedback{Queue: 20 * time.Millisecond})
	if st := c.State(); st.Found {
		t.Fatalf("one report of a queue ended the search: %+v", st)
	}
	if after := c.Rate(); after < before {
		t.Errorf("one report of a 20 ms queue cut the searching rate from %.0f to %.0f Mbit/s", before/mbit, after/mbit)
	}
	// A queue that lasts still ends the search and cuts.
	high := c.Rate()
	run(int(rtt/step), Feedback{Queue: 20 * time.Millisecond})
	if st := c.State(); !st.Found || st.Rate >= high {
		t.Errorf("a queue for a round trip: found %v, rate %.0f Mbit/s (was %.0f); want the search ended and the rate cut",
			st.Found, st.Rate/mbit, high/mbit)
	}
}

// TestEmptyPathAfterSearchGrowsFast: when the search ended early (at a rate
// far below the path's) and the queue then stays empty, the rate grows as
// fast as in the search, not by 10% per round trip.
func TestEmptyPathAfterSearchGrowsFast(t *testing.T) {
	rtt := 100 * time.Millisecond
	c := New(Limits{Target: 1000 * mbit}, t0)
	now := feed(c, t0, 10, 5*time.Millisecond, Feedback{RTT: rtt, Queue: 8 * time.Millisecond})
	if !c.State().Found {
		t.Fatal("setup: the search did not end")
	}
	start := c.Rate()
	// Ten round trips with an empty queue, delivery keeping up.
	for i := 0; i < 200; i++ {
		now = now.Add(5 * time.Millisecond)
		sent := c.Rate() * 0.005
		c.OnFeedback(now, Feedback{RTT: rtt, Sent: sent, Delivered: sent})
	}
	if grew := c.Rate() / start; grew < 8 {
		t.Errorf("ten round trips on an empty path grew the rate %.1f× (%.0f → %.0f Mbit/s), want ≥ 8×", grew, start/mbit, c.Rate()/mbit)
	}
}

func TestStartRate(t *testing.T) {
	tests := []struct {
		lim  Limits
		want float64
	}{
		{Limits{Target: 1000 * mbit}, 10 * mbit},
		{Limits{Target: 1000 * mbit, Start: 300 * mbit}, 300 * mbit},
		{Limits{Target: 100 * mbit, Start: 300 * mbit}, 100 * mbit}, // within the target
		{Limits{Target: 100 * mbit, Min: 50 * mbit, Start: 20 * mbit}, 50 * mbit},
	}
	for _, tc := range tests {
		if got := New(tc.lim, t0).Rate(); math.Abs(got-tc.want) > 1 {
			t.Errorf("New(%+v) starts at %.1f Mbit/s, want %.1f", tc.lim, got/mbit, tc.want/mbit)
		}
	}
}

func TestSearchStartsFromMeasuredCapacity(t *testing.T) {
	rtt := 100 * time.Millisecond
	step := 5 * time.Millisecond
	capacity := 190 * mbit
	for _, tc := range []struct {
		policy string
		jumps  bool
	}{{Fair, true}, {High, true}, {Low, false}} {
		c := New(Limits{Target: 1000 * mbit, Policy: tc.policy}, t0)
		start := c.Rate()
		now := t0.Add(step)
		c.OnFeedback(now, Feedback{RTT: rtt, Capacity: capacity})
		if !tc.jumps {
			if c.Rate() > start*1.1 || c.State().Capacity != 0 {
				t.Errorf("%s: went from %.0f to %.0f Mbit/s on a measured capacity; low searches from where it is", tc.policy, start/mbit, c.Rate()/mbit)
			}
			continue
		}
		if got := c.Rate(); got < capacity*capacityJump {
			t.Errorf("%s: after a capacity of %.0f Mbit/s the rate is %.0f, want at least %.0f", tc.policy, capacity/mbit, got/mbit, capacity*capacityJump/mbit)
		}
		// A later, different estimate is not taken: the first flight's is.
		now = now.Add(step)
		c.OnFeedback(now, Feedback{RTT: rtt, Capacity: 4 * capacity})
		if got := c.Rate(); got > capacity {
			t.Errorf("%s: a second estimate moved the rate to %.0f Mbit/s", tc.policy, got/mbit)
		}
		// Below the capacity the search grows by half a round trip; past it,
		// by a tenth, so its last round trip does not overshoot by half.
		for c.Rate() < capacity {
			now = now.Add(step)
			c.OnFeedback(now, Feedback{RTT: rtt})
		}
		if reached := now.Sub(t0); reached > 3*rtt {
			t.Errorf("%s: reached the capacity after %v, want within three round trips", tc.policy, reached)
		}
		at := c.Rate()
		now = feed(c, now, int(rtt/step), step, Feedback{RTT: rtt})
		if g := c.Rate() / at; g > 1.15 || g < 1.05 {
			t.Errorf("%s: one round trip past the capacity the rate grew %.2f×, want about 1.1×", tc.policy, g)
		}
	}
}

// A search that ended at three quarters of the measured capacity or more,
// and whose rate a long queue (a receiver's pause) then cut far below it,
// grows fast again once the queue is gone, up to three quarters of the
// capacity; past that, by a tenth a round trip.
func TestCutAfterSearchRegrowsToCapacity(t *testing.T) {
	rtt := 100 * time.Millisecond
	step := 5 * time.Millisecond
	capacity := 190 * mbit
	c := New(Limits{Target: 1000 * mbit}, t0)
	now := t0.Add(step)
	c.OnFeedback(now, Feedback{RTT: rtt, Capacity: capacity})
	// The sender sends what the rate allows: a queue ends the search only
	// once that is three quarters of the capacity.
	run := func(n int, q time.Duration) {
		for range n {
			now = now.Add(step)
			c.OnFeedback(now, Feedback{RTT: rtt, Queue: q, Sent: c.Rate() * step.Seconds()})
		}
	}
	for c.sendRate(now, rtt) < capacity*capacityShort {
		run(1, 0)
	}
	run(int(rtt/step), 60*time.Millisecond)
	if !c.State().Found {
		t.Fatal("a 60 ms queue for a round trip did not end the search")
	}
	run(int(2*rtt/step), 60*time.Millisecond)
	low := c.Rate()
	if low > capacity*capacityShort/1.5 {
		t.Fatalf("the rate after the pause is %.0f Mbit/s; the test needs it well below %.0f", low/mbit, capacity*capacityShort/mbit)
	}
	run(int(rtt/step), 0)
	if g := c.Rate() / low; g < 1.4 {
		t.Errorf("one round trip with no queue after the pause grew the rate %.2f×, want about 1.5× (searching speed)", g)
	}
	for c.Rate() < capacity*capacityShort {
		run(1, 0)
	}
	at := c.Rate()
	run(int(rtt/step), 0)
	if g := c.Rate() / at; g > 1.15 {
		t.Errorf("past three quarters of the capacity the rate still grew %.2f× a round trip, want about 1.1×", g)
	}
}

// A receiver that pauses early in a transfer (a process just started, a
// store slow with its first parts) shows a queue, and reports a delivery
// rate that trails, while the search still sends far below the capacity
// measured: it is not the path's limit. The search goes on and reaches the
// capacity within a few round trips of the pause's end, rather than ending
// there and climbing by a tenth a round trip.
func TestSearchOutlastsAPauseBelowCapacity(t *testing.T) {
	// A pausing receiver counts only a quarter of what the path delivers.
	path := newLaggedPath()
	c, rtt, step, capacity := path.c, path.rtt, path.step, path.capacity
	run := path.run
	run(int(2*rtt/step), Feedback{}, 1)
	run(1, Feedback{Capacity: capacity}, 1)
	before := c.Rate()
	run(int(rtt/2/step), Feedback{Queue: 30 * time.Millisecond}, 0.25)
	if st := c.State(); st.Found || st.Capacity != capacity {
		t.Fatalf("state after the pause %+v: the search ended on a queue while sending below %.0f Mbit/s", st, capacity*capacityShort/mbit)
	}
	low := c.Rate()
	if low < before {
		t.Errorf("the pause cut the rate from %.0f to %.0f Mbit/s", before/mbit, low/mbit)
	}
	var took time.Duration
	for took < 10*rtt && c.Rate() < capacity {
		run(1, Feedback{}, 1)
		took += step
	}
	if took > 2*rtt {
		t.Errorf("after the pause the rate took %v to grow from %.0f to %.0f Mbit/s (the capacity), want within two round trips",
			took, low/mbit, c.Rate()/mbit)
	}
	// Once it sends at the capacity, a queue that lasts ends the search.
	run(int(rtt/step), Feedback{Queue: 8 * time.Millisecond}, 1)
	if !c.State().Found {
		t.Error("a queue for a round trip while sending at the capacity did not end the search")
	}
}

// Delivery is what random loss leaves of the rate. A cut aims the rate at
// a share of the delivery rate, so it must add back what random loss
// takes, or at 2% loss every cut goes 2% deeper than meant; heavy loss
// (a path dropping what exceeds it) gets no such allowance.
func TestCutAllowsForRandomLoss(t *testing.T) {
	rtt := 100 * time.Millisecond
	step := 5 * time.Millisecond
	carried := 100 * mbit // what the path delivers
	for _, tc := range []struct {
		loss      float64
		allowance bool
	}{{0, true}, {0.02, true}, {lossyFrac * 2, false}} {
		c := New(Limits{Target: 1000 * mbit, Start: carried}, t0)
		now := t0
		report := func(n int, queue time.Duration) {
			for range n {
				now = now.Add(step)
				sent := c.Rate() * step.Seconds()
				c.OnFeedback(now, Feedback{RTT: rtt, Queue: queue, Sent: sent, Lost: sent * tc.loss, Delivered: carried * step.Seconds()})
			}
		}
		report(10, fairQueue/2) // ends the search
		report(int(5*rtt/step), fairQueue/5)
		if st := c.State(); !st.Found || math.Abs(st.LossFrac-tc.loss) > 0.001 || st.DeliveryMax < carried*0.99 {
			t.Fatalf("loss %g: state %+v, the test needs the search over, the loss and the delivery rate measured", tc.loss, st)
		}
		queue := 30 * time.Millisecond
		report(1, queue)
		excess := float64(queue-fairQueue) / float64(2*rtt)
		want, why := carried*(1-excess), "the delivery rate less the excess queue's share"
		if tc.allowance {
			want, why = want/(1-tc.loss), why+", plus what random loss takes"
		}
		if got := c.Rate(); math.Abs(got-want)/want > 0.002 {
			t.Errorf("loss %g: a %v queue cut the rate to %.2f Mbit/s, want %.2f (%s)", tc.loss, queue, got/mbit, want/mbit, why)
		}
	}
}

// The search overshoots the path (its signal comes a round trip late). The
// cut that drains the queue it built must aim at what the path carries,
// not at the delivery rate of the windows behind it, which trails a rate
// that grew 1.5× a round trip; and once the queue has drained, the rate
// must go back to the path's rather than climb from the cut. In the fluid
// model, for a first transfer and one that starts from a memory: the
// lowest rate after the search, how soon the rate is back once the queue
// is empty, and the share of the link used in the 15 round trips after
// the search.
func TestFluidSearchEndKeepsThePathFull(t *testing.T) {
	for _, rtt := range []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond} {
		for _, start := range []float64{0, 90 * mbit} {
			name := fmt.Sprintf("rtt %v, start %.0f Mbit/s", rtt, start/mbit)
			link := fluidLink{capacity: 196 * mbit, buffer: 196 * mbit * rtt.Seconds(), rtt: rtt}
			c := New(Limits{Target: 1000 * mbit, Start: start}, t0)
			var rates, queues []float64
			end := -1
			link.trace = func(ms int, rs []float64, q float64) {
				rates, queues = append(rates, rs[0]), append(queues, q)
				if end < 0 && c.State().Found {
					end = ms
				}
			}
			span := int(15 * rtt / time.Millisecond)
			link.run([]*Controller{c}, 5*time.Second)
			if end < 0 || end+span > len(rates) {
				t.Fatalf("%s: the search ended at %d ms of %d: the test needs it over with 15 round trips to go", name, end, len(rates))
			}
			after := rates[end : end+span]
			if low := slices.Min(after); low < 0.73*link.capacity {
				t.Errorf("%s: after the search the rate fell to %.0f%% of the link, want ≥ 73%%", name, 100*low/link.capacity)
			}
			empty := slices.Index(queues[end:end+span], 0)
			if empty < 0 {
				t.Fatalf("%s: the queue the search built never drained", name)
			}
			back := slices.IndexFunc(after[empty:], func(r float64) bool { return r >= 0.95*link.capacity })
			if lag := time.Duration(back) * time.Millisecond; back < 0 || lag > 3*rtt/2 {
				t.Errorf("%s: once the queue was empty the rate took %v to reach 95%% of the link (-1ms: not within 15 round trips), want within 1.5 round trips", name, lag)
			}
			carried := 0.0
			for _, r := range after {
				carried += min(r, link.capacity)
			}
			if share := carried / (link.capacity * float64(span)); share < 0.88 {
				t.Errorf("%s: the 15 round trips after the search used %.1f%% of the link, want ≥ 88%%", name, share*100)
			}
		}
	}
}
