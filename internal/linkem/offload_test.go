package linkem

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// tcpSuperPacket builds an IPv4 TCP packet with the given payload, as the
// kernel hands a TSO super-packet over (partial checksum).
func tcpSuperPacket(payload []byte, seq uint32, flags byte, opts []byte) []byte {
	tcpl := 20 + len(opts)
	p := make([]byte, 20+tcpl+len(payload))
	p[0] = 0x45
	p[1] = 0x10 // TOS
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	binary.BigEndian.PutUint16(p[4:], 1000) // IP ID
	p[6] = 0x40                             // DF
	p[8] = 64
	p[9] = 6
	copy(p[12:], []byte{10, 201, 7, 1, 10, 201, 7, 2})
	ipv4HeaderChecksum(p[:20])
	t := p[20:]
	binary.BigEndian.PutUint16(t[0:], 40000)
	binary.BigEndian.PutUint16(t[2:], 5201)
	binary.BigEndian.PutUint32(t[4:], seq)
	binary.BigEndian.PutUint32(t[8:], 777)
	t[12] = byte(tcpl/4) << 4
	t[13] = flags
	binary.BigEndian.PutUint16(t[14:], 512)
	copy(t[20:], opts)
	copy(t[tcpl:], payload)
	binary.BigEndian.PutUint16(t[16:], tcpPseudoSum(p, tcpl+len(payload)))
	return p
}

// completeChecksum does what the device does for a partial checksum: sum
// from csumStart, starting from the pseudo-header sum in the field, and
// store the complement.
func completeChecksum(p []byte, h vnetHdr) {
	if h.flags&vnetNeedsCsum == 0 {
		return
	}
	s := checksum(p[h.csumStart:], 0)
	binary.BigEndian.PutUint16(p[int(h.csumStart)+int(h.csumOffset):], ^uint16(s))
}

// tcpChecksumOK verifies a packet's TCP checksum from scratch.
func tcpChecksumOK(p []byte) bool {
	t := p[20:]
	var pseudo [12]byte
	copy(pseudo[:8], p[12:20])
	pseudo[9] = 6
	binary.BigEndian.PutUint16(pseudo[10:], uint16(len(t)))
	return checksum(t, checksum(pseudo[:], 0)) == 0xffff
}

func ipChecksumOK(p []byte) bool { return checksum(p[:20], 0) == 0xffff }

// TestSplitTSO cuts a super-packet and checks every segment: length, IP
// ID, sequence number, flags on the right segments, valid IP checksum,
// and a TCP checksum that is valid once completed as a device would.
func TestSplitTSO(t *testing.T) {
	payload := make([]byte, 10000)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	opts := []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2} // NOP NOP timestamps
	const mss = 1448
	super := tcpSuperPacket(payload, 5000, tcpACK|tcpPSH|tcpFIN|tcpCWR, opts)
	var segs [][]byte
	err := splitTSO(super, mss, func() []byte { return make([]byte, vnetHdrLen+1500) },
		func(b []byte) { segs = append(segs, append([]byte(nil), b...)) })
	if err != nil {
		t.Fatal(err)
	}
	if want := (len(payload) + mss - 1) / mss; len(segs) != want {
		t.Fatalf("%d segments, want %d", len(segs), want)
	}
	var joined []byte
	for i, b := range segs {
		h := decodeVnetHdr(b)
		p := b[vnetHdrLen:]
		if h.gsoType != gsoNone || h.flags != vnetNeedsCsum || h.csumStart != 20 || h.csumOffset != 16 {
			t.Fatalf("segment %d: virtio header %+v", i, h)
		}
		if int(binary.BigEndian.Uint16(p[2:])) != len(p) || !ipChecksumOK(p) {
			t.Fatalf("segment %d: bad IP length or checksum", i)
		}
		if id := binary.BigEndian.Uint16(p[4:]); id != 1000+uint16(i) {
			t.Fatalf("segment %d: IP ID %d", i, id)
		}
		if seq := binary.BigEndian.Uint32(p[24:]); seq != 5000+uint32(i*mss) {
			t.Fatalf("segment %d: seq %d", i, seq)
		}
		flags := p[33]
		last := i == len(segs)-1
		if (flags&tcpFIN != 0) != last || (flags&tcpPSH != 0) != last || (flags&tcpCWR != 0) != (i == 0) || flags&tcpACK == 0 {
			t.Fatalf("segment %d: flags %#x", i, flags)
		}
		if !bytes.Equal(p[40:52], opts) {
			t.Fatalf("segment %d: options changed", i)
		}
		completeChecksum(p, h)
		if !tcpChecksumOK(p) {
			t.Fatalf("segment %d: TCP checksum invalid", i)
		}
		joined = append(joined, p[52:]...)
	}
	if !bytes.Equal(joined, payload) {
		t.Fatal("segments do not carry the payload")
	}
	// Running out of buffers stops the split early.
	k := 0
	splitTSO(super, mss, func() []byte {
		if k == 3 {
			return nil
		}
		k++
		return make([]byte, vnetHdrLen+1500)
	}, func([]byte) {})
	if k != 3 {
		t.Fatalf("split asked for %d buffers after running out at 3", k)
	}
	if splitTSO(super[:30], mss, nil, nil) == nil {
		t.Fatal("truncated packet accepted")
	}
	if splitTSO(super, 4000, func() []byte { return make([]byte, vnetHdrLen+1500) }, func([]byte) {}) == nil {
		t.Fatal("segments larger than the buffers accepted")
	}
}

