//go:build linux

package udpio

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

const (
	// maxVec is the most mmsghdrs per recvmmsg/sendmmsg and the most iovecs
	// per sendmmsg (the kernel's UIO_MAXIOV).
	maxVec = 1024
	// groSlots is the number of 64 KiB buffers one recvmmsg fills when GRO
	// is on. Each may hold many datagrams: 32 slots hold up to about 1500
	// datagrams of 1400 bytes.
	groSlots = 32
	// readOOB is the control buffer per received message: room for the
	// UDP_GRO cmsg and any other the socket's owner may have enabled.
	readOOB = 128
)

// linuxConn batches system calls on a *net.UDPConn. The reader and writer
// halves share nothing mutable but the atomic flags, so one goroutine may
// read while another writes.
type linuxConn struct {
	pc    *net.UDPConn
	rc    syscall.RawConn
	laddr net.Addr
	v6    bool        // the socket is AF_INET6 (possibly dual-stack)
	gro   bool        // UDP_GRO is on: read into 64 KiB slots and split
	rxts  bool        // SO_TIMESTAMPNS is on: datagrams carry their arrival time
	gso   atomic.Bool // UDP_SEGMENT sends; cleared for good on EIO/EINVAL
	mmsg  atomic.Bool // recvmmsg/sendmmsg; cleared if the kernel lacks them
	rbuf  int         // SO_RCVBUF granted
	wbuf  int         // SO_SNDBUF granted
	r     reader
	w     writer
}

var _ Conn = (*linuxConn)(nil)

func newPlatform(pc net.PacketConn, opt Options) (Conn, error) {
	u, ok := pc.(*net.UDPConn)
	if !ok {
		return nil, nil
	}
	return newLinux(u, opt)
}

func newLinux(pc *net.UDPConn, opt Options) (*linuxConn, error) {
	rc, err := pc.SyscallConn()
	if err != nil {
		return nil, &net.OpError{Op: "udpio", Net: "udp", Source: pc.LocalAddr(), Err: err}
	}
	c := &linuxConn{pc: pc, rc: rc, laddr: pc.LocalAddr()}
	var serr error
	var gso, gro, rxts bool
	err = rc.Control(func(fd uintptr) {
		s := int(fd)
		var domain int
		domain, serr = syscall.GetsockoptInt(s, syscall.SOL_SOCKET, syscall.SO_DOMAIN)
		if serr != nil {
			serr = os.NewSyscallError("getsockopt SO_DOMAIN", serr)
			return
		}
		c.v6 = domain == syscall.AF_INET6
		c.rbuf = setBuffer(s, syscall.SO_RCVBUFFORCE, syscall.SO_RCVBUF, bufferSize(opt.ReadBuffer))
		c.wbuf = setBuffer(s, syscall.SO_SNDBUFFORCE, syscall.SO_SNDBUF, bufferSize(opt.WriteBuffer))
		if !opt.DisableGSO {
			// Linux 4.18+ knows the option; reading it is the cheapest probe.
			_, e := syscall.GetsockoptInt(s, solUDP, udpSegment)
			gso = e == nil
		}
		if !opt.DisableGRO {
			gro = syscall.SetsockoptInt(s, solUDP, udpGRO, 1) == nil
		} else {
			// The socket may come with GRO on; coalesced buffers would then
			// be taken for single datagrams.
			_ = syscall.SetsockoptInt(s, solUDP, udpGRO, 0)
		}
		rxts = syscall.SetsockoptInt(s, syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1) == nil
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return nil, &net.OpError{Op: "udpio", Net: "udp", Source: c.laddr, Err: err}
	}
	c.gro, c.rxts = gro, rxts
	c.gso.Store(gso)
	c.mmsg.Store(!opt.DisableMMsg)
	c.r.init(c)
	c.w.init(c)
	return c, nil
}

// setBuffer asks for size bytes of socket buffer, forcibly if permitted, and
// returns what the kernel reports granting (0 if it cannot be read).
func setBuffer(fd, force, plain, size int) int {
	if size > 0 {
		if syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, force, size) != nil {
			_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, plain, size)
		}
	}
	got, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, plain)
	if err != nil {
		return 0
	}
	return got
}

func (c *linuxConn) Caps() Caps {
	return Caps{GSO: c.gso.Load(), GRO: c.gro, MMsg: c.mmsg.Load(), RxTimestamps: c.rxts, ReadBuffer: c.rbuf, WriteBuffer: c.wbuf}
}

