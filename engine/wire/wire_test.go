package wire

import (
	"bytes"
	"crypto/rand"
	"errors"
	"reflect"
	"testing"
)

func TestHeaderRoundTrip(t *testing.T) {
	for _, h := range []Header{
		{Type: TypeHello, Session: 1, Number: 0},
		{Type: TypeData, Flags: FlagRetransmit, Session: 0xdeadbeef, Number: 1<<47 + 5},
		{Type: TypeAck, Session: ^uint32(0), Number: MaxNumber},
		{Type: TypeClose},
	} {
		b := h.Append(nil)
		if len(b) != HeaderLen {
			t.Fatalf("%+v: encoded %d bytes, want %d", h, len(b), HeaderLen)
		}
		got, err := ParseHeader(b)
		if err != nil || got != h {
			t.Fatalf("ParseHeader(%x) = %+v, %v; want %+v", b, got, err, h)
		}
		if id, ok := PeekSession(b); !ok || id != h.Session {
			t.Fatalf("PeekSession = %d, %v", id, ok)
		}
	}
}

// The header keeps a packet number's low 48 bits; the sender keeps its
// numbers below MaxNumber.
func TestHeaderKeeps48Bits(t *testing.T) {
	b := Header{Type: TypeData, Number: 1<<48 | 7}.Append(nil)
	h, err := ParseHeader(b)
	if err != nil || h.Number != 7 {
		t.Fatalf("ParseHeader = %+v, %v; want number 7", h, err)
	}
}

func TestHeaderRejects(t *testing.T) {
	good := Header{Type: TypeData, Session: 7, Number: 9}.Append(nil)
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrShort},
		{"short", good[:HeaderLen-1], ErrShort},
		{"version", append([]byte{Version + 1}, good[1:]...), ErrVersion},
		{"type zero", append([]byte{Version, 0}, good[2:]...), ErrType},
		{"type high", append([]byte{Version, 99}, good[2:]...), ErrType},
	} {
		if _, err := ParseHeader(tc.b); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestDataHeaderRoundTrip(t *testing.T) {
	for _, d := range []DataHeader{
		{Stream: 1, Offset: 0, SendTime: 0},
		{Stream: 9, Offset: 1 << 40, SendTime: 123456789},
		{Stream: ^uint32(0), Offset: MaxOffset - 1, SendTime: ^SendTime(0)},
	} {
		b := d.Append(nil)
		if len(b) != DataHeaderLen {
			t.Fatalf("encoded %d bytes", len(b))
		}
		got, err := ParseDataHeader(b)
		if err != nil || got != d {
			t.Fatalf("round trip: got %+v, %v; want %+v", got, err, d)
		}
	}
	if _, err := ParseDataHeader(make([]byte, DataHeaderLen-1)); !errors.Is(err, ErrShort) {
		t.Fatalf("short data header: %v", err)
	}
}

func TestSendTimeSince(t *testing.T) {
	for _, tc := range []struct {
		name string
		sent int64 // the sender's session clock, µs
		now  int64 // the receiver's, µs
		want int64
	}{
		{"same clocks", 1_000, 51_000, 50_000},
		{"receiver's clock behind", 400_000, 300_000, -100_000},
		{"sender's clock wrapped", 1<<32 + 20, 1<<32 - 30_000 + 50_000, 19_980},
		{"receiver's clock wrapped", 1<<32 - 10, 1<<32 + 40_000, 40_010},
		{"both wrapped twice", 3<<32 + 5, 3<<32 + 70_005, 70_000},
		{"a late packet an hour in", 3_600_000_000, 3_600_250_000, 250_000},
	} {
		if got := SendTime(uint32(tc.sent)).Since(tc.now); got != tc.want {
			t.Errorf("%s: Since = %d, want %d", tc.name, got, tc.want)
		}
	}
}

var ackCases = []Ack{
	{},
	{Ranges: []PNRange{{0, 0}}},
	{Ranges: []PNRange{{5, 10}}, Delay: 250, Queue: 12000, Packets: 11, Bytes: 15000},
	{Ranges: []PNRange{{90, 100}, {50, 88}, {0, 10}}, Packets: 1 << 40, Bytes: 1 << 50, Capacity: 23_500_000},
	{Ranges: []PNRange{{1 << 62, 1<<62 + 3}, {2, 2}}},
}

func TestAckRoundTrip(t *testing.T) {
	for _, a := range ackCases {
		b := a.Append(nil)
		got, err := ParseAck(b, nil)
		if err != nil {
			t.Fatalf("%+v: %v", a, err)
		}
		if len(got.Ranges) == 0 && len(a.Ranges) == 0 {
			got.Ranges, a.Ranges = nil, nil
		}
		if !reflect.DeepEqual(got, a) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, a)
		}
	}
}

