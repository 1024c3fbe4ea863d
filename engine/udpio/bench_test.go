package udpio

import (
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkLoopback sends 1400-byte datagrams from one socket to another
// over loopback as fast as the sender can, with a receiver goroutine
// draining. One op is one datagram sent; ns/op and MB/s are the sender's.
// Reported besides:
//
//	send-Gbit/s   payload rate the sender achieved
//	recv-Gbit/s   payload rate that reached the receiver's application
//	recv-kpps     datagrams per second received
//	loss-%        datagrams sent but never read (the receiver fell behind)
//
// Modes:
//
//	plain     *net.UDPConn WriteToUDPAddrPort / ReadFromUDPAddrPort
//	fallback  this package's one-datagram Conn over the same calls
//	mmsg      sendmmsg / recvmmsg, 64 per call
//	mmsg+gso  as mmsg, with UDP GSO on the sender (receiver without GRO)
//	gso+gro   UDP GSO on the sender, UDP GRO on the receiver
func BenchmarkLoopback(b *testing.B) {
	const payload = 1400
	const batch = 64
	none := Options{DisableGSO: true, DisableGRO: true, DisableMMsg: true}
	modes := []struct {
		name   string
		tx, rx Options
		plain  bool // bypass Conn for the data path
		wrap   bool // hide the *net.UDPConn to get the fallback
	}{
		{name: "plain", tx: none, rx: none, plain: true},
		{name: "fallback", tx: none, rx: none, wrap: true},
		{name: "mmsg", tx: Options{DisableGSO: true}, rx: Options{DisableGRO: true}},
		{name: "mmsg+gso", rx: Options{DisableGRO: true}},
		{name: "gso+gro"},
	}
	for _, mode := range modes {
		b.Run(mode.name, func(b *testing.B) {
			mk := func(opt Options) (Conn, *net.UDPConn) {
				u := listen(b, "udp4", "127.0.0.1:0")
				// New sizes the socket buffers in every mode, so that all
				// modes run with the same buffers.
				c, err := New(u, opt)
				if err != nil {
					b.Fatal(err)
				}
				if mode.wrap {
					c = newGeneric(struct{ *net.UDPConn }{u}, opt)
				}
				b.Cleanup(func() { c.Close() })
				return c, u
			}
			rx, rxu := mk(mode.rx)
			tx, txu := mk(mode.tx)
			dst := addrOf(b, rx)

			var received atomic.Int64
			var lastRecv atomic.Int64 // UnixNano of the latest read
			done := make(chan struct{})
			go func() {
				defer close(done)
				if mode.plain {
					buf := make([]byte, 2048)
					for {
						if _, _, err := rxu.ReadFromUDPAddrPort(buf); err != nil {
							return
						}
						received.Add(1)
						lastRecv.Store(time.Now().UnixNano())
					}
				}
				ms := make([]Message, batch)
				for i := range ms {
					ms[i].Buf = make([]byte, 2048)
				}
				for {
					n, err := rx.ReadBatch(ms)
					if err != nil {
						return
					}
					received.Add(int64(n))
					lastRecv.Store(time.Now().UnixNano())
				}
			}()

			out := make([]Message, batch)
			for i := range out {
				out[i] = Message{Buf: datagram(i, payload), Addr: dst}
			}
			b.SetBytes(payload)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for sent := 0; sent < b.N; {
				k := min(batch, b.N-sent)
				if mode.plain {
					for i := range k {
						if _, err := txu.WriteToUDPAddrPort(out[i].Buf, dst); err != nil {
							b.Fatal(err)
						}
					}
				} else if _, err := tx.WriteBatch(out[:k]); err != nil {
					b.Fatal(err)
				}
				sent += k
			}
			sendTime := time.Since(start)
			b.StopTimer()

			// Wait until the receiver has everything or has stopped
			// getting anything for a while.
			for prev := int64(-1); ; {
				n := received.Load()
				if n >= int64(b.N) || n == prev {
					break
				}
				prev = n
				time.Sleep(50 * time.Millisecond)
			}
			rx.SetReadDeadline(time.Now())
			<-done
			got := received.Load()
			recvTime := time.Duration(lastRecv.Load() - start.UnixNano())
			bits := float64(payload * 8)
			b.ReportMetric(float64(b.N)*bits/sendTime.Seconds()/1e9, "send-Gbit/s")
			if got > 0 && recvTime > 0 {
				b.ReportMetric(float64(got)*bits/recvTime.Seconds()/1e9, "recv-Gbit/s")
				b.ReportMetric(float64(got)/recvTime.Seconds()/1e3, "recv-kpps")
			}
			b.ReportMetric(100*float64(int64(b.N)-got)/float64(b.N), "loss-%")
		})
	}
}

// BenchmarkSplitGRO measures splitting one GRO buffer of 46 datagrams of
// 1400 bytes into Messages (the copy ReadBatch makes with GRO on).
func BenchmarkSplitGRO(b *testing.B) {
	data := make([]byte, 46*1400)
	ms := make([]Message, 64)
	for i := range ms {
		ms[i].Buf = make([]byte, 1500)
	}
	src := netip.MustParseAddrPort("127.0.0.1:9")
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	var s segmenter
	for b.Loop() {
		s.reset(data, 1400, src, false, time.Time{})
		s.fill(ms)
	}
}
