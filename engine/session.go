package engine

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chute/chute/engine/congestion"
	"github.com/chute/chute/engine/internal/ranges"
	"github.com/chute/chute/engine/internal/window"
	"github.com/chute/chute/engine/udpio"
	"github.com/chute/chute/engine/wire"
)

// A session is one UDP association between a client and a server: one key
// per direction, one packet-number space per direction, one rate budget
// shared by every transfer on it. Both ends run the same code: each has a
// sending half (streams it sends, the packets in flight, the rate
// controller) and a receiving half (streams it receives, what to ack).
//
// Goroutines: the endpoint's read loop runs the receiving half and
// processes acks; the session's send loop builds, seals and writes data
// packets.
//
// Lock order: session.mu (sending half), then sendStream locks;
// session.rmu (receiving-stream table), then recvStream.mu. mu and rmu are
// never held together. Fields marked "read loop" are touched only by the
// endpoint's read goroutine.
type session struct {
	id    uint32
	ep    *endpoint
	log   *slog.Logger
	epoch time.Time // SendTime counts microseconds from here

	cipher      string
	sendKey     []byte
	packetSize  int // datagram size to send
	payloadSize int // payload bytes per data packet

	peer atomic.Pointer[netip.AddrPort]
	// onHello, if set, answers hellos (the server) or notes hello acks (the
	// client). It runs on the read loop.
	onHello func(s *session, h wire.Header, hello wire.Hello, from netip.AddrPort, now time.Time)

	// Control packets (acks, hellos) use numbers with the top bit set, data
	// packets numbers without it, so each has its own replay window.
	ctrlPN atomic.Uint64

	// Sending half.
	mu          sync.Mutex
	cc          *congestion.Controller
	pacer       *congestion.Pacer
	streams     map[uint32]*sendStream
	order       []*sendStream // round-robin order of streams with work
	rr          int
	dataPN      uint64 // next data packet number
	sent        sentRing
	inflight    *ranges.Set // data packet numbers in flight
	inflightB   int64       // payload bytes in flight
	rtt         rttStats
	largestAck  uint64
	lastAckAt   time.Time
	ackBytes    uint64 // the peer's cumulative received bytes, last seen
	sentSince   float64
	sentTotal   int64
	lostSince   float64
	ptoCount    int
	lostPNs     ranges.Set // recently declared lost, to spot spurious retransmissions
	queueFilter window.Min[time.Duration]
	lastQueue   time.Duration
	reorderPkts uint64 // packet threshold of loss detection
	lossTime8   int64  // time threshold of loss detection, in eighths of a round trip
	lastWiden   time.Time
	wake        chan struct{}
	sendClosed  bool
	counters    sessionCounters

	// Receiving half.
	opener    *wire.Sealer // read loop
	ackSealer *wire.Sealer // read loop
	dataWin   wire.ReplayWindow
	ctrlWin   wire.ReplayWindow
	rmu       sync.Mutex
	recv      map[uint32]*recvStream
	acks      ackState   // read loop
	owing     bool       // read loop: on the endpoint's list of sessions owing acks
	gone      ranges.Set // ids of streams received here and removed (under rmu)

	// Data for streams not registered yet, when holdEarly: a client sends
	// an upload's first bytes with its request, not a round trip later, and
	// they may come before the request is through. Held packets are
	// acknowledged only when their stream is registered (addRecv wakes the
	// read loop for that), so none is acknowledged and then thrown away.
	holdEarly  bool
	early      map[uint32][]earlyPacket // read loop
	earlyBytes int                      // read loop
	holding    atomic.Bool              // early is not empty

	done      chan struct{}
	closeOnce sync.Once
	loopDone  chan struct{}
}

type sessionCounters struct {
	authFailures atomic.Int64 // packets that failed authentication
	replayed     atomic.Int64 // packets dropped as replays
	badFrames    atomic.Int64 // authenticated packets with bad frames
	unknownStrm  atomic.Int64 // data for streams not open here
	earlyHeld    atomic.Int64 // packets held for a stream not yet open
	earlyDropped atomic.Int64 // ... and dropped unacknowledged (no room, or it never opened)
	dupBytes     atomic.Int64 // payload bytes received twice
	lostByOrder  atomic.Int64 // packets declared lost by the packet threshold
	lostByTime   atomic.Int64 // ... by the time threshold
	lostByPTO    atomic.Int64 // ... by a probe timeout
	spurious     atomic.Int64 // packets declared lost, then acked
	starved      atomic.Int64 // times a stream had nothing ready to send
	paced        atomic.Int64 // times the sender waited for the pacer
	batches      atomic.Int64 // sends of a batch of data packets
	dataPackets  atomic.Int64 // data packets sent
}

// sessionParams configures a session.
type sessionParams struct {
	id         uint32
	cipher     string
	sendKey    []byte
	recvKey    []byte
	packetSize int // datagram size; 0 means DefaultPacketSize
	limits     congestion.Limits
	peer       netip.AddrPort // known at once on the client; learnt from hellos on the server
	onHello    func(s *session, h wire.Header, hello wire.Hello, from netip.AddrPort, now time.Time)
	holdEarly  bool // hold data for streams not registered yet (the server's sessions)
}

// DefaultPacketSize is the default UDP payload size of data packets: it
// fits a 1500-byte MTU with IPv6 and a tunnel header to spare.
const DefaultPacketSize = 1400

