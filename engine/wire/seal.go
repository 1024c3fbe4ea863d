package wire

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// ErrAuth is returned by Open for a packet that fails authentication.
var ErrAuth = errors.New("wire: packet failed authentication")

// Cipher names, as the control channel and the command line spell them.
const (
	AES256GCM = "aes-256-gcm"
	AES128GCM = "aes-128-gcm"
	None      = "none"
)

// KeyLen returns the key size a cipher needs (none still takes a key: its
// first four bytes salt the checksum so stray packets of other sessions
// fail it).
func KeyLen(name string) (int, error) {
	switch name {
	case AES256GCM:
		return 32, nil
	case AES128GCM:
		return 16, nil
	case None:
		return 4, nil
	}
	return 0, fmt.Errorf("wire: unknown cipher %q", name)
}

// Sealer protects packets in one direction of one session. A Sealer is not
// safe for concurrent use with itself: give each goroutine its own (made
// from the same key; the packet number, not the Sealer, makes the nonce).
type Sealer struct {
	aead cipher.AEAD // nil for "none"
	salt uint32
	// nonce is a scratch buffer: 4 bytes of zero, 8 of packet number.
	nonce [12]byte
}

// NewSealer makes a Sealer for the cipher with key (KeyLen bytes).
func NewSealer(name string, key []byte) (*Sealer, error) {
	n, err := KeyLen(name)
	if err != nil {
		return nil, err
	}
	if len(key) != n {
		return nil, fmt.Errorf("wire: %s needs a %d-byte key, got %d", name, n, len(key))
	}
	if name == None {
		return &Sealer{salt: binary.BigEndian.Uint32(key)}, nil
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Sealer{aead: aead}, nil
}

// Overhead is how many bytes sealing adds to a body.
func (s *Sealer) Overhead() int {
	if s.aead == nil {
		return 4
	}
	return s.aead.Overhead()
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Seal appends the sealed body to pkt. Everything already in pkt — the
// header and, for data, the data header — travels in the clear and is
// authenticated as additional data. number must be the header's packet
// number. body must not overlap pkt's spare capacity.
func (s *Sealer) Seal(pkt []byte, number uint64, body []byte) []byte {
	if s.aead == nil {
		out := append(pkt, body...)
		sum := crc32.Update(s.salt, castagnoli, out)
		return binary.BigEndian.AppendUint32(out, sum)
	}
	binary.BigEndian.PutUint64(s.nonce[4:], number)
	return s.aead.Seal(pkt, s.nonce[:], body, pkt)
}

// ClearLen is how many leading bytes of a packet of type t travel in the
// clear: the header, plus the data header for data packets.
func ClearLen(t Type) int {
	if t == TypeData {
		return HeaderLen + DataHeaderLen
	}
	return HeaderLen
}

// Open authenticates pkt and decrypts its body in place, returning the
// plaintext body, which aliases pkt. The first clear bytes are the
// cleartext part (see ClearLen); number is the header's packet number.
func (s *Sealer) Open(pkt []byte, number uint64, clear int) ([]byte, error) {
	if clear < HeaderLen || len(pkt) < clear+s.Overhead() {
		return nil, ErrShort
	}
	if s.aead == nil {
		n := len(pkt) - 4
		if crc32.Update(s.salt, castagnoli, pkt[:n]) != binary.BigEndian.Uint32(pkt[n:]) {
			return nil, ErrAuth
		}
		return pkt[clear:n], nil
	}
	binary.BigEndian.PutUint64(s.nonce[4:], number)
	body, err := s.aead.Open(pkt[clear:clear], s.nonce[:], pkt[clear:], pkt[:clear])
	if err != nil {
		return nil, ErrAuth
	}
	return body, nil
}

// ReplayWindow rejects packet numbers seen before, or too old to tell.
// The zero value is ready: it accepts any first number.
type ReplayWindow struct {
	top  uint64 // the largest number accepted
	any  bool
	bits [replayWords]uint64 // bit i: number top-i seen
}

const (
	replayWords = 128
	// ReplayWindowSize is how far behind the largest number a packet may
	// arrive and still be accepted.
	ReplayWindowSize = replayWords * 64
)

// Check reports whether number is new: not seen, and not older than the
// window. It does not record it: call Accept once the packet authenticates.
func (w *ReplayWindow) Check(number uint64) bool {
	if !w.any || number > w.top {
		return true
	}
	d := w.top - number
	if d >= ReplayWindowSize {
		return false
	}
	return w.bits[d/64]&(1<<(d%64)) == 0
}

// Accept records number as seen. Call it only after Check said yes and the
// packet authenticated.
func (w *ReplayWindow) Accept(number uint64) {
	if !w.any {
		w.any = true
		w.top = number
		w.bits[0] = 1
		return
	}
	if number > w.top {
		w.shift(number - w.top)
		w.top = number
		w.bits[0] |= 1
		return
	}
	d := w.top - number
	if d < ReplayWindowSize {
		w.bits[d/64] |= 1 << (d % 64)
	}
}

// shift moves the window forward by n numbers.
func (w *ReplayWindow) shift(n uint64) {
	if n >= ReplayWindowSize {
		w.bits = [replayWords]uint64{}
		return
	}
	words, bitsN := int(n/64), n%64
	if words > 0 {
		for i := replayWords - 1; i >= 0; i-- {
			if i >= words {
				w.bits[i] = w.bits[i-words]
			} else {
				w.bits[i] = 0
			}
		}
	}
	if bitsN > 0 {
		for i := replayWords - 1; i >= 0; i-- {
			v := w.bits[i] << bitsN
			if i > 0 {
				v |= w.bits[i-1] >> (64 - bitsN)
			}
			w.bits[i] = v
		}
	}
}
