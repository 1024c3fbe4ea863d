// Package simnet is an in-memory packet network for tests of the engine: a
// net.PacketConn per address, and per-direction links with delay, jitter
// (which reorders), random loss, duplication and a bottleneck rate with a
// drop-tail queue.
//
// It uses only timers and channels, so inside a testing/synctest bubble
// simulated seconds cost no wall time.
package simnet

import (
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"
)

// Link describes one direction between two hosts.
type Link struct {
	Delay  time.Duration // one-way propagation delay
	Jitter time.Duration // extra delay, uniform in [0, Jitter); reorders packets
	Loss   float64       // probability a packet is dropped
	Dup    float64       // probability a packet is delivered twice
	Rate   float64       // bottleneck in bytes per second; 0 is unlimited
	Queue  int           // bottleneck queue in bytes; 0 is one Delay's worth at Rate (at least 64 KiB)
}

// Stats counts what a direction did.
type Stats struct {
	Sent, Delivered, Lost, QueueDrops, Duplicated int
	Bytes                                         int64
}

type direction struct {
	link     Link
	busyTill time.Time // when the bottleneck is free again
	stats    Stats
}

// Network joins Conns.
type Network struct {
	// Tap, if set before traffic flows, sees a copy of every packet sent
	// (before loss is applied), as a capture would.
	Tap func(from, to netip.AddrPort, b []byte)

	mu    sync.Mutex
	rng   *rand.Rand
	conns map[netip.AddrPort]*Conn
	dirs  map[[2]netip.Addr]*direction
}

// New returns an empty network whose random choices follow seed.
func New(seed uint64) *Network {
	return &Network{
		rng:   rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		conns: map[netip.AddrPort]*Conn{},
		dirs:  map[[2]netip.Addr]*direction{},
	}
}

// SetLink sets the link from one host to another (one direction).
func (n *Network) SetLink(from, to netip.Addr, l Link) {
	n.mu.Lock()
	defer n.mu.Unlock()
	d := n.dir(from, to)
	d.link = l
}

// Stats returns the counters of the direction from → to.
func (n *Network) Stats(from, to netip.Addr) Stats {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.dir(from, to).stats
}

func (n *Network) dir(from, to netip.Addr) *direction {
	k := [2]netip.Addr{from, to}
	d := n.dirs[k]
	if d == nil {
		d = &direction{}
		n.dirs[k] = d
	}
	return d
}

// Listen returns a Conn bound to addr.
func (n *Network) Listen(addr netip.AddrPort) *Conn {
	c := &Conn{
		net:   n,
		addr:  addr,
		inbox: make(chan packet, 8192),
		done:  make(chan struct{}),
	}
	n.mu.Lock()
	n.conns[addr] = c
	n.mu.Unlock()
	return c
}

type packet struct {
	data []byte
	from netip.AddrPort
}

// Conn is one endpoint; it implements net.PacketConn.
type Conn struct {
	net   *Network
	addr  netip.AddrPort
	inbox chan packet

	mu       sync.Mutex
	deadline time.Time
	dlChange chan struct{} // closed when the deadline changes

	closeOnce sync.Once
	done      chan struct{}
}

var _ net.PacketConn = (*Conn)(nil)

// ErrClosed is returned for operations on a closed Conn.
var ErrClosed = net.ErrClosed

