package linkem

import (
	"slices"
	"time"
)

// Stats counts what the emulator did, per direction.
type Stats struct {
	NearToFar DirStats `json:"near_to_far"`
	FarToNear DirStats `json:"far_to_near"`
}

// Dir returns the statistics of direction d.
func (s Stats) Dir(d Dir) DirStats {
	if d == FarToNear {
		return s.FarToNear
	}
	return s.NearToFar
}

// DirStats counts one direction. Every packet read is either lost,
// dropped by the queue, forwarded, or still in flight (held for its due
// time), so PacketsIn = Lost + QueueDrops + Forwarded + InFlight.
type DirStats struct {
	PacketsIn uint64 `json:"packets_in"`
	BytesIn   uint64 `json:"bytes_in"`
	// Lost counts packets dropped by random loss.
	Lost      uint64 `json:"lost"`
	LostBytes uint64 `json:"lost_bytes"`
	// QueueDrops counts packets dropped because the bottleneck queue was
	// full, or, rarely, because the emulator's packet memory was used up.
	QueueDrops     uint64 `json:"queue_drops"`
	QueueDropBytes uint64 `json:"queue_drop_bytes"`
	// Forwarded counts packets written into the other namespace.
	Forwarded      uint64 `json:"forwarded"`
	ForwardedBytes uint64 `json:"forwarded_bytes"`
	// Reads and Writes count the forwarder's system calls on the TUN
	// devices; with offload one call carries many packets.
	Reads  uint64 `json:"reads"`
	Writes uint64 `json:"writes"`
	// WriteErrors counts packets the other namespace's TUN device refused.
	WriteErrors uint64 `json:"write_errors"`
	// Stalls counts the times the reader stopped reading because the
	// writer fell more than a few milliseconds behind: the machine could
	// not keep up, and the kernel queued or dropped packets meanwhile.
	Stalls uint64 `json:"stalls"`
	// KernelDrops counts packets the sending namespace's kernel dropped
	// because its TUN device's queue was full: the forwarder could not
	// keep up (it is not part of the emulated link). They never reach
	// the emulator, so PacketsIn does not count them.
	KernelDrops uint64 `json:"kernel_drops"`
	// InFlight counts packets held for their due time.
	InFlight uint64 `json:"in_flight"`
	// Queue is the bytes waiting for the bottleneck now; MaxQueue the most
	// seen (at a packet's arrival, that packet included); QueueLimit the
	// drop-tail limit in force.
	Queue      int64 `json:"queue_bytes"`
	MaxQueue   int64 `json:"max_queue_bytes"`
	QueueLimit int64 `json:"queue_limit_bytes"`
	// Late measures how long after its due time each forwarded packet
	// was written: the scheduler's timing error.
	Late Lateness `json:"late"`
}

// Lateness summarizes release times minus due times: Count, Mean and
// Max over all packets forwarded, P50 and P99 over the most recent
// lateWindow of them.
type Lateness struct {
	Count uint64        `json:"count"`
	Mean  time.Duration `json:"mean_ns"`
	P50   time.Duration `json:"p50_ns"`
	P99   time.Duration `json:"p99_ns"`
	Max   time.Duration `json:"max_ns"`
}

// lateWindow is how many recent samples the percentiles cover.
const lateWindow = 8192

// lateRecorder accumulates lateness samples.
type lateRecorder struct {
	n, sum, max uint64
	recent      []int64 // ring of the last lateWindow samples
}

func (r *lateRecorder) add(ns int64) {
	ns = max(ns, 0)
	r.n++
	r.sum += uint64(ns)
	r.max = max(r.max, uint64(ns))
	if len(r.recent) < lateWindow {
		r.recent = append(r.recent, ns)
	} else {
		r.recent[(r.n-1)%lateWindow] = ns
	}
}

func (r *lateRecorder) summary() Lateness {
	if r.n == 0 {
		return Lateness{}
	}
	s := slices.Clone(r.recent)
	slices.Sort(s)
	q := func(f float64) time.Duration { return time.Duration(s[int(f*float64(len(s)-1)+0.5)]) }
	return Lateness{
		Count: r.n,
		Mean:  time.Duration(r.sum / r.n),
		P50:   q(0.50),
		P99:   q(0.99),
		Max:   time.Duration(r.max),
	}
}
