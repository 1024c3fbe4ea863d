package linkem

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// pipe forwards one direction: it reads packets from in, passes them
// through a shaper, holds them in a FIFO and writes each to out at its due
// time.
//
// Two goroutines run a pipe: readLoop (read, decide, enqueue) and
// writeLoop (wait for the head's due time, write). They share the FIFO,
// the shaper and the counters under mu. writeLoop sleeps on a timerfd read
// through the runtime poller; whoever makes a packet the FIFO's head arms
// the timer for its due time. Because the FIFO only grows at the tail, the
// head's due time never moves earlier, so one timer suffices.
type pipe struct {
	dir   Dir
	in    io.Reader // one packet per Read
	out   io.Writer // one packet per Write
	epoch time.Time // zero of the shaper's time scale
	bufSz int       // size of packet buffers: the MTU, plus a virtio header with vnet
	vnet  bool      // packets carry virtio-net headers (Config.Offload)

	timer   *os.File // timerfd, CLOCK_MONOTONIC, non-blocking
	timerFD int

	mu      sync.Mutex
	closed  bool
	early   int64 // wake-up compensation, ns
	firesAt int64 // when the armed timer fires
	sh      *shaper
	line    fifo
	free    [][]byte
	bufs    int // buffers allocated
	maxBufs int
	st      DirStats
	late    lateRecorder
	waiting bool       // readLoop waits for the writer to catch up
	caught  *sync.Cond // signalled when the writer is no longer behind, or on close
}

// maxHeldBytes bounds the packet memory of one direction.
const maxHeldBytes = 256 << 20

// writeBatch is the most packets writeLoop takes from the FIFO per lock.
const writeBatch = 64

func newPipe(dir Dir, in io.Reader, out io.Writer, mtu int, vnet bool, sh *shaper, epoch time.Time) (*pipe, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("linkem: timerfd_create: %w", err)
	}
	p := &pipe{
		dir:     dir,
		in:      in,
		out:     out,
		epoch:   epoch,
		bufSz:   mtu,
		vnet:    vnet,
		timer:   os.NewFile(uintptr(fd), "linkem-timer-"+dir.String()),
		timerFD: fd,
		sh:      sh,
		maxBufs: max(1024, maxHeldBytes/mtu),
	}
	if vnet {
		p.bufSz += vnetHdrLen
	}
	p.caught = sync.NewCond(&p.mu)
	p.early = initialEarly
	return p, nil
}

// now is the shaper's clock: monotonic nanoseconds since epoch.
func (p *pipe) now() int64 { return int64(time.Since(p.epoch)) }

// arm sets the timer for a packet due at due, now being now. It fires
// p.early before due, the wake-up latency the writer expects, so that the
// writer usually runs just after due rather than a whole wake-up latency
// later. p.mu must be held, so that arm never races with close.
func (p *pipe) arm(due, now int64) {
	if p.closed {
		return
	}
	d := max(due-p.early-now, 1) // zero would disarm the timer
	p.firesAt = now + d
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(d)}
	// timerfd_settime on a valid timerfd with a valid spec cannot fail.
	_ = unix.TimerfdSettime(p.timerFD, 0, &spec, nil)
}

// learnWake updates p.early from one observed wake-up latency: a
// stochastic estimate of its earlyQuantile, so that the writer wakes
// before due only that often (and then spins the rest). p.mu must be held.
func (p *pipe) learnWake(latency int64) {
	if latency < 0 || latency > maxEarly*4 {
		return // a stale tick, or a stall that says nothing of the timer
	}
	if latency >= p.early {
		p.early += earlyStep * earlyQuantile
	} else {
		p.early -= earlyStep * (1 - earlyQuantile)
	}
	p.early = min(max(p.early, 0), maxEarly)
}

// Wake-up compensation: the writer aims to wake before the due time in
// about earlyQuantile of cases, never by more than maxEarly.
const (
	earlyQuantile = 0.05
	earlyStep     = 20000 // ns
	maxEarly      = int64(100 * time.Microsecond)
	initialEarly  = int64(50 * time.Microsecond) // typical on a virtual machine
)

