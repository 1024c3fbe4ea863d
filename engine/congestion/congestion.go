// Package congestion decides how fast a sender may go: a delay-based rate
// controller with Aspera's four policies, and a pacer that spreads packets
// out at that rate.
//
// The controller takes its signal from queueing delay, measured by the
// receiver as one-way delay minus its recent minimum. Below a policy's
// target delay the rate grows (multiplicatively while the queue is nearly
// empty, so a long fat path fills in a few round trips; additively near the
// target, which makes competing flows converge to fair shares); above it the
// rate shrinks in proportion to the excess, below what the path delivered
// while it was full. The search that opens a transfer ends on a queue only
// once it sends at least three quarters of the capacity its first flight
// measured, if one did: below that, a queue is something on the way (or
// the sender) held up for a moment, not the path's limit. A queue too
// brief to end the search leaves the rate as it is. The search
// overshoots the path by the round trip its signal lags; once the queue
// it built has drained, the rate goes back to what the path delivered
// while full rather than climbing from the cut. A queue that stands above
// the target for a second or more although the rate came down is someone
// else's, typically a loss-based TCP flow that fills the buffer whatever
// others do: fair and high then aim above that standing queue rather than
// yield to it for good (and look again every few seconds), so they keep a
// share beside such a flow; low keeps yielding. Random packet loss does not
// move the rate: loss is repaired, not read as congestion. Only heavy loss
// together with a delivery rate far below the sending rate (a receiver or a
// path that cannot keep up) caps the rate near what gets through; on a
// path that loses heavily without a queue, a probe now and then tells
// random loss from a shallow buffer overflowing, and the cap sits just
// above what the path carries.
//
// Every method takes the current time as an argument; nothing here reads a
// clock, so the controller is deterministic under test.
package congestion

import (
	"math"
	"sort"
	"time"

	"github.com/chute/chute/engine/internal/window"
)

// Policy names, as in Aspera.
const (
	Fair  = "fair"
	Fixed = "fixed"
	High  = "high"
	Low   = "low"
)

// Limits are what the user asked for. Rates are in bytes per second.
type Limits struct {
	Target float64 // the most to send; must be > 0
	Min    float64 // the least to send under congestion
	Policy string  // Fair, Fixed, High or Low ("" is Fair)
	// Start, if > 0, is the rate to begin at (within Min and Target)
	// instead of New's default: for a path whose rate is known from
	// earlier transfers. The search for the path's rate runs from there.
	Start float64
}

