package udpio

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"time"
)

// AddrPortReader is implemented by *net.UDPConn, and may be by simulated
// networks: the fallback Conn then reads without allocating a net.Addr.
type AddrPortReader interface {
	ReadFromUDPAddrPort(b []byte) (n int, addr netip.AddrPort, err error)
}

// AddrPortWriter is implemented by *net.UDPConn, and may be by simulated
// networks: the fallback Conn then writes without allocating a net.Addr.
type AddrPortWriter interface {
	WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error)
}

// genericConn moves one datagram per call through any net.PacketConn.
type genericConn struct {
	pc      net.PacketConn
	rd      AddrPortReader // nil if pc lacks it
	wr      AddrPortWriter // nil if pc lacks it
	scratch []byte         // receive buffer for callers' short Bufs (reader only)
}

var _ Conn = (*genericConn)(nil)

func newGeneric(pc net.PacketConn, opt Options) *genericConn {
	g := &genericConn{pc: pc}
	g.rd, _ = pc.(AddrPortReader)
	g.wr, _ = pc.(AddrPortWriter)
	// Best effort: the sizes granted cannot be read back portably.
	if s, ok := pc.(interface{ SetReadBuffer(int) error }); ok {
		if n := bufferSize(opt.ReadBuffer); n > 0 {
			_ = s.SetReadBuffer(n)
		}
	}
	if s, ok := pc.(interface{ SetWriteBuffer(int) error }); ok {
		if n := bufferSize(opt.WriteBuffer); n > 0 {
			_ = s.SetWriteBuffer(n)
		}
	}
	return g
}

// ReadBatch reads one datagram into ms[0]. To tell a truncated datagram from
// one that fits exactly, a Buf shorter than the largest datagram is filled
// from an internal buffer.
func (g *genericConn) ReadBatch(ms []Message) (int, error) {
	if len(ms) == 0 {
		return 0, nil
	}
	m := &ms[0]
	buf := m.Buf
	direct := len(buf) >= maxDatagram
	if !direct {
		if g.scratch == nil {
			g.scratch = make([]byte, maxDatagram)
		}
		buf = g.scratch
	}
	n, addr, err := g.readFrom(buf)
	if err != nil {
		return 0, err
	}
	m.N, m.Truncated = n, false
	if !direct {
		m.N = copy(m.Buf, buf[:n])
		m.Truncated = m.N < n
	}
	m.Addr = unmap(addr)
	return 1, nil
}

func (g *genericConn) readFrom(b []byte) (int, netip.AddrPort, error) {
	if g.rd != nil {
		return g.rd.ReadFromUDPAddrPort(b)
	}
	n, a, err := g.pc.ReadFrom(b)
	return n, addrPortOf(a), err
}

// addrPortOf converts a net.Addr to an AddrPort: the zero value if it is not
// an IP address and port.
func addrPortOf(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case nil:
		return netip.AddrPort{}
	case *net.UDPAddr:
		return a.AddrPort()
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.AddrPort{}
	}
	return ap
}

// WriteBatch writes the messages one at a time.
func (g *genericConn) WriteBatch(ms []Message) (int, error) {
	for i := range ms {
		if err := g.writeTo(ms[i].Buf, ms[i].Addr); err != nil {
			return i, err
		}
	}
	return len(ms), nil
}

func (g *genericConn) writeTo(b []byte, addr netip.AddrPort) error {
	var err error
	switch {
	case !addr.IsValid():
		w, ok := g.pc.(io.Writer)
		if !ok {
			return &net.OpError{Op: "write", Net: g.pc.LocalAddr().Network(), Source: g.pc.LocalAddr(),
				Err: errors.New("no destination address and the PacketConn is not connected")}
		}
		_, err = w.Write(b)
	case g.wr != nil:
		_, err = g.wr.WriteToUDPAddrPort(b, addr)
	default:
		_, err = g.pc.WriteTo(b, net.UDPAddrFromAddrPort(addr))
	}
	return err
}

func (g *genericConn) SetReadDeadline(t time.Time) error { return g.pc.SetReadDeadline(t) }
func (g *genericConn) LocalAddr() net.Addr               { return g.pc.LocalAddr() }
func (g *genericConn) Caps() Caps                        { return Caps{} }
func (g *genericConn) Close() error                      { return g.pc.Close() }
