package main

import (
	"encoding/xml"
	"io"
	"math"
	"strings"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	// A command name with spaces and parentheses, as /proc allows.
	stat := "4242 (chute (x) y) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 37 0 0 20 0 9 0 100 2000000 500 18446744073709551615"
	got, err := parseStatCPU(stat)
	if err != nil {
		t.Fatal(err)
	}
	if want := 287 * 10 * time.Millisecond; got != want {
		t.Errorf("parseStatCPU = %v, want %v", got, want)
	}
	if _, err := parseStatCPU("garbage"); err == nil {
		t.Error("parseStatCPU(garbage): no error")
	}
}

func TestParseIperfInterval(t *testing.T) {
	for _, tc := range []struct {
		line string
		end  float64
		bps  float64
		ok   bool
	}{
		{"[  5]   3.00-4.00   sec  22.4 MBytes   188 Mbits/sec    0   1.22 MBytes       ", 4, 188e6, true},
		{"[  5]  12.00-13.00  sec   640 KBytes  5.24 Mbits/sec   12   96.2 KBytes       ", 13, 5.24e6, true},
		{"[  5]   0.00-1.00   sec   119 MBytes  1.00 Gbits/sec    0", 1, 1e9, true},
		{"[  5]   0.00-30.00  sec   671 MBytes   188 Mbits/sec  161             sender", 0, 0, false},
		{"Connecting to host 10.201.3.2, port 5201", 0, 0, false},
	} {
		end, bps, ok := parseIperfInterval(tc.line)
		if ok != tc.ok || end != tc.end || bps != tc.bps {
			t.Errorf("parseIperfInterval(%q) = %v, %v, %v; want %v, %v, %v", tc.line, end, bps, ok, tc.end, tc.bps, tc.ok)
		}
	}
}

func TestParseCpOutput(t *testing.T) {
	out := `{"type":"progress","bytes_done":10}
{"type":"done","direction":"upload","bytes":100,"seconds":2,"goodput_bps":400,"bytes_sent":110,"bytes_retransmitted":10}
not json
{"type":"error","file":"b/k","error":"boom"}
{"type":"summary","files":2}
`
	done, errs := parseCpOutput([]byte(out))
	if len(done) != 1 || done[0].Bytes != 100 || done[0].Retrans != 10 || done[0].Sent != 110 {
		t.Errorf("done = %+v", done)
	}
	if len(errs) != 1 || errs[0] != "boom" {
		t.Errorf("errs = %q", errs)
	}
}

func TestGroupMedian(t *testing.T) {
	ms := []measurement{
		{Tool: "a", Op: "up", Mbps: 10}, {Tool: "b", Op: "up", Mbps: 1},
		{Tool: "a", Op: "up", Mbps: 30}, {Tool: "a", Op: "up", Mbps: 20},
		{Tool: "a", Op: "up", Mbps: 99, Error: "failed"},
	}
	gs := groupMeasurements(ms)
	if len(gs) != 2 || gs[0].Tool != "a" || gs[1].Tool != "b" {
		t.Fatalf("groups: %+v", gs)
	}
	med, lo, hi, n := gs[0].median(func(m measurement) float64 { return m.Mbps })
	if med != 20 || lo != 10 || hi != 30 || n != 3 {
		t.Errorf("median = %v %v %v %v", med, lo, hi, n)
	}
	if got := gs[0].rateCell(); got != "20.0 Mbit/s (10.0–30.0); 1 of 4 failed" {
		t.Errorf("rateCell = %q", got)
	}
}

func TestReplaceSection(t *testing.T) {
	doc := "# T\n\nintro\n\n<!-- begin wan -->\nold\n<!-- end wan -->\n\nafter\n"
	got := replaceSection(doc, "wan", "new\n")
	want := "# T\n\nintro\n\n<!-- begin wan -->\nnew\n<!-- end wan -->\n\nafter\n"
	if got != want {
		t.Errorf("replaceSection:\n%s\nwant:\n%s", got, want)
	}
	got = replaceSection("# T\n", "fair", "x\n")
	if !strings.Contains(got, "<!-- begin fair -->\nx\n<!-- end fair -->") {
		t.Errorf("replaceSection did not append: %q", got)
	}
}

func TestWanCellText(t *testing.T) {
	for _, tc := range []struct {
		m    measurement
		want string
	}{
		{measurement{Tool: "chute cp", Mbps: 187.4, Bytes: 1000, BytesSent: 1020, BytesRetrans: 20}, "187 [2.0%]"},
		{measurement{Tool: "curl", Mbps: 1.234, TimedOut: true, Partial: true, Seconds: 58}, "1.23 (timed out, 58 s)"},
		{measurement{Tool: "rclone", Mbps: 35.79, TimedOut: true, Seconds: 60}, "< 35.8 (timed out, 60 s)"},
		{measurement{Tool: "s3fs", Error: "boom"}, "failed"},
	} {
		if got := wanCellText(tc.m, true); got != tc.want {
			t.Errorf("wanCellText(%+v) = %q, want %q", tc.m, got, tc.want)
		}
	}
}