// Tuning constants. The delay targets are small enough to sit well inside
// the buffers of real paths (and the socket buffers of a loopback
// receiver), large enough to ride out scheduling jitter.
const (
	fairQueue = 10 * time.Millisecond // target queueing delay of fair and high
	lowQueue  = 3 * time.Millisecond  // low yields as soon as anyone queues more

	minInterval = 10 * time.Millisecond // the shortest "round trip" the law scales by
	maxStep     = 50 * time.Millisecond // longer gaps between feedback count as this

	startGrowth = 0.5 // relative growth per round trip while searching for the path's rate
	// A measured capacity lets the search skip its climb: it starts from
	// capacityJump of it (less than the whole, since others may be using
	// the path, and a burst's spread can read high), goes on growing, and
	// ends on the queue as usual. Below capacityShort of it with an empty
	// queue, the rate grows as fast as while searching.
	capacityJump  = 0.5
	capacityShort = 0.75
	// The search ends on a queue of half the target that lasts searchQueue
	// (a quarter of a round trip, at least): a single report of one is more often
	// the receiver pausing (a disk write, the scheduler) than the path.
	searchQueue = 10 * time.Millisecond
	// After the search, a queue that stays below a quarter of the target
	// for emptyRTTs round trips (emptyWindow at least) means the path has
	// room the search did not find: grow as fast as while searching.
	emptyRTTs   = 4
	emptyWindow = 100 * time.Millisecond
	growth      = 0.1  // relative growth per round trip with an empty queue, once a queue was seen
	shrink      = 0.5  // the largest relative cut per round trip
	floorBps    = 64e3 // never below 64 kB/s, whatever Min says, so feedback keeps coming

	// additive is the extra growth per round trip, in bytes per second,
	// that makes competing flows converge to shares in proportion to it: at
	// equilibrium each flow's cut, shrink·x·(q/q0−1), equals its additive
	// growth, and all flows see the same q. High doubles it.
	additive = 50e3

	// The rate never runs far ahead of what the receiver reports delivered
	// (its recent maximum): twice while searching (or far below the
	// capacity measured, with no queue), a quarter more normally,
	// and 20% more once loss passes lossyFrac. Random loss p
	// leaves delivery at (1-p) of the rate, so the ceiling still sits above
	// the rate for p up to 16%; a receiver or path that drops whatever
	// exceeds its capacity, without building a queue first, holds the rate
	// near that capacity (closer once a probe has told its random loss
	// apart: see probeMargin).
	startHeadroom = 2.0
	headroom      = 1.25
	lossyHeadroom = 1.2
	lossyFrac     = 0.05
	deliveryWin   = 250 * time.Millisecond // at least; four round trips on long paths

	// Heavy loss with no queue is either random loss or a buffer too
	// shallow to show a queue (a switch, a short forwarder queue): the
	// ceiling alone cannot tell them apart, and at lossyHeadroom a shallow
	// buffer drops a sixth of what is sent. So the controller asks the
	// path: for one loss window (after probeSettle, two round trips at
	// least, for the loss reports to catch up) it sends what the last
	// window delivered, and takes what that window lost for the path's
	// random loss. Until the next probe (probeEvery later, probeRTTs round
	// trips at least), a window that loses more than that by half the
	// margin (the path is full) puts the ceiling probeMargin above the
	// delivery rate, allowing for that random loss (lossyHeadroom at
	// most). A queue of half the target that lasts shallowQueue (two round
	// trips at least) ends this: the delay law has its signal there.
	probeMargin  = 1.03
	probeSettle  = 20 * time.Millisecond
	probeEvery   = 5 * time.Second
	probeRTTs    = 50
	shallowQueue = 50 * time.Millisecond

	// A queue that stays above the target for competeWindow (ten round
	// trips, at least) although the law above drains its own excess in
	// two is someone else's: a loss-based flow (TCP) that fills the
	// buffer whatever we do. Yielding to it would starve us, so fair and
	// high then aim at that standing queue plus their own target, for at
	// most competeHold, after which the target drops back and the test is
	// made again; a queue of our own making drains then, and a
	// competitor's does not. low always yields.
	competeWindow = time.Second
	competeRTTs   = 10
	competeHold   = 5 * time.Second
	competeHoldRT = 50
)

// Controller is one sender's rate controller. It is not safe for concurrent
// use.
type Controller struct {
	lim  Limits
	rate float64 // bytes per second
	last time.Time

	// Delivery accounting for the loss cap, over a sliding window.
	winStart      time.Time
	winSent       float64
	winDelivered  float64
	winLost       float64
	delivered     float64 // delivery rate of the last full window
	lossFrac      float64
	found         bool         // a queue or loss was seen: the search phase is over
	capacity      float64      // the capacity the search used; 0 if none
	delivery      float64      // delivery rate over the last two round trips, bytes per second
	got           runningTotal // bytes delivered, over the last two round trips
	firstDelivery time.Time
	deliveryMax   window.Max[float64]
	sent          runningTotal // over the last round trip
	queuedSince   time.Time    // since when the search has seen a queue; zero if it has not
	// Since when every report has shown a queue of at least a quarter of
	// the target (zero if the last did not): the path has been full, and
	// what it delivered since is its rate.
	fullSince time.Time
	// From the end of the search until its overshoot has drained: the
	// most the path delivered while full, meanwhile.
	draining bool
	fullRate float64

	// The queue's maximum since the search, to notice an empty path.
	queueMax      window.Max[time.Duration]
	queueMaxSince time.Time

	// A path that loses heavily without a queue (see probeMargin).
	probeFrom  time.Time // when the current probe began; zero if none
	lastProbe  time.Time // when the last probe began
	shallow    bool      // a probe has measured the path's random loss
	randomLoss float64   // the loss the last probe saw
	queuedAt   time.Time // since when reports show a queue of half the target; zero if the last did not

	// Competing with a flow that keeps a queue standing.
	queueMin     window.Min[time.Duration] // queueing delay's minimum over the compete window
	queueSince   time.Time                 // since when queueMin has samples
	compete      bool                      // aiming above someone else's standing queue
	competeAt    time.Time                 // when competing started
	competeFloor time.Duration             // the standing queue we found
}