func TestAckTruncatesRanges(t *testing.T) {
	var a Ack
	for i := 0; i < MaxAckRanges+10; i++ {
		top := uint64(10000 - 3*i)
		a.Ranges = append(a.Ranges, PNRange{top, top})
	}
	got, err := ParseAck(a.Append(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Ranges) != MaxAckRanges || got.Ranges[MaxAckRanges-1] != a.Ranges[MaxAckRanges-1] {
		t.Fatalf("got %d ranges, last %+v", len(got.Ranges), got.Ranges[len(got.Ranges)-1])
	}
}

func TestAckRejectsMalformed(t *testing.T) {
	good := Ack{Ranges: []PNRange{{90, 100}, {50, 88}}}.Append(nil)
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"short", good[:10]},
		{"trailing", append(append([]byte{}, good...), 0)},
		{"cut range", good[:len(good)-1]},
		{"range below zero", Ack{}.Append(nil)[:ackFixedLen:ackFixedLen]},
	} {
		if _, err := ParseAck(tc.b, nil); err == nil {
			t.Errorf("%s: parsed %x without error", tc.name, tc.b)
		}
	}
	// A first range longer than its largest number would reach below zero.
	b := Ack{}.Append(nil)[:ackFixedLen]
	b = append(b, 1, 0, 0, 0, 0, 0, 0, 0, 5, 6)
	if _, err := ParseAck(b, nil); !errors.Is(err, ErrFormat) {
		t.Errorf("underflowing range: %v", err)
	}
}

func TestHelloRoundTrip(t *testing.T) {
	h := Hello{Time: 42, Echo: -7}
	got, err := ParseHello(h.Append(nil))
	if err != nil || got != h {
		t.Fatalf("got %+v, %v", got, err)
	}
	if _, err := ParseHello(make([]byte, HelloLen+1)); err == nil {
		t.Fatal("long hello accepted")
	}
}

func sealers(t testing.TB) map[string][2]*Sealer {
	out := map[string][2]*Sealer{}
	for _, name := range []string{AES256GCM, AES128GCM, None} {
		n, _ := KeyLen(name)
		key := make([]byte, n)
		rand.Read(key)
		a, err := NewSealer(name, key)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := NewSealer(name, key)
		out[name] = [2]*Sealer{a, b}
	}
	return out
}

func TestSealOpen(t *testing.T) {
	for name, s := range sealers(t) {
		h := Header{Type: TypeData, Session: 3, Number: 77}
		body := []byte("hello, far away bucket")
		clear := DataHeader{Stream: 2, Offset: 4096}.Append(h.Append(make([]byte, 0, 1500)))
		pkt := s[0].Seal(clear, h.Number, body)
		if len(pkt) != ClearLen(TypeData)+len(body)+s[0].Overhead() {
			t.Fatalf("%s: sealed length %d", name, len(pkt))
		}
		if name != None && bytes.Contains(pkt, []byte("far away")) {
			t.Fatalf("%s: plaintext visible in sealed packet", name)
		}
		got, err := s[1].Open(append([]byte{}, pkt...), h.Number, ClearLen(TypeData))
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("%s: Open = %q, %v", name, got, err)
		}
		// Any flipped bit, in the header or the body, fails authentication.
		for i := 0; i < len(pkt); i++ {
			bad := append([]byte{}, pkt...)
			bad[i] ^= 0x10
			if _, err := s[1].Open(bad, h.Number, ClearLen(TypeData)); err == nil {
				t.Fatalf("%s: tampered byte %d accepted", name, i)
			}
		}
		// Opening under another packet number fails for the AEADs: the
		// number is the nonce.
		if name != None {
			if _, err := s[1].Open(append([]byte{}, pkt...), h.Number+1, ClearLen(TypeData)); !errors.Is(err, ErrAuth) {
				t.Fatalf("%s: wrong nonce accepted: %v", name, err)
			}
		}
	}
}

func TestSealWrongKey(t *testing.T) {
	for _, name := range []string{AES256GCM, AES128GCM, None} {
		n, _ := KeyLen(name)
		k1, k2 := make([]byte, n), make([]byte, n)
		rand.Read(k1)
		rand.Read(k2)
		a, _ := NewSealer(name, k1)
		b, _ := NewSealer(name, k2)
		h := Header{Type: TypeAck, Session: 1, Number: 1}
		pkt := a.Seal(h.Append(nil), 1, []byte("body"))
		if _, err := b.Open(pkt, 1, HeaderLen); !errors.Is(err, ErrAuth) {
			t.Fatalf("%s: packet under another key accepted: %v", name, err)
		}
	}
	if _, err := NewSealer(AES256GCM, make([]byte, 16)); err == nil {
		t.Fatal("short key accepted")
	}
	if _, err := NewSealer("rot13", nil); err == nil {
		t.Fatal("unknown cipher accepted")
	}
}

func TestReplayWindow(t *testing.T) {
	var w ReplayWindow
	seen := func(n uint64) bool {
		if !w.Check(n) {
			return false
		}
		w.Accept(n)
		return true
	}
	for _, tc := range []struct {
		n    uint64
		want bool
	}{
		{100, true},
		{100, false}, // replay
		{99, true},   // reordered, new
		{99, false},
		{5000, true},
		{200, true}, // still inside the window, never seen
		{201, true},
		{200, false},
		{5000 + ReplayWindowSize, true},
		{5000, false},                        // now too old to tell
		{5001 + ReplayWindowSize - 64, true}, // near the edge
		{5000 + ReplayWindowSize + 1, true},
		{5000 + ReplayWindowSize + 1, false},
		{5000 + ReplayWindowSize, false},
	} {
		if got := seen(tc.n); got != tc.want {
			t.Fatalf("packet %d: accepted=%v, want %v", tc.n, got, tc.want)
		}
	}
}

