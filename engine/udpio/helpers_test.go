package udpio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/chute/chute/internal/testenv"
)

// hangGuard bounds how long a test waits for datagrams that should already
// be there; it only turns a hang into a failure and measures nothing.
const hangGuard = 10 * time.Second

// listen opens a UDP socket on network ("udp4", "udp6", "udp") and address.
func listen(t testing.TB, network, addr string) *net.UDPConn {
	t.Helper()
	pc, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		if network != "udp4" {
			testenv.Missing(t, "IPv6 loopback ("+addr+"): "+err.Error(), "enable IPv6 on lo (sysctl net.ipv6.conf.lo.disable_ipv6=0)")
		}
		t.Fatal(err)
	}
	return pc
}

// open wraps a fresh socket with New and closes it when the test ends.
func open(t testing.TB, network, addr string, opt Options) Conn {
	t.Helper()
	c, err := New(listen(t, network, addr), opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// addrOf is the AddrPort a peer on loopback reaches c at.
func addrOf(t testing.TB, c Conn) netip.AddrPort {
	t.Helper()
	ap := c.LocalAddr().(*net.UDPAddr).AddrPort()
	a := ap.Addr().Unmap()
	if a.IsUnspecified() {
		if a.Is4() {
			a = netip.MustParseAddr("127.0.0.1")
		} else {
			a = netip.IPv6Loopback()
		}
	}
	return netip.AddrPortFrom(a, ap.Port())
}

// datagram returns a datagram of size bytes numbered seq: its content says
// which datagram it is, so the receiver can check order and integrity.
func datagram(seq, size int) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(seq*7 + i)
	}
	if size >= 4 {
		binary.BigEndian.PutUint32(b, uint32(seq))
	}
	return b
}

// got is a received datagram.
type got struct {
	data      []byte
	from      netip.AddrPort
	truncated bool
}

// recvN reads until n datagrams have arrived, with Bufs of bufSize bytes and
// batches of batch Messages.
func recvN(t testing.TB, c Conn, n, bufSize, batch int) []got {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(hangGuard)); err != nil {
		t.Fatal(err)
	}
	ms := make([]Message, batch)
	for i := range ms {
		ms[i].Buf = make([]byte, bufSize)
	}
	var out []got
	for len(out) < n {
		k, err := c.ReadBatch(ms[:min(batch, n-len(out))])
		if err != nil {
			t.Fatalf("ReadBatch after %d of %d datagrams: %v", len(out), n, err)
		}
		if k == 0 {
			t.Fatalf("ReadBatch returned 0 datagrams and no error")
		}
		for _, m := range ms[:k] {
			if m.N > len(m.Buf) {
				t.Fatalf("N = %d exceeds len(Buf) = %d", m.N, len(m.Buf))
			}
			out = append(out, got{data: bytes.Clone(m.Buf[:m.N]), from: m.Addr, truncated: m.Truncated})
		}
	}
	return out
}

// recvAsync runs recvN in a goroutine so that the receiver drains while the
// sender sends; wait returns its result.
func recvAsync(t *testing.T, c Conn, n, bufSize, batch int) (wait func() []got) {
	t.Helper()
	type result struct {
		gots []got
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		var r result
		ft := &fatalTB{TB: t}
		func() {
			defer func() {
				if p := recover(); p != nil && p != errFatal {
					panic(p)
				}
			}()
			r.gots = recvN(ft, c, n, bufSize, batch)
		}()
		r.err = ft.err
		ch <- r
	}()
	return func() []got {
		t.Helper()
		r := <-ch
		if r.err != nil {
			t.Fatal(r.err)
		}
		return r.gots
	}
}

var errFatal = errors.New("fatal in receiver goroutine")

// fatalTB lets recvN run off the test goroutine: Fatal records the message
// and unwinds, and the test goroutine reports it.
type fatalTB struct {
	testing.TB
	err error
}

func (f *fatalTB) Helper() {}
func (f *fatalTB) Fatal(args ...any) {
	f.err = errors.New(fmt.Sprint(args...))
	panic(errFatal)
}
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.err = fmt.Errorf(format, args...)
	panic(errFatal)
}

// send writes ms and fails the test unless all were sent.
func send(t testing.TB, c Conn, ms []Message) {
	t.Helper()
	n, err := c.WriteBatch(ms)
	if err != nil || n != len(ms) {
		t.Fatalf("WriteBatch: sent %d of %d: %v", n, len(ms), err)
	}
}

// expect checks that gots are exactly the datagrams of want, in order, from
// src, none truncated.
func expect(t testing.TB, gots []got, want []Message, src netip.AddrPort) {
	t.Helper()
	if len(gots) != len(want) {
		t.Fatalf("received %d datagrams, want %d", len(gots), len(want))
	}
	for i, g := range gots {
		if !bytes.Equal(g.data, want[i].Buf) {
			t.Fatalf("datagram %d: got %d bytes (seq %d), want %d bytes (seq %d)",
				i, len(g.data), seqOf(g.data), len(want[i].Buf), seqOf(want[i].Buf))
		}
		if g.from != src {
			t.Fatalf("datagram %d: source %v, want %v", i, g.from, src)
		}
		if g.truncated {
			t.Fatalf("datagram %d: marked truncated", i)
		}
	}
}

func seqOf(b []byte) int {
	if len(b) < 4 {
		return -1
	}
	return int(binary.BigEndian.Uint32(b))
}

// mixedBatch is a batch that exercises grouping: a long run of equal sizes
// (more than one GSO send), a run with a shorter last datagram, alternating
// sizes, an empty datagram and a large one.
func mixedBatch(dst netip.AddrPort) []Message {
	var sizes []int
	for range 100 {
		sizes = append(sizes, 1400)
	}
	for range 10 {
		sizes = append(sizes, 1000)
	}
	sizes = append(sizes, 300)
	for i := range 20 {
		sizes = append(sizes, 500+100*(i%2))
	}
	sizes = append(sizes, 0, 1200, 1200, 60000, 64, 64, 64)
	ms := make([]Message, len(sizes))
	for i, s := range sizes {
		ms[i] = Message{Buf: datagram(i, s), Addr: dst}
	}
	return ms
}

// isTimeout reports whether err is a passed deadline, both ways a caller
// may ask.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) && errors.As(err, &ne) && ne.Timeout()
}