// New returns a controller starting at a rate a slow path survives and a
// fast one leaves in a few round trips: a tenth of the target, at least
// the minimum, at most 10 Mbit/s unless the policy is fixed or Limits.Start
// says otherwise.
func New(lim Limits, now time.Time) *Controller {
	c := &Controller{last: now, winStart: now}
	c.SetLimits(lim)
	start := c.lim.Target / 10
	start = math.Min(start, 1.25e6)
	if lim.Start > 0 {
		start = lim.Start
	}
	c.rate = c.clamp(start)
	if c.lim.Policy == Fixed {
		c.rate = c.lim.Target
	}
	return c
}

// SetLimits changes target, minimum and policy; it takes effect at once.
func (c *Controller) SetLimits(lim Limits) {
	if lim.Policy == "" {
		lim.Policy = Fair
	}
	if lim.Target <= 0 {
		lim.Target = 1.25e9
	}
	if lim.Min > lim.Target {
		lim.Min = lim.Target
	}
	c.lim = lim
	if lim.Policy == Fixed {
		c.rate = lim.Target
	} else {
		c.rate = c.clamp(c.rate)
	}
}

// State is a snapshot of the controller's inputs, for logs.
type State struct {
	Rate, Delivery, DeliveryMax, LossFrac float64
	Capacity                              float64 // the measured capacity the search used; 0 if none
	Found                                 bool
	Competing                             time.Duration // someone else's standing queue we aim above; 0 if none
	Shallow                               float64       // the ceiling's headroom a probe of a queueless lossy path set; 0 if none
}

// State returns what the controller currently believes.
func (c *Controller) State() State {
	st := State{Rate: c.rate, Delivery: c.delivery, DeliveryMax: c.deliveryMax.Get(), LossFrac: c.lossFrac, Capacity: c.capacity, Found: c.found}
	if c.compete {
		st.Competing = c.competeFloor
	}
	st.Shallow = c.shallowHeadroom()
	return st
}

// WantsCapacity reports whether the search would use a capacity estimate
// it has not had yet: the sender should then send in bursts a receiver
// can measure the path by.
func (c *Controller) WantsCapacity() bool {
	return !c.found && c.capacity == 0 && c.lim.Policy != Fixed && c.lim.Policy != Low
}

// Limits returns the current limits.
func (c *Controller) Limits() Limits { return c.lim }

// Rate is the rate to send at now, in bytes per second.
func (c *Controller) Rate() float64 { return c.rate }

// Feedback is what the receiver reported since the last call.
type Feedback struct {
	Queue time.Duration // queueing delay the receiver measures
	RTT   time.Duration // the sender's smoothed round-trip time
	// Bytes since the last feedback, counted as the rate counts them:
	// sent, got by the receiver, declared lost.
	Sent      float64
	Delivered float64
	Lost      float64
	// Capacity is the path's rate as the receiver measured it from the
	// spread of a burst sent back to back, 0 if unknown. While searching,
	// fair and high start from capacityJump of it if that is faster.
	Capacity float64
}

