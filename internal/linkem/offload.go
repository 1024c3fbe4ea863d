package linkem

import (
	"encoding/binary"
	"errors"
)

// TCP segmentation offload between the kernel and the forwarder.
//
// Unless Config.NoOffload is set, the TUN devices carry a virtio-net header before
// each packet and let the kernel hand over TCP super-packets of up to 64
// KiB (TSO) with partial checksums. The reader cuts each into the MSS-sized
// segments a real link would carry, and each segment meets loss, queue and
// delay on its own. The writer glues runs of consecutive segments of one
// flow that are due together back into one super-packet (as a NIC's GRO
// would), so the receiving stack handles a few large packets instead of
// many small ones. Only IPv4 TCP is offloaded; everything else passes one
// packet per read and write, as without offload.

// vnetHdrLen is the size of struct virtio_net_hdr.
const vnetHdrLen = 10

// virtio-net header values.
const (
	vnetNeedsCsum = 1    // VIRTIO_NET_HDR_F_NEEDS_CSUM
	gsoNone       = 0    // VIRTIO_NET_HDR_GSO_NONE
	gsoTCPv4      = 1    // VIRTIO_NET_HDR_GSO_TCPV4
	gsoECN        = 0x80 // VIRTIO_NET_HDR_GSO_ECN
)

// TUN offload flags (linux/if_tun.h).
const (
	tunFCsum = 0x01
	tunFTSO4 = 0x02
)

// maxSuperPacket bounds a super-packet, virtio header included.
const maxSuperPacket = vnetHdrLen + 65535

// vnetHdr is struct virtio_net_hdr, little-endian.
type vnetHdr struct {
	flags      uint8
	gsoType    uint8
	hdrLen     uint16
	gsoSize    uint16
	csumStart  uint16
	csumOffset uint16
}

func decodeVnetHdr(b []byte) vnetHdr {
	return vnetHdr{
		flags:      b[0],
		gsoType:    b[1],
		hdrLen:     binary.LittleEndian.Uint16(b[2:]),
		gsoSize:    binary.LittleEndian.Uint16(b[4:]),
		csumStart:  binary.LittleEndian.Uint16(b[6:]),
		csumOffset: binary.LittleEndian.Uint16(b[8:]),
	}
}

func (h vnetHdr) encode(b []byte) {
	b[0] = h.flags
	b[1] = h.gsoType
	binary.LittleEndian.PutUint16(b[2:], h.hdrLen)
	binary.LittleEndian.PutUint16(b[4:], h.gsoSize)
	binary.LittleEndian.PutUint16(b[6:], h.csumStart)
	binary.LittleEndian.PutUint16(b[8:], h.csumOffset)
}

var errBadPacket = errors.New("linkem: malformed packet")

// checksum folds the ones' complement sum of b into initial.
func checksum(b []byte, initial uint32) uint32 {
	s := initial
	for len(b) >= 2 {
		s += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return s
}

// ipv4HeaderChecksum sets the header checksum of the IPv4 header h.
func ipv4HeaderChecksum(h []byte) {
	h[10], h[11] = 0, 0
	binary.BigEndian.PutUint16(h[10:], ^uint16(checksum(h, 0)))
}

// tcpPseudoSum is the folded, uncomplemented pseudo-header sum that a
// partial TCP checksum starts from (what the kernel leaves in the
// checksum field for the device to finish).
func tcpPseudoSum(ip []byte, tcpLen int) uint16 {
	s := checksum(ip[12:20], 6+uint32(tcpLen))
	return uint16(s)
}

// tcp4Headers checks that p is an IPv4 TCP packet without IP options and
// returns its IP and TCP header lengths.
func tcp4Headers(p []byte) (ipLen, tcpLen int, ok bool) {
	if len(p) < 40 || p[0] != 0x45 || p[9] != 6 {
		return 0, 0, false
	}
	if int(binary.BigEndian.Uint16(p[2:])) != len(p) {
		return 0, 0, false
	}
	tcpLen = int(p[20+12]>>4) * 4
	if tcpLen < 20 || 20+tcpLen > len(p) {
		return 0, 0, false
	}
	return 20, tcpLen, true
}

// TCP flag bits in byte 13 of the TCP header.
const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpPSH = 0x08
	tcpACK = 0x10
	tcpURG = 0x20
	tcpECE = 0x40
	tcpCWR = 0x80
)

