// Package wire is the data channel's packet format: a short header that
// travels in the clear but is authenticated, and a sealed body holding one
// frame.
//
//	 0        1        2        3 ...        7 ...        13
//	+--------+--------+--------+------------+------------+----------------+
//	|version | type   | flags  | session id | packet no. | sealed body... |
//	+--------+--------+--------+------------+------------+----------------+
//	                             4 bytes      6 bytes
//
// A data packet carries a data header (stream, offset, send time) between
// the packet header and the sealed payload; it too is in the clear and
// authenticated, so a receiver can place the payload before decrypting.
//
//	 13 ...      17 ...       23 ...       27
//	+------------+------------+------------+----------------+
//	| stream     | offset     | send time  | sealed payload |
//	+------------+------------+------------+----------------+
//	  4 bytes      6 bytes      4 bytes
//
// Every byte of the clear part is a byte of the link a payload does not
// get: the fields are as narrow as their ranges allow. Packet numbers and
// offsets have 48 bits (MaxNumber, MaxOffset); the send time is the
// sender's session clock in microseconds modulo 2^32, which a receiver
// reads against its own clock (SendTime.Since).
//
// The packet number is never reused under one key: each direction of a
// session has its own key and its own counter, and the number is the AEAD
// nonce. All integers are big-endian; variable-length ones in ack ranges use
// the uvarint encoding of encoding/binary.
//
// Codecs follow one shape: Append(b []byte) []byte adds the encoding to b,
// and ParseX(b []byte) (X, error) reads one, never retaining b except where
// the doc says so, and never panicking on any input.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Version is the protocol version in every header.
const Version = 3

// HeaderLen is the size of the header.
const HeaderLen = 13

// MaxNumber is the largest packet number the header holds.
const MaxNumber = 1<<48 - 1

// Type says what a packet's body holds.
type Type uint8

const (
	// TypeHello, client to server: binds the client's UDP address to the
	// session, and keeps NAT bindings alive. Body: Hello.
	TypeHello Type = 1
	// TypeHelloAck, server to client: the answer to a Hello. Body: Hello.
	TypeHelloAck Type = 2
	// TypeData carries bytes of one transfer: a DataHeader, then the payload.
	TypeData Type = 3
	// TypeAck reports the packets received and the path's queueing delay.
	// Body: Ack.
	TypeAck Type = 4
	// TypeClose ends the session. Body: a UTF-8 reason.
	TypeClose Type = 5
)