// OnFeedback updates the rate from one receiver report.
func (c *Controller) OnFeedback(now time.Time, f Feedback) {
	dt := now.Sub(c.last)
	c.last = now
	c.account(now, f, dt)
	if c.lim.Policy == Fixed {
		c.rate = c.lim.Target
		return
	}
	if dt <= 0 {
		return
	}
	if dt > maxStep {
		dt = maxStep
	}
	rtt := max(f.RTT, minInterval)
	k := float64(dt) / float64(rtt) // this step's share of a round trip

	q0 := fairQueue
	add := additive
	switch c.lim.Policy {
	case High:
		add *= 2
	case Low:
		q0 = lowQueue
		add /= 4
	}
	if c.lim.Policy != Low {
		q0 += c.standingQueue(now, dt, f.Queue, f.RTT, q0)
	}
	q := float64(f.Queue) / float64(q0)
	switch {
	case f.Queue < q0/4:
		c.fullSince = time.Time{}
	case c.fullSince.IsZero():
		c.fullSince = now
	}
	if f.Capacity > 0 && c.WantsCapacity() {
		// Once: the first estimate comes from the sender's first flight,
		// which meets an empty path; later bursts meet a queue of our own,
		// and on a busy machine their spread reads high as often as low.
		c.capacity = f.Capacity
		c.rate = math.Max(c.rate, c.clamp(f.Capacity*capacityJump))
	}
	// A search that sends well below the capacity measured cannot have
	// filled the path: a queue then is something on the way held up for a
	// moment (a forwarder on a busy machine), or the sender itself was (a
	// store slow with the first parts), not the path's limit. It does not
	// end the search; heavy loss still does.
	underfilled := !c.found && c.capacity > 0 && c.sendRate(now, rtt) < c.capacity*capacityShort
	if !c.found {
		switch {
		case q < 0.5 || underfilled:
			c.queuedSince = time.Time{}
		case c.queuedSince.IsZero():
			c.queuedSince = now
		}
		if (!c.queuedSince.IsZero() && now.Sub(c.queuedSince) >= max(searchQueue, rtt/4)) || c.lossFrac > lossyFrac {
			c.found, c.draining, c.fullRate = true, true, 0
			c.queueMax = window.Max[time.Duration]{}
			c.queueMaxSince = now
		}
	}
	empty := false
	if c.found {
		win := max(emptyWindow, emptyRTTs*rtt)
		m := c.queueMax.Update(now, f.Queue, win)
		// Heavy loss without a queue is a path that drops what exceeds it
		// (see the ceiling below), not room.
		empty = now.Sub(c.queueMaxSince) >= win && m < q0/4 && c.lossFrac <= lossyFrac
	}
	switch {
	case q < 0.5:
		c.queuedAt = time.Time{}
	case c.queuedAt.IsZero():
		c.queuedAt = now
	case now.Sub(c.queuedAt) >= max(shallowQueue, 2*rtt):
		// A queue that lasts: the delay law has its signal.
		c.shallow, c.probeFrom = false, time.Time{}
	}
	if c.found && c.probeFrom.IsZero() && q < 0.5 &&
		((c.lossFrac > lossyFrac && q < 0.25) || c.shallow) &&
		(c.lastProbe.IsZero() || now.Sub(c.lastProbe) >= max(probeEvery, probeRTTs*rtt)) {
		c.probeFrom, c.lastProbe = now, now
	}
	dmax := 0.0
	if c.deliveryMature(now, f.RTT) {
		dmax = c.deliveryMax.Get()
	}
	// Far below the capacity measured with no queue at all: the search
	// ended on a receiver's pause, not on the path. Grow as fast as while
	// searching, and let the rate run as far ahead of delivery too: the
	// delivery rate trails the rate by a round trip or more (and a
	// receiver that paused counted less meanwhile), so a quarter above it
	// would hold the climb back to a fraction of the search's speed.
	// Heavy loss without a queue is a path that drops what exceeds it,
	// not room.
	short := c.capacity > 0 && c.rate < c.capacity*capacityShort && q < 0.25 && c.lossFrac <= lossyFrac
	if c.draining && q < 0.5 {
		// The search's overshoot has drained: go back to what the path
		// carried while full (sent, that is, less what random loss took),
		// not on from the cut that drained it, which sat below the path
		// by as much as the queue was deep.
		c.draining = false
		if c.fullRate > 0 {
			c.rate = math.Max(c.rate, c.fullRate/(1-c.lossAllowance()))
		}
	}
	if q < 1 {
		g := growth
		// Searching (below the capacity measured, if one was: like TCP's
		// slow-start threshold, it keeps the search's last round trip from
		// overshooting the path by half), on a path that stays empty, or
		// far below what the path carried lately (after a cut, a stall, a
		// pause): grow fast.
		searching := !c.found && (c.capacity == 0 || c.rate < c.capacity)
		if searching || empty || short || c.rate < dmax/2 {
			g = startGrowth
		}
		c.rate *= 1 + g*(1-q)*k
		c.rate += add * k
	} else if c.found {
		// While searching, a queue that has not lasted long enough to end
		// the search holds the rate: the delivery rate the cut aims below
		// still trails the search by a round trip or more, so a cut on one
		// report of a queue (a forwarder held up for a moment) would halve
		// the rate, with the path not yet full.
		//
		// A standing queue means the path delivers less than we send: go
		// below what it delivers by enough that the excess queue drains in
		// about two round trips. This is a set point, not a step, so the
		// round trip for which the delay signal lags does not add up to a
		// deep cut; under a queue someone else keeps standing, the delivery
		// rate follows ours down, and the rate decays by that factor per
		// round trip.
		excess := math.Min(float64(f.Queue-q0)/float64(2*rtt), shrink)
		if c.lim.Policy == Low {
			excess = math.Min(2*excess, shrink)
		}
		// The reference is the recent maximum delivery rate: what the path
		// carried before the queue formed. The smoothed rate would follow a
		// receiver's stall down to nothing. Delivery is what is left after
		// random loss, which takes its share of the rate wherever it
		// strikes (before the bottleneck or after it): to have the path
		// carry the set point, send that much more. Heavy loss is a path
		// that drops what exceeds it, not random loss: no allowance.
		ref := dmax
		if ref > 0 {
			full := c.fullDelivery(now, rtt)
			if c.draining {
				c.fullRate = max(c.fullRate, full)
			}
			ref = max(ref, full)
		}
		if ref > 0 {
			p := c.lossAllowance()
			c.rate = math.Min(c.rate, ref*(1-excess)/(1-p))
		} else {
			c.rate *= 1 - excess*k
		}
	}
	// The ceiling needs a delivery rate worth the name: in the search
	// phase, early samples cover a handful of packets, so it applies there
	// only once loss shows the path is already overrun.
	if dmax > 0 && (c.found || c.lossFrac > lossyFrac) {
		h, ref := headroom, dmax
		switch {
		case !c.probeFrom.IsZero() && c.delivered > 0:
			h, ref = 1, c.delivered
		case c.shallow && c.lossFrac > c.randomLoss+(probeMargin-1)/2:
			// Losing more than the probe did: the path is full.
			h = c.shallowHeadroom()
		case !c.found || empty || short:
			h = startHeadroom
		case c.lossFrac > lossyFrac:
			h = lossyHeadroom
		}
		if c.rate > ref*h {
			c.rate = ref * h
		}
	}
	c.rate = c.clamp(c.rate)
}

