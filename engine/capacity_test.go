package engine

import (
	"math"
	"testing"
	"time"
)

// arrival is one data packet as the meter sees it.
type arrival struct {
	sent int64         // µs
	at   time.Duration // after the run's start
	n    int
}

// train returns n packets of size bytes sent at once and arriving every
// gap, group at a time (group > 1: GRO).
func train(n, size, group int, gap time.Duration) []arrival {
	var out []arrival
	for i := 0; i < n; i++ {
		out = append(out, arrival{sent: 1000, at: time.Duration(i/group) * gap, n: size})
	}
	return out
}

func TestTrainMeter(t *testing.T) {
	const size = 1344
	at200 := time.Duration(float64(size) / (200e6 / 8) * float64(time.Second)) // 53.76 µs a packet
	held := train(17, size, 1, at200)
	for i := 1; i < len(held); i++ { // the first arrives on time, the rest 6.5 ms late and at once
		held[i].at = 6500*time.Microsecond + time.Duration(i)*3*time.Microsecond
	}
	tail := train(40, size, 1, at200)
	for i := 6; i < len(tail); i++ { // on time, then a late burst
		tail[i].at = 6*at200 + 150*time.Microsecond + time.Duration(i)*3*time.Microsecond
	}
	middle := train(17, size, 1, at200)
	for i := 9; i < len(middle); i++ { // one held 1 ms in the middle
		middle[i].at += time.Millisecond
	}
	paced := train(17, size, 1, at200)
	for i := range paced { // sent spread out: dispersion says nothing about the path
		paced[i].sent += int64(i) * 60
	}
	// A packet sent a millisecond before a run and delivered on time: the
	// path's least one-way delay.
	lead := []arrival{{sent: 0, at: -time.Millisecond, n: size}}
	// A forwarder holds a whole run for 8 ms and lets it go at its own
	// pace, 7 µs a packet: evenly, but as if the path carried 1.5 Gbit/s.
	whole := train(40, size, 1, 7*time.Microsecond)
	for i := range whole {
		whole[i].at += 8 * time.Millisecond
	}
	// A run that meets an 8 ms queue is spread by the path all the same,
	// but a queue says others (or our own packets) share it meanwhile.
	queued := train(17, size, 1, at200)
	for i := range queued {
		queued[i].at += 8 * time.Millisecond
	}
	// Delivered 3 ms late, as a forwarder's jitter does: still believed.
	late := train(17, size, 1, at200)
	for i := range late {
		late[i].at += 3 * time.Millisecond
	}
	for _, tc := range []struct {
		name    string
		packets []arrival
		want    float64 // payload bytes per second; 0: no estimate
	}{
		{"first flight at 200 Mbit/s", train(17, size, 1, at200), 200e6 / 8},
		{"GRO groups of 4", train(32, size, 4, 4*at200), 200e6 / 8},
		{"at 20 Mbit/s", train(17, size, 1, 10*at200), 20e6 / 8},
		{"too fast to spread (loopback)", train(17, size, 1, 2*time.Microsecond), 0},
		{"too few packets", train(7, size, 1, at200), 0},
		{"held and let go at once", held, 0},
		{"late burst at the end", tail, 0},
		{"one held in the middle", middle, 0},
		{"sent paced", paced, 0},
		{"held whole, let go evenly and fast", append(lead, whole...), 0},
		{"on time after a packet on time", append(lead, train(17, size, 1, at200)...), 200e6 / 8},
		{"met a queue", append(lead, queued...), 0},
		{"3 ms late", append(lead, late...), 200e6 / 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m trainMeter
			start := time.Unix(1000, 0)
			for _, p := range tc.packets {
				m.add(p.sent, p.n, start.Add(p.at))
			}
			got := m.estimate()
			if tc.want == 0 {
				if got != 0 {
					t.Fatalf("estimate %.1f Mbit/s, want none", got*8/1e6)
				}
				return
			}
			if math.Abs(got-tc.want)/tc.want > 0.01 {
				t.Fatalf("estimate %.1f Mbit/s, want %.1f", got*8/1e6, tc.want*8/1e6)
			}
		})
	}
}

// A run ends when a packet comes that was sent later; it is judged then,
// and the estimate stays until a later run gives another.
func TestTrainMeterKeepsTheLastEstimate(t *testing.T) {
	const size = 1344
	gap := 100 * time.Microsecond // 107.5 Mbit/s
	var m trainMeter
	start := time.Unix(1000, 0)
	for i := 0; i < 12; i++ {
		m.add(0, size, start.Add(time.Duration(i)*gap))
	}
	// A paced packet ends the run before any ack asked for an estimate.
	m.add(5000, size, start.Add(5*time.Millisecond))
	want := float64(11*size) / (11 * gap).Seconds()
	if got := m.estimate(); math.Abs(got-want)/want > 0.01 {
		t.Fatalf("after the run ended: %.1f Mbit/s, want %.1f", got*8/1e6, want*8/1e6)
	}
	for i := 0; i < 5; i++ { // short paced runs change nothing
		m.add(int64(6000+1000*i), size, start.Add(time.Duration(6+i)*time.Millisecond))
	}
	if got := m.estimate(); math.Abs(got-want)/want > 0.01 {
		t.Fatalf("after paced packets: %.1f Mbit/s, want %.1f still", got*8/1e6, want*8/1e6)
	}
}
