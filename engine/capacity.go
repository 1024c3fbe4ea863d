package engine

import (
	"slices"
	"time"
)

// trainMeter estimates a path's capacity the way packet-train probes do:
// packets that leave the sender back to back arrive spread out by the
// narrowest link on the way (and by whatever else crosses it meanwhile), so
// the bytes of such a run over the time between its first and last arrival
// are the rate that link gives. A sender's first flight is such a run (the
// pacer starts with a full bucket); so is every batch it sends until the
// receiver has an estimate (trainBurst packets), and any burst after a
// pause.
//
// Arrival times are the kernel's receive timestamps, so a receiver that was
// not scheduled does not compress or stretch the spread. Something on the
// way may still do so (a forwarder that was not scheduled, interrupt
// moderation): it holds part of a run and lets it go at once, so the gaps
// are no longer alike. Or it holds a whole run and lets it go at its own
// pace, evenly but faster than the path; then the run's first packet came
// late. A run is believed only if its gaps are alike and its first
// packet's one-way delay was within trainQueue, or half the run's spread,
// of the least seen: a run that met a queue (ours, or a forwarder's that
// held it whole) gives none. Holds under trainQueue still pass, since a
// forwarder on a busy machine delays first flights by 1-5 ms. Without
// kernel timestamps (every packet of a batch read at one instant) no run
// spreads enough to give an estimate. Read loop only.
type trainMeter struct {
	sent  int64     // send time of the run's first packet, µs of the sender's clock
	first time.Time // arrival of the run's first packet
	last  time.Time // arrival of the latest group
	// Payload bytes of the run's arrival groups before last's, and of
	// last's. With GRO, several datagrams come up together stamped with
	// the arrival of the first of them, the others having arrived between
	// that and the next group: the bytes that arrived in the span from
	// first to last are, one datagram for another, those of every group
	// before last's.
	before, at int
	gaps       []time.Duration // between successive groups, at most trainMaxGroups-1
	sorted     [trainMaxGroups]time.Duration
	done       bool    // the run was judged
	rate       float64 // the latest estimate, payload bytes per second; 0 if none
	// One-way delay (arrival less send time in µs, the two clocks as they
	// are) of the run's first packet, and the least of any packet so far.
	owd, minOWD int64
}

// A run is packets sent within trainSpread of its first one, arriving in
// order. It is judged once it spans trainSpan, or when it ends, if it holds
// trainMin arrival groups by then: a shorter spread says more about timer
// and interrupt granularity than about the path. On a path too fast to
// spread a first flight that far (about 450 Mbit/s and up with 1400-byte
// payloads and the smallest flight), there is no estimate, and the sender
// searches as it would without one. Only a run's first trainMaxGroups
// groups are looked at.
const (
	trainSpread    = 50 // µs
	trainMin       = 8
	trainSpan      = 200 * time.Microsecond
	trainMaxGroups = 64
	// As much queueing as the rate controller's search takes for an empty
	// path (half its 10 ms target).
	trainQueue = 5 * time.Millisecond
	// Packets a sender sends at once while the receiver has no estimate:
	// as many as a first flight holds, twice trainMin.
	trainBurst = 16
)

// add records a data packet of n payload bytes sent at sent (µs) and
// received at at.
func (m *trainMeter) add(sent int64, n int, at time.Time) {
	owd := at.UnixMicro() - sent
	if m.first.IsZero() || owd < m.minOWD {
		m.minOWD = owd
	}
	if m.first.IsZero() || sent < m.sent || sent-m.sent > trainSpread || at.Before(m.last) {
		m.judge()
		m.sent, m.first, m.last, m.before, m.at, m.gaps, m.done = sent, at, at, 0, n, m.gaps[:0], false
		m.owd = owd
		return
	}
	if m.done || len(m.gaps) == trainMaxGroups-1 {
		return
	}
	if at.Equal(m.last) {
		m.at += n
		return
	}
	if m.gaps == nil {
		m.gaps = make([]time.Duration, 0, trainMaxGroups-1)
	}
	m.gaps = append(m.gaps, at.Sub(m.last))
	m.before += m.at
	m.at, m.last = n, at
}

// estimate returns the latest estimate, judging the current run first if
// it is long enough.
func (m *trainMeter) estimate() float64 {
	if !m.done && m.last.Sub(m.first) >= trainSpan {
		m.judge()
	}
	return m.rate
}

// judge takes the current run's estimate if its gaps are alike: the
// median at least half the mean (not a run mostly held and let go at
// once), and none more than a quarter of the span (not one held in the
// middle); and if its first packet was not held more than trainQueue or
// half the span (not a run held whole and let go faster than the path).
func (m *trainMeter) judge() {
	if m.done || len(m.gaps) < trainMin-1 {
		return
	}
	m.done = true
	span := m.last.Sub(m.first)
	if span < trainSpan {
		return
	}
	if held := time.Duration(m.owd-m.minOWD) * time.Microsecond; held > max(span/2, trainQueue) {
		return
	}
	g := append(m.sorted[:0], m.gaps...)
	slices.Sort(g)
	mean := span / time.Duration(len(g))
	if g[len(g)/2] < mean/2 || g[len(g)-1] > span/4 {
		return
	}
	m.rate = float64(m.before) / span.Seconds()
}