// shallowHeadroom is the ceiling's headroom over delivery on a path whose
// buffer is too shallow to show a queue: probeMargin above what the
// probe's random loss leaves of the rate, lossyHeadroom at most; 0 if no
// probe has measured the path.
func (c *Controller) shallowHeadroom() float64 {
	if !c.shallow {
		return 0
	}
	return math.Min(lossyHeadroom, probeMargin/(1-math.Min(c.randomLoss, 0.5)))
}

// lossAllowance is the share of the rate random loss takes: the loss rate
// up to lossyFrac, none beyond (heavy loss is a path dropping what exceeds
// it, not random loss).
func (c *Controller) lossAllowance() float64 {
	if c.lossFrac > lossyFrac {
		return 0
	}
	return c.lossFrac
}

// fullDelivery is the delivery rate since the path has been full (over two
// round trips at most), or 0 if it has not been full for a quarter of a
// round trip (searchQueue at least). It is the path's rate while the
// windowed delivery rate still trails a rate that grew: at the end of the
// search, it read what was sent one to three round trips earlier.
func (c *Controller) fullDelivery(now time.Time, rtt time.Duration) float64 {
	if c.fullSince.IsZero() {
		return 0
	}
	from := c.fullSince
	if from.Before(now.Add(-2 * rtt)) {
		from = now.Add(-2 * rtt)
	}
	if now.Sub(from) < max(searchQueue, rtt/4) {
		return 0
	}
	return c.got.since(now, from, max(searchQueue, rtt/4))
}

// sendRate is what the sender sent over the last round trip (50 ms at
// least), or the rate if that is not known yet.
func (c *Controller) sendRate(now time.Time, rtt time.Duration) float64 {
	if r, ok := c.sent.rate(now, max(rtt, 50*time.Millisecond)/2); ok {
		return r
	}
	return c.rate
}

// standingQueue tracks the queueing delay's minimum over the compete
// window and returns the standing queue someone else keeps, or 0.
func (c *Controller) standingQueue(now time.Time, dt, queue, rtt, q0 time.Duration) time.Duration {
	win := max(competeWindow, competeRTTs*rtt)
	if c.queueSince.IsZero() {
		c.queueSince = now
	}
	floor := c.queueMin.Update(now, queue, win)
	full := now.Sub(c.queueSince) >= win
	switch {
	case !c.compete && full && floor > q0*3/2:
		c.compete, c.competeAt, c.competeFloor = true, now, floor
	case c.compete && (floor <= q0/2 || now.Sub(c.competeAt) > max(competeHold, competeHoldRT*rtt)):
		// Time to look again (or the queue went): measure afresh.
		c.compete = false
		c.queueMin = window.Min[time.Duration]{}
		c.queueSince = now
	case c.compete && floor < c.competeFloor:
		c.competeFloor = floor
	case c.compete:
		// Follow a competitor's queue as it grows, slowly: if the queue
		// is in fact ours, this ratchets it up by at most half the
		// target per window until the next look.
		step := time.Duration(float64(q0/2) * float64(dt) / float64(win))
		c.competeFloor = min(floor, c.competeFloor+step)
	}
	if c.compete {
		return c.competeFloor
	}
	return 0
}

