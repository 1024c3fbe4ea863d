package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"time"
)

// iperfResult is the part of iperf3's JSON report the benchmarks use.
type iperfResult struct {
	Start struct {
		TestStart struct {
			Protocol string `json:"protocol"`
		} `json:"test_start"`
	} `json:"start"`
	End struct {
		SumSent struct {
			Bps         float64 `json:"bits_per_second"`
			Retransmits int64   `json:"retransmits"`
		} `json:"sum_sent"`
		SumReceived struct {
			Bps float64 `json:"bits_per_second"`
		} `json:"sum_received"`
		Sum struct {
			Bps         float64 `json:"bits_per_second"`
			LostPercent float64 `json:"lost_percent"`
		} `json:"sum"`
		SenderTCPCC string `json:"sender_tcp_congestion"`
		CPU         struct {
			HostTotal   float64 `json:"host_total"`
			RemoteTotal float64 `json:"remote_total"`
		} `json:"cpu_utilization_percent"`
	} `json:"end"`
	Error string `json:"error"`
}

// startIperfServer starts a one-off iperf3 server on ip:port in p.
func startIperfServer(ctx context.Context, p place, ip string, port int, logPath string) (*service, error) {
	ready := func() error {
		b, _ := os.ReadFile(logPath)
		if bytes.Contains(b, []byte("Server listening")) {
			return nil
		}
		return fmt.Errorf("iperf3 server not listening yet")
	}
	return startService(ctx, p, toolEnv(), logPath, ready, 30*time.Second,
		"iperf3", "-s", "-1", "-B", ip, "-p", strconv.Itoa(port), "--forceflush")
}

// iperf runs an iperf3 server on ip:port in srvAt and a client in p
// for secs seconds; extra adds client flags (-u, -C cubic, ...). It
// returns the receiver's rate.
func iperf(ctx context.Context, p, srvAt place, ip string, port int, logDir string, secs int, extra ...string) (measurement, iperfResult) {
	var res iperfResult
	proto := "tcp"
	for _, a := range extra {
		if a == "-u" {
			proto = "udp"
		}
	}
	m := newMeasurement("iperf3 "+proto, "stream")
	srv, err := startIperfServer(ctx, srvAt, ip, port, fmt.Sprintf("%s/iperf3-server-%d.log", logDir, port))
	if err != nil {
		m.Error = err.Error()
		return m, res
	}
	defer srv.stop(5 * time.Second)
	args := append([]string{"-c", ip, "-p", strconv.Itoa(port), "-J", "-t", strconv.Itoa(secs), "-O", "1"}, extra...)
	r := run(ctx, p, time.Duration(secs+30)*time.Second, toolEnv(), "iperf3", args...)
	m.Seconds = float64(secs)
	if err := json.Unmarshal(r.Stdout, &res); err != nil {
		m.Error = fmt.Sprintf("iperf3: %v: %s", err, lastLines(r.Stderr, 3))
		return m, res
	}
	if res.Error != "" {
		m.Error = res.Error
		return m, res
	}
	bps := res.End.SumReceived.Bps
	if proto == "udp" {
		// UDP: what the server received.
		if bps == 0 {
			bps = res.End.Sum.Bps * (1 - res.End.Sum.LostPercent/100)
		}
		m.Extra = fmt.Sprintf("sent %.0f Mbit/s, %.1f%% lost at the receiver", res.End.Sum.Bps/1e6, res.End.Sum.LostPercent)
	} else if res.End.SenderTCPCC != "" {
		m.Extra = fmt.Sprintf("%s, %d retransmits", res.End.SenderTCPCC, res.End.SumSent.Retransmits)
	}
	m.Mbps = bps / 1e6
	m.Bytes = int64(bps / 8 * float64(secs))
	return m, res
}

// iperfInterval matches an interval line of iperf3's text output:
// "[  5]   3.00-4.00   sec  22.4 MBytes   188 Mbits/sec    0   1.22 MBytes".
var iperfInterval = regexp.MustCompile(`^\[\s*\d+\]\s+([\d.]+)-([\d.]+)\s+sec\s+[\d.]+ \w?Bytes\s+([\d.]+) (\w?)bits/sec`)

// parseIperfInterval returns the end of the interval (seconds from the
// test's start) and the rate in bits per second, or ok=false.
func parseIperfInterval(line string) (end, bps float64, ok bool) {
	m := iperfInterval.FindStringSubmatch(line)
	if m == nil {
		return 0, 0, false
	}
	start, _ := strconv.ParseFloat(m[1], 64)
	end, _ = strconv.ParseFloat(m[2], 64)
	if end-start > 1.5 {
		return 0, 0, false // the summary line, not an interval
	}
	v, _ := strconv.ParseFloat(m[3], 64)
	switch m[4] {
	case "K":
		v *= 1e3
	case "M":
		v *= 1e6
	case "G":
		v *= 1e9
	}
	return end, v, true
}
