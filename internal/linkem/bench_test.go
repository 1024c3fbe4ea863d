package linkem_test

import (
	"context"
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chute/chute/internal/linkem"
	"github.com/chute/chute/internal/linkem/linkemtest"
	"golang.org/x/sys/unix"
)

// BenchmarkTCP measures one TCP stream's goodput from the near namespace
// to the far one through the emulator (Go endpoints in this process, the
// namespaces' default congestion control, BBR on this machine's kernel),
// and reports the scheduler's lateness. Each iteration sends 4 MiB.
func BenchmarkTCP(b *testing.B) {
	for _, bc := range []struct {
		name string
		cfg  linkem.Config
	}{
		{"plain", linkem.Config{}},
		{"rtt20ms", linkem.Symmetric(20*time.Millisecond, 0, 0)},
		{"rtt50ms_loss0.1%_500mbit", linkem.Symmetric(50*time.Millisecond, 0.001, 500*linkem.Mbit)},
		{"rtt100ms_loss1%_200mbit", linkem.Symmetric(100*time.Millisecond, 0.01, 200*linkem.Mbit)},
		{"rtt50ms_300mbit_mtu9000", func() linkem.Config {
			c := linkem.Symmetric(50*time.Millisecond, 0, 300*linkem.Mbit)
			c.MTU = 9000
			return c
		}()},
	} {
		b.Run(bc.name, func(b *testing.B) { benchTCP(b, bc.cfg) })
	}
}

func benchTCP(b *testing.B, cfg linkem.Config) {
	e := linkemtest.New(b, cfg)
	ctx := context.Background()
	ln, err := e.Far().Listen(ctx, "tcp4", netip.AddrPortFrom(e.FarAddr(), 0).String())
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	got := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- -1
			return
		}
		n, _ := io.Copy(io.Discard, c)
		c.Write([]byte{1})
		c.Close()
		got <- n
	}()
	c, err := e.Near().Dial(ctx, "tcp4", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	const chunk = 4 << 20
	buf := make([]byte, chunk)
	b.SetBytes(chunk)
	start := time.Now()
	for b.Loop() {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	c.(*net.TCPConn).CloseWrite()
	c.Read(make([]byte, 1)) // the receiver has everything
	el := time.Since(start)
	b.StopTimer()
	if n := <-got; n != int64(b.N)*chunk {
		b.Fatalf("receiver got %d bytes, want %d", n, int64(b.N)*chunk)
	}
	b.ReportMetric(float64(int64(b.N)*chunk*8)/el.Seconds()/1e6, "Mbit/s")
	st := e.Stats().NearToFar
	b.ReportMetric(float64(st.Late.P50.Microseconds()), "late-p50-µs")
	b.ReportMetric(float64(st.Late.P99.Microseconds()), "late-p99-µs")
	b.ReportMetric(float64(st.Lost+st.QueueDrops)/float64(max(st.PacketsIn, 1))*100, "drop-%")
	b.ReportMetric(float64(st.KernelDrops), "kernel-drops")
	b.ReportMetric(float64(st.Forwarded)/float64(max(st.Writes, 1)), "pkts/write")
	b.Logf("near→far %+v", st)
}

// BenchmarkUDP measures how much paced UDP (1400-byte datagrams, as
// chute's engine sends) the emulator delivers through a rate-limited,
// delayed, lossy link: each iteration sends 1000 datagrams at the offered
// rate, and the far socket counts what arrives.
func BenchmarkUDP(b *testing.B) {
	for _, bc := range []struct {
		name    string
		cfg     linkem.Config
		offered float64 // bit/s of IP packets
	}{
		{"rtt50ms_loss0.5%_200mbit_offer190", linkem.Symmetric(50*time.Millisecond, 0.005, 200*linkem.Mbit), 190e6},
		{"rtt50ms_loss0.5%_500mbit_offer480", linkem.Symmetric(50*time.Millisecond, 0.005, 500*linkem.Mbit), 480e6},
		{"rtt200ms_loss2%_1gbit_offer900", linkem.Symmetric(200*time.Millisecond, 0.02, linkem.Gbit), 900e6},
	} {
		b.Run(bc.name, func(b *testing.B) { benchUDP(b, bc.cfg, bc.offered) })
	}
}

func benchUDP(b *testing.B, cfg linkem.Config, offered float64) {
	e := linkemtest.New(b, cfg)
	ctx := context.Background()
	pc, err := e.Far().ListenPacket(ctx, "udp4", netip.AddrPortFrom(e.FarAddr(), 0).String())
	if err != nil {
		b.Fatal(err)
	}
	defer pc.Close()
	if rc, err := pc.(*net.UDPConn).SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 32<<20) })
	}
	var got atomic.Int64
	go func() {
		buf := make([]byte, 2048)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			got.Add(int64(n + 28))
		}
	}()
	c, err := e.Near().Dial(ctx, "udp4", pc.LocalAddr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	const payload, perIter, burst = 1400, 1000, 10
	buf := make([]byte, payload)
	gap := time.Duration(float64(burst*(payload+28)*8) / offered * 1e9)
	b.SetBytes(perIter * (payload + 28))
	start := time.Now()
	next := start
	for b.Loop() {
		for i := 0; i < perIter; i += burst {
			time.Sleep(time.Until(next))
			next = next.Add(gap)
			for range burst {
				c.Write(buf)
			}
		}
	}
	sent := time.Since(start)
	time.Sleep(cfg.NearToFar.Delay + 100*time.Millisecond)
	b.StopTimer()
	st := e.Stats().NearToFar
	b.ReportMetric(float64(got.Load())*8/sent.Seconds()/1e6, "delivered-Mbit/s")
	b.ReportMetric(float64(st.BytesIn)*8/sent.Seconds()/1e6, "offered-Mbit/s")
	b.ReportMetric(float64(st.Lost)/float64(max(st.PacketsIn, 1))*100, "lost-%")
	b.ReportMetric(float64(st.QueueDrops), "queue-drops")
	b.ReportMetric(float64(st.KernelDrops), "kernel-drops")
	b.ReportMetric(float64(st.Late.P50.Microseconds()), "late-p50-µs")
	b.ReportMetric(float64(st.Late.P99.Microseconds()), "late-p99-µs")
}

// BenchmarkTCPNoOffload is BenchmarkTCP with Config.NoOffload: one
// packet per system call.
func BenchmarkTCPNoOffload(b *testing.B) {
	for _, bc := range []struct {
		name string
		cfg  linkem.Config
	}{
		{"plain", linkem.Config{}},
		{"rtt20ms", linkem.Symmetric(20*time.Millisecond, 0, 0)},
		{"rtt50ms_loss0.1%_500mbit", linkem.Symmetric(50*time.Millisecond, 0.001, 500*linkem.Mbit)},
		{"rtt100ms_loss1%_200mbit", linkem.Symmetric(100*time.Millisecond, 0.01, 200*linkem.Mbit)},
	} {
		bc.cfg.NoOffload = true
		b.Run(bc.name, func(b *testing.B) { benchTCP(b, bc.cfg) })
	}
}
