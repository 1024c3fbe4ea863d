package engine

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/chute/chute/engine/congestion"
	"github.com/chute/chute/engine/internal/ranges"
	"github.com/chute/chute/engine/udpio"
	"github.com/chute/chute/engine/wire"
)

// BenchmarkReceivePath measures the receiving half's cost per data packet:
// authenticate, decrypt, account for the ack, and gather into blocks.
func BenchmarkReceivePath(b *testing.B) {
	pc, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	ep, _ := newEndpoint(pc, udpio.Options{}, quietLog())
	defer ep.close()
	id, c2s, s2c, _ := newSessionKeys(wire.AES256GCM)
	s, _ := newSession(ep, sessionParams{id: id, cipher: wire.AES256GCM, sendKey: s2c, recvKey: c2s, limits: congestion.Limits{}, peer: netip.MustParseAddrPort("127.0.0.1:9")}, quietLog())
	defer s.close(nil)
	const n = 1 << 16
	size := int64(n) * int64(s.payloadSize)
	r := newRecvStream(1, discardAt{}, ranges.Of(ranges.Range{Off: 0, Len: size * 1000}), nil, false)
	s.addRecv(r)
	sealer, _ := wire.NewSealer(wire.AES256GCM, c2s)
	payload := make([]byte, s.payloadSize)
	pkts := make([][]byte, n)
	for i := range pkts {
		h := wire.Header{Type: wire.TypeData, Session: id, Number: uint64(i)}
		bb := wire.DataHeader{Stream: 1, Offset: int64(i) * int64(s.payloadSize)}.Append(h.Append(nil))
		pkts[i] = sealer.Seal(bb, uint64(i), payload)
	}
	work := make([]byte, 2048)
	from := netip.MustParseAddrPort("127.0.0.1:9")
	b.SetBytes(int64(s.payloadSize))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i == n {
			b.StopTimer()
			// Start a fresh stream so offsets stay new.
			s.removeRecv(1)
			r.close()
			r = newRecvStream(1, discardAt{}, ranges.Of(ranges.Range{Off: 0, Len: size}), nil, false)
			s.addRecv(r)
			s.dataWin = wire.ReplayWindow{}
			s.acks = ackState{}
			i = 0
			b.StartTimer()
		}
		k := copy(work, pkts[i])
		s.receive(work[:k], from, time.Now(), 0)
		i++
	}
}

// discardAt is an io.WriterAt that keeps nothing.
type discardAt struct{}

func (discardAt) WriteAt(p []byte, off int64) (int, error) { return len(p), nil }
