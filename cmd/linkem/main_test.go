package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/chute/chute/internal/linkem"
	"github.com/chute/chute/internal/testenv"
)

func parseUp(t *testing.T, args ...string) (linkem.Config, error) {
	t.Helper()
	o := &upOptions{}
	fs := pflag.NewFlagSet("up", pflag.ContinueOnError)
	o.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return o.config()
}

// TestUpFlags checks that up's flags become the right links.
func TestUpFlags(t *testing.T) {
	cfg, err := parseUp(t, "--rtt", "100ms", "--loss", "2%", "--rate", "200mbit", "--jitter", "1ms",
		"--rate-down", "50mbit", "--queue-up", "256k", "--cc", "cubic", "--sysctl", "net.ipv4.tcp_ecn=1")
	if err != nil {
		t.Fatal(err)
	}
	up := linkem.Link{Delay: 50 * time.Millisecond, Jitter: time.Millisecond, Loss: 0.02, Rate: 200 * linkem.Mbit, Queue: 256 << 10}
	down := linkem.Link{Delay: 50 * time.Millisecond, Jitter: time.Millisecond, Loss: 0.02, Rate: 50 * linkem.Mbit}
	if cfg.NearToFar != up || cfg.FarToNear != down {
		t.Fatalf("links %+v / %+v, want %+v / %+v", cfg.NearToFar, cfg.FarToNear, up, down)
	}
	if cfg.Sysctls["net.ipv4.tcp_congestion_control"] != "cubic" || cfg.Sysctls["net.ipv4.tcp_ecn"] != "1" {
		t.Fatalf("sysctls %v", cfg.Sysctls)
	}
	for _, bad := range [][]string{
		{"--rtt", "10ms", "--delay", "5ms"},
		{"--loss", "200%"},
		{"--rate", "fast"},
		{"--near-addr", "10.0.0.1"},
		{"--sysctl", "novalue"},
	} {
		if _, err := parseUp(t, bad...); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestSetKeepsUnsetFields checks that set changes only the parameters
// given.
func TestSetKeepsUnsetFields(t *testing.T) {
	var f linkFlags
	fs := pflag.NewFlagSet("set", pflag.ContinueOnError)
	f.AddFlags(fs)
	if err := fs.Parse([]string{"--rtt", "30ms", "--loss-down", "1%"}); err != nil {
		t.Fatal(err)
	}
	up := linkem.Link{Delay: time.Second, Loss: 0.05, Rate: linkem.Gbit, Queue: 1000}
	down := up
	if err := f.apply(&up, &down, false); err != nil {
		t.Fatal(err)
	}
	wantUp := linkem.Link{Delay: 15 * time.Millisecond, Loss: 0.05, Rate: linkem.Gbit, Queue: 1000}
	wantDown := linkem.Link{Delay: 15 * time.Millisecond, Loss: 0.01, Rate: linkem.Gbit, Queue: 1000}
	if up != wantUp || down != wantDown {
		t.Fatalf("got %+v / %+v, want %+v / %+v", up, down, wantUp, wantDown)
	}
}

// TestUsageErrors checks exit statuses for bad use.
func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"nosuch"}, {"up", "--bogus"}, {"set"}, {"up", "extra"}} {
		var out, errb bytes.Buffer
		if code := run(context.Background(), &Env{Stdout: &out, Stderr: &errb}, args); code != 2 {
			t.Errorf("%q: exit %d, want 2 (stderr %q)", args, code, errb.String())
		}
	}
	var out bytes.Buffer
	if code := run(context.Background(), &Env{Stdout: &out, Stderr: &out}, []string{"help"}); code != 0 || !strings.Contains(out.String(), "up ") {
		t.Errorf("help: exit %d, output %q", code, out.String())
	}
}

// TestUpSetStatsDown runs `linkem up` as a script would use it: waits for
// the ready file, reads the namespaces from it, changes the link with
// `set`, reads it back with `stats --json`, and stops it with a signal
// (here: cancelling its context), after which nothing is left.
func TestUpSetStatsDown(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "nsenter", "apt-get install util-linux")
	ready := filepath.Join(t.TempDir(), "ready.json")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var upOut, upErr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, &Env{Stdout: &upOut, Stderr: &upErr},
			[]string{"up", "--name", "clitest", "--rtt", "20ms", "--rate", "100mbit", "--cc", "reno", "--nice", "0", "--json", "--ready-file", ready})
	}()
	var desc upDescription
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, err := os.ReadFile(ready)
		if err == nil && json.Unmarshal(b, &desc) == nil {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			<-done
			t.Fatalf("no ready file; up said %s %s", upOut.String(), upErr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if desc.Near.Path != "/run/netns/chute-clitest-near" || desc.FarToNear.Rate != 100*linkem.Mbit {
		t.Fatalf("ready file %+v", desc)
	}
	if _, err := os.Stat(desc.Far.Path); err != nil {
		t.Fatalf("far namespace: %v", err)
	}

	// --cc reached both namespaces, and only them.
	for _, p := range []string{desc.Near.Path, desc.Far.Path} {
		b, err := linkem.Command(context.Background(), p, "cat", "/proc/sys/net/ipv4/tcp_congestion_control").Output()
		if err != nil || strings.TrimSpace(string(b)) != "reno" {
			t.Errorf("congestion control in %s: %q, %v; want reno", p, b, err)
		}
	}

	var out, errb bytes.Buffer
	env := &Env{Stdout: &out, Stderr: &errb}
	if code := run(context.Background(), env, []string{"set", "--name", "clitest", "--loss", "1%", "--delay-up", "30ms"}); code != 0 {
		t.Fatalf("set: exit %d: %s", code, errb.String())
	}
	out.Reset()
	if code := run(context.Background(), env, []string{"stats", "--name", "clitest", "--json"}); code != 0 {
		t.Fatalf("stats: exit %d: %s", code, errb.String())
	}
	var st struct {
		NearToFar linkem.Link `json:"near_to_far"`
		FarToNear linkem.Link `json:"far_to_near"`
	}
	if err := json.Unmarshal(out.Bytes(), &st); err != nil {
		t.Fatalf("stats output %q: %v", out.String(), err)
	}
	wantUp := linkem.Link{Delay: 30 * time.Millisecond, Loss: 0.01, Rate: 100 * linkem.Mbit}
	wantDown := linkem.Link{Delay: 10 * time.Millisecond, Loss: 0.01, Rate: 100 * linkem.Mbit}
	if st.NearToFar != wantUp || st.FarToNear != wantDown {
		t.Fatalf("after set: %+v / %+v, want %+v / %+v", st.NearToFar, st.FarToNear, wantUp, wantDown)
	}

	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("up exited %d: %s", code, upErr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("up did not stop")
	}
	for _, p := range []string{desc.Near.Path, desc.Far.Path, desc.Control, ready} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s left after up stopped", p)
		}
	}
	if !strings.Contains(upOut.String(), `"stats"`) {
		t.Errorf("up printed no final stats: %q", upOut.String())
	}
}