// maxBehind is how late the FIFO's head may get before the reader stops
// reading until the writer catches up. When the machine cannot keep up,
// packets then wait (and, past the TUN device's queue, get dropped) in
// the kernel, as at an overloaded router, instead of piling up here as
// ever-growing delay.
const maxBehind = int64(2 * time.Millisecond)

// behind reports whether the writer is more than maxBehind late. p.mu
// must be held.
func (p *pipe) behind(now int64) bool {
	return p.line.len() > 0 && now-p.line.peek().due > maxBehind
}

// take returns a free packet buffer, or nil when the memory bound is
// reached. p.mu must be held.
func (p *pipe) take() []byte {
	if n := len(p.free); n > 0 {
		b := p.free[n-1]
		p.free = p.free[:n-1]
		return b
	}
	if p.bufs >= p.maxBufs {
		return nil
	}
	p.bufs++
	return make([]byte, p.bufSz)
}

// readLoop runs until in is closed. It returns nil on close, else the
// read error.
func (p *pipe) readLoop() error {
	if p.vnet {
		return p.readLoopVnet()
	}
	scratch := make([]byte, p.bufSz)
	p.mu.Lock()
	cur := p.take()
	p.mu.Unlock()
	for {
		buf := cur
		if buf == nil {
			buf = scratch
		}
		n, err := p.in.Read(buf)
		if err != nil {
			if closedErr(err) {
				return nil
			}
			if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
				continue
			}
			return fmt.Errorf("linkem: %s: read: %w", p.dir, err)
		}
		if n == 0 {
			continue
		}
		now := p.now()
		p.mu.Lock()
		p.st.Reads++
		p.st.PacketsIn++
		p.st.BytesIn += uint64(n)
		if cur == nil {
			// Out of packet memory: count it as a queue drop and try
			// again for a buffer.
			p.st.QueueDrops++
			p.st.QueueDropBytes += uint64(n)
			cur = p.take()
			p.mu.Unlock()
			continue
		}
		due, queued, v := p.sh.admit(now, n)
		switch v {
		case lost:
			p.st.Lost++
			p.st.LostBytes += uint64(n)
		case overflow:
			p.st.QueueDrops++
			p.st.QueueDropBytes += uint64(n)
		case pass:
			p.st.MaxQueue = max(p.st.MaxQueue, queued)
			if p.line.len() == 0 {
				p.arm(due, now)
			}
			p.line.push(packet{buf: cur, n: n, due: due})
			cur = p.take()
		}
		if p.behind(now) {
			p.st.Stalls++
			p.waiting = true
			for p.waiting && !p.closed {
				p.caught.Wait()
			}
		}
		p.mu.Unlock()
	}
}

// readLoopVnet is readLoop for devices with virtio-net headers: it
// reads super-packets and offers each segment to the shaper on its own.
func (p *pipe) readLoopVnet() error {
	big := make([]byte, maxSuperPacket)
	for {
		n, err := p.in.Read(big)
		if err != nil {
			if closedErr(err) {
				return nil
			}
			if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
				continue
			}
			return fmt.Errorf("linkem: %s: read: %w", p.dir, err)
		}
		if n <= vnetHdrLen {
			continue
		}
		now := p.now()
		h := decodeVnetHdr(big)
		p.mu.Lock()
		p.st.Reads++
		switch {
		case h.gsoType == gsoNone && n <= p.bufSz:
			if buf := p.take(); buf == nil {
				p.outOfMemory(n - vnetHdrLen)
			} else {
				copy(buf, big[:n])
				p.offer(now, buf, n)
			}
		case h.gsoType&^gsoECN == gsoTCPv4:
			var short bool
			err := splitTSO(big[vnetHdrLen:n], int(h.gsoSize),
				func() []byte {
					b := p.take()
					short = b == nil
					return b
				},
				func(seg []byte) { p.offer(now, seg, len(seg)) })
			if short || err != nil {
				// The rest of the super-packet is lost to the
				// forwarder's memory bound, or it was malformed.
				p.outOfMemory(n - vnetHdrLen)
			}
		default:
			p.outOfMemory(n - vnetHdrLen)
		}
		if p.behind(now) {
			p.st.Stalls++
			p.waiting = true
			for p.waiting && !p.closed {
				p.caught.Wait()
			}
		}
		p.mu.Unlock()
	}
}