func (t Type) String() string {
	switch t {
	case TypeHello:
		return "hello"
	case TypeHelloAck:
		return "hello-ack"
	case TypeData:
		return "data"
	case TypeAck:
		return "ack"
	case TypeClose:
		return "close"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Flags in the header.
const (
	// FlagRetransmit marks a Data packet that resends bytes sent before.
	FlagRetransmit = 1 << 0
)

// Errors from the parsers.
var (
	ErrShort   = errors.New("wire: packet too short")
	ErrVersion = errors.New("wire: unknown protocol version")
	ErrType    = errors.New("wire: unknown packet type")
	ErrFormat  = errors.New("wire: malformed frame")
)

// Header is the cleartext, authenticated start of every packet.
type Header struct {
	Type    Type
	Flags   uint8
	Session uint32
	// Number is the packet number, at most MaxNumber: the nonce, and what
	// acks refer to.
	Number uint64
}

// Append adds the header's HeaderLen bytes to b. Bits of Number above
// MaxNumber are not sent: keeping below it is the sender's part.
func (h Header) Append(b []byte) []byte {
	b = append(b, Version, byte(h.Type), h.Flags)
	b = binary.BigEndian.AppendUint32(b, h.Session)
	return appendUint48(b, h.Number)
}

func appendUint48(b []byte, v uint64) []byte {
	return append(b, byte(v>>40), byte(v>>32), byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

func uint48(b []byte) uint64 {
	_ = b[5]
	return uint64(b[0])<<40 | uint64(b[1])<<32 | uint64(b[2])<<24 | uint64(b[3])<<16 | uint64(b[4])<<8 | uint64(b[5])
}

// ParseHeader reads the header at the start of b.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderLen {
		return Header{}, ErrShort
	}
	if b[0] != Version {
		return Header{}, ErrVersion
	}
	h := Header{
		Type:    Type(b[1]),
		Flags:   b[2],
		Session: binary.BigEndian.Uint32(b[3:7]),
		Number:  uint48(b[7:13]),
	}
	if h.Type < TypeHello || h.Type > TypeClose {
		return Header{}, ErrType
	}
	return h, nil
}

// PeekSession returns the session id of a packet without checking the rest
// of the header, for demultiplexing; ok is false when b is too short.
func PeekSession(b []byte) (id uint32, ok bool) {
	if len(b) < HeaderLen {
		return 0, false
	}
	return binary.BigEndian.Uint32(b[3:7]), true
}

// DataHeaderLen is the size of a DataHeader.
const DataHeaderLen = 4 + 6 + 4

// MaxOffset bounds the offsets a data header holds: objects end at or
// below it (256 TiB, far above what S3 stores as one object).
const MaxOffset = 1 << 48

// DataHeader follows the packet header of a data packet. Like the packet
// header it travels in the clear and is authenticated; the payload after it
// is sealed.
type DataHeader struct {
	Stream   uint32   // the transfer, as numbered by the control channel
	Offset   int64    // where the payload starts in the object, below MaxOffset
	SendTime SendTime // sender's clock
}

// SendTime is a sender's session clock, microseconds since its session
// began, modulo 2^32 (it wraps every 71 minutes).
type SendTime uint32

// Since is how long before now, a time on the reader's own session clock
// in microseconds, the sender stamped t, plus the offset between the two
// clocks (a constant a receiver's delay filters take out). It is exact
// while that sum is within ±35 minutes, which a path's delay and two
// session clocks started a round trip apart are by far.
func (t SendTime) Since(now int64) int64 { return int64(int32(uint32(now) - uint32(t))) }

// Append adds the data header to b.
// Offset bits at and above MaxOffset are not sent: keeping below it is the
// sender's part.
func (d DataHeader) Append(b []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, d.Stream)
	b = appendUint48(b, uint64(d.Offset))
	return binary.BigEndian.AppendUint32(b, uint32(d.SendTime))
}

// ParseDataHeader reads the data header at the start of b.
func ParseDataHeader(b []byte) (DataHeader, error) {
	if len(b) < DataHeaderLen {
		return DataHeader{}, ErrShort
	}
	return DataHeader{
		Stream:   binary.BigEndian.Uint32(b[0:4]),
		Offset:   int64(uint48(b[4:10])),
		SendTime: SendTime(binary.BigEndian.Uint32(b[10:14])),
	}, nil
}

// PNRange is an inclusive range of packet numbers.
type PNRange struct {
	Smallest, Largest uint64
}

// MaxAckRanges bounds the ranges one Ack carries; older ones are left out
// (their packets were acked before, or will be declared lost and resent).
const MaxAckRanges = 256

// Ack tells a sender which packets arrived and how the path behaves.
type Ack struct {
	// Ranges of received packet numbers, largest first, not overlapping or
	// touching. Ranges[0].Largest is the largest number received.
	Ranges []PNRange
	// Delay is how long the receiver held the largest packet before this
	// ack, in microseconds.
	Delay uint32
	// Queue is the receiver's estimate of the queueing delay on the path,
	// in microseconds: one-way delay now minus its recent minimum.
	Queue uint32
	// Packets and Bytes count, since the session began, the data packets
	// and payload bytes received (duplicates included). Cumulative counters
	// survive lost acks.
	Packets uint64
	Bytes   uint64
	// Capacity is the path's rate, in payload bytes per second, as the
	// receiver measured it from the spread of the latest burst the sender
	// sent back to back; 0 if none measured yet.
	Capacity uint64
}

// ackFixedLen is the size of an Ack's fixed fields.
const ackFixedLen = 32

// Append adds the frame to b.
func (a Ack) Append(b []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, a.Delay)
	b = binary.BigEndian.AppendUint32(b, a.Queue)
	b = binary.BigEndian.AppendUint64(b, a.Packets)
	b = binary.BigEndian.AppendUint64(b, a.Bytes)
	b = binary.BigEndian.AppendUint64(b, a.Capacity)
	n := len(a.Ranges)
	if n > MaxAckRanges {
		n = MaxAckRanges
	}
	b = binary.AppendUvarint(b, uint64(n))
	if n == 0 {
		return b
	}
	b = binary.BigEndian.AppendUint64(b, a.Ranges[0].Largest)
	b = binary.AppendUvarint(b, a.Ranges[0].Largest-a.Ranges[0].Smallest)
	for i := 1; i < n; i++ {
		prev, r := a.Ranges[i-1], a.Ranges[i]
		// gap counts the missing numbers between the ranges, minus one
		// (ranges never touch, so at least one is missing).
		b = binary.AppendUvarint(b, prev.Smallest-r.Largest-2)
		b = binary.AppendUvarint(b, r.Largest-r.Smallest)
	}
	return b
}

