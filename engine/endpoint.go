package engine

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chute/chute/engine/udpio"
	"github.com/chute/chute/engine/wire"
)

// endpoint owns one UDP socket and the sessions that share it: a server's
// single data port, or a client's own socket. One goroutine reads the
// socket and hands each packet to its session; any goroutine may write.
//
// Lock order: endpoint.mu, then session locks. endpoint.wmu is a leaf.
type endpoint struct {
	conn udpio.Conn
	log  *slog.Logger

	wmu sync.Mutex // serialises WriteBatch

	mu       sync.RWMutex
	sessions map[uint32]*session

	// Counters of packets dropped before any session saw them.
	unknownSession atomic.Int64
	malformed      atomic.Int64

	// Sessions whose held early data may now be deliverable (see
	// session.hold): the read loop releases it, woken by wakeFor.
	kmu    sync.Mutex
	kicked []*session
	kicks  atomic.Int32

	closeOnce sync.Once
	closed    chan struct{}
	readDone  chan struct{}
}

// wakeFor asks the read loop to release s's held early data now, instead
// of with the next datagram.
func (e *endpoint) wakeFor(s *session) {
	e.kmu.Lock()
	e.kicked = append(e.kicked, s)
	e.kmu.Unlock()
	e.kicks.Add(1)
	e.conn.SetReadDeadline(time.Unix(1, 0)) // interrupts a blocked read
}

// releaseKicked runs releaseEarly for the sessions wakeFor named and adds
// them to owing. Read loop.
func (e *endpoint) releaseKicked(now time.Time, owing []*session) []*session {
	e.kicks.Store(0)
	e.kmu.Lock()
	kicked := e.kicked
	e.kicked = nil
	e.kmu.Unlock()
	for _, s := range kicked {
		if len(s.early) == 0 {
			continue
		}
		s.releaseEarly(now)
		if !s.owing {
			s.owing = true
			owing = append(owing, s)
		}
	}
	return owing
}

// maxDatagram bounds received datagrams; larger ones are truncated and
// fail authentication.
const maxDatagram = 9216

// readBatch is how many datagrams one ReadBatch call may return.
const readBatch = 64

func newEndpoint(pc net.PacketConn, opt udpio.Options, log *slog.Logger) (*endpoint, error) {
	c, err := udpio.New(pc, opt)
	if err != nil {
		return nil, err
	}
	e := &endpoint{
		conn:     c,
		log:      log,
		sessions: map[uint32]*session{},
		closed:   make(chan struct{}),
		readDone: make(chan struct{}),
	}
	go e.readLoop()
	return e, nil
}

// add registers s; false when another session holds its id.
func (e *endpoint) add(s *session) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, taken := e.sessions[s.id]; taken {
		return false
	}
	e.sessions[s.id] = s
	return true
}

// remove forgets s.
func (e *endpoint) remove(s *session) {
	e.mu.Lock()
	if e.sessions[s.id] == s {
		delete(e.sessions, s.id)
	}
	e.mu.Unlock()
}

func (e *endpoint) lookup(id uint32) *session {
	e.mu.RLock()
	s := e.sessions[id]
	e.mu.RUnlock()
	return s
}

// write sends a batch of datagrams.
func (e *endpoint) write(ms []udpio.Message) error {
	e.wmu.Lock()
	defer e.wmu.Unlock()
	_, err := e.conn.WriteBatch(ms)
	return err
}

// close stops the read loop and closes the socket.
func (e *endpoint) close() {
	e.closeOnce.Do(func() {
		close(e.closed)
		e.conn.Close()
		<-e.readDone
	})
}

// readLoop reads datagrams and dispatches them until the socket closes.
// After each batch, and when an ack timer falls due, it sends the acks the
// sessions owe.
func (e *endpoint) readLoop() {
	defer close(e.readDone)
	msgs := make([]udpio.Message, readBatch)
	for i := range msgs {
		msgs[i].Buf = make([]byte, maxDatagram)
	}
	var owing []*session // sessions with acks pending
	for {
		// Wake up in time for the earliest delayed ack.
		var deadline time.Time
		for _, s := range owing {
			if d := s.ackDeadline(); !d.IsZero() && (deadline.IsZero() || d.Before(deadline)) {
				deadline = d
			}
		}
		e.conn.SetReadDeadline(deadline)
		n := 0
		var err error
		if e.kicks.Load() == 0 { // else a wakeFor may have come before the deadline was set
			n, err = e.conn.ReadBatch(msgs)
		}
		if err != nil && !isTimeout(err) {
			select {
			case <-e.closed:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			e.log.Warn("udp read failed", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		now := time.Now()
		for i := 0; i < n; i++ {
			m := &msgs[i]
			if m.Truncated {
				e.malformed.Add(1)
				continue
			}
			// The time the datagram sat in the socket's buffer is this
			// reader's delay, not the path's.
			var dwell time.Duration
			if !m.At.IsZero() {
				dwell = min(max(now.Sub(m.At), 0), time.Second)
			}
			s := e.dispatch(m.Buf[:m.N], m.Addr, now, dwell)
			if s != nil && !s.owing {
				s.owing = true
				owing = append(owing, s)
			}
		}
		if e.kicks.Load() > 0 {
			owing = e.releaseKicked(now, owing)
		}
		// Send the acks that are due; keep the rest for later.
		kept := owing[:0]
		for _, s := range owing {
			if s.flushAck(now) {
				kept = append(kept, s)
			} else {
				s.owing = false
			}
		}
		clear(owing[len(kept):])
		owing = kept
	}
}

// dispatch hands one datagram to its session and returns the session if it
// may now owe an ack.
func (e *endpoint) dispatch(b []byte, from netip.AddrPort, now time.Time, dwell time.Duration) *session {
	id, ok := wire.PeekSession(b)
	if !ok {
		e.malformed.Add(1)
		return nil
	}
	s := e.lookup(id)
	if s == nil {
		e.unknownSession.Add(1)
		return nil
	}
	if s.receive(b, from, now, dwell) {
		return s
	}
	return nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
