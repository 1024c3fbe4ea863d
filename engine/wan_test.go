package engine

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chute/chute/internal/linkem"
	"github.com/chute/chute/internal/linkem/linkemtest"
)

// TestTransferAcrossEmulatedWAN sends real packets through the link
// emulator — 100 ms round trip, 2% loss each way, a 50 Mbit/s bottleneck —
// from a client in one network namespace to a server in another, and back.
func TestTransferAcrossEmulatedWAN(t *testing.T) {
	e := linkemtest.New(t, wanLink())

	dir := t.TempDir()
	keyPath := filepath.Join(dir, "id_ed25519")
	pub, err := GenerateKey(keyPath, "wan")
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "node")
	os.MkdirAll(data, 0o700)
	os.WriteFile(filepath.Join(data, "authorized_keys"), []byte(pub+"\n"), 0o600)

	var srv *Server
	if err := e.Far().Do(func() error {
		var err error
		srv, err = NewServer(ServerConfig{DataDir: data, Listen: net.JoinHostPort(e.FarAddr().String(), "33001"), Buckets: []string{"photos"}, Logger: quietLog()})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { defer close(served); srv.Serve(ctx) }()
	defer func() { stop(); <-served }()

	signer, err := LoadKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	// CHUTE_WAN_TEST_TARGET (Mbit/s) and CHUTE_WAN_TEST_POLICY set the
	// session's rate, for manual runs.
	var rate Rate
	if s := os.Getenv("CHUTE_WAN_TEST_TARGET"); s != "" {
		fmt.Sscan(s, &rate.Target)
		rate.Target *= 1e6
	}
	rate.Policy = Policy(os.Getenv("CHUTE_WAN_TEST_POLICY"))
	var c *Client
	if err := e.Near().Do(func() error {
		var err error
		c, err = Dial(context.Background(), srv.Addr().String(), ClientConfig{Signer: signer, KnownHosts: filepath.Join(dir, "known_hosts"), Logger: quietLog(), Rate: rate})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	size := 6 << 20
	if s := os.Getenv("CHUTE_WAN_TEST_MB"); s != "" {
		fmt.Sscan(s, &size)
		size <<= 20
	}
	payload := randomBytes(size, 99)
	var commitAcked hookCall
	testHookCommitSent = commitAcked.record
	defer func() { testHookCommitSent = nil }()
	start := time.Now()
	up, err := c.Upload(context.Background(), UploadRequest{Bucket: "photos", Key: "wan.bin", Source: bytes.NewReader(payload), Size: int64(len(payload))})
	if err != nil {
		t.Fatal(err)
	}
	if up.SHA256 != sha(payload) {
		t.Fatal("upload checksum mismatch")
	}
	t.Logf("upload: %v, %.1f Mbit/s goodput, %.1f%% retransmitted", time.Since(start).Round(time.Millisecond),
		up.Goodput()/1e6, 100*float64(up.Retrans)/float64(len(payload)))
	if up.Retrans == 0 {
		t.Error("no retransmissions over a link losing 2% of packets: was the emulator in the path?")
	}
	if rtt := up.RTT; rtt < 90*time.Millisecond {
		t.Errorf("smoothed RTT %v, want about 100 ms: was the emulator in the path?", rtt)
	}
	// The commit rides behind the last bytes instead of waiting a round
	// trip for their acknowledgement.
	if got := commitAcked.String(); got != "false" {
		t.Errorf("every byte acknowledged when the commit went out: %s; want false (the commit goes with the last bytes)", got)
	}
	back, err := os.Create(filepath.Join(dir, "back"))
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	var summaryWithData hookCall
	testHookDownloadSummary = summaryWithData.record
	defer func() { testHookDownloadSummary = nil }()
	start = time.Now()
	down, err := c.Download(context.Background(), DownloadRequest{Bucket: "photos", Key: "wan.bin", Length: -1, Dest: back})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(back.Name())
	if !bytes.Equal(got, payload) || down.SHA256 != sha(payload) {
		t.Fatal("downloaded bytes differ")
	}
	t.Logf("download: %v, %.1f Mbit/s goodput, %d bytes retransmitted", time.Since(start).Round(time.Millisecond), down.Goodput()/1e6, down.Retrans)
	// The server's summary (checksum, counters) came with the data, not a
	// round trip after the last byte.
	if got := summaryWithData.String(); got != "true" {
		t.Errorf("download summary came with the data: %s; want true (not download_finish's answer)", got)
	}
	if down.Sent < int64(len(payload)) || down.Retrans == 0 {
		t.Errorf("download counters: %d bytes sent, %d retransmitted; want at least the object's %d, and some resent at 2%% loss", down.Sent, down.Retrans, len(payload))
	}
}

// hookCall records the argument a test hook was last called with.
type hookCall struct{ v atomic.Int32 } // 0: not called, 1: false, 2: true

func (h *hookCall) record(b bool) {
	if b {
		h.v.Store(2)
	} else {
		h.v.Store(1)
	}
}

func (h *hookCall) String() string { return [...]string{"never called", "false", "true"}[h.v.Load()] }

// wanLink is the emulated path: 100 ms, 2% loss, 50 Mbit/s; the rate can
// be raised with CHUTE_WAN_TEST_MBIT for manual runs.
func wanLink() linkem.Config {
	rate := 50
	if s := os.Getenv("CHUTE_WAN_TEST_MBIT"); s != "" {
		fmt.Sscan(s, &rate)
	}
	return linkem.Symmetric(100*time.Millisecond, 0.02, linkem.Bitrate(rate)*linkem.Mbit)
}