// splitTSO cuts the IPv4 TCP super-packet p (no virtio header) into
// segments of at most mss payload bytes. For each it calls next for a
// buffer of at least vnetHdrLen+len(segment) bytes and fills it with a
// virtio header (partial checksum, no GSO) and the segment, then calls
// emit with the filled part. It stops early, without error, if next
// returns nil.
func splitTSO(p []byte, mss int, next func() []byte, emit func([]byte)) error {
	ipl, tcpl, ok := tcp4Headers(p)
	if !ok || mss <= 0 {
		return errBadPacket
	}
	hl := ipl + tcpl
	payload := p[hl:]
	if len(payload) == 0 {
		return errBadPacket
	}
	seq := binary.BigEndian.Uint32(p[ipl+4:])
	id := binary.BigEndian.Uint16(p[4:])
	flags := p[ipl+13]
	for i, off := 0, 0; off < len(payload); i++ {
		n := min(mss, len(payload)-off)
		buf := next()
		if buf == nil {
			return nil
		}
		if len(buf) < vnetHdrLen+hl+n {
			return errBadPacket // segments larger than the MTU
		}
		seg := buf[vnetHdrLen : vnetHdrLen+hl+n]
		copy(seg, p[:hl])
		copy(seg[hl:], payload[off:off+n])
		binary.BigEndian.PutUint16(seg[2:], uint16(hl+n))
		binary.BigEndian.PutUint16(seg[4:], id+uint16(i))
		ipv4HeaderChecksum(seg[:ipl])
		tcp := seg[ipl:]
		binary.BigEndian.PutUint32(tcp[4:], seq+uint32(off))
		f := flags
		if off+n < len(payload) {
			f &^= tcpFIN | tcpPSH // only the last segment ends or pushes
		}
		if off > 0 {
			f &^= tcpCWR // only the first reduces the window
		}
		tcp[13] = f
		binary.BigEndian.PutUint16(tcp[16:], tcpPseudoSum(seg, tcpl+n))
		vnetHdr{flags: vnetNeedsCsum, csumStart: uint16(ipl), csumOffset: 16}.encode(buf)
		emit(buf[:vnetHdrLen+hl+n])
		off += n
	}
	return nil
}

// coalescer glues consecutive TCP segments of one flow into one
// super-packet for a single write.
type coalescer struct {
	buf   []byte // virtio header + super-packet being built
	n     int    // segments in buf
	mss   int    // payload size of the first segment
	hl    int    // IP + TCP header length
	last  bool   // the last segment added ends the run (short, or PSH)
	nextS uint32 // sequence number the next segment must have
}

// canJoin reports whether seg (an IP packet) continues the run in c.
func (c *coalescer) canJoin(seg []byte) bool {
	if c.n == 0 || c.last {
		return false
	}
	ipl, tcpl, ok := tcp4Headers(seg)
	if !ok || ipl+tcpl != c.hl {
		return false
	}
	head := c.buf[vnetHdrLen:]
	n := len(seg) - c.hl
	if n <= 0 || n > c.mss || len(head)+n > 65535 {
		return false
	}
	// Same addresses, protocol, TOS, TTL and fragment bits.
	if seg[1] != head[1] || seg[6] != head[6] || seg[8] != head[8] || string(seg[12:20]) != string(head[12:20]) {
		return false
	}
	st, ht := seg[ipl:], head[ipl:]
	// Same ports, acknowledgement, window and options; the expected
	// sequence number; only ACK (and PSH on the last) set.
	if string(st[0:4]) != string(ht[0:4]) || string(st[8:12]) != string(ht[8:12]) ||
		string(st[14:16]) != string(ht[14:16]) || string(st[20:tcpl]) != string(ht[20:tcpl]) {
		return false
	}
	if binary.BigEndian.Uint32(st[4:]) != c.nextS {
		return false
	}
	return st[13]&^tcpPSH == tcpACK
}

// start begins a run with seg, which must be an IPv4 TCP packet carrying
// data with only ACK (and maybe PSH) set; it reports whether it could.
func (c *coalescer) start(seg []byte) bool {
	c.n = 0
	ipl, tcpl, ok := tcp4Headers(seg)
	if !ok || len(seg) == ipl+tcpl || seg[ipl+13]&^tcpPSH != tcpACK || seg[6]&0x3f != 0 || seg[7] != 0 {
		return false
	}
	if cap(c.buf) < maxSuperPacket {
		c.buf = make([]byte, 0, maxSuperPacket)
	}
	c.buf = append(c.buf[:vnetHdrLen], seg...)
	c.n = 1
	c.hl = ipl + tcpl
	c.mss = len(seg) - c.hl
	c.last = seg[ipl+13]&tcpPSH != 0
	c.nextS = binary.BigEndian.Uint32(seg[ipl+4:]) + uint32(c.mss)
	return true
}

// add appends seg, for which canJoin holds.
func (c *coalescer) add(seg []byte) {
	payload := seg[c.hl:]
	c.buf = append(c.buf, payload...)
	c.n++
	c.nextS += uint32(len(payload))
	if len(payload) < c.mss || seg[20+13]&tcpPSH != 0 {
		c.last = true
		c.buf[vnetHdrLen+20+13] |= seg[20+13] & tcpPSH
	}
}

// finish completes the run's headers and returns the bytes to write:
// virtio header and super-packet (or a plain packet for a run of one).
func (c *coalescer) finish() []byte {
	p := c.buf[vnetHdrLen:]
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	ipv4HeaderChecksum(p[:20])
	binary.BigEndian.PutUint16(p[20+16:], tcpPseudoSum(p, len(p)-20))
	h := vnetHdr{flags: vnetNeedsCsum, csumStart: 20, csumOffset: 16}
	if c.n > 1 {
		h.gsoType = gsoTCPv4
		h.gsoSize = uint16(c.mss)
		h.hdrLen = uint16(c.hl)
	}
	h.encode(c.buf)
	return c.buf
}
