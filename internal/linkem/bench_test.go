package linkem_test

import (
	"context"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/chute/chute/internal/linkem"
	"github.com/chute/chute/internal/linkem/linkemtest"
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
	b.Logf("near→far %+v", st)
}
