// Package udpio sends and receives UDP datagrams in batches, with as few
// system calls as the kernel allows.
//
// On Linux, a *net.UDPConn is driven with recvmmsg/sendmmsg, UDP generic
// segmentation offload (GSO: one send carries up to 64 equal-sized datagrams
// to one address, split by the kernel or the NIC) and UDP generic receive
// offload (GRO: the kernel hands over several datagrams of one flow in one
// buffer, which ReadBatch splits again). Each offload is probed when the Conn
// is made; GSO is switched off for good if a GSO send fails with EIO or EINVAL
// (a NIC without checksum offload, a socket sending without checksums, or, on
// older kernels, a path whose MTU is below the segment size), and the failed
// datagrams are sent again without it. A GSO send refused with
// EMSGSIZE (segments larger than the path MTU) is sent again as separate
// datagrams, which the kernel fragments or refuses as it would have without
// GSO; GSO stays on for later calls.
//
// Any other net.PacketConn, and every PacketConn on other systems, gets a
// simple implementation of the same interface that moves one datagram per
// call, so the engine runs unchanged over an in-memory simulated network.
//
// Addresses are netip.AddrPort values in their unmapped form: an IPv4 peer of
// a dual-stack socket appears as a 4-byte address, and may be written to as
// one.
//
// A datagram longer than the buffer ReadBatch offers for it is delivered
// truncated: N is len(Buf), Buf holds its first bytes, and the Message's
// Truncated field is set. The rest of it is lost.
package udpio

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"time"
)

// Message is one datagram.
type Message struct {
	// Buf is, for WriteBatch, the datagram. For ReadBatch it is the buffer
	// to fill; its full length is usable capacity.
	Buf []byte
	// N is, for ReadBatch, the number of bytes received into Buf.
	N int
	// Addr is, for WriteBatch, the destination; for ReadBatch, the source.
	// Addresses are unmapped: IPv4 as a 4-byte address. For WriteBatch, the
	// zero AddrPort sends to the peer of a connected socket.
	Addr netip.AddrPort
	// Truncated is set by ReadBatch when the datagram was longer than Buf:
	// Buf holds its first len(Buf) bytes, N == len(Buf), the rest is lost.
	Truncated bool
	// At is, for ReadBatch, when the kernel received the datagram (its
	// wall clock, SO_TIMESTAMPNS); zero when the socket does not say. The
	// time a datagram waited in the socket's buffer is the reader's delay,
	// not the network's.
	At time.Time
}

// Caps says which kernel offloads a Conn uses.
type Caps struct {
	// GSO: consecutive datagrams to one address leave in one UDP_SEGMENT
	// send. It turns false for good if the kernel refuses a GSO send.
	GSO bool
	// GRO: the kernel may deliver several datagrams in one buffer (UDP_GRO).
	GRO bool
	// MMsg: recvmmsg/sendmmsg move many datagrams per system call.
	MMsg bool
	// RxTimestamps: ReadBatch sets Message.At.
	RxTimestamps bool
	// ReadBuffer and WriteBuffer are the socket buffer sizes in bytes that
	// the kernel granted, as getsockopt(SO_RCVBUF/SO_SNDBUF) reports them
	// (Linux reports twice the size asked for, the extra being its
	// bookkeeping); 0 when not known.
	ReadBuffer, WriteBuffer int
}

// Conn sends and receives datagrams in batches. ReadBatch and WriteBatch may
// be called concurrently with each other (one reader goroutine, one writer
// goroutine), but each by one goroutine at a time. Caps, LocalAddr,
// SetReadDeadline and Close are safe to call from any goroutine.
type Conn interface {
	// ReadBatch fills ms[0:n] with received datagrams, blocking until at
	// least one arrives or the read deadline passes. It sets N, Addr and
	// Truncated of each filled Message and leaves Buf as it was. A deadline
	// that passes returns an error wrapping os.ErrDeadlineExceeded (a
	// net.Error whose Timeout is true); a closed Conn returns an error
	// wrapping net.ErrClosed.
	ReadBatch(ms []Message) (n int, err error)
	// WriteBatch sends all of ms in order (returns the number sent and the
	// first error; messages after the failing one are not sent).
	// Consecutive messages to the same address with equal sizes (the last
	// may be shorter) may be coalesced into one GSO send. WriteBatch does
	// not keep ms or its buffers after it returns.
	WriteBatch(ms []Message) (n int, err error)
	SetReadDeadline(t time.Time) error
	LocalAddr() net.Addr
	Caps() Caps
	Close() error
}