func newSession(ep *endpoint, p sessionParams, log *slog.Logger) (*session, error) {
	if p.packetSize == 0 {
		p.packetSize = DefaultPacketSize
	}
	if p.packetSize < 256 || p.packetSize > maxDatagram {
		return nil, fmt.Errorf("packet size %d out of range (256–%d)", p.packetSize, maxDatagram)
	}
	opener, err := wire.NewSealer(p.cipher, p.recvKey)
	if err != nil {
		return nil, err
	}
	ackSealer, err := wire.NewSealer(p.cipher, p.sendKey)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	s := &session{
		id:          p.id,
		ep:          ep,
		log:         log.With("session", fmt.Sprintf("%08x", p.id)),
		epoch:       now,
		cipher:      p.cipher,
		sendKey:     p.sendKey,
		packetSize:  p.packetSize,
		payloadSize: p.packetSize - wire.ClearLen(wire.TypeData) - ackSealer.Overhead(),
		cc:          congestion.New(p.limits, now),
		streams:     map[uint32]*sendStream{},
		inflight:    &ranges.Set{},
		wake:        make(chan struct{}, 1),
		opener:      opener,
		ackSealer:   ackSealer,
		recv:        map[uint32]*recvStream{},
		onHello:     p.onHello,
		holdEarly:   p.holdEarly,
		done:        make(chan struct{}),
		loopDone:    make(chan struct{}),
	}
	s.pacer = congestion.NewPacer(s.cc.Rate(), now)
	s.pacer.SetCatchUp(catchUp(s.cc.Limits()))
	s.reorderPkts = lossPackets
	s.lossTime8 = 9
	s.rtt.init()
	s.ctrlPN.Store(dataNumbers)
	if p.peer.IsValid() {
		s.setPeer(p.peer)
	}
	if !ep.add(s) {
		return nil, errSessionTaken
	}
	go s.sendLoop()
	return s, nil
}

func (s *session) setPeer(a netip.AddrPort) {
	a = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
	old := s.peer.Load()
	if old != nil && *old == a {
		return
	}
	p := new(netip.AddrPort)
	*p = a
	s.peer.Store(p)
	if old == nil {
		s.signal() // a send loop may be waiting for somewhere to send
	}
}

// close ends the session: the send loop stops, streams fail with err.
func (s *session) close(err error) {
	s.closeOnce.Do(func() {
		s.ep.remove(s)
		close(s.done)
		<-s.loopDone
		s.mu.Lock()
		for _, st := range s.streams {
			st.finish(err)
		}
		s.mu.Unlock()
		s.rmu.Lock()
		for _, r := range s.recv {
			r.fail(err)
		}
		s.rmu.Unlock()
	})
}

// MaxObjectSize is the largest object a transfer carries: data packets
// hold 48-bit offsets.
const MaxObjectSize = wire.MaxOffset

// Packet numbers: data packets count up from 0, control packets (acks,
// hellos) from dataNumbers, so that no number repeats under a direction's
// key. Both stay below wire.MaxNumber: 2^47 data packets are years of
// sending at 10 Gbit/s, and a session that gets there ends its streams
// rather than reuse a number (errNumbersSpent).
const dataNumbers = 1 << 47

var (
	// errSessionTaken: a new session drew the id of a live one on the
	// same endpoint; the caller draws again.
	errSessionTaken = errors.New("session id in use")
	errNumbersSpent = fmt.Errorf("%w: the data session used every packet number it has; run the command again to resume on a new connection", ErrUnreachable)
)

// newSessionKeys returns a random session id and keys for both directions.
func newSessionKeys(cipher string) (id uint32, c2s, s2c []byte, err error) {
	n, err := wire.KeyLen(cipher)
	if err != nil {
		return 0, nil, nil, err
	}
	buf := make([]byte, 4+2*n)
	if _, err := rand.Read(buf); err != nil {
		return 0, nil, nil, err
	}
	return binary.BigEndian.Uint32(buf), buf[4 : 4+n], buf[4+n:], nil
}

// micros is the session clock in microseconds.
func (s *session) micros(now time.Time) int64 { return now.Sub(s.epoch).Microseconds() }

// ---- control packets -------------------------------------------------

// sendControl seals and sends one non-data packet.
func (s *session) sendControl(t wire.Type, body []byte, sealer *wire.Sealer) error {
	peer := s.peer.Load()
	if peer == nil {
		return errors.New("peer address unknown")
	}
	pn := s.ctrlPN.Add(1)
	var buf []byte
	if sealer == s.ackSealer {
		buf = s.acks.pkt[:0] // the read loop's own buffer
	}
	buf = wire.Header{Type: t, Session: s.id, Number: pn}.Append(buf)
	buf = sealer.Seal(buf, pn, body)
	if sealer == s.ackSealer {
		s.acks.pkt = buf
		s.acks.msg[0] = udpio.Message{Buf: buf, Addr: *peer}
		return s.ep.write(s.acks.msg[:])
	}
	return s.ep.write([]udpio.Message{{Buf: buf, Addr: *peer}})
}

// sendHello sends a hello (client) or hello ack (server). It may be called
// from any goroutine: it uses its own sealer.
func (s *session) sendHello(t wire.Type, h wire.Hello) error {
	sealer, err := wire.NewSealer(s.cipher, s.sendKey)
	if err != nil {
		return err
	}
	return s.sendControl(t, h.Append(nil), sealer)
}

