package engine

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/chute/chute/engine/congestion"
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