// OnSilence tells the controller no feedback has come for d although data
// is outstanding: the path may be gone or badly congested. The rate halves
// for each round trip of silence, down to the minimum.
func (c *Controller) OnSilence(now time.Time, d, rtt time.Duration) {
	c.last = now
	if c.lim.Policy == Fixed {
		return
	}
	rtt = max(rtt, minInterval)
	c.rate = c.clamp(c.rate * math.Pow(0.5, float64(d)/float64(rtt)))
}

// deliveryMature reports whether delivery has been measured over a full
// window: early in a transfer the window still holds the time before data
// flowed, and reads low.
func (c *Controller) deliveryMature(now time.Time, rtt time.Duration) bool {
	return !c.firstDelivery.IsZero() && now.Sub(c.firstDelivery) >= max(2*rtt, 50*time.Millisecond)
}

func (c *Controller) account(now time.Time, f Feedback, dt time.Duration) {
	if f.Delivered > 0 && c.firstDelivery.IsZero() {
		c.firstDelivery = now
	}
	// The delivery rate is over the last two round trips, and at least
	// 50 ms: a burst of acks after a stall at either end must not read as
	// a faster path.
	span := max(2*f.RTT, 50*time.Millisecond)
	c.got.add(now, f.Delivered, span)
	if r, ok := c.got.rate(now, span/2); ok {
		c.delivery = r
		c.deliveryMax.Update(now, c.delivery, max(4*f.RTT, deliveryWin))
	}
	if !c.found {
		// What was sent matters to the search only.
		c.sent.add(now, f.Sent, max(f.RTT, 50*time.Millisecond))
	}
	c.winSent += f.Sent
	c.winDelivered += f.Delivered
	c.winLost += f.Lost
	win := now.Sub(c.winStart)
	if win < max(2*f.RTT, 100*time.Millisecond) {
		return
	}
	c.delivered = c.winDelivered / win.Seconds()
	if c.winSent > 0 {
		c.lossFrac = math.Min(1, c.winLost/c.winSent)
	}
	if !c.probeFrom.IsZero() && !c.winStart.Before(c.probeFrom.Add(max(probeSettle, 2*f.RTT))) {
		// A window sent at the delivery rate: what it lost is random.
		c.shallow, c.randomLoss = true, c.lossFrac
		c.probeFrom = time.Time{}
	}
	c.winStart, c.winSent, c.winDelivered, c.winLost = now, 0, 0, 0
}

func (c *Controller) clamp(r float64) float64 {
	lo := math.Max(c.lim.Min, floorBps)
	if lo > c.lim.Target {
		lo = c.lim.Target
	}
	return math.Max(lo, math.Min(r, c.lim.Target))
}

// Pacer spreads sending out in time: a token bucket filled at the rate,
// holding at most a burst's worth. A pacer given a catch-up horizon
// (SetCatchUp) also keeps, up to that much time at the rate, the
// allowance a sender missed while it was not running, and lets it be made
// up at catchUpPeak times the rate: a sender held to a fixed rate then
// keeps its average through scheduling stalls, without sending the debt
// in one burst.
type Pacer struct {
	rate    float64 // bytes per second
	burst   float64 // bytes: the most sent at once
	horizon time.Duration
	credit  float64 // allowance, capped at the larger of burst and horizon at the rate
	peak    float64 // allowance at catchUpPeak times the rate, capped at burst
	last    time.Time
	unused  float64 // bytes of allowance lost to the cap, all told
}

// The most a pacer lets a sender send at once: the larger of burstTime at
// the rate and minBurstBytes. catchUpPeak is how much faster than the
// rate a pacer with a catch-up horizon makes up missed allowance.
const (
	burstTime     = 8 * time.Millisecond
	minBurstBytes = 16 * 1500
	catchUpPeak   = 1.5
)

// NewPacer returns a pacer at rate bytes per second, starting with a full
// bucket.
func NewPacer(rate float64, now time.Time) *Pacer {
	p := &Pacer{last: now}
	p.SetRate(rate)
	p.credit, p.peak = p.burst, p.burst
	return p
}