// offer passes the packet in buf[:n] (virtio header included) through the
// shaper and queues or recycles it. p.mu must be held.
func (p *pipe) offer(now int64, buf []byte, n int) {
	size := n - vnetHdrLen
	p.st.PacketsIn++
	p.st.BytesIn += uint64(size)
	due, queued, v := p.sh.admit(now, size)
	switch v {
	case lost:
		p.st.Lost++
		p.st.LostBytes += uint64(size)
		p.free = append(p.free, buf[:cap(buf)])
	case overflow:
		p.st.QueueDrops++
		p.st.QueueDropBytes += uint64(size)
		p.free = append(p.free, buf[:cap(buf)])
	case pass:
		p.st.MaxQueue = max(p.st.MaxQueue, queued)
		if p.line.len() == 0 {
			p.arm(due, now)
		}
		p.line.push(packet{buf: buf[:cap(buf)], n: n, due: due})
	}
}

// outOfMemory counts size bytes dropped for want of packet memory (or
// as malformed) as a queue drop. p.mu must be held.
func (p *pipe) outOfMemory(size int) {
	p.st.PacketsIn++
	p.st.BytesIn += uint64(size)
	p.st.QueueDrops++
	p.st.QueueDropBytes += uint64(size)
}

// writeLoop runs until the timer is closed. It returns nil on close, else
// the error that stopped it.
func (p *pipe) writeLoop() error {
	var tick [8]byte
	batch := make([]packet, 0, writeBatch)
	lateness := make([]int64, 0, writeBatch)
	var fwd, fwdBytes, werr, writes uint64
	var co coalescer
	for {
		if _, err := p.timer.Read(tick[:]); err != nil {
			if closedErr(err) {
				return nil
			}
			if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
				continue
			}
			return fmt.Errorf("linkem: %s: timer: %w", p.dir, err)
		}
		woke := true
		for {
			p.mu.Lock()
			// Account for the previous batch, then take the packets due.
			for i := range batch {
				p.free = append(p.free, batch[i].buf)
				p.late.add(lateness[i])
			}
			p.st.Forwarded += fwd
			p.st.ForwardedBytes += fwdBytes
			p.st.WriteErrors += werr
			p.st.Writes += writes
			fwd, fwdBytes, werr, writes = 0, 0, 0, 0
			batch, lateness = batch[:0], lateness[:0]
			if p.closed {
				p.mu.Unlock()
				return nil
			}
			now := p.now()
			if woke {
				p.learnWake(now - p.firesAt)
				woke = false
				// Woken early on purpose: wait out the last stretch.
				if p.line.len() > 0 {
					if due := p.line.peek().due; due > now && due-now <= p.early {
						p.mu.Unlock()
						for p.now() < due {
							runtime.Gosched()
						}
						p.mu.Lock()
						now = p.now()
					}
				}
			}
			for p.line.len() > 0 && len(batch) < writeBatch && p.line.peek().due <= now {
				batch = append(batch, p.line.pop())
			}
			if p.line.len() > 0 && p.line.peek().due > now {
				p.arm(p.line.peek().due, now)
			}
			if p.waiting && !p.behind(now) {
				p.waiting = false
				p.caught.Broadcast()
			}
			p.mu.Unlock()
			if len(batch) == 0 {
				break // sleep until the timer fires
			}
			if p.vnet {
				var closed bool
				lateness, fwd, fwdBytes, werr, writes, closed = p.writeVnet(batch, lateness, &co)
				if closed {
					return nil
				}
				continue
			}
			for i := range batch {
				pk := &batch[i]
				lateness = append(lateness, p.now()-pk.due)
				writes++
				if _, err := p.out.Write(pk.buf[:pk.n]); err != nil {
					if closedErr(err) {
						return nil
					}
					werr++
					continue
				}
				fwd++
				fwdBytes += uint64(pk.n)
			}
		}
	}
}