// WriteTo sends p to addr through the link between the two hosts.
func (c *Conn) WriteTo(p []byte, addr net.Addr) (int, error) {
	select {
	case <-c.done:
		return 0, ErrClosed
	default:
	}
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, errors.New("simnet: not a UDP address")
	}
	to := ua.AddrPort()
	to = netip.AddrPortFrom(to.Addr().Unmap(), to.Port())
	data := append([]byte(nil), p...)
	n := c.net
	if n.Tap != nil {
		n.Tap(c.addr, to, append([]byte(nil), p...))
	}
	n.mu.Lock()
	d := n.dir(c.addr.Addr(), to.Addr())
	d.stats.Sent++
	d.stats.Bytes += int64(len(p))
	l := d.link
	if l.Loss > 0 && n.rng.Float64() < l.Loss {
		d.stats.Lost++
		n.mu.Unlock()
		return len(p), nil
	}
	now := time.Now()
	depart := now
	if l.Rate > 0 {
		queue := l.Queue
		if queue == 0 {
			queue = max(int(l.Rate*l.Delay.Seconds()), 64<<10)
		}
		start := now
		if d.busyTill.After(start) {
			start = d.busyTill
		}
		if float64(start.Sub(now))*l.Rate/float64(time.Second) > float64(queue) {
			d.stats.QueueDrops++
			n.mu.Unlock()
			return len(p), nil
		}
		depart = start.Add(time.Duration(float64(len(p)) / l.Rate * float64(time.Second)))
		d.busyTill = depart
	}
	copies := 1
	if l.Dup > 0 && n.rng.Float64() < l.Dup {
		copies = 2
		d.stats.Duplicated++
	}
	var delays []time.Duration
	for i := 0; i < copies; i++ {
		extra := time.Duration(0)
		if l.Jitter > 0 {
			extra = time.Duration(n.rng.Int64N(int64(l.Jitter)))
		}
		delays = append(delays, depart.Sub(now)+l.Delay+extra)
	}
	dst := n.conns[to]
	n.mu.Unlock()
	for _, delay := range delays {
		pk := packet{data: data, from: c.addr}
		deliver := func() {
			if dst == nil {
				return
			}
			select {
			case <-dst.done:
				return
			default:
			}
			select {
			case dst.inbox <- pk:
				n.mu.Lock()
				n.dir(c.addr.Addr(), to.Addr()).stats.Delivered++
				n.mu.Unlock()
			default: // a full socket buffer drops
				n.mu.Lock()
				n.dir(c.addr.Addr(), to.Addr()).stats.QueueDrops++
				n.mu.Unlock()
			}
		}
		if delay <= 0 {
			deliver()
		} else {
			time.AfterFunc(delay, deliver)
		}
	}
	return len(p), nil
}

// ReadFrom waits for the next packet or the read deadline.
func (c *Conn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		c.mu.Lock()
		dl := c.deadline
		if c.dlChange == nil {
			c.dlChange = make(chan struct{})
		}
		changed := c.dlChange
		c.mu.Unlock()
		var timeout <-chan time.Time
		if !dl.IsZero() {
			wait := time.Until(dl)
			if wait <= 0 {
				return 0, nil, os.ErrDeadlineExceeded
			}
			t := time.NewTimer(wait)
			timeout = t.C
			defer t.Stop()
		}
		select {
		case pk := <-c.inbox:
			n := copy(p, pk.data)
			return n, net.UDPAddrFromAddrPort(pk.from), nil
		case <-c.done:
			return 0, nil, ErrClosed
		case <-timeout:
			return 0, nil, os.ErrDeadlineExceeded
		case <-changed:
		}
	}
}

// Close stops the Conn; blocked reads return ErrClosed.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		close(c.done)
		c.net.mu.Lock()
		if c.net.conns[c.addr] == c {
			delete(c.net.conns, c.addr)
		}
		c.net.mu.Unlock()
	})
	return nil
}

// LocalAddr returns the Conn's address.
func (c *Conn) LocalAddr() net.Addr { return net.UDPAddrFromAddrPort(c.addr) }

// SetDeadline sets the read deadline (writes never block).
func (c *Conn) SetDeadline(t time.Time) error { return c.SetReadDeadline(t) }

// SetReadDeadline sets when a blocked ReadFrom gives up.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	if c.dlChange != nil {
		close(c.dlChange)
		c.dlChange = nil
	}
	c.mu.Unlock()
	return nil
}

// SetWriteDeadline does nothing: writes never block.
func (c *Conn) SetWriteDeadline(time.Time) error { return nil }