// SetRate changes the rate; tokens already earned are kept (up to the new
// caps).
func (p *Pacer) SetRate(rate float64) {
	p.rate = rate
	p.burst = math.Max(rate*burstTime.Seconds(), minBurstBytes)
	p.credit = math.Min(p.credit, p.creditCap())
	p.peak = math.Min(p.peak, p.burst)
}

// SetCatchUp sets how much missed allowance, in time at the rate, the
// pacer keeps for the sender to make up; 0 keeps none beyond the burst.
func (p *Pacer) SetCatchUp(horizon time.Duration) {
	p.horizon = horizon
	p.credit = math.Min(p.credit, p.creditCap())
}

func (p *Pacer) creditCap() float64 {
	return math.Max(p.burst, p.rate*p.horizon.Seconds())
}

func (p *Pacer) refill(now time.Time) {
	dt := now.Sub(p.last).Seconds()
	if dt <= 0 {
		return
	}
	p.last = now
	c := p.credit + dt*p.rate
	if lim := p.creditCap(); c > lim {
		p.unused += c - lim
		c = lim
	}
	p.credit = c
	p.peak = math.Min(p.burst, p.peak+dt*p.rate*catchUpPeak)
}

// Burst is the most the pacer lets a sender send at once, in bytes.
func (p *Pacer) Burst() float64 { return p.burst }

// Unused is how many bytes the rate allowed that were not sent in time
// and were lost to the cap, all told: time the sender had nothing to
// send, or was not running.
func (p *Pacer) Unused() float64 { return p.unused }

// Available is how many bytes may be sent now.
func (p *Pacer) Available(now time.Time) float64 {
	p.refill(now)
	return math.Min(p.credit, p.peak)
}

// Spend takes n bytes from the bucket (it may go negative: the next send
// then waits longer).
func (p *Pacer) Spend(now time.Time, n float64) {
	p.refill(now)
	p.credit -= n
	p.peak -= n
}

// Wait is how long until n bytes may be sent.
func (p *Pacer) Wait(now time.Time, n float64) time.Duration {
	p.refill(now)
	var w float64
	if p.credit < n {
		w = (n - p.credit) / p.rate
	}
	if p.peak < n {
		w = math.Max(w, (n-p.peak)/(p.rate*catchUpPeak))
	}
	return time.Duration(w * float64(time.Second))
}

// timed is a value at a time.
type timed struct {
	at time.Time
	v  float64
}

// runningTotal counts bytes over time, for rates over a recent span. It
// keeps the total at each report: several reports may come at the same
// instant (one batch of acks), and none may be lost from the count.
type runningTotal struct {
	total float64
	hist  []timed // (time, total), in time order, the oldest at least span old
}

// add counts n bytes at now, and forgets what is older than span but for
// one sample, the base of rates over span.
func (r *runningTotal) add(now time.Time, n float64, span time.Duration) {
	r.total += n
	if k := len(r.hist); k == 0 || now.After(r.hist[k-1].at) {
		r.hist = append(r.hist, timed{now, r.total})
	} else {
		r.hist[k-1].v = r.total
	}
	i := 0
	for i+1 < len(r.hist) && now.Sub(r.hist[i+1].at) >= span {
		i++
	}
	if i > 0 {
		r.hist = append(r.hist[:0], r.hist[i:]...)
	}
}

// rate is bytes per second since the oldest sample kept, if that is at
// least age old.
func (r *runningTotal) rate(now time.Time, age time.Duration) (float64, bool) {
	if len(r.hist) == 0 {
		return 0, false
	}
	base := r.hist[0]
	if d := now.Sub(base.at); d >= age && d > 0 {
		return (r.total - base.v) / d.Seconds(), true
	}
	return 0, false
}

// since is bytes per second since the newest sample at or before from
// (the oldest kept, if none is), or 0 if that is less than age before
// now. A search, not a scan: it runs on many reports.
func (r *runningTotal) since(now, from time.Time, age time.Duration) float64 {
	if len(r.hist) == 0 {
		return 0
	}
	i := sort.Search(len(r.hist), func(i int) bool { return r.hist[i].at.After(from) })
	base := r.hist[max(i-1, 0)]
	if d := now.Sub(base.at); d >= age && d > 0 {
		return (r.total - base.v) / d.Seconds()
	}
	return 0
}
