package linkem

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"regexp"
	"time"
)

// Dir names one direction of the emulated link.
type Dir int

const (
	// NearToFar carries packets sent in the near namespace to the far one.
	NearToFar Dir = iota
	// FarToNear carries packets sent in the far namespace to the near one.
	FarToNear
)

func (d Dir) String() string {
	switch d {
	case NearToFar:
		return "near→far"
	case FarToNear:
		return "far→near"
	}
	return fmt.Sprintf("Dir(%d)", int(d))
}

func (d Dir) valid() bool { return d == NearToFar || d == FarToNear }

// Link describes one direction of the emulated path. The zero Link is a
// perfect wire: no delay, no loss, no rate limit.
type Link struct {
	// Delay is the one-way propagation delay. A round-trip time R is
	// Delay = R/2 in each direction.
	Delay time.Duration `json:"delay_ns"`
	// Jitter adds a uniform random offset in [-Jitter, +Jitter] to each
	// packet's delay (clamped at zero). It never reorders packets.
	Jitter time.Duration `json:"jitter_ns"`
	// Loss is the probability, in [0, 1), that a packet is lost.
	Loss float64 `json:"loss"`
	// LossBurst, when above 1, makes losses come in bursts of this mean
	// length (packets) through a two-state Gilbert model whose mean loss
	// rate is still Loss. Zero or 1 means independent losses.
	LossBurst float64 `json:"loss_burst"`
	// Rate is the bottleneck rate in bits per second of IP packets
	// (headers included). Zero means unlimited: no queue, no
	// serialization delay.
	Rate Bitrate `json:"rate_bps"`
	// Queue is the drop-tail queue in front of the bottleneck, in bytes.
	// Zero means one bandwidth-delay product: Rate times the round-trip
	// delay (this direction's Delay plus the other direction's), but at
	// least what Rate drains in MinQueueTime and at least MinQueue. It has
	// no effect when Rate is zero.
	Queue int64 `json:"queue_bytes"`
}

// MinQueue and MinQueueTime bound the default queue from below, so that
// links with a tiny bandwidth-delay product still absorb the bursts that
// senders with segmentation offload emit (64 KiB at a time).
const (
	MinQueue     = 64 << 10
	MinQueueTime = 2 * time.Millisecond
)

// Validate reports whether l is usable.
func (l Link) Validate() error {
	switch {
	case l.Delay < 0:
		return fmt.Errorf("linkem: negative delay %v", l.Delay)
	case l.Delay > time.Minute:
		return fmt.Errorf("linkem: delay %v above one minute", l.Delay)
	case l.Jitter < 0:
		return fmt.Errorf("linkem: negative jitter %v", l.Jitter)
	case l.Jitter > time.Minute:
		return fmt.Errorf("linkem: jitter %v above one minute", l.Jitter)
	case !(l.Loss >= 0 && l.Loss < 1):
		return fmt.Errorf("linkem: loss %v outside [0, 1)", l.Loss)
	case l.LossBurst < 0:
		return fmt.Errorf("linkem: negative loss burst %v", l.LossBurst)
	case l.LossBurst > 1 && l.Loss > l.LossBurst/(1+l.LossBurst):
		// The good→bad transition probability Loss/(LossBurst·(1−Loss))
		// must not exceed 1.
		return fmt.Errorf("linkem: loss %v too high for bursts of %v packets", l.Loss, l.LossBurst)
	case l.Rate < 0:
		return fmt.Errorf("linkem: negative rate %v", l.Rate)
	case l.Queue < 0:
		return fmt.Errorf("linkem: negative queue %d", l.Queue)
	}
	return nil
}

// queueLimit is the drop-tail limit in bytes for a direction with link l
// when the opposite direction's delay is back.
func (l Link) queueLimit(back time.Duration) int64 {
	if l.Queue > 0 {
		return l.Queue
	}
	rtt := max(l.Delay+back, MinQueueTime)
	bdp := int64(float64(l.Rate) / 8 * rtt.Seconds())
	return max(bdp, MinQueue)
}

