package udpio

import (
	"net/netip"
	"time"
)

// segmenter hands out the datagrams held in one received buffer. With GRO the
// kernel may deliver several datagrams of one flow in a single buffer: all of
// them seg bytes long except the last, which may be shorter. fill copies them
// out one per Message, and keeps its place when the caller's batch runs out
// before the buffer does.
type segmenter struct {
	data  []byte         // bytes not yet handed out
	seg   int            // datagram size; <= 0 means data is a single datagram
	addr  netip.AddrPort // source of every datagram in data
	trunc bool           // the kernel cut the buffer short (MSG_TRUNC)
	at    time.Time      // when the kernel received the buffer
	left  bool           // a datagram remains (data may be empty: a 0-byte datagram)
}

// reset makes s hand out the datagrams in data.
func (s *segmenter) reset(data []byte, seg int, addr netip.AddrPort, trunc bool, at time.Time) {
	*s = segmenter{data: data, seg: seg, addr: addr, trunc: trunc, at: at, left: true}
}

// done reports whether every datagram has been handed out.
func (s *segmenter) done() bool { return !s.left }

// fill copies the next datagrams into ms[0:n], one per Message, and returns n.
// A datagram longer than its Message's Buf is cut to fit and marked
// Truncated, as is the last one if the kernel truncated the buffer.
func (s *segmenter) fill(ms []Message) int {
	n := 0
	for s.left && n < len(ms) {
		l := len(s.data)
		last := true
		if s.seg > 0 && s.seg < l {
			l, last = s.seg, false
		}
		m := &ms[n]
		c := copy(m.Buf, s.data[:l])
		m.N = c
		m.Addr = s.addr
		m.At = s.at
		m.Truncated = c < l || (last && s.trunc)
		s.data = s.data[l:]
		s.left = !last
		n++
	}
	return n
}