// ---- receiving -------------------------------------------------------

// receive authenticates and handles one datagram on the read loop. It
// reports whether the session may owe an ack. dwell is how long the
// datagram waited in the socket's buffer before now (0 when the socket
// does not say).
func (s *session) receive(b []byte, from netip.AddrPort, now time.Time, dwell time.Duration) bool {
	h, err := wire.ParseHeader(b)
	if err != nil {
		s.counters.badFrames.Add(1)
		return false
	}
	win := &s.dataWin
	if h.Number >= dataNumbers {
		win = &s.ctrlWin
		if h.Type == wire.TypeData {
			s.counters.badFrames.Add(1)
			return false
		}
	} else if h.Type != wire.TypeData {
		s.counters.badFrames.Add(1)
		return false
	}
	if !win.Check(h.Number) {
		s.counters.replayed.Add(1)
		return false
	}
	body, err := s.opener.Open(b, h.Number, wire.ClearLen(h.Type))
	if err != nil {
		s.counters.authFailures.Add(1)
		return false
	}
	win.Accept(h.Number)
	switch h.Type {
	case wire.TypeData:
		dh, err := wire.ParseDataHeader(b[wire.HeaderLen:])
		if err != nil {
			s.counters.badFrames.Add(1)
			return false
		}
		s.setPeer(from)
		s.onData(h, dh, body, now, dwell)
		return true
	case wire.TypeAck:
		a, err := wire.ParseAck(body, s.acks.scratch)
		if err != nil {
			s.counters.badFrames.Add(1)
			return false
		}
		s.acks.scratch = a.Ranges
		s.onAck(a, now)
	case wire.TypeHello, wire.TypeHelloAck:
		hello, err := wire.ParseHello(body)
		if err != nil {
			s.counters.badFrames.Add(1)
			return false
		}
		if h.Type == wire.TypeHello {
			s.setPeer(from)
		}
		if s.onHello != nil {
			s.onHello(s, h, hello, from, now)
		}
	case wire.TypeClose:
		s.log.Info("peer closed the data session", "reason", string(body))
	}
	return false
}

// ackState is the receiving half's record of what to acknowledge.
type ackState struct {
	got          ranges.Set // received data packet numbers
	largest      uint64
	largestAt    time.Time
	pending      int       // ack-eliciting packets since the last ack
	firstPending time.Time // when the oldest of them arrived
	immediate    bool      // a gap was seen: ack at once
	packets      uint64    // cumulative data packets received
	bytes        uint64    // cumulative payload bytes received
	queueMin     int64     // smallest queueing delay seen since the last ack (µs), -1 if none
	owd          owdFilter
	train        trainMeter
	scratch      []wire.PNRange
	out          []wire.PNRange
	body, pkt    []byte // scratch for encoding and sealing acks
	msg          [1]udpio.Message

	// Socket-buffer dwell since the last report, for the debug log.
	dwellMax, dwellSum time.Duration
	dwellN             int
	dwellReport        time.Time
}

// Ack timing: at least every ackEvery packets, and no later than
// maxAckDelay after the first unacknowledged one.
const (
	ackEvery    = 16
	maxAckDelay = time.Millisecond
)

func (s *session) onData(h wire.Header, dh wire.DataHeader, payload []byte, now time.Time, dwell time.Duration) {
	a := &s.acks
	a.noteDwell(s, now, dwell)
	// The send time on this side's clock: the 32-bit stamp read against
	// it (see wire.SendTime).
	clock := s.micros(now)
	sent := clock - dh.SendTime.Since(clock)
	a.train.add(sent, len(payload), now.Add(-dwell))
	if len(s.early) > 0 {
		s.releaseEarly(now)
	}
	s.rmu.Lock()
	r := s.recv[dh.Stream]
	future := r == nil && s.holdEarly && !s.gone.Contains(int64(dh.Stream), 1)
	s.rmu.Unlock()
	if future {
		s.hold(h.Number, dh, payload, now)
		return
	}
	a.record(h.Number, len(payload), now)
	q := a.owd.sample(now, clock-sent)
	if a.queueMin < 0 || q < a.queueMin {
		a.queueMin = q
	}
	if r == nil {
		s.counters.unknownStrm.Add(1)
		return
	}
	if dup := r.deliver(dh.Offset, payload); dup > 0 {
		s.counters.dupBytes.Add(dup)
	}
}

// record notes a data packet to acknowledge, received at.
func (a *ackState) record(number uint64, n int, at time.Time) {
	if a.pending == 0 {
		a.firstPending = at
		a.queueMin = -1
	}
	if a.packets > 0 && number != a.largest+1 {
		a.immediate = true // a gap or reordering: let the sender know now
	}
	a.got.Add(int64(number), 1)
	if a.got.Count() > wire.MaxAckRanges {
		first, _ := a.got.First()
		a.got.Remove(first.Off, first.Len)
	}
	if number >= a.largest || a.packets == 0 {
		a.largest, a.largestAt = number, at
	}
	a.pending++
	a.packets++
	a.bytes += uint64(n)
}

// earlyPacket is a data packet held for a stream not registered yet.
type earlyPacket struct {
	number uint64
	off    int64
	at     time.Time
	data   []byte
}

// How much early data a session holds, and for how long: a request's
// round trip's worth on a fast path, and far longer than a request takes.
const (
	earlyMaxBytes = 16 << 20
	earlyMaxAge   = 5 * time.Second
)

