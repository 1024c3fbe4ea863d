package linkem

import (
	"math/rand/v2"
)

// verdict is what a shaper decided for one packet.
type verdict uint8

const (
	pass     verdict = iota // forward at its due time
	lost                    // random loss
	overflow                // drop-tail queue full
)

// shaper decides, for each packet entering one direction, whether it is
// lost or dropped and when it leaves. It holds no packets and reads no
// clock: callers pass the arrival time, in nanoseconds on any monotonic
// scale, and get back the due time on the same scale. Arrival times must
// not decrease. A shaper is not safe for concurrent use.
type shaper struct {
	link  Link
	limit int64 // drop-tail limit in bytes, used when link.Rate > 0
	rng   *rand.Rand

	bad  bool  // Gilbert model state: losing
	busy int64 // when the bottleneck finishes serializing the last accepted packet
	rem  int64 // remainder of size·8e9 / rate carried between packets, so that the long-run rate is exact
	last int64 // due time of the last accepted packet (FIFO order)
}

func newShaper(l Link, limit int64, seed uint64) *shaper {
	return &shaper{link: l, limit: limit, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// backlog returns the bytes accepted but not yet serialized at now.
func (s *shaper) backlog(now int64) int64 {
	if s.link.Rate <= 0 || s.busy <= now {
		return 0
	}
	b := float64(s.busy-now) * float64(s.link.Rate) / 8e9
	return int64(b + 0.999999) // round up: a started byte still occupies the queue
}

// admit offers a packet of size bytes arriving at now. For a passed packet
// it returns the due time and the bytes waiting for the bottleneck,
// this packet included.
func (s *shaper) admit(now int64, size int) (due, queued int64, v verdict) {
	if s.lose() {
		return 0, 0, lost
	}
	depart := now
	if r := int64(s.link.Rate); r > 0 {
		queued = s.backlog(now)
		if queued > 0 && queued+int64(size) > s.limit {
			return 0, queued, overflow
		}
		queued += int64(size)
		start := s.busy
		if start <= now {
			start, s.rem = now, 0
		}
		num := int64(size)*8e9 + s.rem
		s.busy = start + num/r
		s.rem = num % r
		depart = s.busy
	}
	d := int64(s.link.Delay)
	if j := int64(s.link.Jitter); j > 0 {
		d += s.rng.Int64N(2*j+1) - j
		d = max(d, 0)
	}
	due = max(depart+d, s.last)
	s.last = due
	return due, queued, pass
}

// lose draws whether the next packet is lost.
func (s *shaper) lose() bool {
	p := s.link.Loss
	if p <= 0 {
		s.bad = false
		return false
	}
	if s.link.LossBurst <= 1 {
		return s.rng.Float64() < p
	}
	// Gilbert model: bad→good with r = 1/burst (so bad runs last burst
	// packets on average), good→bad with q chosen so that the stationary
	// share of bad q/(q+r) equals p.
	r := 1 / s.link.LossBurst
	q := p * r / (1 - p)
	u := s.rng.Float64()
	if s.bad {
		if u < r {
			s.bad = false
		}
	} else if u < q {
		s.bad = true
	}
	return s.bad
}