// writeVnet writes a batch of due packets with virtio headers, gluing
// runs of consecutive TCP segments of one flow into super-packets. It
// returns the lateness of each packet, the packets and bytes written, the
// packets that failed, the write calls made, and whether out was closed.
func (p *pipe) writeVnet(batch []packet, lateness []int64, co *coalescer) (_ []int64, fwd, fwdBytes, werr, writes uint64, closed bool) {
	var run, runBytes uint64 // segments and IP bytes in co
	write := func(b []byte, segs, bytes uint64) {
		if closed {
			return
		}
		writes++
		if _, err := p.out.Write(b); err != nil {
			if closedErr(err) {
				closed = true
				return
			}
			werr += segs
			return
		}
		fwd += segs
		fwdBytes += bytes
	}
	flush := func() {
		if run > 0 {
			write(co.finish(), run, runBytes)
			run, runBytes = 0, 0
		}
	}
	for i := range batch {
		pk := &batch[i]
		lateness = append(lateness, p.now()-pk.due)
		seg := pk.buf[vnetHdrLen:pk.n]
		if run > 0 && co.canJoin(seg) {
			co.add(seg)
			run++
			runBytes += uint64(len(seg))
			continue
		}
		flush()
		if co.start(seg) {
			run, runBytes = 1, uint64(len(seg))
			continue
		}
		write(pk.buf[:pk.n], 1, uint64(len(seg)))
	}
	flush()
	return lateness, fwd, fwdBytes, werr, writes, closed
}

// stats returns a copy of the counters. p.mu must not be held.
func (p *pipe) stats() DirStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.st
	s.InFlight = uint64(p.line.len())
	s.Queue = p.sh.backlog(p.now())
	s.QueueLimit = p.sh.limit
	s.Late = p.late.summary()
	return s
}

// setLink changes the link for packets arriving from now on.
func (p *pipe) setLink(l Link, limit int64) {
	p.mu.Lock()
	p.sh.link = l
	p.sh.limit = limit
	p.mu.Unlock()
}

func (p *pipe) link() Link {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sh.link
}

// close stops writeLoop (readLoop stops when its reader is closed) and
// drops the packets in flight.
func (p *pipe) close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.line = fifo{}
	p.caught.Broadcast()
	p.mu.Unlock()
	return p.timer.Close()
}

func closedErr(err error) bool {
	return errors.Is(err, os.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, unix.EBADFD)
}

// packet is one IP packet held for its due time.
type packet struct {
	buf []byte
	n   int
	due int64
}

// fifo is a growable ring of packets.
type fifo struct {
	q    []packet
	head int
	n    int
}

func (f *fifo) len() int { return f.n }

func (f *fifo) push(p packet) {
	if f.n == len(f.q) {
		q := make([]packet, max(64, 2*len(f.q)))
		for i := 0; i < f.n; i++ {
			q[i] = f.q[(f.head+i)%len(f.q)]
		}
		f.q, f.head = q, 0
	}
	f.q[(f.head+f.n)%len(f.q)] = p
	f.n++
}

// peek returns the head; the fifo must not be empty.
func (f *fifo) peek() *packet { return &f.q[f.head] }

// pop removes and returns the head; the fifo must not be empty.
func (f *fifo) pop() packet {
	p := f.q[f.head]
	f.q[f.head] = packet{}
	f.head = (f.head + 1) % len(f.q)
	f.n--
	return p
}
