package engine

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/chute/chute/cos"
	"github.com/chute/chute/engine/congestion"
	"github.com/chute/chute/engine/internal/ranges"
	"github.com/chute/chute/engine/internal/simnet"
	"github.com/chute/chute/engine/wire"
)

// TestSenderSendsInBatches checks that a paced sender wakes for a batch of
// packets, not for each packet as its tokens come or as each ack arrives:
// a batch is one system call and one segmentation-offload run.
func TestSenderSendsInBatches(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const rate = 400e6 / 8
		link := simnet.Link{Delay: 20 * time.Millisecond}
		p := newPair(t, link, link, congestion.Limits{Target: rate, Policy: congestion.Fixed}, wire.AES256GCM)
		defer p.close()
		if _, _, _, err := p.transfer(1, randomBytes(16<<20, 11), time.Minute); err != nil {
			t.Fatal(err)
		}
		packets, batches := p.a.counters.dataPackets.Load(), p.a.counters.batches.Load()
		per := float64(packets) / float64(batches)
		t.Logf("%d packets in %d batches: %.1f per batch", packets, batches, per)
		// A millisecond at 400 Mbit/s is 35 packets; batches stop at 32.
		if per < 16 {
			t.Errorf("%.1f packets per batch at 400 Mbit/s; want at least 16", per)
		}
	})
}

// refusingSource answers the first read at offset 0 with errReleased, as
// a store source does for bytes acknowledged between the sender choosing
// them and reading them.
type refusingSource struct {
	readerAtSource
	mu      sync.Mutex
	refused bool
}

func (s *refusingSource) ReadAt(p []byte, off int64) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if off == 0 && !s.refused {
		s.refused = true
		return 0, errReleased
	}
	return s.readerAtSource.ReadAt(p, off)
}

// TestSendLoopSkipsReleasedBytes checks that bytes a source no longer holds
// because they were acknowledged cost a packet, not the transfer.
func TestSendLoopSkipsReleasedBytes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		link := simnet.Link{Delay: 10 * time.Millisecond}
		p := newPair(t, link, link, congestion.Limits{}, wire.AES256GCM)
		defer p.close()
		data := randomBytes(1<<20, 5)
		size := int64(len(data))
		want := ranges.Of(ranges.Range{Off: 0, Len: size})
		dest := &memFile{buf: make([]byte, 0, size)}
		r := newRecvStream(1, dest, want, nil, false)
		p.b.addRecv(r)
		src := &refusingSource{readerAtSource: readerAtSource{r: bytes.NewReader(data), size: size}}
		st := newSendStream(1, src, want)
		p.a.addStream(st)
		select {
		case <-st.done:
		case <-time.After(time.Minute):
			t.Fatal("transfer not finished after a minute")
		}
		if st.err != nil {
			t.Fatalf("stream failed: %v", st.err)
		}
		if !src.refused {
			t.Fatal("the source was never asked for offset 0")
		}
		if !bytes.Equal(dest.bytes(), data) {
			t.Fatal("received bytes differ from the source")
		}
	})
}

// TestStoreSourceReleases checks that the store source gives up the
// chunks of acknowledged bytes (their buffers go back to the pool), answers
// errReleased for them, and still serves the bytes it holds.
func TestStoreSourceReleases(t *testing.T) {
	ctx := context.Background()
	store, err := cos.NewFolder(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := store.CreateBucket(ctx, "bkt"); err != nil {
		t.Fatal(err)
	}
	data := randomBytes(3*storeChunk+100, 9)
	if _, err := store.Put(ctx, "bkt", "k", bytes.NewReader(data), int64(len(data)), cos.Meta{}); err != nil {
		t.Fatal(err)
	}
	src := &storeSource{wake: func() {}}
	src.cond = sync.NewCond(&src.mu)
	info, err := store.Stat(ctx, "bkt", "k")
	if err != nil {
		t.Fatal(err)
	}
	src.load(ctx, store, "bkt", "k", info, []ranges.Range{{Off: 0, Len: int64(len(data))}})
	if err := src.failed(); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 100)
	if _, err := src.ReadAt(got, storeChunk-50); err != nil || !bytes.Equal(got, data[storeChunk-50:storeChunk+50]) {
		t.Fatalf("ReadAt across two chunks: %v", err)
	}
	src.release(storeChunk)
	if _, err := src.ReadAt(got[:10], 0); err != errReleased {
		t.Fatalf("ReadAt of released bytes: %v, want errReleased", err)
	}
	if src.loaded != int64(len(data))-storeChunk {
		t.Errorf("%d bytes held after releasing one chunk; want %d", src.loaded, len(data)-storeChunk)
	}
	// Whatever the pool hands out next, the held bytes stay as they were.
	for range 4 {
		b := chunkPool.Get().(*[]byte)
		clear(*b)
	}
	rest := make([]byte, len(data)-storeChunk)
	if _, err := src.ReadAt(rest, storeChunk); err != nil || !bytes.Equal(rest, data[storeChunk:]) {
		t.Fatalf("held bytes changed after the pool was used: %v", err)
	}
}

// TestDeliveryInPacerUnits checks that the delivery the controller is
// given counts what the pacer counts: a full packet's payload is the whole
// packet.
func TestDeliveryInPacerUnits(t *testing.T) {
	for _, cipher := range []string{wire.AES256GCM, wire.None} {
		p := newPair(t, simnet.Link{}, simnet.Link{}, congestion.Limits{}, cipher)
		s := p.a
		if got := s.paced(uint64(s.payloadSize)); got != float64(s.packetSize) {
			t.Errorf("%s: one packet's payload (%d bytes) is %v paced bytes, want the packet's %d", cipher, s.payloadSize, got, s.packetSize)
		}
		if got := s.paced(0); got != 0 {
			t.Errorf("%s: no payload is %v paced bytes", cipher, got)
		}
		p.close()
	}
}
