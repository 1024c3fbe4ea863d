package main

import (
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/chute/chute/internal/linkem"
)

// linkFlags are the link parameters shared by up and set. Values are
// kept as text so that set can tell which were given.
type linkFlags struct {
	fs *pflag.FlagSet

	rtt, delay, jitter   time.Duration
	loss, burst          string
	rate, queue          string
	delayUp, delayDown   time.Duration
	lossUp, lossDown     string
	rateUp, rateDown     string
	queueUp, queueDown   string
	jitterUp, jitterDown time.Duration
}

func (f *linkFlags) AddFlags(fs *pflag.FlagSet) {
	f.fs = fs
	fs.DurationVar(&f.rtt, "rtt", 0, "round-trip time: half of it as delay in each direction")
	fs.DurationVar(&f.delay, "delay", 0, "one-way delay in each direction (instead of --rtt)")
	fs.DurationVar(&f.jitter, "jitter", 0, "uniform ± jitter on each packet's delay, each direction (never reorders)")
	fs.StringVar(&f.loss, "loss", "0", "random loss in each direction: 2% or 0.02")
	fs.StringVar(&f.burst, "loss-burst", "0", "mean length of loss bursts in packets (above 1: Gilbert model; else independent)")
	fs.StringVar(&f.rate, "rate", "0", "bottleneck rate in each direction, IP bytes counted: 200mbit, 1gbit (0: unlimited)")
	fs.StringVar(&f.queue, "queue", "0", "drop-tail queue before the bottleneck: 256k, 4m (0: one bandwidth-delay product)")
	fs.DurationVar(&f.delayUp, "delay-up", 0, "one-way delay near→far (overrides --rtt/--delay)")
	fs.DurationVar(&f.delayDown, "delay-down", 0, "one-way delay far→near (overrides --rtt/--delay)")
	fs.DurationVar(&f.jitterUp, "jitter-up", 0, "jitter near→far")
	fs.DurationVar(&f.jitterDown, "jitter-down", 0, "jitter far→near")
	fs.StringVar(&f.lossUp, "loss-up", "", "loss near→far")
	fs.StringVar(&f.lossDown, "loss-down", "", "loss far→near")
	fs.StringVar(&f.rateUp, "rate-up", "", "rate near→far")
	fs.StringVar(&f.rateDown, "rate-down", "", "rate far→near")
	fs.StringVar(&f.queueUp, "queue-up", "", "queue near→far")
	fs.StringVar(&f.queueDown, "queue-down", "", "queue far→near")
}

func (f *linkFlags) changed(name string) bool { return f.fs.Changed(name) }

// apply sets, in up (near→far) and down (far→near), the parameters given
// on the command line; with all set, every parameter, given or default.
func (f *linkFlags) apply(up, down *linkem.Link, all bool) error {
	if f.changed("rtt") && f.changed("delay") {
		return usagef("give --rtt or --delay, not both")
	}
	set := func(name string) bool { return all || f.changed(name) }
	both := func(fn func(l *linkem.Link)) { fn(up); fn(down) }

	if set("rtt") && !f.changed("delay") {
		both(func(l *linkem.Link) { l.Delay = f.rtt / 2 })
	}
	if f.changed("delay") {
		both(func(l *linkem.Link) { l.Delay = f.delay })
	}
	if set("jitter") {
		both(func(l *linkem.Link) { l.Jitter = f.jitter })
	}
	if set("loss") {
		v, err := linkem.ParseLoss(f.loss)
		if err != nil {
			return usagef("--loss: %v", err)
		}
		both(func(l *linkem.Link) { l.Loss = v })
	}
	if set("loss-burst") {
		var v float64
		if _, err := fmt.Sscan(f.burst, &v); err != nil || v < 0 {
			return usagef("--loss-burst: bad value %q", f.burst)
		}
		both(func(l *linkem.Link) { l.LossBurst = v })
	}
	if set("rate") {
		v, err := linkem.ParseBitrate(f.rate)
		if err != nil {
			return usagef("--rate: %v", err)
		}
		both(func(l *linkem.Link) { l.Rate = v })
	}
	if set("queue") {
		v, err := linkem.ParseBytes(f.queue)
		if err != nil {
			return usagef("--queue: %v", err)
		}
		both(func(l *linkem.Link) { l.Queue = v })
	}

	// Per-direction overrides.
	for _, d := range []struct {
		suffix string
		l      *linkem.Link
		delay  time.Duration
		jitter time.Duration
		loss   string
		rate   string
		queue  string
	}{
		{"up", up, f.delayUp, f.jitterUp, f.lossUp, f.rateUp, f.queueUp},
		{"down", down, f.delayDown, f.jitterDown, f.lossDown, f.rateDown, f.queueDown},
	} {
		if f.changed("delay-" + d.suffix) {
			d.l.Delay = d.delay
		}
		if f.changed("jitter-" + d.suffix) {
			d.l.Jitter = d.jitter
		}
		if f.changed("loss-" + d.suffix) {
			v, err := linkem.ParseLoss(d.loss)
			if err != nil {
				return usagef("--loss-%s: %v", d.suffix, err)
			}
			d.l.Loss = v
		}
		if f.changed("rate-" + d.suffix) {
			v, err := linkem.ParseBitrate(d.rate)
			if err != nil {
				return usagef("--rate-%s: %v", d.suffix, err)
			}
			d.l.Rate = v
		}
		if f.changed("queue-" + d.suffix) {
			v, err := linkem.ParseBytes(d.queue)
			if err != nil {
				return usagef("--queue-%s: %v", d.suffix, err)
			}
			d.l.Queue = v
		}
	}
	for _, l := range []*linkem.Link{up, down} {
		if err := l.Validate(); err != nil {
			return usagef("%v", err)
		}
	}
	return nil
}

// describe formats a link for people.
func describe(l linkem.Link) string {
	s := fmt.Sprintf("delay %v", l.Delay)
	if l.Jitter > 0 {
		s += fmt.Sprintf(" ±%v", l.Jitter)
	}
	s += fmt.Sprintf(", loss %g%%", l.Loss*100)
	if l.LossBurst > 1 {
		s += fmt.Sprintf(" in bursts of %g", l.LossBurst)
	}
	if l.Rate > 0 {
		s += ", rate " + l.Rate.String()
		if l.Queue > 0 {
			s += fmt.Sprintf(", queue %d bytes", l.Queue)
		} else {
			s += ", queue 1 BDP"
		}
	} else {
		s += ", rate unlimited"
	}
	return s
}
