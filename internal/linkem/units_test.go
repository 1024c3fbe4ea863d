package linkem

import (
	"testing"
)

func TestParseBitrate(t *testing.T) {
	good := map[string]Bitrate{
		"200mbit":   200 * Mbit,
		"200Mbit":   200 * Mbit,
		"1.5gbit":   1500 * Mbit,
		"500kbit/s": 500 * Kbit,
		"10m":       10 * Mbit,
		"64000":     64000,
		"1gbps":     Gbit,
		"0":         0,
	}
	for in, want := range good {
		got, err := ParseBitrate(in)
		if err != nil || got != want {
			t.Errorf("ParseBitrate(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "fast", "-1mbit", "mbit", "1e30"} {
		if _, err := ParseBitrate(in); err == nil {
			t.Errorf("ParseBitrate(%q) succeeded", in)
		}
	}
	for _, r := range []Bitrate{200 * Mbit, Gbit, 1500 * Mbit, 64 * Kbit, 999} {
		back, err := ParseBitrate(r.String())
		if err != nil || back != r {
			t.Errorf("round trip of %d via %q gave %v, %v", int64(r), r.String(), back, err)
		}
	}
}

func TestParseBytes(t *testing.T) {
	good := map[string]int64{"64k": 64 << 10, "1.5MB": 3 << 19, "300000": 300000, "2m": 2 << 20, "1GiB": 1 << 30, "0": 0}
	for in, want := range good {
		got, err := ParseBytes(in)
		if err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "big", "-3k"} {
		if _, err := ParseBytes(in); err == nil {
			t.Errorf("ParseBytes(%q) succeeded", in)
		}
	}
}

func TestParseLoss(t *testing.T) {
	good := map[string]float64{"2%": 0.02, "0.5%": 0.005, "0.02": 0.02, "0": 0, " 1 % ": 0.01}
	for in, want := range good {
		got, err := ParseLoss(in)
		if err != nil || got != want {
			t.Errorf("ParseLoss(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "100%", "1", "-1%", "lots"} {
		if _, err := ParseLoss(in); err == nil {
			t.Errorf("ParseLoss(%q) succeeded", in)
		}
	}
}
