package udpio

import (
	"bytes"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

// splitAll drives a segmenter the way ReadBatch does: batches of the given
// sizes (cycled), Bufs of bufSize bytes. It returns what came out.
func splitAll(t testing.TB, data []byte, seg int, trunc bool, batches []int, bufSize int) []got {
	t.Helper()
	src := netip.MustParseAddrPort("192.0.2.1:4000")
	var s segmenter
	s.reset(data, seg, src, trunc, time.Time{})
	var out []got
	for i := 0; !s.done(); i++ {
		if i > len(data)+10 {
			t.Fatalf("segmenter made no progress: %d calls for %d bytes", i, len(data))
		}
		ms := make([]Message, batches[i%len(batches)])
		for j := range ms {
			ms[j].Buf = make([]byte, bufSize)
		}
		n := s.fill(ms)
		if n > len(ms) || (n == 0 && len(ms) > 0) {
			t.Fatalf("fill filled %d of %d Messages", n, len(ms))
		}
		for _, m := range ms[:n] {
			if m.Addr != src {
				t.Fatalf("Addr = %v, want %v", m.Addr, src)
			}
			out = append(out, got{data: m.Buf[:m.N], truncated: m.Truncated})
		}
	}
	return out
}

// checkSplit compares a segmenter's output with the datagrams that were
// coalesced, given the Buf size and whether the kernel truncated the buffer.
func checkSplit(t testing.TB, dgs [][]byte, gots []got, bufSize int, kernelTrunc bool) {
	t.Helper()
	if len(gots) != len(dgs) {
		t.Fatalf("split into %d datagrams, want %d", len(gots), len(dgs))
	}
	for i, d := range dgs {
		wantN := min(len(d), bufSize)
		wantTrunc := len(d) > bufSize || (kernelTrunc && i == len(dgs)-1)
		if !bytes.Equal(gots[i].data, d[:wantN]) || gots[i].truncated != wantTrunc {
			t.Fatalf("datagram %d of %d bytes: got %d bytes truncated=%v, want %d bytes truncated=%v",
				i, len(d), len(gots[i].data), gots[i].truncated, wantN, wantTrunc)
		}
	}
}

// coalesce builds a GRO buffer: count datagrams of seg bytes, then one of
// last bytes (0 < last <= seg) if last > 0.
func coalesce(rng *rand.Rand, count, seg, last int) (data []byte, dgs [][]byte) {
	for range count {
		d := make([]byte, seg)
		for i := range d {
			d[i] = byte(rng.IntN(256))
		}
		dgs = append(dgs, d)
		data = append(data, d...)
	}
	if last > 0 {
		d := make([]byte, last)
		for i := range d {
			d[i] = byte(rng.IntN(256))
		}
		dgs = append(dgs, d)
		data = append(data, d...)
	}
	return data, dgs
}

func TestSegmenterCases(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	cases := []struct {
		name             string
		count, seg, last int
		batches          []int
		bufSize          int
	}{
		{"one datagram, no cmsg", 0, 0, 1400, []int{8}, 2048},
		{"equal segments", 10, 1400, 0, []int{64}, 2048},
		{"shorter last", 10, 1400, 3, []int{64}, 2048},
		{"batch of one", 5, 1000, 999, []int{1}, 2048},
		{"batches smaller than the buffer", 46, 1400, 0, []int{7, 3, 1}, 2048},
		{"bufs smaller than segments", 5, 1400, 100, []int{2}, 1000},
		{"segment exactly buf", 5, 1000, 1000, []int{4}, 1000},
		{"64 tiny segments", 64, 1, 0, []int{10}, 4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			data, dgs := coalesce(rng, tc.count, tc.seg, tc.last)
			seg := tc.seg
			checkSplit(t, dgs, splitAll(t, data, seg, false, tc.batches, tc.bufSize), tc.bufSize, false)
		})
	}
	t.Run("empty datagram", func(t *testing.T) {
		gots := splitAll(t, nil, 0, false, []int{4}, 100)
		if len(gots) != 1 || len(gots[0].data) != 0 || gots[0].truncated {
			t.Fatalf("a 0-byte datagram came out as %+v, want one empty Message", gots)
		}
	})
	t.Run("kernel truncation marks the last", func(t *testing.T) {
		data, dgs := coalesce(rng, 3, 100, 50)
		checkSplit(t, dgs, splitAll(t, data, 100, true, []int{2}, 200), 200, true)
	})
	t.Run("empty batch", func(t *testing.T) {
		var s segmenter
		s.reset([]byte("abc"), 0, netip.AddrPort{}, false, time.Time{})
		if n := s.fill(nil); n != 0 || s.done() {
			t.Fatalf("fill(nil) = %d, done = %v; want 0 and not done", n, s.done())
		}
	})
}

// TestSegmenterRandom is the property test: for random segment sizes,
// counts, last sizes, batch sizes and Buf sizes, splitting gives back
// exactly the datagrams coalesced, in order.
func TestSegmenterRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 2000 {
		seg := 1 + rng.IntN(2000)
		count := rng.IntN(MaxGSOSegments)
		last := 0
		if count == 0 || rng.IntN(2) == 0 {
			last = 1 + rng.IntN(seg)
		}
		data, dgs := coalesce(rng, count, seg, last)
		batches := []int{1 + rng.IntN(70), 1 + rng.IntN(5)}
		bufSize := 1 + rng.IntN(2200)
		trunc := rng.IntN(10) == 0
		checkSplit(t, dgs, splitAll(t, data, seg, trunc, batches, bufSize), bufSize, trunc)
	}
}

// FuzzSegmenter: any buffer and segment size (including nonsense) must split
// into datagrams that, concatenated, give back the buffer, each at most seg
// bytes, all but the last exactly seg.
func FuzzSegmenter(f *testing.F) {
	f.Add(bytes.Repeat([]byte{1}, 1400*3+10), 1400, 5, 2048)
	f.Add([]byte{}, 0, 1, 10)
	f.Add([]byte("abcdef"), -3, 2, 3)
	f.Add(bytes.Repeat([]byte{7}, 64), 1, 64, 1)
	f.Fuzz(func(t *testing.T, data []byte, seg, batch, bufSize int) {
		batch = 1 + int(uint(batch)%256)
		bufSize = int(uint(bufSize) % (1<<16 + 1))
		gots := splitAll(t, data, seg, false, []int{batch}, bufSize)
		want := 1
		if seg > 0 && seg < len(data) {
			want = (len(data) + seg - 1) / seg
		}
		if len(gots) != want {
			t.Fatalf("split %d bytes with seg %d into %d datagrams, want %d", len(data), seg, len(gots), want)
		}
		var joined []byte
		for i, g := range gots {
			full := len(data) // the length this datagram should have had
			if seg > 0 && seg < len(data) {
				full = min(seg, len(data)-i*seg)
			}
			if len(g.data) != min(full, bufSize) || g.truncated != (full > bufSize) {
				t.Fatalf("datagram %d: %d bytes truncated=%v; want %d of %d", i, len(g.data), g.truncated, min(full, bufSize), full)
			}
			joined = append(joined, g.data...)
		}
		if bufSize >= max(seg, 0) && bufSize >= len(data) && !bytes.Equal(joined, data) {
			t.Fatalf("datagrams do not add up to the buffer")
		}
	})
}