// hold keeps a packet for a stream not registered yet, unacknowledged; with
// no room it is dropped, and the sender sends it again as lost. Read loop.
func (s *session) hold(number uint64, dh wire.DataHeader, payload []byte, now time.Time) {
	if s.earlyBytes+len(payload) > earlyMaxBytes {
		s.counters.earlyDropped.Add(1)
		return
	}
	if s.early == nil {
		s.early = map[uint32][]earlyPacket{}
	}
	s.early[dh.Stream] = append(s.early[dh.Stream], earlyPacket{number: number, off: dh.Offset, at: now, data: bytes.Clone(payload)})
	s.earlyBytes += len(payload)
	s.counters.earlyHeld.Add(1)
	s.holding.Store(true)
	// addRecv may have come between the lookup and holding: it saw
	// nothing held, so it did not wake the read loop.
	s.rmu.Lock()
	r := s.recv[dh.Stream]
	s.rmu.Unlock()
	if r != nil {
		s.releaseEarly(now)
	}
}

// releaseEarly delivers and acknowledges the held packets of streams now
// registered, and drops, unacknowledged, those held too long or for a
// stream that came and went. Read loop.
func (s *session) releaseEarly(now time.Time) {
	for id, pkts := range s.early {
		s.rmu.Lock()
		r := s.recv[id]
		gone := s.gone.Contains(int64(id), 1)
		s.rmu.Unlock()
		switch {
		case r != nil:
			for _, p := range pkts {
				s.acks.record(p.number, len(p.data), p.at)
				if dup := r.deliver(p.off, p.data); dup > 0 {
					s.counters.dupBytes.Add(dup)
				}
			}
			s.acks.immediate = true
		case gone || now.Sub(pkts[0].at) > earlyMaxAge:
			s.counters.earlyDropped.Add(int64(len(pkts)))
		default:
			continue
		}
		for _, p := range pkts {
			s.earlyBytes -= len(p.data)
		}
		delete(s.early, id)
	}
	s.holding.Store(len(s.early) > 0)
}

// noteDwell keeps track of how long data waited in the socket's buffer and
// logs it (with the queueing delay reported) every half second.
func (a *ackState) noteDwell(s *session, now time.Time, dwell time.Duration) {
	a.dwellMax = max(a.dwellMax, dwell)
	a.dwellSum += dwell
	a.dwellN++
	if a.dwellReport.IsZero() {
		a.dwellReport = now
	}
	if now.Sub(a.dwellReport) < 500*time.Millisecond {
		return
	}
	s.log.Debug("receiver", "dwell_max", a.dwellMax, "dwell_avg", a.dwellSum/time.Duration(a.dwellN),
		"packets", a.dwellN, "queue_min", time.Duration(max(a.queueMin, 0))*time.Microsecond)
	a.dwellMax, a.dwellSum, a.dwellN, a.dwellReport = 0, 0, 0, now
}

// ackDeadline is when the pending ack must go out; zero if none pending.
func (s *session) ackDeadline() time.Time {
	if s.acks.pending == 0 {
		return time.Time{}
	}
	if s.acks.immediate || s.acks.pending >= ackEvery {
		return s.acks.firstPending
	}
	return s.acks.firstPending.Add(maxAckDelay)
}

// flushAck sends an ack if one is due, and reports whether one is still
// pending (not yet due).
func (s *session) flushAck(now time.Time) bool {
	a := &s.acks
	if a.pending == 0 {
		return false
	}
	if !a.immediate && a.pending < ackEvery && now.Sub(a.firstPending) < maxAckDelay {
		return true
	}
	rs := a.got.Ranges()
	a.out = a.out[:0]
	for i := len(rs) - 1; i >= 0; i-- {
		a.out = append(a.out, wire.PNRange{Smallest: uint64(rs[i].Off), Largest: uint64(rs[i].End() - 1)})
	}
	queue := max(a.queueMin, 0)
	ack := wire.Ack{
		Ranges:   a.out,
		Delay:    uint32(min(now.Sub(a.largestAt).Microseconds(), 1<<31)),
		Queue:    uint32(min(queue, 1<<31)),
		Packets:  a.packets,
		Bytes:    a.bytes,
		Capacity: uint64(a.train.estimate()),
	}
	a.body = ack.Append(a.body[:0])
	if err := s.sendControl(wire.TypeAck, a.body, s.ackSealer); err != nil {
		s.log.Debug("sending ack failed", "err", err)
	}
	a.pending, a.immediate = 0, false
	return false
}

// owdFilter estimates queueing delay from one-way delay samples: the
// sample minus the minimum over the last two windows (so a slowly drifting
// clock, or a path that changed, is forgotten within a minute).
type owdFilter struct {
	cur, prev int64 // minima of the current and previous window; math.MaxInt64 if none
	start     time.Time
	init      bool
}

const owdWindow = 30 * time.Second

func (f *owdFilter) sample(now time.Time, owd int64) int64 {
	if !f.init {
		f.init, f.start, f.cur, f.prev = true, now, owd, owd
	}
	if now.Sub(f.start) > owdWindow {
		f.prev, f.cur, f.start = f.cur, owd, now
	}
	if owd < f.cur {
		f.cur = owd
	}
	base := min(f.cur, f.prev)
	return owd - base
}

// ---- acks at the sender ----------------------------------------------

