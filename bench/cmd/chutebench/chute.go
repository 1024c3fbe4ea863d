package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// chuteClient runs `chute` client commands with its own CHUTE_HOME (key
// and known hosts).
type chuteClient struct {
	bin  string
	home string
}

// newChuteClient makes a client key in home.
func newChuteClient(ctx context.Context, bin, home string) (*chuteClient, error) {
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, err
	}
	c := &chuteClient{bin: bin, home: home}
	if _, err := os.Stat(filepath.Join(home, "id_ed25519")); err != nil {
		r := run(ctx, host, time.Minute, c.env(), bin, "keygen")
		if r.Err != nil {
			return nil, r.Err
		}
	}
	return c, nil
}

func (c *chuteClient) env(extra ...string) []string {
	return toolEnv(append([]string{"CHUTE_HOME=" + c.home}, extra...)...)
}

func (c *chuteClient) pubKey() string { return filepath.Join(c.home, "id_ed25519.pub") }

// chuteServer is a running `chute server`.
type chuteServer struct {
	*service
	addr string // host:port of the SSH control channel (UDP on the same port)
	data string
}

// serverOptions configure startChuteServer.
type serverOptions struct {
	place  place
	data   string   // --data; emptied first
	listen string   // host:port
	bucket string   // --bucket
	s3     *s3Store // nil: the folder store
	log    string
}

// startChuteServer starts a transfer node that trusts c's key.
func startChuteServer(ctx context.Context, c *chuteClient, o serverOptions) (*chuteServer, error) {
	os.RemoveAll(o.data)
	if err := os.MkdirAll(o.data, 0o700); err != nil {
		return nil, err
	}
	pub, err := os.ReadFile(c.pubKey())
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(o.data, "authorized_keys"), pub, 0o600); err != nil {
		return nil, err
	}
	args := []string{"server", "--data", o.data, "--listen", o.listen, "--bucket", o.bucket}
	env := toolEnv()
	if o.s3 != nil {
		args = append(args, "--store", "s3", "--s3-endpoint", o.s3.Endpoint, "--s3-region", o.s3.Region, "--s3-addressing", "path")
		env = toolEnv("AWS_ACCESS_KEY_ID="+o.s3.AccessKey, "AWS_SECRET_ACCESS_KEY="+o.s3.SecretKey)
	}
	args = append(args, strings.Fields(os.Getenv("CHUTE_BENCH_SERVER_FLAGS"))...)
	ready := func() error {
		b, _ := os.ReadFile(o.log)
		if bytes.Contains(b, []byte("control (SSH)")) {
			return nil
		}
		return fmt.Errorf("no 'control (SSH)' line yet")
	}
	svc, err := startService(ctx, o.place, env, o.log, ready, 60*time.Second, c.bin, args...)
	if err != nil {
		return nil, err
	}
	return &chuteServer{service: svc, addr: o.listen, data: o.data}, nil
}

// url is the chute:// location of key in bucket on s.
func (s *chuteServer) url(bucket, key string) string {
	return "chute://" + s.addr + "/" + bucket + "/" + key
}

// cpDone is the per-object summary `chute cp --json` prints.
type cpDone struct {
	Type       string  `json:"type"`
	Direction  string  `json:"direction"`
	Bytes      int64   `json:"bytes"`
	Seconds    float64 `json:"seconds"`
	GoodputBps float64 `json:"goodput_bps"`
	Sent       int64   `json:"bytes_sent"`
	Retrans    int64   `json:"bytes_retransmitted"`
	Skipped    int64   `json:"bytes_skipped"`
	SHA256     string  `json:"sha256"`
	Error      string  `json:"error"`
}

// cpProgress is one progress line of `chute cp --json`.
type cpProgress struct {
	Type      string  `json:"type"`
	BytesDone int64   `json:"bytes_done"`
	RateBps   float64 `json:"rate_bps"`
	Elapsed   float64 `json:"elapsed_seconds"`
	Transfers []struct {
		RateBps float64 `json:"rate_bps"`
		Retrans int64   `json:"bytes_retransmitted"`
		RTTms   float64 `json:"rtt_ms"`
	} `json:"transfers"`
}

// parseCpOutput finds the done events (and any error) in `chute cp
// --json` output.
func parseCpOutput(out []byte) (done []cpDone, errs []string) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var ev cpDone
		if json.Unmarshal(sc.Bytes(), &ev) != nil {
			continue
		}
		switch ev.Type {
		case "done":
			done = append(done, ev)
		case "error":
			errs = append(errs, ev.Error)
		}
	}
	return done, errs
}