// TestReplayWindowModel compares the window with a map over random numbers.
func TestReplayWindowModel(t *testing.T) {
	var w ReplayWindow
	seen := map[uint64]bool{}
	var top uint64
	buf := make([]byte, 2)
	for i := 0; i < 200000; i++ {
		rand.Read(buf)
		var n uint64
		if buf[0]&1 == 0 {
			n = top + uint64(buf[1]%64)
		} else if top > uint64(buf[1])*40 {
			n = top - uint64(buf[1])*40
		}
		want := !seen[n] && (n > top || top-n < ReplayWindowSize || i == 0)
		if got := w.Check(n); got != want {
			t.Fatalf("step %d: Check(%d) = %v, want %v (top %d)", i, n, got, want, top)
		}
		if want {
			w.Accept(n)
			seen[n] = true
			if n > top {
				top = n
			}
		}
	}
}

func FuzzParseHeader(f *testing.F) {
	f.Add(Header{Type: TypeData, Session: 1, Number: 2}.Append(nil))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseHeader(b)
		if err != nil {
			return
		}
		if got := h.Append(nil); !bytes.Equal(got, b[:HeaderLen]) {
			t.Fatalf("re-encoding differs: %x vs %x", got, b[:HeaderLen])
		}
	})
}

func FuzzParseDataHeader(f *testing.F) {
	f.Add(DataHeader{Stream: 1, Offset: 2, SendTime: 3}.Append(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ParseDataHeader(b)
		if err != nil {
			return
		}
		if got := d.Append(nil); !bytes.Equal(got, b[:DataHeaderLen]) {
			t.Fatalf("re-encoding differs")
		}
	})
}

func FuzzParseAck(f *testing.F) {
	for _, a := range ackCases {
		f.Add(a.Append(nil))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := ParseAck(b, nil)
		if err != nil {
			return
		}
		for i, r := range a.Ranges {
			if r.Smallest > r.Largest {
				t.Fatalf("range %d inverted: %+v", i, r)
			}
			if i > 0 && r.Largest+1 >= a.Ranges[i-1].Smallest {
				t.Fatalf("ranges %d and %d touch or overlap: %+v", i-1, i, a.Ranges)
			}
		}
		again, err := ParseAck(a.Append(nil), nil)
		if err != nil || !reflect.DeepEqual(again.Ranges, a.Ranges) {
			t.Fatalf("re-parse: %v %+v vs %+v", err, again.Ranges, a.Ranges)
		}
	})
}

// FuzzOpen feeds arbitrary bytes to Open: it must never panic, and must
// never accept what was not sealed under its key.
func FuzzOpen(f *testing.F) {
	key := bytes.Repeat([]byte{7}, 32)
	s, _ := NewSealer(AES256GCM, key)
	h := Header{Type: TypeData, Session: 1, Number: 1}
	f.Add(s.Seal(DataHeader{Stream: 1}.Append(h.Append(nil)), 1, []byte("seed")))
	f.Add(s.Seal(Header{Type: TypeAck, Number: 2}.Append(nil), 2, []byte("ack")))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		o, _ := NewSealer(AES256GCM, key)
		hdr, err := ParseHeader(b)
		if err != nil {
			return
		}
		clear := ClearLen(hdr.Type)
		body, err := o.Open(append([]byte{}, b...), hdr.Number, clear)
		if err == nil {
			// Only what was sealed under the key can pass: re-sealing must
			// give b back.
			again := s.Seal(append([]byte{}, b[:clear]...), hdr.Number, body)
			if !bytes.Equal(again, b) {
				t.Fatalf("accepted bytes that were not sealed under the key")
			}
		}
	})
}

func BenchmarkSeal1400(b *testing.B) {
	for _, name := range []string{AES256GCM, AES128GCM, None} {
		b.Run(name, func(b *testing.B) {
			n, _ := KeyLen(name)
			s, _ := NewSealer(name, make([]byte, n))
			body := make([]byte, 1400)
			buf := make([]byte, 0, 1500)
			b.SetBytes(1400)
			for i := 0; b.Loop(); i++ {
				h := Header{Type: TypeData, Number: uint64(i)}
				s.Seal(h.Append(buf[:0]), uint64(i), body)
			}
		})
	}
}

func BenchmarkOpen1400(b *testing.B) {
	for _, name := range []string{AES256GCM, AES128GCM, None} {
		b.Run(name, func(b *testing.B) {
			n, _ := KeyLen(name)
			s, _ := NewSealer(name, make([]byte, n))
			h := Header{Type: TypeData, Number: 1}
			pkt := s.Seal(h.Append(nil), 1, make([]byte, 1400))
			work := make([]byte, len(pkt))
			b.SetBytes(1400)
			for b.Loop() {
				copy(work, pkt)
				if _, err := s.Open(work, 1, HeaderLen); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
