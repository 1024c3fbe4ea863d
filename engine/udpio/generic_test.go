package udpio

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"
)

// memNet is a tiny in-memory datagram network: lossless, in order, with one
// queue per address.
type memNet struct {
	mu    sync.Mutex
	conns map[netip.AddrPort]*memConn
}

type memDatagram struct {
	data []byte
	from netip.AddrPort
}

func (n *memNet) listen(addr string) *memConn {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.conns == nil {
		n.conns = make(map[netip.AddrPort]*memConn)
	}
	c := &memConn{net: n, addr: netip.MustParseAddrPort(addr), in: make(chan memDatagram, 1024), closed: make(chan struct{})}
	n.conns[c.addr] = c
	return c
}

// memConn is a net.PacketConn on a memNet. It has only the methods of
// net.PacketConn, so the fallback goes through ReadFrom and WriteTo.
type memConn struct {
	net    *memNet
	addr   netip.AddrPort
	in     chan memDatagram
	closed chan struct{}
	once   sync.Once

	mu       sync.Mutex
	deadline time.Time
}

var _ net.PacketConn = (*memConn)(nil)

func (c *memConn) ReadFrom(b []byte) (int, net.Addr, error) {
	c.mu.Lock()
	d := c.deadline
	c.mu.Unlock()
	var timeout <-chan time.Time
	if !d.IsZero() {
		t := time.NewTimer(time.Until(d))
		defer t.Stop()
		timeout = t.C
	}
	select {
	case dg := <-c.in:
		return copy(b, dg.data), net.UDPAddrFromAddrPort(dg.from), nil
	case <-timeout:
		return 0, nil, &net.OpError{Op: "read", Net: "mem", Err: os.ErrDeadlineExceeded}
	case <-c.closed:
		return 0, nil, &net.OpError{Op: "read", Net: "mem", Err: net.ErrClosed}
	}
}

func (c *memConn) WriteTo(b []byte, to net.Addr) (int, error) {
	select {
	case <-c.closed:
		return 0, &net.OpError{Op: "write", Net: "mem", Err: net.ErrClosed}
	default:
	}
	dst, err := netip.ParseAddrPort(to.String())
	if err != nil {
		return 0, err
	}
	c.net.mu.Lock()
	peer := c.net.conns[dst]
	c.net.mu.Unlock()
	if peer != nil { // else lost, as UDP would lose it
		peer.in <- memDatagram{data: append([]byte(nil), b...), from: c.addr}
	}
	return len(b), nil
}

func (c *memConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}
func (c *memConn) LocalAddr() net.Addr                { return net.UDPAddrFromAddrPort(c.addr) }
func (c *memConn) SetDeadline(t time.Time) error      { return c.SetReadDeadline(t) }
func (c *memConn) SetWriteDeadline(t time.Time) error { return nil }
func (c *memConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	return nil
}

func newMem(t *testing.T, n *memNet, addr string) Conn {
	t.Helper()
	c, err := New(n.listen(addr), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.(*genericConn); !ok || c.Caps() != (Caps{}) {
		t.Fatalf("New over an in-memory PacketConn = %T with %+v, want the fallback with no offloads", c, c.Caps())
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestFallbackOverMemoryNetwork(t *testing.T) {
	var n memNet
	a := newMem(t, &n, "10.0.0.1:1000")
	b := newMem(t, &n, "10.0.0.2:2000")
	c := newMem(t, &n, "[2001:db8::3]:3000")
	// Interleaved destinations, mixed sizes.
	var all []Message
	per := map[netip.AddrPort][]Message{}
	dsts := []netip.AddrPort{addrOf(t, b), addrOf(t, c)}
	for i := range 60 {
		m := Message{Buf: datagram(i, 100+i*37%1400), Addr: dsts[(i/3)%2]}
		all = append(all, m)
		per[m.Addr] = append(per[m.Addr], m)
	}
	send(t, a, all)
	expect(t, recvN(t, b, len(per[dsts[0]]), 2000, 8), per[dsts[0]], addrOf(t, a))
	expect(t, recvN(t, c, len(per[dsts[1]]), 2000, 8), per[dsts[1]], addrOf(t, a))
}

func TestFallbackTruncated(t *testing.T) {
	var n memNet
	a := newMem(t, &n, "10.0.0.1:1000")
	b := newMem(t, &n, "10.0.0.2:2000")
	sizes := []int{2000, 1000, 999, 0}
	var ms []Message
	for i, s := range sizes {
		ms = append(ms, Message{Buf: datagram(i, s), Addr: addrOf(t, b)})
	}
	send(t, a, ms)
	for i, g := range recvN(t, b, len(ms), 1000, 1) {
		full := ms[i].Buf
		wantN := min(len(full), 1000)
		if len(g.data) != wantN || g.truncated != (len(full) > 1000) || string(g.data) != string(full[:wantN]) {
			t.Fatalf("datagram %d of %d bytes: N=%d truncated=%v", i, len(full), len(g.data), g.truncated)
		}
	}
}

func TestFallbackDeadlineAndClose(t *testing.T) {
	var n memNet
	a := newMem(t, &n, "10.0.0.1:1000")
	a.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	if k, err := a.ReadBatch([]Message{{Buf: make([]byte, 10)}}); k != 0 || !isTimeout(err) {
		t.Fatalf("ReadBatch past the deadline = %d, %v; want a timeout", k, err)
	}
	a.Close()
	if k, err := a.WriteBatch([]Message{{Buf: []byte("x"), Addr: netip.MustParseAddrPort("10.0.0.2:2000")}}); k != 0 || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("WriteBatch after Close = %d, %v; want net.ErrClosed", k, err)
	}
}

// TestFallbackOverUDP runs the fallback over a real socket hidden behind a
// wrapper, once through ReadFrom/WriteTo and once through the AddrPort
// methods *net.UDPConn also has.
func TestFallbackOverUDP(t *testing.T) {
	type plain struct{ net.PacketConn }
	type addrPort struct{ *net.UDPConn }
	wraps := map[string]func(*net.UDPConn) net.PacketConn{
		"PacketConn": func(u *net.UDPConn) net.PacketConn { return plain{u} },
		"AddrPort":   func(u *net.UDPConn) net.PacketConn { return addrPort{u} },
	}
	for name, wrap := range wraps {
		t.Run(name, func(t *testing.T) {
			mk := func() Conn {
				c, err := New(wrap(listen(t, "udp4", "127.0.0.1:0")), Options{})
				if err != nil {
					t.Fatal(err)
				}
				if _, ok := c.(*genericConn); !ok {
					t.Fatalf("New over %T = %T, want the fallback", wrap(nil), c)
				}
				t.Cleanup(func() { c.Close() })
				return c
			}
			rx, tx := mk(), mk()
			// In slices that the socket's default receive buffer holds:
			// the fallback cannot size the buffers of an opaque PacketConn.
			all := mixedBatch(addrOf(t, rx))
			for len(all) > 0 {
				want := all[:min(8, len(all))]
				all = all[len(want):]
				send(t, tx, want)
				expect(t, recvN(t, rx, len(want), maxDatagram, 8), want, addrOf(t, tx))
			}
		})
	}
}