// ParseAck reads an Ack frame. Ranges is appended to into, which may be nil,
// so a caller can reuse one slice.
func ParseAck(b []byte, into []PNRange) (Ack, error) {
	if len(b) < ackFixedLen+1 {
		return Ack{}, ErrShort
	}
	a := Ack{
		Delay:    binary.BigEndian.Uint32(b[0:4]),
		Queue:    binary.BigEndian.Uint32(b[4:8]),
		Packets:  binary.BigEndian.Uint64(b[8:16]),
		Bytes:    binary.BigEndian.Uint64(b[16:24]),
		Capacity: binary.BigEndian.Uint64(b[24:32]),
		Ranges:   into[:0],
	}
	b = b[ackFixedLen:]
	n, k := binary.Uvarint(b)
	if k <= 0 || n > MaxAckRanges {
		return Ack{}, ErrFormat
	}
	b = b[k:]
	if n == 0 {
		if len(b) != 0 {
			return Ack{}, ErrFormat
		}
		return a, nil
	}
	if len(b) < 8 {
		return Ack{}, ErrShort
	}
	largest := binary.BigEndian.Uint64(b)
	b = b[8:]
	length, k := binary.Uvarint(b)
	if k <= 0 || length > largest {
		return Ack{}, ErrFormat
	}
	b = b[k:]
	a.Ranges = append(a.Ranges, PNRange{Smallest: largest - length, Largest: largest})
	for i := uint64(1); i < n; i++ {
		gap, k := binary.Uvarint(b)
		if k <= 0 {
			return Ack{}, ErrFormat
		}
		b = b[k:]
		length, k := binary.Uvarint(b)
		if k <= 0 {
			return Ack{}, ErrFormat
		}
		b = b[k:]
		prev := a.Ranges[len(a.Ranges)-1].Smallest
		// The next range's largest is prev - gap - 2; it must not underflow,
		// and the range must not reach below zero.
		if prev < 2 || gap > prev-2 {
			return Ack{}, ErrFormat
		}
		top := prev - gap - 2
		if length > top {
			return Ack{}, ErrFormat
		}
		a.Ranges = append(a.Ranges, PNRange{Smallest: top - length, Largest: top})
	}
	if len(b) != 0 {
		return Ack{}, ErrFormat
	}
	return a, nil
}

// Hello binds a client's address to its session and measures the path's
// round trip before data flows.
type Hello struct {
	Time int64 // the sender's clock in microseconds; echoed in the answer
	Echo int64 // in a HelloAck: the Time of the Hello it answers
}

// HelloLen is the encoded size of a Hello.
const HelloLen = 16

// Append adds the frame to b.
func (h Hello) Append(b []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(h.Time))
	return binary.BigEndian.AppendUint64(b, uint64(h.Echo))
}

// ParseHello reads a Hello frame.
func ParseHello(b []byte) (Hello, error) {
	if len(b) != HelloLen {
		return Hello{}, ErrFormat
	}
	return Hello{
		Time: int64(binary.BigEndian.Uint64(b[0:8])),
		Echo: int64(binary.BigEndian.Uint64(b[8:16])),
	}, nil
}