func (c *linuxConn) SetReadDeadline(t time.Time) error { return c.pc.SetReadDeadline(t) }
func (c *linuxConn) LocalAddr() net.Addr               { return c.laddr }
func (c *linuxConn) Close() error                      { return c.pc.Close() }

// opError describes a failed read or write the way package net does.
func (c *linuxConn) opError(op string, dst netip.AddrPort, err error) error {
	// RawConn wraps its errors (deadline, closed) in an OpError of its own
	// ("raw-read"); keep only the cause.
	var oe *net.OpError
	if errors.As(err, &oe) {
		err = oe.Err
	}
	e := &net.OpError{Op: op, Net: "udp", Source: c.laddr, Err: err}
	if dst.IsValid() {
		e.Addr = net.UDPAddrFromAddrPort(dst)
	}
	return e
}

// ReadBatch implements Conn.
func (c *linuxConn) ReadBatch(ms []Message) (int, error) {
	if len(ms) == 0 {
		return 0, nil
	}
	r := &c.r
	if c.gro {
		if n := r.drain(ms); n > 0 {
			return n, nil
		}
		r.prepareSlots(min(len(ms), groSlots))
	} else {
		r.prepareBufs(ms[:min(len(ms), maxVec)])
	}
	if err := c.rc.Read(r.fn); err != nil {
		if !c.gro {
			clear(r.iovs[:r.want])
		}
		return 0, c.opError("read", netip.AddrPort{}, err)
	}
	if r.errno != 0 {
		op := "recvmmsg"
		if !c.mmsg.Load() {
			op = "recvmsg"
		}
		return 0, c.opError("read", netip.AddrPort{}, os.NewSyscallError(op, r.errno))
	}
	if c.gro {
		r.load()
		return r.drain(ms), nil
	}
	for i := range r.got {
		h := &r.hdrs[i]
		m := &ms[i]
		m.N = int(h.len)
		m.Truncated = h.hdr.flags&syscall.MSG_TRUNC != 0
		m.Addr = r.decode(&r.names[i])
		_, m.At = parseCmsgs(r.oob[i*readOOB : i*readOOB+int(h.hdr.controllen)])
	}
	clear(r.iovs[:r.want]) // do not keep the caller's buffers alive
	return r.got, nil
}

// reader owns the receive side: headers, addresses, control buffers and,
// with GRO, the 64 KiB slots and what remains of them for the next call.
type reader struct {
	c     *linuxConn
	hdrs  []mmsghdr
	iovs  []iovec
	names []syscall.RawSockaddrInet6 // large enough for either family
	oob   []byte                     // readOOB bytes per header, 8-byte aligned

	slots []byte      // groSlots × maxDatagram (GRO only)
	segs  []segmenter // per slot, what has not been handed out yet
	head  int         // segs[head:tail] still hold datagrams
	tail  int

	fn    func(fd uintptr) bool // r.recv, bound once so that Read does not allocate
	want  int                   // headers to fill
	got   int                   // headers filled
	errno syscall.Errno

	zones map[uint32]string // IPv6 scope id → zone name

	// Counters for tests.
	syscalls  int // successful receive system calls
	coalesced int // buffers that held more than one datagram
}

func (r *reader) init(c *linuxConn) {
	r.c = c
	r.fn = r.recv
	if c.gro {
		r.grow(groSlots)
		r.slots = make([]byte, groSlots*maxDatagram)
		r.segs = make([]segmenter, groSlots)
	}
}

// grow makes room for n headers; it allocates only when n exceeds every
// earlier batch.
func (r *reader) grow(n int) {
	if n <= len(r.hdrs) {
		return
	}
	r.hdrs = make([]mmsghdr, n)
	r.iovs = make([]iovec, n)
	r.names = make([]syscall.RawSockaddrInet6, n)
	r.oob = alignedBytes(n * readOOB)
	for i := range r.hdrs {
		h := &r.hdrs[i].hdr
		h.name = (*byte)(unsafe.Pointer(&r.names[i]))
		h.iov = &r.iovs[i]
		h.iovlen = 1
		h.control = &r.oob[i*readOOB]
	}
}

// prepareBufs points the first len(ms) headers at the callers' buffers.
func (r *reader) prepareBufs(ms []Message) {
	r.grow(len(ms))
	for i := range ms {
		b := ms[i].Buf
		iov := &r.iovs[i]
		iov.base = nil
		if len(b) > 0 {
			iov.base = &b[0]
		}
		iov.len = uintptr(len(b))
		r.reset(i)
	}
	r.want = len(ms)
}