// measurement is one timed operation of one tool.
type measurement struct {
	Tool      string  `json:"tool"`
	Op        string  `json:"op"` // upload, download, write, read, ...
	Bytes     int64   `json:"bytes"`
	Seconds   float64 `json:"seconds"`      // wall clock of the whole command
	Mbps      float64 `json:"goodput_mbps"` // Bytes*8/Seconds/1e6
	TimedOut  bool    `json:"timed_out,omitempty"`
	Partial   bool    `json:"partial,omitempty"` // Bytes is what moved before the timeout
	Error     string  `json:"error,omitempty"`
	Load1     float64 `json:"load1"` // 1-minute load average when it started
	StartedAt string  `json:"started_at"`

	// chute only
	EngineSeconds    float64 `json:"engine_seconds,omitempty"` // the transfer itself, without connection set-up
	EngineMbps       float64 `json:"engine_goodput_mbps,omitempty"`
	BytesSent        int64   `json:"bytes_sent,omitempty"`
	BytesRetrans     int64   `json:"bytes_retransmitted,omitempty"`
	ClientCPU        float64 `json:"client_cpu_seconds,omitempty"`
	ServerCPU        float64 `json:"server_cpu_seconds,omitempty"`
	SenderCPUPerGiB  float64 `json:"sender_cpu_seconds_per_gib,omitempty"`
	RecvCPUPerGiB    float64 `json:"receiver_cpu_seconds_per_gib,omitempty"`
	OtherCPUPerGiB   float64 `json:"store_cpu_seconds_per_gib,omitempty"` // the S3 server's, when there is one
	Extra            string  `json:"note,omitempty"`
	UDPRcvbufErrors  uint64  `json:"udp_rcvbuf_errors,omitempty"` // datagrams the kernel dropped for a full receive buffer, both ends
	UDPSndbufErrors  uint64  `json:"udp_sndbuf_errors,omitempty"`
	LinkKernelDrops  uint64  `json:"link_kernel_drops,omitempty"`
	LinkQueueDrops   uint64  `json:"link_queue_drops,omitempty"`
	LinkLostPackets  uint64  `json:"link_lost_packets,omitempty"`
	LinkForwardedPkt uint64  `json:"link_forwarded_packets,omitempty"`
}

func newMeasurement(tool, op string) measurement {
	return measurement{Tool: tool, Op: op, Load1: loadAvg()[0], StartedAt: time.Now().UTC().Format(time.RFC3339)}
}

// setRate fills Mbps from Bytes and Seconds.
func (m *measurement) setRate() {
	if m.Seconds > 0 {
		m.Mbps = float64(m.Bytes) * 8 / m.Seconds / 1e6
	}
}

// fail records r's error (and a timeout) in m.
func (m *measurement) fail(r runResult) {
	m.TimedOut = r.TimedOut
	if r.Err != nil && !r.TimedOut {
		m.Error = r.Err.Error()
	}
}

// chuteCp runs one `chute cp --json` of a single object and measures it.
// server, when given, is charged the CPU it used meanwhile. extraPID is
// another process (an S3 server) whose CPU is recorded too.
func (c *chuteClient) cp(ctx context.Context, p place, timeout time.Duration, tool string, up bool, size int64, server *service, extraPID int, flags []string, src, dst string, onLine func(time.Time, string)) measurement {
	op := "download"
	if up {
		op = "upload"
	}
	m := newMeasurement(tool, op)
	var srvBefore, extraBefore time.Duration
	if server != nil {
		srvBefore, _ = cpuOf(server.pid())
	}
	if extraPID > 0 {
		extraBefore, _ = cpuOf(extraPID)
	}
	args := append([]string{"cp", "--json", "--resume", "none"}, flags...)
	args = append(args, src, dst)
	r := runStream(ctx, p, timeout, c.env(), onLine, c.bin, args...)
	m.Seconds = r.Wall.Seconds()
	m.ClientCPU = r.CPU.Seconds()
	if server != nil {
		after, _ := cpuOf(server.pid())
		m.ServerCPU = (after - srvBefore).Seconds()
	}
	gib := float64(size) / (1 << 30)
	if extraPID > 0 {
		after, _ := cpuOf(extraPID)
		m.OtherCPUPerGiB = (after - extraBefore).Seconds() / gib
	}
	done, errs := parseCpOutput(r.Stdout)
	m.fail(r)
	if len(errs) > 0 && m.Error == "" {
		m.Error = strings.Join(errs, "; ")
	}
	if len(done) == 1 {
		d := done[0]
		m.Bytes = d.Bytes
		m.EngineSeconds = d.Seconds
		m.EngineMbps = d.GoodputBps / 1e6
		m.BytesSent = d.Sent
		m.BytesRetrans = d.Retrans
	} else if m.Error == "" && !m.TimedOut {
		m.Error = fmt.Sprintf("chute cp printed %d summaries", len(done))
	}
	if m.TimedOut {
		m.Bytes = size
	}
	if up {
		m.SenderCPUPerGiB, m.RecvCPUPerGiB = m.ClientCPU/gib, m.ServerCPU/gib
	} else {
		m.SenderCPUPerGiB, m.RecvCPUPerGiB = m.ServerCPU/gib, m.ClientCPU/gib
	}
	if server == nil {
		m.SenderCPUPerGiB, m.RecvCPUPerGiB = 0, 0
	}
	m.setRate()
	return m
}

// freePort returns a TCP port on ip that is free, and whose UDP twin is
// free too (chute's data port defaults to the control port's number).
func freePort(ip string) (int, error) {
	for i := 0; i < 50; i++ {
		l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort(ip, strconv.Itoa(port)))
		l.Close()
		if err == nil {
			u.Close()
			return port, nil
		}
	}
	return 0, fmt.Errorf("no free TCP+UDP port pair on %s", ip)
}

// hasMount reports whether the chute binary has a mount command.
func hasMount(ctx context.Context, bin string) bool {
	r := run(ctx, host, 30*time.Second, toolEnv(), bin, "help")
	for _, line := range strings.Split(string(r.Stdout), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == "mount" && strings.HasPrefix(line, "  ") {
			return true
		}
	}
	return false
}
