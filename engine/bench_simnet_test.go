package engine

import (
	"fmt"
	"testing"
	"time"

	"github.com/chute/chute/engine/congestion"
	"github.com/chute/chute/engine/internal/simnet"
	"github.com/chute/chute/engine/wire"
)

// BenchmarkSimulatedWAN sends 256 MiB over a simulated path of 100 ms round
// trip, 1% random loss each way and a 50 Mbit/s cap, in real time (the
// session's own timers and pacing, not a fake clock), with the default
// policy. It reports goodput against the cap as the wire counts it and
// against the share of it that 1400-byte datagrams leave for payload.
func BenchmarkSimulatedWAN(b *testing.B) {
	for _, loss := range []float64{0.01, 0.02} {
		b.Run(fmt.Sprintf("rtt=100ms/loss=%g%%/cap=50Mbit", loss*100), func(b *testing.B) {
			const rate = 50e6 / 8
			data := randomBytes(64<<20, 3)
			var secs, retrans, payloadShare float64
			for b.Loop() {
				link := simnet.Link{Delay: 50 * time.Millisecond, Loss: loss, Rate: rate}
				back := simnet.Link{Delay: 50 * time.Millisecond, Loss: loss}
				p := newPair(b, link, back, congestion.Limits{Target: 1e9 / 8}, wire.AES256GCM)
				payloadShare = p.payloadShare()
				elapsed, _, st, err := p.transfer(1, data, 5*time.Minute)
				p.close()
				if err != nil {
					b.Fatal(err)
				}
				secs += elapsed.Seconds()
				retrans += float64(st.retrans)
			}
			n := float64(b.N)
			goodput := float64(len(data)) * n / secs
			b.SetBytes(int64(len(data)))
			b.ReportMetric(goodput*8/1e6, "Mbit/s")
			b.ReportMetric(100*goodput/rate, "%cap")
			b.ReportMetric(100*goodput/(rate*payloadShare), "%payload-cap")
			b.ReportMetric(100*retrans/(float64(len(data))*n), "%retrans")
		})
	}
}