// TestCoalesceRoundTrip splits a super-packet and glues the segments back:
// the result carries the same payload and headers, as one GSO write with
// the right virtio header and a checksum that completes correctly.
func TestCoalesceRoundTrip(t *testing.T) {
	payload := make([]byte, 20000)
	for i := range payload {
		payload[i] = byte(i*13 + 1)
	}
	const mss = 1448
	super := tcpSuperPacket(payload, 123456, tcpACK|tcpPSH, nil)
	var segs [][]byte
	splitTSO(super, mss, func() []byte { return make([]byte, vnetHdrLen+1500) },
		func(b []byte) { segs = append(segs, append([]byte(nil), b[vnetHdrLen:]...)) })
	var c coalescer
	if !c.start(segs[0]) {
		t.Fatal("first segment refused")
	}
	for i, s := range segs[1:] {
		if !c.canJoin(s) {
			t.Fatalf("segment %d refused", i+1)
		}
		c.add(s)
	}
	out := c.finish()
	h := decodeVnetHdr(out)
	p := out[vnetHdrLen:]
	if h.gsoType != gsoTCPv4 || h.gsoSize != mss || h.hdrLen != 40 || h.flags != vnetNeedsCsum || h.csumStart != 20 {
		t.Fatalf("virtio header %+v", h)
	}
	if !bytes.Equal(p[40:], payload) || len(p) != len(super) {
		t.Fatal("coalesced packet does not carry the payload")
	}
	if !ipChecksumOK(p) || binary.BigEndian.Uint32(p[24:]) != 123456 || p[33] != tcpACK|tcpPSH {
		t.Fatalf("coalesced headers wrong: flags %#x", p[33])
	}
	completeChecksum(p, h)
	if !tcpChecksumOK(p) {
		t.Fatal("coalesced TCP checksum invalid")
	}
}

// TestCoalesceRefuses checks that runs break where a receiver's GRO would
// break them: a gap in sequence numbers, another flow, a different ACK or
// window, non-ACK flags, a segment after a short or pushed one.
func TestCoalesceRefuses(t *testing.T) {
	data := make([]byte, 1000)
	seg := func(seq uint32, flags byte) []byte { return tcpSuperPacket(data, seq, flags, nil) }
	cases := map[string]struct {
		first, next []byte
		mutate      func(p []byte)
	}{
		"gap":         {seg(0, tcpACK), seg(2000, tcpACK), nil},
		"other port":  {seg(0, tcpACK), seg(1000, tcpACK), func(p []byte) { p[21]++ }},
		"other ack":   {seg(0, tcpACK), seg(1000, tcpACK), func(p []byte) { p[31]++ }},
		"window":      {seg(0, tcpACK), seg(1000, tcpACK), func(p []byte) { p[35]++ }},
		"fin":         {seg(0, tcpACK), seg(1000, tcpACK|tcpFIN), nil},
		"after push":  {seg(0, tcpACK|tcpPSH), seg(1000, tcpACK), nil},
		"after short": {tcpSuperPacket(data[:500], 0, tcpACK, nil), seg(500, tcpACK), nil},
		"longer":      {tcpSuperPacket(data[:500], 0, tcpACK, nil), tcpSuperPacket(data, 500, tcpACK, nil), nil},
	}
	for name, tc := range cases {
		if tc.mutate != nil {
			tc.mutate(tc.next)
		}
		var c coalescer
		if !c.start(tc.first) {
			t.Fatalf("%s: first segment refused", name)
		}
		if c.canJoin(tc.next) {
			t.Errorf("%s: joined", name)
		}
	}
	var c coalescer
	if c.start(tcpSuperPacket(nil, 0, tcpACK, nil)) {
		t.Error("pure ACK started a run")
	}
	if c.start(tcpSuperPacket(data, 0, tcpSYN|tcpACK, nil)) {
		t.Error("SYN started a run")
	}
	if c.start([]byte{0x45, 0, 0, 20}) {
		t.Error("truncated packet started a run")
	}
}

// FuzzSplitTSO feeds arbitrary bytes to the splitter: it must not panic,
// and what it emits must be valid IPv4 packets no larger than asked.
func FuzzSplitTSO(f *testing.F) {
	f.Add(tcpSuperPacket(make([]byte, 3000), 1, tcpACK, nil), uint16(1448))
	f.Add(tcpSuperPacket([]byte("x"), 1, tcpACK|tcpPSH, []byte{1, 1, 1, 1}), uint16(1))
	f.Add([]byte{0x45}, uint16(100))
	f.Fuzz(func(t *testing.T, p []byte, mss uint16) {
		splitTSO(p, int(mss), func() []byte { return make([]byte, vnetHdrLen+len(p)+60) }, func(b []byte) {
			seg := b[vnetHdrLen:]
			if int(binary.BigEndian.Uint16(seg[2:])) != len(seg) || !ipChecksumOK(seg) {
				t.Fatalf("bad segment from %x", p)
			}
			if len(seg) > len(p) {
				t.Fatalf("segment longer than the packet")
			}
		})
	})
}

// TestChecksumMatchesReference compares the checksum routine with a
// byte-at-a-time reference on random inputs.
func TestChecksumMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 1000 {
		b := make([]byte, r.IntN(200))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		var ref uint64
		for i := 0; i < len(b); i++ {
			if i%2 == 0 {
				ref += uint64(b[i]) << 8
			} else {
				ref += uint64(b[i])
			}
		}
		for ref > 0xffff {
			ref = ref>>16 + ref&0xffff
		}
		if got := checksum(b, 0); uint64(got) != ref {
			t.Fatalf("checksum %x, reference %x", got, ref)
		}
	}
}