// prepareSlots points the first n headers at the GRO slots.
func (r *reader) prepareSlots(n int) {
	for i := range n {
		iov := &r.iovs[i]
		iov.base = &r.slots[i*maxDatagram]
		iov.len = maxDatagram
		r.reset(i)
	}
	r.want = n
}

func (r *reader) reset(i int) {
	h := &r.hdrs[i]
	h.hdr.namelen = syscall.SizeofSockaddrInet6
	h.hdr.controllen = readOOB
	h.hdr.flags = 0
	h.len = 0
}

// recv runs inside RawConn.Read: false asks to wait until the socket is
// readable.
func (r *reader) recv(fd uintptr) bool {
	for {
		var n uintptr
		var e syscall.Errno
		if r.c.mmsg.Load() {
			n, _, e = syscall.Syscall6(sysRECVMMSG, fd, uintptr(unsafe.Pointer(&r.hdrs[0])), uintptr(r.want), 0, 0, 0)
			if e == syscall.ENOSYS {
				r.c.mmsg.Store(false)
				continue
			}
		} else {
			n, _, e = syscall.Syscall(sysRECVMSG, fd, uintptr(unsafe.Pointer(&r.hdrs[0].hdr)), 0)
			if e == 0 {
				r.hdrs[0].len = uint32(n)
				n = 1
			}
		}
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		case 0:
			r.syscalls++
		}
		r.got, r.errno = int(n), e
		return true
	}
}

// load turns the filled GRO slots into segmenters.
func (r *reader) load() {
	for i := range r.got {
		h := &r.hdrs[i]
		n := int(h.len)
		seg, at := parseCmsgs(r.oob[i*readOOB : i*readOOB+int(h.hdr.controllen)])
		if seg > 0 && seg < n {
			r.coalesced++
		}
		data := r.slots[i*maxDatagram : i*maxDatagram+n]
		r.segs[i].reset(data, seg, r.decode(&r.names[i]), h.hdr.flags&syscall.MSG_TRUNC != 0, at)
	}
	r.head, r.tail = 0, r.got
}

// drain hands out datagrams kept from earlier receives.
func (r *reader) drain(ms []Message) int {
	n := 0
	for r.head < r.tail && n < len(ms) {
		s := &r.segs[r.head]
		n += s.fill(ms[n:])
		if s.done() {
			r.head++
		}
	}
	return n
}

// parseCmsgs returns the segment size carried by a UDP_GRO control message
// in oob (0 if there is none) and the receive time of an SCM_TIMESTAMPNS
// one (zero if there is none).
func parseCmsgs(oob []byte) (seg int, at time.Time) {
	for len(oob) >= cmsgData {
		h := (*cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.len)
		if l < cmsgData || l > len(oob) {
			return seg, at
		}
		switch {
		case h.level == solUDP && h.typ == udpGRO && l >= cmsgData+4:
			seg = int(int32(binary.NativeEndian.Uint32(oob[cmsgData:])))
		case h.level == syscall.SOL_SOCKET && h.typ == syscall.SCM_TIMESTAMPNS && l >= cmsgData+int(unsafe.Sizeof(syscall.Timespec{})):
			ts := (*syscall.Timespec)(unsafe.Pointer(&oob[cmsgData]))
			at = time.Unix(int64(ts.Sec), int64(ts.Nsec))
		}
		oob = oob[min(cmsgAlign(l), len(oob)):]
	}
	return seg, at
}

// decode reads a source address filled in by the kernel.
func (r *reader) decode(sa *syscall.RawSockaddrInet6) netip.AddrPort {
	switch sa.Family {
	case syscall.AF_INET:
		sa4 := (*syscall.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), portOf(&sa4.Port))
	case syscall.AF_INET6:
		a := netip.AddrFrom16(sa.Addr).Unmap()
		if sa.Scope_id != 0 && a.Is6() {
			a = a.WithZone(r.zone(sa.Scope_id))
		}
		return netip.AddrPortFrom(a, portOf(&sa.Port))
	}
	return netip.AddrPort{}
}

// zone names an IPv6 scope id (an interface index), remembering the answer.
func (r *reader) zone(id uint32) string {
	if z, ok := r.zones[id]; ok {
		return z
	}
	if r.zones == nil {
		r.zones = make(map[uint32]string)
	}
	z := strconv.FormatUint(uint64(id), 10)
	if ifi, err := net.InterfaceByIndex(int(id)); err == nil {
		z = ifi.Name
	}
	r.zones[id] = z
	return z
}

