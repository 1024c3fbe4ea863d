package linkem

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Bitrate is a rate in bits per second.
type Bitrate int64

// Bit rates in decimal units, as links are sold.
const (
	Kbit Bitrate = 1000
	Mbit         = 1000 * Kbit
	Gbit         = 1000 * Mbit
)

// String formats r in the largest unit that keeps it readable: "200Mbit".
func (r Bitrate) String() string {
	switch {
	case r == 0:
		return "0"
	case r%Gbit == 0:
		return strconv.FormatInt(int64(r/Gbit), 10) + "Gbit"
	case r%Mbit == 0:
		return strconv.FormatInt(int64(r/Mbit), 10) + "Mbit"
	case r >= Mbit:
		return strconv.FormatFloat(float64(r)/float64(Mbit), 'f', -1, 64) + "Mbit"
	case r%Kbit == 0:
		return strconv.FormatInt(int64(r/Kbit), 10) + "Kbit"
	}
	return strconv.FormatInt(int64(r), 10) + "bit"
}

// ParseBitrate parses a rate such as "200mbit", "1.5Gbit", "500kbit/s",
// "10m" or "64000" (bits per second). Units are decimal and case does not
// matter; "bit" and "/s" may be left out. "0" means unlimited.
func ParseBitrate(s string) (Bitrate, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	t = strings.TrimSuffix(t, "/s")
	t = strings.TrimSuffix(t, "ps")
	t = strings.TrimSuffix(t, "bit")
	t = strings.TrimSuffix(t, "b")
	mult := 1.0
	switch {
	case strings.HasSuffix(t, "k"):
		mult = 1e3
	case strings.HasSuffix(t, "m"):
		mult = 1e6
	case strings.HasSuffix(t, "g"):
		mult = 1e9
	}
	if mult != 1 {
		t = t[:len(t)-1]
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) || v*mult > 1e15 {
		return 0, fmt.Errorf("linkem: bad rate %q (want e.g. 200mbit, 1gbit, 500kbit)", s)
	}
	return Bitrate(math.Round(v * mult)), nil
}

// ParseBytes parses a size such as "64k", "1.5MB", "300000" or "2m". Units
// are binary (k = 1024). "0" means the default.
func ParseBytes(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	t = strings.TrimSuffix(t, "ib")
	t = strings.TrimSuffix(t, "b")
	mult := 1.0
	switch {
	case strings.HasSuffix(t, "k"):
		mult = 1 << 10
	case strings.HasSuffix(t, "m"):
		mult = 1 << 20
	case strings.HasSuffix(t, "g"):
		mult = 1 << 30
	}
	if mult != 1 {
		t = t[:len(t)-1]
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) || v*mult > 1<<40 {
		return 0, fmt.Errorf("linkem: bad size %q (want e.g. 64k, 2m, 300000)", s)
	}
	return int64(math.Round(v * mult)), nil
}

// ParseLoss parses a loss probability written as a percentage ("2%",
// "0.5%") or a fraction ("0.02"). It must be below 100%.
func ParseLoss(s string) (float64, error) {
	t := strings.TrimSpace(s)
	div := 1.0
	if strings.HasSuffix(t, "%") {
		t = strings.TrimSpace(t[:len(t)-1])
		div = 100
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || math.IsNaN(v) {
		return 0, fmt.Errorf("linkem: bad loss %q (want e.g. 2%% or 0.02)", s)
	}
	v /= div
	if v < 0 || v >= 1 {
		return 0, fmt.Errorf("linkem: loss %q outside [0, 100%%)", s)
	}
	return v, nil
}