// Loss detection, as in QUIC: a packet is lost when one sent at least
// lossPackets later was acked, or when it was sent more than 9/8 of a
// round trip before the newest acked packet.
const lossPackets = 3

func (s *session) onAck(a wire.Ack, now time.Time) {
	if len(a.Ranges) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var newlyAcked bool
	var largestSentAt time.Time
	var ackedBytes float64
	for _, r := range a.Ranges {
		lo, hi := int64(r.Smallest), int64(r.Largest)
		if hi >= int64(s.dataPN) {
			hi = int64(s.dataPN) - 1 // never sent: a confused or hostile peer
		}
		if hi < lo {
			continue
		}
		for _, in := range s.inflight.Intersect(lo, hi-lo+1) {
			for pn := in.Off; pn < in.End(); pn++ {
				p := s.sent.get(uint64(pn))
				if p == nil {
					continue
				}
				if uint64(pn) == r.Largest && r.Largest == a.Ranges[0].Largest {
					newlyAcked, largestSentAt = true, p.at
				}
				s.inflightB -= int64(p.n)
				ackedBytes += float64(p.n)
				p.stream.acked(p.off, int64(p.n))
				p.stream = nil
			}
			s.inflight.Remove(in.Off, in.Len)
		}
	}
	// A packet declared lost and acked after all was only reordered: from
	// then on, rely on the time threshold alone, and widen it (at most once
	// a round trip) up to two round trips.
	for _, r := range a.Ranges {
		lo, n := int64(r.Smallest), int64(r.Largest-r.Smallest+1)
		if !s.lostPNs.Overlaps(lo, n) {
			continue
		}
		for _, sp := range s.lostPNs.Intersect(lo, n) {
			s.counters.spurious.Add(sp.Len)
		}
		s.lostPNs.Remove(lo, n)
		s.reorderPkts = 1 << 62
		if s.lossTime8 < 16 && now.Sub(s.lastWiden) > s.rtt.smoothed {
			s.lossTime8 += 2
			s.lastWiden = now
			s.log.Debug("reordering seen: loss detection by time only", "threshold_rtt_eighths", s.lossTime8)
		}
	}
	if largest := a.Ranges[0].Largest; largest > s.largestAck || s.lastAckAt.IsZero() {
		s.largestAck = largest
	}
	if newlyAcked {
		s.rtt.update(now.Sub(largestSentAt), time.Duration(a.Delay)*time.Microsecond)
	}
	s.lastAckAt = now
	s.ptoCount = 0
	s.detectLoss(now)
	s.sent.trim(s.inflight)

	delivered := 0.0
	if a.Bytes > s.ackBytes {
		delivered = s.paced(a.Bytes - s.ackBytes)
		s.ackBytes = a.Bytes
	}
	queue := s.queueFilter.Update(now, time.Duration(a.Queue)*time.Microsecond, queueWindow)
	s.lastQueue = queue
	before := s.cc.State()
	searching := !before.Found
	s.cc.OnFeedback(now, congestion.Feedback{
		Queue:     queue,
		RTT:       s.rtt.smoothed,
		Sent:      s.sentSince * s.paced(1), // in the rate's units, as delivered is
		Delivered: delivered,
		Lost:      s.lostSince * s.paced(1),
		Capacity:  s.paced(a.Capacity),
	})
	cs := s.cc.State()
	if before.Capacity == 0 && cs.Capacity > 0 {
		s.log.Debug("the search starts from the capacity the peer measured", "capacity_mbps", int(cs.Capacity*8/1e6), "rate_mbps", int(cs.Rate*8/1e6))
	}
	if searching && cs.Found {
		s.log.Debug("search for the path's rate ended", "rate_mbps", int(s.cc.Rate()*8/1e6), "queue", queue,
			"loss", cs.LossFrac, "delivery_max_mbps", int(cs.DeliveryMax*8/1e6), "srtt", s.rtt.smoothed)
	}
	s.sentSince, s.lostSince = 0, 0
	s.pacer.SetRate(s.cc.Rate())
	s.signal()
}

// paced converts payload bytes, which the receiver counts, into the
// pacer's units, which count each packet's header and tag too (and so does
// the controller's rate): a rate set from a payload delivery rate would
// fall short of the path by the headers' share, 4% at 1400-byte packets.
func (s *session) paced(payload uint64) float64 {
	return float64(payload) * float64(s.packetSize) / float64(s.payloadSize)
}

// detectLoss declares in-flight packets lost by the packet and time
// thresholds. Call with s.mu held.
func (s *session) detectLoss(now time.Time) {
	delay := max(s.rtt.smoothed, s.rtt.latest) * time.Duration(s.lossTime8) / 8
	delay = max(delay, time.Millisecond)
	for {
		first, ok := s.inflight.First()
		if !ok {
			return
		}
		pn := uint64(first.Off)
		if pn >= s.largestAck {
			return
		}
		p := s.sent.get(pn)
		if p == nil || p.stream == nil {
			s.inflight.Remove(first.Off, 1)
			continue
		}
		byOrder := s.largestAck-pn >= s.reorderPkts
		if !byOrder && now.Sub(p.at) < delay {
			return
		}
		if byOrder {
			s.counters.lostByOrder.Add(1)
		} else {
			s.counters.lostByTime.Add(1)
		}
		s.declareLost(pn, p)
	}
}