// portOf reads a port stored in network byte order.
func portOf(p *uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(p))
	return uint16(b[0])<<8 | uint16(b[1])
}

func putPort(p *uint16, port uint16) {
	b := (*[2]byte)(unsafe.Pointer(p))
	b[0], b[1] = byte(port>>8), byte(port)
}

// alignedBytes returns n zero bytes aligned for cmsg headers.
func alignedBytes(n int) []byte {
	words := make([]uint64, (n+7)/8)
	return unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), n)
}

// WriteBatch implements Conn.
func (c *linuxConn) WriteBatch(ms []Message) (int, error) {
	w := &c.w
	defer w.release(len(ms))
	sent := 0
	tooBig := false // a GSO send exceeded the path MTU: no more GSO in this call
	for sent < len(ms) {
		gso := c.gso.Load() && !tooBig
		entries, berr := w.build(ms[sent:], gso)
		retry := false
		for e := 0; e < entries; {
			w.from, w.count = e, entries-e
			if err := c.rc.Write(w.fn); err != nil {
				return sent, c.opError("write", ms[sent].Addr, err)
			}
			if w.errno != 0 {
				if w.counts[e] > 1 && (w.errno == syscall.EIO || w.errno == syscall.EINVAL) {
					// The path cannot take GSO: never again, and this
					// batch once more without it.
					c.gso.Store(false)
					retry = true
					break
				}
				if w.counts[e] > 1 && w.errno == syscall.EMSGSIZE {
					// Segments larger than the path MTU: send them as
					// separate datagrams, which the kernel fragments or
					// refuses exactly as it would without GSO.
					tooBig = true
					retry = true
					break
				}
				op := "sendmmsg"
				if !c.mmsg.Load() {
					op = "sendmsg"
				}
				return sent, c.opError("write", ms[sent].Addr, os.NewSyscallError(op, w.errno))
			}
			if w.n <= 0 {
				return sent, c.opError("write", ms[sent].Addr, io.ErrNoProgress)
			}
			for _, k := range w.counts[e : e+w.n] {
				sent += k
				if k > 1 {
					w.gsoSends++
				}
			}
			e += w.n
		}
		if retry {
			continue
		}
		if berr != nil {
			return sent, c.opError("write", ms[sent].Addr, berr)
		}
	}
	return sent, nil
}

// writer owns the send side.
type writer struct {
	c      *linuxConn
	hdrs   []mmsghdr
	iovs   []iovec
	names  []syscall.RawSockaddrInet6
	oob    []byte // gsoOOB bytes per header, 8-byte aligned
	counts []int  // messages carried by each header

	fn    func(fd uintptr) bool // w.send, bound once
	from  int                   // first header to send
	count int                   // headers to send
	n     int                   // headers sent
	errno syscall.Errno

	// fault, when set (by tests), is asked about each header before it is
	// sent and may refuse it with an errno, as the kernel would.
	fault func(h *msghdr) syscall.Errno

	zones map[string]uint32 // IPv6 zone name → scope id

	// Counters for tests.
	syscalls int // successful send system calls
	gsoSends int // datagram groups sent with UDP_SEGMENT
}

func (w *writer) init(c *linuxConn) {
	w.c = c
	w.fn = w.send
}

// release forgets the buffers of the last n messages sent, so that the
// writer does not keep the caller's memory alive.
func (w *writer) release(n int) {
	clear(w.iovs[:min(n, len(w.iovs))])
}

// grow makes room for n headers and iovecs; it allocates only when n
// exceeds every earlier batch.
func (w *writer) grow(n int) {
	if n <= len(w.hdrs) {
		return
	}
	w.hdrs = make([]mmsghdr, n)
	w.iovs = make([]iovec, n)
	w.names = make([]syscall.RawSockaddrInet6, n)
	w.oob = alignedBytes(n * gsoOOB)
	w.counts = make([]int, n)
}