func TestFairSummarize(t *testing.T) {
	// Seconds 1–3: chute hashes the file (0); 4: its ramp; 5–6: alone;
	// 7–12: with TCP, whose first two seconds are left out; 13: alone again.
	r := fairRun{}
	for i := 1; i <= 13; i++ {
		s := fairSample{T: float64(i), HasChute: true}
		switch {
		case i <= 3:
		case i == 4:
			s.Chute = 50
		case i >= 7 && i <= 12:
			s.HasTCP, s.TCP, s.Chute = true, 100, 100
			if i < 9 {
				s.TCP, s.Chute = 20, 170
			}
		default:
			s.Chute = 180
		}
		r.Samples = append(r.Samples, s)
	}
	r.summarize()
	if r.ChuteAlone != 180 || r.ChuteShared != 100 || r.TCPShared != 100 || r.TCPShare != 0.5 {
		t.Errorf("summarize: %+v", r)
	}
}

// The charts must be well-formed XML whatever the data.
func TestChartsAreXML(t *testing.T) {
	rep := &wanReport{Size: 256 << 20, Rate: "200mbit", RateMbps: 200, CC: "cubic", Timeout: 60,
		RTTs: []float64{0, 50}, Losses: []float64{0, 0.02}}
	for _, rtt := range rep.RTTs {
		for _, loss := range rep.Losses {
			rep.Cells = append(rep.Cells, wanCell{RTTms: rtt, Loss: loss, Results: []measurement{
				{Tool: "chute cp", Op: "upload", Mbps: 190}, {Tool: "chute cp", Op: "download", Mbps: 185},
				{Tool: "curl <&>", Op: "upload", Mbps: 3, TimedOut: true}, {Tool: "s3fs", Op: "read", Error: "x"},
			}})
		}
	}
	fair := &fairReport{Rate: "200mbit", RateMbps: 200, RTTms: 50, Runs: []fairRun{{Policy: "fair", CC: "cubic",
		Samples: []fairSample{{T: 1, HasChute: true, Chute: 150}, {T: 2, HasChute: true, HasTCP: true, Chute: 100, TCP: 90}}}}}
	for name, svg := range map[string]string{"wan": wanChart(rep), "fair": fairChart(fair), "empty": fairChart(&fairReport{RateMbps: 100})} {
		d := xml.NewDecoder(strings.NewReader(svg))
		for {
			_, err := d.Token()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s chart: %v", name, err)
			}
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"1G": 1 << 30, "256M": 256 << 20, "64K": 64 << 10, "1.5G": 3 << 29, "100": 100} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
}

func TestParseUDPCounters(t *testing.T) {
	text := "Icmp: InMsgs\nIcmp: 3\n" +
		"Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\n" +
		"Udp: 47306640 7757 7314716 42402123 7314715 12 0 0 0\n" +
		"UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\n" +
		"UdpLite: 0 0 0 0 0 0 0 0 0\n"
	c, err := parseUDPCounters(text)
	if err != nil {
		t.Fatal(err)
	}
	if c.RcvbufErrors != 7314715 || c.SndbufErrors != 12 || c.InErrors != 7314716 {
		t.Errorf("parseUDPCounters = %+v", c)
	}
}

func TestMountRatios(t *testing.T) {
	m := func(tool, op string, mbps float64, failed bool) measurement {
		x := newMeasurement(tool, op)
		x.Mbps = mbps
		if failed {
			x.Error = "cp: exit status 1"
		}
		return x
	}
	ms := []measurement{
		m("chute mount", "write", 400, false), m("chute mount", "write", 450, false), m("chute mount", "write", 300, true),
		m(besideTool, "upload", 500, false), m(besideTool, "upload", 500, false), m(besideTool, "upload", 500, false),
		m("chute mount", "read", 900, false), m(besideTool, "download", 1000, false),
	}
	got := mountRatios(groupMeasurements(ms))
	for _, want := range []string{
		"write 85% of chute cp's upload (median of 2 pairs; each: 80%, 90%, –)",
		"read 90% of chute cp's download (median of 1 pairs; each: 90%)",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("mountRatios:\n%s\nlacks %q", got, want)
		}
	}
	if mountRatios(groupMeasurements(ms[:3])) != "" {
		t.Error("mountRatios without references gave a line")
	}
}

func TestQuantile(t *testing.T) {
	for _, tc := range []struct {
		s    []float64
		q    float64
		want float64
	}{
		{[]float64{5}, 0.5, 5},
		{[]float64{5}, 0.9, 5},
		{[]float64{1, 2, 3}, 0.5, 2},
		{[]float64{1, 2, 3, 4}, 0.5, 2.5}, // even count: between the middle two
		{[]float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, 0.9, 10},
		{[]float64{0, 10}, 0.9, 9}, // interpolated between closest ranks
		{[]float64{1, 2, 3}, 1, 3},
		{[]float64{1, 2, 3}, 0, 1},
	} {
		if got := quantile(tc.s, tc.q); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("quantile(%v, %v) = %v, want %v", tc.s, tc.q, got, tc.want)
		}
	}
}