// Config describes an emulator. The zero Config is usable: a perfect link
// between two fresh namespaces with generated names.
type Config struct {
	// Name makes the namespace names chute-<Name>-near and
	// chute-<Name>-far. Empty means a random name. At most 32 characters
	// from [a-z0-9_.-], starting with a letter or digit.
	Name string
	// NearToFar and FarToNear describe the two directions.
	NearToFar, FarToNear Link
	// MTU of both TUN devices; zero means 1500.
	MTU int
	// NearAddr and FarAddr are the two ends' IPv4 addresses. Zero values
	// mean 10.201.X.1 and 10.201.X.2 with X not used by another live
	// emulator on this machine. Set both or neither.
	NearAddr, FarAddr netip.Addr
	// NoOffload turns off TCP segmentation offload between the kernels
	// and the forwarder. By default the kernels hand TCP over IPv4 to the
	// forwarder in super-packets of up to 64 KiB, which it cuts into
	// MSS-sized segments for the emulated link (each meets loss, queue
	// and delay on its own) and glues back together for the receiver
	// when they leave together, as a NIC's TSO and GRO do. The link sees
	// the same packets either way; offload makes the machine do far less
	// work per byte, so TCP gets much faster before the forwarder becomes
	// the limit.
	NoOffload bool
	// Sysctls are written in both namespaces after set-up, keyed by
	// dotted name: {"net.ipv4.tcp_congestion_control": "cubic"}.
	Sysctls map[string]string
	// Seed seeds the loss and jitter draws; zero means a random seed.
	Seed uint64
	// Logger receives set-up, teardown and error messages; nil means
	// slog.Default().
	Logger *slog.Logger
}

// Symmetric returns a Config whose two directions both have half of rtt
// as delay, loss as loss probability and rate as bottleneck rate.
func Symmetric(rtt time.Duration, loss float64, rate Bitrate) Config {
	l := Link{Delay: rtt / 2, Loss: loss, Rate: rate}
	return Config{NearToFar: l, FarToNear: l}
}

// DefaultMTU is the TUN devices' MTU when Config.MTU is zero.
const DefaultMTU = 1500

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,31}$`)

// ValidName reports whether name can name an emulator.
func ValidName(name string) bool { return nameRE.MatchString(name) }

func (c *Config) validate() error {
	if c.Name != "" && !ValidName(c.Name) {
		return fmt.Errorf("linkem: bad name %q: want at most 32 characters from [a-z0-9_.-]", c.Name)
	}
	if err := c.NearToFar.Validate(); err != nil {
		return fmt.Errorf("%s: %w", NearToFar, err)
	}
	if err := c.FarToNear.Validate(); err != nil {
		return fmt.Errorf("%s: %w", FarToNear, err)
	}
	if c.MTU != 0 && (c.MTU < 576 || c.MTU > 65535) {
		return fmt.Errorf("linkem: MTU %d outside [576, 65535]", c.MTU)
	}
	if c.NearAddr.IsValid() != c.FarAddr.IsValid() {
		return errors.New("linkem: set both NearAddr and FarAddr, or neither")
	}
	if c.NearAddr.IsValid() {
		if !c.NearAddr.Is4() || !c.FarAddr.Is4() {
			return errors.New("linkem: NearAddr and FarAddr must be IPv4")
		}
		if c.NearAddr == c.FarAddr {
			return errors.New("linkem: NearAddr equals FarAddr")
		}
	}
	for k := range c.Sysctls {
		if !sysctlRE.MatchString(k) {
			return fmt.Errorf("linkem: bad sysctl name %q", k)
		}
	}
	return nil
}

var sysctlRE = regexp.MustCompile(`^net\.[a-z0-9_]+(\.[a-z0-9_-]+)+$`)