// Options tunes New. The zero value uses every offload the kernel offers and
// large socket buffers.
type Options struct {
	// DisableGSO, DisableGRO and DisableMMsg turn an offload off (for tests,
	// benchmarks and as a way out of a misbehaving path). The environment
	// variables CHUTE_DISABLE_GSO=1, CHUTE_DISABLE_GRO=1 and
	// CHUTE_DISABLE_MMSG=1 do the same for every Conn of the process.
	DisableGSO, DisableGRO, DisableMMsg bool
	// ReadBuffer and WriteBuffer are the socket buffer sizes to ask for, in
	// bytes. 0 asks for DefaultBuffer; a negative value leaves the socket's
	// setting alone. On Linux, SO_RCVBUFFORCE/SO_SNDBUFFORCE are used when the
	// process may (CAP_NET_ADMIN), else the plain options, which the kernel
	// caps at net.core.rmem_max/wmem_max. Caps reports what was granted.
	ReadBuffer, WriteBuffer int
}

// DefaultBuffer is the socket buffer size New asks for when Options leaves
// it 0: about 60 ms of traffic at 1 Gbit/s.
const DefaultBuffer = 8 << 20

// Limits of one GSO send.
const (
	// MaxGSOSegments is the most datagrams coalesced into one GSO send.
	MaxGSOSegments = 64
	// MaxGSOBytes is the most payload bytes in one GSO send: the largest
	// IPv6 payload less the UDP header and room for an IPv6 extension
	// header, so that it holds for IPv4 and IPv6 alike.
	MaxGSOBytes = 65535 - 8 - 40
)

// maxDatagram is the largest UDP payload (IPv4: 65535 - 20 - 8; IPv6 without
// jumbograms: 65535 - 8), rounded up to a power of two for buffers.
const maxDatagram = 1 << 16

// ErrAddressFamily is returned by WriteBatch for a destination an IPv4-only
// socket cannot reach (an IPv6 address).
var ErrAddressFamily = errors.New("udpio: IPv6 destination on an IPv4 socket")

// New wraps pc. On Linux with a *net.UDPConn it uses recvmmsg/sendmmsg and
// UDP GSO/GRO where the kernel supports them (probed, and GSO turned off for
// good on EIO or EINVAL from a GSO send, retrying that batch without it; see
// the package documentation for EMSGSIZE). Any
// other net.PacketConn (e.g. an in-memory simulated network in tests) gets a
// simple one-datagram-at-a-time implementation of the same interface.
//
// The Conn takes over pc: Close closes it, and pc should not be read or
// written directly any more.
func New(pc net.PacketConn, opt Options) (Conn, error) {
	if pc == nil {
		return nil, errors.New("udpio: New: nil PacketConn")
	}
	opt = opt.withEnv()
	c, err := newPlatform(pc, opt)
	if err != nil || c != nil {
		return c, err
	}
	return newGeneric(pc, opt), nil
}

// withEnv applies the CHUTE_DISABLE_* environment variables.
func (o Options) withEnv() Options {
	o.DisableGSO = o.DisableGSO || envTrue("CHUTE_DISABLE_GSO")
	o.DisableGRO = o.DisableGRO || envTrue("CHUTE_DISABLE_GRO")
	o.DisableMMsg = o.DisableMMsg || envTrue("CHUTE_DISABLE_MMSG")
	return o
}

func envTrue(name string) bool {
	v, err := strconv.ParseBool(os.Getenv(name))
	return err == nil && v
}

// bufferSize turns an Options buffer field into the size to ask for; 0 means
// leave the socket alone.
func bufferSize(v int) int {
	switch {
	case v == 0:
		return DefaultBuffer
	case v < 0:
		return 0
	}
	return v
}

// unmap normalizes an address to its unmapped form.
func unmap(ap netip.AddrPort) netip.AddrPort {
	if ap.Addr().Is4In6() {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return ap
}