func (s *session) declareLost(pn uint64, p *sentPacket) {
	s.inflight.Remove(int64(pn), 1)
	s.lostPNs.Add(int64(pn), 1)
	if s.lostPNs.Count() > 1024 {
		first, _ := s.lostPNs.First()
		s.lostPNs.Remove(first.Off, first.Len)
	}
	s.inflightB -= int64(p.n)
	s.lostSince += float64(p.n)
	p.stream.lost(p.off, int64(p.n))
	p.stream = nil
}

// ---- the send loop ---------------------------------------------------

// maxSendBatch is the most packets one pass of the send loop sends.
const maxSendBatch = 32

// pacingQuantum is the longest a paced sender waits to send a batch at
// once (a batch is at most maxSendBatch packets): the bursts it makes are
// this short at the rate, well under any queue the controller aims for.
const pacingQuantum = time.Millisecond

// plan is one data packet chosen for sending.
type plan struct {
	st      *sendStream
	off     int64
	n       int
	pn      uint64
	retrans bool
}

func (s *session) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *session) sendLoop() {
	defer close(s.loopDone)
	plans := make([]plan, 0, maxSendBatch)
	bufs := make([][]byte, maxSendBatch)
	for i := range bufs {
		bufs[i] = make([]byte, 0, s.packetSize+64)
	}
	msgs := make([]udpio.Message, 0, maxSendBatch)
	run := make([]byte, maxSendBatch*s.payloadSize)
	sealer, _ := wire.NewSealer(s.cipher, s.sendKey)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	lastReport := time.Now()
	var reportSent int64
	var reportAcked uint64
	var reportUnused float64
	for {
		if s.log.Enabled(nil, slog.LevelDebug) && time.Since(lastReport) > 500*time.Millisecond && len(s.order) > 0 {
			s.mu.Lock()
			cs := s.cc.State()
			sentMbps := float64(s.sentTotal-reportSent) * 8 / 1e6 / time.Since(lastReport).Seconds()
			reportSent = s.sentTotal
			ackedMbps := float64(s.ackBytes-reportAcked) * 8 / 1e6 / time.Since(lastReport).Seconds()
			reportAcked = s.ackBytes
			unusedMbps := (s.pacer.Unused() - reportUnused) * 8 / 1e6 / time.Since(lastReport).Seconds()
			reportUnused = s.pacer.Unused()
			s.log.Debug("sender", "rate_mbps", int(s.cc.Rate()*8/1e6), "sent_mbps", int(sentMbps), "peer_got_mbps", int(ackedMbps), "unused_mbps", int(unusedMbps), "delivery_mbps", int(cs.Delivery*8/1e6),
				"delivery_max_mbps", int(cs.DeliveryMax*8/1e6), "loss", cs.LossFrac, "found", cs.Found, "competing", cs.Competing, "shallow", cs.Shallow, "queue", s.lastQueue,
				"srtt", s.rtt.smoothed, "inflight", s.inflightB,
				"streams", len(s.order), "lost_order", s.counters.lostByOrder.Load(), "lost_time", s.counters.lostByTime.Load(),
				"lost_pto", s.counters.lostByPTO.Load(), "starved", s.counters.starved.Load(), "paced", s.counters.paced.Load(),
				"packets", s.counters.dataPackets.Load(), "batches", s.counters.batches.Load())
			lastReport = time.Now()
			s.mu.Unlock()
		}
		select {
		case <-s.done:
			return
		default:
		}
		now := time.Now()
		s.mu.Lock()
		wait := s.plan(now, &plans)
		s.mu.Unlock()
		if len(plans) > 0 {
			peer := s.peer.Load()
			msgs = msgs[:0]
			for i := 0; i < len(plans); {
				// Read a run of contiguous plans of one stream at once.
				j := i + 1
				for j < len(plans) && plans[j].st == plans[i].st && plans[j].off == plans[j-1].off+int64(plans[j-1].n) {
					j++
				}
				total := 0
				for k := i; k < j; k++ {
					total += plans[k].n
				}
				if err := plans[i].st.read(run[:total], plans[i].off); err != nil {
					// Bytes acknowledged since they were chosen need no
					// packet; their numbers are soon declared lost, which
					// resends nothing.
					if !errors.Is(err, errReleased) {
						s.failStream(plans[i].st, err)
					}
					i = j
					continue
				}
				pos := 0
				stamp := s.micros(time.Now())
				for k := i; k < j; k++ {
					p := plans[k]
					h := wire.Header{Type: wire.TypeData, Session: s.id, Number: p.pn}
					if p.retrans {
						h.Flags = wire.FlagRetransmit
					}
					b := h.Append(bufs[len(msgs)][:0])
					b = wire.DataHeader{Stream: p.st.id, Offset: p.off, SendTime: wire.SendTime(stamp)}.Append(b)
					b = sealer.Seal(b, p.pn, run[pos:pos+p.n])
					pos += p.n
					msgs = append(msgs, udpio.Message{Buf: b, Addr: *peer})
				}
				i = j
			}
			if len(msgs) > 0 {
				s.counters.batches.Add(1)
				s.counters.dataPackets.Add(int64(len(msgs)))
				if err := s.ep.write(msgs); err != nil {
					s.log.Debug("udp write failed", "err", err)
				}
			}
			continue
		}
		if wait <= 0 {
			wait = time.Hour
		}
		timer.Reset(wait)
		select {
		case <-s.done:
			return
		case <-s.wake:
		case <-timer.C:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// plan chooses the next batch of packets, records them as sent, and
// returns how long to wait when it chose none. Call with s.mu held.
func (s *session) plan(now time.Time, out *[]plan) time.Duration {
	*out = (*out)[:0]
	if s.peer.Load() == nil {
		return 50 * time.Millisecond
	}
	// Tail loss: nothing acked for a probe timeout with data in flight.
	pto := s.rtt.pto() << min(s.ptoCount, 6)
	if s.inflightB > 0 {
		since := now.Sub(s.lastAckAt)
		if s.lastAckAt.IsZero() {
			since = now.Sub(s.sent.oldestAt())
		}
		if since >= pto {
			s.onPTO(now, pto)
		}
	}
	s.pacer.SetRate(s.cc.Rate())
	if s.dataPN >= dataNumbers {
		for _, st := range s.streams {
			s.removeStreamLocked(st)
			st.finish(errNumbersSpent)
		}
	}
	if len(s.order) == 0 {
		if s.inflightB > 0 {
			return pto
		}
		return 0
	}
	// Never have more in flight than the rate sustains for a couple of
	// round trips: if acks stop, so do we.
	capB := int64(s.cc.Rate()*(2*s.rtt.smoothed+50*time.Millisecond).Seconds()) + 256<<10
	if s.inflightB >= capB {
		return pto
	}
	// Send in batches, not packet by packet as tokens come (or as each
	// ack wakes the loop): a send per packet costs a system call per packet
	// here and defeats segmentation offload on both ends.
	need := float64(s.packetSize)
	quantum := max(need, min(float64(maxSendBatch)*need, s.cc.Rate()*pacingQuantum.Seconds()))
	if s.cc.WantsCapacity() {
		// Until the receiver has measured the path, every batch is a
		// packet train (see trainMeter), not only the first flight: that
		// one's spread may be spoiled by something on the way, and a
		// slow start's later batches hold a packet or two.
		quantum = max(quantum, min(trainBurst, math.Floor(s.pacer.Burst()/need))*need)
	}
	avail := s.pacer.Available(now)
	if avail < quantum {
		s.counters.paced.Add(1)
		return max(s.pacer.Wait(now, quantum), 50*time.Microsecond)
	}
	budget := min(int(avail/need), maxSendBatch)
	var earliest time.Duration // soonest a capped or starved stream could go
	for tries := 0; budget > 0 && tries < len(s.order); tries++ {
		if s.rr >= len(s.order) {
			s.rr = 0
		}
		st := s.order[s.rr]
		// Each stream gets a fair share of the batch, then the next.
		share := max(budget/max(len(s.order)-tries, 1), 1)
		got := 0
		for got < share && s.dataPN < dataNumbers {
			off, n, retrans, wait := st.next(now, s.payloadSize)
			if n == 0 {
				if wait > 0 && (earliest == 0 || wait < earliest) {
					earliest = wait
				}
				break
			}
			pn := s.dataPN
			s.dataPN++
			s.sent.put(pn, sentPacket{stream: st, off: off, n: int32(n), at: now})
			s.inflight.Add(int64(pn), 1)
			s.inflightB += int64(n)
			s.sentSince += float64(n)
			s.sentTotal += int64(n)
			s.pacer.Spend(now, float64(n+s.packetSize-s.payloadSize))
			*out = append(*out, plan{st: st, off: off, n: n, pn: pn, retrans: retrans})
			got++
		}
		budget -= got
		s.rr++
	}
	if len(*out) > 0 {
		return 0
	}
	if earliest > 0 {
		return earliest
	}
	if s.inflightB > 0 {
		return pto
	}
	return 0
}

// onPTO handles a probe timeout: nothing acked for a while with data in
// flight. As in QUIC it first sends probes — the oldest packets again —
// and backs the timeout off; only after persistentPTOs timeouts in a row
// is everything in flight presumed lost and the rate cut. Call with s.mu
// held.
func (s *session) onPTO(now time.Time, pto time.Duration) {
	s.ptoCount++
	probes := 2
	if s.ptoCount >= persistentPTOs {
		probes = -1 // all
		s.cc.OnSilence(now, pto, s.rtt.smoothed)
	}
	for probes != 0 {
		first, ok := s.inflight.First()
		if !ok {
			break
		}
		pn := uint64(first.Off)
		p := s.sent.get(pn)
		if p == nil || p.stream == nil {
			s.inflight.Remove(first.Off, 1)
			continue
		}
		s.counters.lostByPTO.Add(1)
		s.declareLost(pn, p)
		probes--
	}
	s.sent.trim(s.inflight)
	s.lastAckAt = now
}

// persistentPTOs is how many probe timeouts in a row mean the path is
// gone (or badly congested) rather than a tail packet lost.
const persistentPTOs = 3

// addStream starts sending a stream.
func (s *session) addStream(st *sendStream) {
	s.mu.Lock()
	s.streams[st.id] = st
	st.sess = s
	st.activate()
	s.mu.Unlock()
	s.signal()
}

// removeStream stops sending a stream (finished, cancelled or failed).
func (s *session) removeStream(st *sendStream) {
	s.mu.Lock()
	s.removeStreamLocked(st)
	s.mu.Unlock()
}

// removeStreamLocked is removeStream with s.mu held.
func (s *session) removeStreamLocked(st *sendStream) {
	delete(s.streams, st.id)
	s.deactivate(st)
}

// deactivate takes st off the round-robin order. Call with s.mu held.
func (s *session) deactivate(st *sendStream) {
	for i, o := range s.order {
		if o == st {
			s.order = append(s.order[:i], s.order[i+1:]...)
			return
		}
	}
}

// failStream stops sending a stream and ends it with err.
func (s *session) failStream(st *sendStream, err error) {
	s.removeStream(st)
	st.finish(err)
}

// addRecv registers a stream to receive.
func (s *session) addRecv(r *recvStream) {
	s.rmu.Lock()
	s.recv[r.id] = r
	s.gone.Remove(int64(r.id), 1)
	s.rmu.Unlock()
	if s.holding.Load() {
		s.ep.wakeFor(s) // its first bytes may be waiting
	}
}

// removeRecv forgets a received stream.
func (s *session) removeRecv(id uint32) {
	s.rmu.Lock()
	delete(s.recv, id)
	s.gone.Add(int64(id), 1)
	s.rmu.Unlock()
}

// setLimits changes the session's rate limits.
func (s *session) setLimits(l congestion.Limits) {
	s.mu.Lock()
	s.cc.SetLimits(l)
	s.pacer.SetRate(s.cc.Rate())
	s.pacer.SetCatchUp(catchUp(s.cc.Limits()))
	s.mu.Unlock()
	s.signal()
}

// catchUp is how much missed allowance a session's pacer keeps for a
// sender the scheduler held up. A fixed rate is a promise of an average,
// kept through such stalls; the adaptive policies would read the queue
// that making up time builds as congestion, so they keep none.
func catchUp(l congestion.Limits) time.Duration {
	if l.Policy == congestion.Fixed {
		return fixedCatchUp
	}
	return 0
}

// fixedCatchUp covers the stalls seen on a busy 2-core machine (10–40 ms).
const fixedCatchUp = 50 * time.Millisecond

// pathStats is a snapshot for progress reports.
type pathStats struct {
	rate   float64 // bytes per second the controller allows
	rtt    time.Duration
	limits congestion.Limits
}

func (s *session) pathStats() pathStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return pathStats{rate: s.cc.Rate(), rtt: s.rtt.smoothed, limits: s.cc.Limits()}
}

// ---- bookkeeping of sent packets ---------------------------------------

type sentPacket struct {
	stream *sendStream // nil once acked or declared lost
	off    int64
	n      int32
	at     time.Time
}

// sentRing holds sent data packets by number, from the oldest still in
// flight on.
type sentRing struct {
	base uint64 // packet number of buf[head]
	buf  []sentPacket
	head int
}

func (r *sentRing) put(pn uint64, p sentPacket) {
	if r.head == len(r.buf) {
		r.buf, r.head = r.buf[:0], 0
		r.base = pn
	}
	if len(r.buf) == 0 {
		r.base = pn
	}
	r.buf = append(r.buf, p)
}

func (r *sentRing) get(pn uint64) *sentPacket {
	if pn < r.base {
		return nil
	}
	i := r.head + int(pn-r.base)
	if i >= len(r.buf) {
		return nil
	}
	return &r.buf[i]
}

func (r *sentRing) oldestAt() time.Time {
	if r.head < len(r.buf) {
		return r.buf[r.head].at
	}
	return time.Time{}
}

// trim drops entries older than the oldest packet in flight.
func (r *sentRing) trim(inflight *ranges.Set) {
	first, ok := inflight.First()
	target := r.base + uint64(len(r.buf)-r.head)
	if ok {
		target = uint64(first.Off)
	}
	for r.head < len(r.buf) && r.base < target {
		r.buf[r.head] = sentPacket{}
		r.head++
		r.base++
	}
	// Compact once the dead front is large.
	if r.head > 4096 && r.head > len(r.buf)/2 {
		n := copy(r.buf, r.buf[r.head:])
		clear(r.buf[n:])
		r.buf = r.buf[:n]
		r.head = 0
	}
}

// ---- round-trip time -------------------------------------------------

type rttStats struct {
	smoothed, variance, latest, min time.Duration
	sampled                         bool
}

const initialRTT = 100 * time.Millisecond

func (r *rttStats) init() {
	r.smoothed, r.variance = initialRTT, initialRTT/2
}

func (r *rttStats) update(sample, ackDelay time.Duration) {
	if sample <= 0 {
		return
	}
	if !r.sampled || sample < r.min {
		r.min = sample
	}
	if sample-ackDelay >= r.min {
		sample -= ackDelay
	}
	r.latest = sample
	if !r.sampled {
		r.sampled = true
		r.smoothed, r.variance = sample, sample/2
		return
	}
	d := r.smoothed - sample
	if d < 0 {
		d = -d
	}
	r.variance = (3*r.variance + d) / 4
	r.smoothed = (7*r.smoothed + sample) / 8
}

// pto is the probe timeout: how long without acks before data in flight is
// presumed lost.
func (r *rttStats) pto() time.Duration {
	return max(r.smoothed+4*r.variance+maxAckDelay*2, 25*time.Millisecond)
}

// queueWindow is the shortest span over which queueing delay reports are
// reduced to their minimum: a real queue persists, while a receiver that
// was not scheduled for a few milliseconds (or paused for garbage
// collection) only delays one burst of acks.
const queueWindow = 10 * time.Millisecond