// build fills headers for a prefix of ms, coalescing runs for GSO when gso
// is set, and returns how many headers it filled. If it stops at a message
// whose address the socket cannot reach, it returns that error too; the
// headers before it are good to send.
func (w *writer) build(ms []Message, gso bool) (entries int, err error) {
	w.grow(min(len(ms), maxVec))
	iov := 0
	for i := 0; i < len(ms) && iov < len(w.iovs); entries++ {
		m := &ms[i]
		h := &w.hdrs[entries].hdr
		if err := w.encode(h, &w.names[entries], m.Addr); err != nil {
			return entries, err
		}
		seg := len(m.Buf)
		count := 1
		if gso && seg > 0 {
			limit := min(MaxGSOSegments, len(ms)-i, len(w.iovs)-iov)
			total := seg
			for count < limit {
				next := &ms[i+count]
				l := len(next.Buf)
				if next.Addr != m.Addr || l == 0 || l > seg || total+l > MaxGSOBytes {
					break
				}
				total += l
				count++
				if l < seg {
					break
				}
			}
		}
		for j := range count {
			b := ms[i+j].Buf
			v := &w.iovs[iov+j]
			v.base = nil
			if len(b) > 0 {
				v.base = &b[0]
			}
			v.len = uintptr(len(b))
		}
		h.iov = &w.iovs[iov]
		h.iovlen = uintptr(count)
		h.control = nil
		h.controllen = 0
		if count > 1 {
			oob := w.oob[entries*gsoOOB : (entries+1)*gsoOOB]
			ch := (*cmsghdr)(unsafe.Pointer(&oob[0]))
			ch.level = solUDP
			ch.typ = udpSegment
			ch.len = uintptr(cmsgData + 2)
			binary.NativeEndian.PutUint16(oob[cmsgData:], uint16(seg))
			h.control = &oob[0]
			h.controllen = uintptr(gsoOOB)
		}
		h.flags = 0
		w.counts[entries] = count
		iov += count
		i += count
	}
	return entries, nil
}

// encode writes the destination ap into h and its sockaddr sa.
func (w *writer) encode(h *msghdr, sa *syscall.RawSockaddrInet6, ap netip.AddrPort) error {
	a := ap.Addr()
	switch {
	case !a.IsValid():
		h.name, h.namelen = nil, 0
		return nil
	case w.c.v6:
		*sa = syscall.RawSockaddrInet6{Family: syscall.AF_INET6, Addr: a.As16()}
		if z := a.Zone(); z != "" {
			sa.Scope_id = w.scope(z)
		}
		putPort(&sa.Port, ap.Port())
		h.namelen = syscall.SizeofSockaddrInet6
	default:
		a = a.Unmap()
		if !a.Is4() {
			return ErrAddressFamily
		}
		sa4 := (*syscall.RawSockaddrInet4)(unsafe.Pointer(sa))
		*sa4 = syscall.RawSockaddrInet4{Family: syscall.AF_INET, Addr: a.As4()}
		putPort(&sa4.Port, ap.Port())
		h.namelen = syscall.SizeofSockaddrInet4
	}
	h.name = (*byte)(unsafe.Pointer(sa))
	return nil
}

// scope turns an IPv6 zone (an interface name or index) into a scope id,
// remembering the answer.
func (w *writer) scope(zone string) uint32 {
	if id, ok := w.zones[zone]; ok {
		return id
	}
	if w.zones == nil {
		w.zones = make(map[string]uint32)
	}
	var id uint32
	if n, err := strconv.ParseUint(zone, 10, 32); err == nil {
		id = uint32(n)
	} else if ifi, err := net.InterfaceByName(zone); err == nil {
		id = uint32(ifi.Index)
	}
	w.zones[zone] = id
	return id
}

// send runs inside RawConn.Write: false asks to wait until the socket is
// writable.
func (w *writer) send(fd uintptr) bool {
	for {
		count := w.count
		if w.fault != nil {
			// As sendmmsg does, send the headers before the first that
			// fails, and report the failure only if it is the first.
			for k := range count {
				if e := w.fault(&w.hdrs[w.from+k].hdr); e != 0 {
					if k == 0 {
						w.n, w.errno = 0, e
						return true
					}
					count = k
					break
				}
			}
		}
		var n uintptr
		var e syscall.Errno
		if w.c.mmsg.Load() {
			n, _, e = syscall.Syscall6(sysSENDMMSG, fd, uintptr(unsafe.Pointer(&w.hdrs[w.from])), uintptr(count), 0, 0, 0)
			if e == syscall.ENOSYS {
				w.c.mmsg.Store(false)
				continue
			}
		} else {
			_, _, e = syscall.Syscall(sysSENDMSG, fd, uintptr(unsafe.Pointer(&w.hdrs[w.from].hdr)), 0)
			if e == 0 {
				n = 1
			}
		}
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		case 0:
			w.syscalls++
		}
		w.n, w.errno = int(n), e
		return true
	}
}
