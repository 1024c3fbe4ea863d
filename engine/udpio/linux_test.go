//go:build linux

package udpio

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/chute/chute/internal/testenv"
)

// kernelOffloads probes, on a socket of its own, what this kernel offers.
func kernelOffloads(t testing.TB) (gso, gro bool) {
	t.Helper()
	pc := listen(t, "udp4", "127.0.0.1:0")
	defer pc.Close()
	rc, err := pc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	rc.Control(func(fd uintptr) {
		_, e := syscall.GetsockoptInt(int(fd), solUDP, udpSegment)
		gso = e == nil
		gro = syscall.SetsockoptInt(int(fd), solUDP, udpGRO, 1) == nil
	})
	return gso, gro
}

func requireGSOGRO(t testing.TB) {
	t.Helper()
	gso, gro := kernelOffloads(t)
	if !gso {
		testenv.Missing(t, "UDP GSO (UDP_SEGMENT) in the kernel", "run on Linux 4.18 or later")
	}
	if !gro {
		testenv.Missing(t, "UDP GRO (UDP_GRO) in the kernel", "run on Linux 5.0 or later")
	}
}

// options lists every combination of the three switches.
func options() []Options {
	var out []Options
	for i := range 8 {
		out = append(out, Options{DisableGSO: i&1 != 0, DisableGRO: i&2 != 0, DisableMMsg: i&4 != 0})
	}
	return out
}

func optName(o Options) string {
	f := func(name string, off bool) string {
		if off {
			return "no" + name
		}
		return name
	}
	return f("gso", o.DisableGSO) + "," + f("gro", o.DisableGRO) + "," + f("mmsg", o.DisableMMsg)
}

func linuxOf(t testing.TB, c Conn) *linuxConn {
	t.Helper()
	lc, ok := c.(*linuxConn)
	if !ok {
		t.Fatalf("New returned %T for a *net.UDPConn, want *linuxConn", c)
	}
	return lc
}

func TestCapsFollowOptions(t *testing.T) {
	requireGSOGRO(t)
	for _, o := range options() {
		t.Run(optName(o), func(t *testing.T) {
			c := open(t, "udp4", "127.0.0.1:0", o)
			got := c.Caps()
			want := Caps{GSO: !o.DisableGSO, GRO: !o.DisableGRO, MMsg: !o.DisableMMsg}
			if got.GSO != want.GSO || got.GRO != want.GRO || got.MMsg != want.MMsg {
				t.Fatalf("Caps() = %+v, want offloads %+v", got, want)
			}
		})
	}
}

func TestEnvironmentDisables(t *testing.T) {
	requireGSOGRO(t)
	for _, v := range []string{"CHUTE_DISABLE_GSO", "CHUTE_DISABLE_GRO", "CHUTE_DISABLE_MMSG"} {
		t.Run(v, func(t *testing.T) {
			t.Setenv(v, "1")
			caps := open(t, "udp4", "127.0.0.1:0", Options{}).Caps()
			off := map[string]bool{
				"CHUTE_DISABLE_GSO":  !caps.GSO,
				"CHUTE_DISABLE_GRO":  !caps.GRO,
				"CHUTE_DISABLE_MMSG": !caps.MMsg,
			}
			for name, isOff := range off {
				if isOff != (name == v) {
					t.Fatalf("with %s=1: Caps() = %+v", v, caps)
				}
			}
		})
	}
}

// TestRoundTripEveryOption sends the mixed batch between two Conns with the
// same switches, for all eight combinations.
func TestRoundTripEveryOption(t *testing.T) {
	requireGSOGRO(t)
	for _, o := range options() {
		t.Run(optName(o), func(t *testing.T) {
			rx := open(t, "udp4", "127.0.0.1:0", o)
			tx := open(t, "udp4", "127.0.0.1:0", o)
			want := mixedBatch(addrOf(t, rx))
			wait := recvAsync(t, rx, len(want), maxDatagram, 64)
			send(t, tx, want)
			expect(t, wait(), want, addrOf(t, tx))
			if caps := tx.Caps(); caps.GSO != !o.DisableGSO {
				t.Fatalf("sender Caps() after sending = %+v: GSO changed", caps)
			}
			w := &linuxOf(t, tx).w
			if o.DisableGSO && w.gsoSends != 0 {
				t.Fatalf("GSO disabled, yet %d GSO sends", w.gsoSends)
			}
			if !o.DisableGSO && w.gsoSends == 0 {
				t.Fatalf("GSO enabled, yet no GSO sends")
			}
		})
	}
}

// TestGSOMeetsGRO checks that with both offloads the receiver gets coalesced
// buffers and splits them, and keeps what a short batch cannot take.
func TestGSOMeetsGRO(t *testing.T) {
	requireGSOGRO(t)
	rx := open(t, "udp4", "127.0.0.1:0", Options{})
	tx := open(t, "udp4", "127.0.0.1:0", Options{})
	var want []Message
	for i := range 40 {
		want = append(want, Message{Buf: datagram(i, 1400), Addr: addrOf(t, rx)})
	}
	want[39].Buf = datagram(39, 700) // a shorter last segment
	send(t, tx, want)
	if w := &linuxOf(t, tx).w; w.gsoSends != 1 || w.syscalls != 1 {
		t.Fatalf("40 equal datagrams took %d system calls and %d GSO sends, want 1 and 1", w.syscalls, w.gsoSends)
	}
	gots := recvN(t, rx, len(want), 2048, 7) // 40 = 5×7 + 5: a remainder each call
	expect(t, gots, want, addrOf(t, tx))
	r := &linuxOf(t, rx).r
	if r.coalesced != 1 || r.syscalls != 1 {
		t.Fatalf("receiver: %d coalesced buffers in %d system calls, want 1 in 1", r.coalesced, r.syscalls)
	}
}

// TestMixedDestinations interleaves three destinations, IPv4 and IPv6, sizes
// equal and not, in one batch from a dual-stack socket: each receiver must
// get its own datagrams in order.
func TestMixedDestinations(t *testing.T) {
	for _, o := range []Options{{}, {DisableGSO: true}, {DisableMMsg: true}} {
		t.Run(optName(o), func(t *testing.T) {
			tx := open(t, "udp", "[::]:0", o)
			rxs := []Conn{
				open(t, "udp4", "127.0.0.1:0", o),
				open(t, "udp4", "127.0.0.1:0", o),
				open(t, "udp6", "[::1]:0", o),
			}
			// Runs of (destination, count, size).
			runs := [][3]int{{0, 5, 1400}, {1, 3, 1400}, {0, 1, 1400}, {2, 10, 1200}, {1, 4, 800},
				{0, 70, 100}, {2, 1, 9000}, {2, 2, 9000}, {1, 1, 1}, {0, 3, 1400}, {2, 5, 1400}}
			var all []Message
			per := make([][]Message, len(rxs))
			for _, r := range runs {
				for range r[1] {
					m := Message{Buf: datagram(len(all), r[2]), Addr: addrOf(t, rxs[r[0]])}
					all = append(all, m)
					per[r[0]] = append(per[r[0]], m)
				}
			}
			waits := make([]func() []got, len(rxs))
			for i, rx := range rxs {
				waits[i] = recvAsync(t, rx, len(per[i]), maxDatagram, 16)
			}
			send(t, tx, all)
			port := addrOf(t, tx).Port()
			srcs := []netip.AddrPort{
				netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port),
				netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port),
				netip.AddrPortFrom(netip.IPv6Loopback(), port),
			}
			for i := range rxs {
				expect(t, waits[i](), per[i], srcs[i])
			}
		})
	}
}

// TestDualStackUnmapped checks that an IPv4 peer of a dual-stack socket is
// reported as a 4-byte address, and that the reply to it arrives.
func TestDualStackUnmapped(t *testing.T) {
	for _, o := range []Options{{}, {DisableGSO: true, DisableGRO: true, DisableMMsg: true}} {
		t.Run(optName(o), func(t *testing.T) {
			server := open(t, "udp", "[::]:0", o)
			client := open(t, "udp4", "127.0.0.1:0", o)
			v4 := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), addrOf(t, server).Port())
			send(t, client, []Message{{Buf: []byte("ping"), Addr: v4}})
			g := recvN(t, server, 1, 100, 4)[0]
			if !g.from.Addr().Is4() || g.from != addrOf(t, client) {
				t.Fatalf("source %v (Is4=%v), want %v as a 4-byte address", g.from, g.from.Addr().Is4(), addrOf(t, client))
			}
			send(t, server, []Message{{Buf: []byte("pong"), Addr: g.from}, {Buf: []byte("pong"), Addr: g.from}})
			for _, r := range recvN(t, client, 2, 100, 4) {
				if string(r.data) != "pong" || r.from.Port() != addrOf(t, server).Port() {
					t.Fatalf("reply %q from %v", r.data, r.from)
				}
			}
		})
	}
}

func TestIPv6Loopback(t *testing.T) {
	for _, o := range []Options{{}, {DisableGSO: true, DisableGRO: true}, {DisableMMsg: true}} {
		t.Run(optName(o), func(t *testing.T) {
			rx := open(t, "udp6", "[::1]:0", o)
			tx := open(t, "udp6", "[::1]:0", o)
			want := mixedBatch(addrOf(t, rx))
			wait := recvAsync(t, rx, len(want), maxDatagram, 32)
			send(t, tx, want)
			gots := wait()
			expect(t, gots, want, addrOf(t, tx))
			if !gots[0].from.Addr().Is6() || gots[0].from.Addr() != netip.IPv6Loopback() {
				t.Fatalf("source %v, want ::1", gots[0].from)
			}
		})
	}
}

// TestBatchBeyondLimits sends batches larger than one GSO send and than one
// sendmmsg call may carry, and counts the system calls.
func TestBatchBeyondLimits(t *testing.T) {
	requireGSOGRO(t)
	cases := []struct {
		name      string
		opt       Options
		count     int
		size      int
		last      int // size of the last datagram if not 0
		gsoSends  int // GSO groups expected
		syscalls  int // sendmmsg calls expected
		recvBatch int
	}{
		// 59 × 1100 + 587 = MaxGSOBytes: one send.
		{"exactly MaxGSOBytes", Options{}, 60, 1100, 587, 1, 1, 64},
		// One byte more and the last datagram goes alone.
		{"one byte over", Options{}, 60, 1100, 588, 1, 1, 64},
		// 64 segments per GSO send at most: 64+64+64+8.
		{"segments", Options{}, 200, 100, 0, 4, 1, 64},
		// 46 × 1400 bytes fit under MaxGSOBytes, 47 do not: 46+46+8.
		{"bytes", Options{}, 100, 1400, 0, 3, 1, 64},
		// 1024 headers per sendmmsg: 1024+1024+952.
		{"mmsg", Options{DisableGSO: true}, 3000, 200, 0, 0, 3, 256},
		// One sendmsg per datagram.
		{"nommsg", Options{DisableGSO: true, DisableMMsg: true}, 50, 200, 0, 0, 50, 8},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, fam := range []struct{ network, addr string }{{"udp4", "127.0.0.1:0"}, {"udp6", "[::1]:0"}} {
				rx := open(t, fam.network, fam.addr, tc.opt)
				tx := open(t, fam.network, fam.addr, tc.opt)
				var want []Message
				for i := range tc.count {
					want = append(want, Message{Buf: datagram(i, tc.size), Addr: addrOf(t, rx)})
				}
				if tc.last != 0 {
					want[len(want)-1].Buf = datagram(len(want)-1, tc.last)
				}
				wait := recvAsync(t, rx, len(want), 2048, tc.recvBatch)
				send(t, tx, want)
				expect(t, wait(), want, addrOf(t, tx))
				w := &linuxOf(t, tx).w
				if w.gsoSends != tc.gsoSends || w.syscalls != tc.syscalls {
					t.Fatalf("%s: %d GSO sends in %d system calls, want %d in %d", fam.network, w.gsoSends, w.syscalls, tc.gsoSends, tc.syscalls)
				}
			}
		})
	}
}

// TestTruncated reads datagrams larger than the Bufs offered for them, alone
// and coalesced by GRO: N is len(Buf), Truncated is set, the prefix is kept.
func TestTruncated(t *testing.T) {
	for _, o := range options() {
		t.Run(optName(o), func(t *testing.T) {
			rx := open(t, "udp4", "127.0.0.1:0", o)
			tx := open(t, "udp4", "127.0.0.1:0", o)
			dst := addrOf(t, rx)
			sizes := []int{2000, 500, 1000, 1001, 1400, 1400, 1400, 1400, 1400, 0}
			var ms []Message
			for i, s := range sizes {
				ms = append(ms, Message{Buf: datagram(i, s), Addr: dst})
			}
			wait := recvAsync(t, rx, len(ms), 1000, 4)
			send(t, tx, ms)
			for i, g := range wait() {
				full := ms[i].Buf
				wantN := min(len(full), 1000)
				if len(g.data) != wantN || g.truncated != (len(full) > 1000) || string(g.data) != string(full[:wantN]) {
					t.Fatalf("datagram %d of %d bytes: got N=%d truncated=%v, want N=%d truncated=%v (same prefix)",
						i, len(full), len(g.data), g.truncated, wantN, len(full) > 1000)
				}
			}
		})
	}
}

func TestReadDeadline(t *testing.T) {
	for _, o := range []Options{{}, {DisableGRO: true}, {DisableGRO: true, DisableMMsg: true}} {
		t.Run(optName(o), func(t *testing.T) {
			rx := open(t, "udp4", "127.0.0.1:0", o)
			tx := open(t, "udp4", "127.0.0.1:0", o)
			ms := []Message{{Buf: make([]byte, 100)}}
			rx.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			if n, err := rx.ReadBatch(ms); n != 0 || !isTimeout(err) {
				t.Fatalf("ReadBatch past the deadline = %d, %v; want 0 and a timeout", n, err)
			}
			// A deadline already past fails at once, even with data queued.
			send(t, tx, []Message{{Buf: []byte("late"), Addr: addrOf(t, rx)}})
			rx.SetReadDeadline(time.Now().Add(-time.Second))
			if n, err := rx.ReadBatch(ms); n != 0 || !isTimeout(err) {
				t.Fatalf("ReadBatch with a past deadline = %d, %v; want 0 and a timeout", n, err)
			}
			// Clearing it lets the queued datagram through.
			rx.SetReadDeadline(time.Time{})
			if n, err := rx.ReadBatch(ms); n != 1 || err != nil || string(ms[0].Buf[:ms[0].N]) != "late" {
				t.Fatalf("ReadBatch after clearing the deadline = %d, %v, %q", n, err, ms[0].Buf[:ms[0].N])
			}
		})
	}
}

func TestCloseUnblocksRead(t *testing.T) {
	rx := open(t, "udp4", "127.0.0.1:0", Options{})
	errc := make(chan error, 1)
	go func() {
		_, err := rx.ReadBatch([]Message{{Buf: make([]byte, 100)}})
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond) // let the reader block (not required for correctness)
	rx.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("ReadBatch on a closed Conn: %v, want net.ErrClosed", err)
		}
	case <-time.After(hangGuard):
		t.Fatal("ReadBatch still blocked after Close")
	}
	if _, err := rx.WriteBatch([]Message{{Buf: []byte("x"), Addr: netip.MustParseAddrPort("127.0.0.1:9")}}); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("WriteBatch on a closed Conn: %v, want net.ErrClosed", err)
	}
}

// TestGSOFallback makes the kernel (through the fault hook) refuse GSO sends
// as a NIC without checksum offload would: the batch must still arrive, and
// GSO stay off.
func TestGSOFallback(t *testing.T) {
	requireGSOGRO(t)
	for _, errno := range []syscall.Errno{syscall.EIO, syscall.EINVAL} {
		for _, o := range []Options{{}, {DisableMMsg: true}} {
			t.Run(fmt.Sprintf("%v,%s", errno, optName(o)), func(t *testing.T) {
				rx := open(t, "udp4", "127.0.0.1:0", o)
				tx := open(t, "udp4", "127.0.0.1:0", o)
				w := &linuxOf(t, tx).w
				refused := 0
				w.fault = func(h *msghdr) syscall.Errno {
					if h.controllen > 0 {
						refused++
						return errno
					}
					return 0
				}
				// A lone datagram, then a GSO group: the refusal comes
				// after part of the batch has gone.
				ms := []Message{{Buf: datagram(0, 100), Addr: addrOf(t, rx)}}
				for i := 1; i <= 10; i++ {
					ms = append(ms, Message{Buf: datagram(i, 500), Addr: addrOf(t, rx)})
				}
				wait := recvAsync(t, rx, len(ms), 2048, 16)
				send(t, tx, ms)
				expect(t, wait(), ms, addrOf(t, tx))
				if refused == 0 || tx.Caps().GSO || w.gsoSends != 0 {
					t.Fatalf("refused %d GSO sends, Caps().GSO = %v, %d GSO sends; want >0, false, 0", refused, tx.Caps().GSO, w.gsoSends)
				}
				// Later batches go without GSO from the start.
				before := refused
				wait = recvAsync(t, rx, len(ms), 2048, 16)
				send(t, tx, ms)
				expect(t, wait(), ms, addrOf(t, tx))
				if refused != before {
					t.Fatalf("GSO tried again after being refused")
				}
			})
		}
	}
}

// TestWriteErrorStopsBatch: a send the kernel refuses ends WriteBatch, which
// reports how many went before and the error.
func TestWriteErrorStopsBatch(t *testing.T) {
	for _, o := range []Options{{}, {DisableGSO: true}, {DisableMMsg: true}} {
		t.Run(optName(o), func(t *testing.T) {
			rx := open(t, "udp4", "127.0.0.1:0", o)
			blocked := open(t, "udp4", "127.0.0.1:0", o)
			tx := open(t, "udp4", "127.0.0.1:0", o)
			blockedPort := addrOf(t, blocked).Port()
			linuxOf(t, tx).w.fault = func(h *msghdr) syscall.Errno {
				sa := (*syscall.RawSockaddrInet4)(unsafe.Pointer(h.name))
				if portOf(&sa.Port) == blockedPort {
					return syscall.EPERM
				}
				return 0
			}
			var ms []Message
			for i := range 6 {
				ms = append(ms, Message{Buf: datagram(i, 100), Addr: addrOf(t, rx)})
			}
			ms = append(ms, Message{Buf: datagram(6, 100), Addr: addrOf(t, blocked)}, Message{Buf: datagram(7, 100), Addr: addrOf(t, rx)})
			n, err := tx.WriteBatch(ms)
			if n != 6 || !errors.Is(err, syscall.EPERM) {
				t.Fatalf("WriteBatch = %d, %v; want 6 and EPERM", n, err)
			}
			expect(t, recvN(t, rx, 6, 200, 8), ms[:6], addrOf(t, tx))
		})
	}
}

func TestIPv6DestinationOnIPv4Socket(t *testing.T) {
	rx := open(t, "udp4", "127.0.0.1:0", Options{})
	tx := open(t, "udp4", "127.0.0.1:0", Options{})
	ms := []Message{
		{Buf: []byte("a"), Addr: addrOf(t, rx)},
		{Buf: []byte("b"), Addr: netip.MustParseAddrPort("[2001:db8::1]:9")},
		{Buf: []byte("c"), Addr: addrOf(t, rx)},
	}
	n, err := tx.WriteBatch(ms)
	if n != 1 || !errors.Is(err, ErrAddressFamily) {
		t.Fatalf("WriteBatch = %d, %v; want 1 and ErrAddressFamily", n, err)
	}
	expect(t, recvN(t, rx, 1, 10, 1), ms[:1], addrOf(t, tx))
}

// TestSteadyStateAllocs: once warmed up, a write and the reads that take it
// in allocate nothing.
func TestSteadyStateAllocs(t *testing.T) {
	for _, o := range []Options{{}, {DisableGSO: true, DisableGRO: true}, {DisableGSO: true, DisableGRO: true, DisableMMsg: true}} {
		t.Run(optName(o), func(t *testing.T) {
			rx := open(t, "udp4", "127.0.0.1:0", o)
			tx := open(t, "udp4", "127.0.0.1:0", o)
			out := make([]Message, 32)
			for i := range out {
				out[i] = Message{Buf: datagram(i, 1400), Addr: addrOf(t, rx)}
			}
			in := make([]Message, 32)
			for i := range in {
				in[i].Buf = make([]byte, 1500)
			}
			rx.SetReadDeadline(time.Now().Add(hangGuard))
			var failed error
			allocs := testing.AllocsPerRun(50, func() {
				if _, err := tx.WriteBatch(out); err != nil {
					failed = err
					return
				}
				for n := 0; n < len(out); {
					k, err := rx.ReadBatch(in[:len(out)-n])
					if err != nil {
						failed = err
						return
					}
					n += k
				}
			})
			if failed != nil {
				t.Fatal(failed)
			}
			if allocs != 0 {
				t.Fatalf("%v allocations per batch, want 0", allocs)
			}
		})
	}
}

// TestSocketBuffers: the sizes asked for are granted, past
// net.core.rmem_max/wmem_max when the process may force them (root); a
// negative size leaves the socket alone.
func TestSocketBuffers(t *testing.T) {
	sysctl := func(name string) int {
		b, err := os.ReadFile("/proc/sys/net/core/" + name)
		if err != nil {
			t.Fatal(err)
		}
		v, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	rmax, wmax := sysctl("rmem_max"), sysctl("wmem_max")
	root := os.Geteuid() == 0
	for _, tc := range []struct {
		name string
		opt  Options
		r, w int
	}{
		{"default", Options{}, DefaultBuffer, DefaultBuffer},
		{"asked", Options{ReadBuffer: 32 << 20, WriteBuffer: 16 << 20}, 32 << 20, 16 << 20},
		{"small", Options{ReadBuffer: 64 << 10, WriteBuffer: 64 << 10}, 64 << 10, 64 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			caps := open(t, "udp4", "127.0.0.1:0", tc.opt).Caps()
			wantR, wantW := tc.r, tc.w
			if !root { // the plain options stop at the sysctl limits
				wantR, wantW = min(wantR, rmax), min(wantW, wmax)
			}
			if caps.ReadBuffer < wantR || caps.WriteBuffer < wantW {
				t.Fatalf("granted %d/%d, want at least %d/%d (root=%v)", caps.ReadBuffer, caps.WriteBuffer, wantR, wantW, root)
			}
		})
	}
	t.Run("untouched", func(t *testing.T) {
		plain := listen(t, "udp4", "127.0.0.1:0")
		defer plain.Close()
		var before int
		rc, _ := plain.SyscallConn()
		rc.Control(func(fd uintptr) { before, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF) })
		c := open(t, "udp4", "127.0.0.1:0", Options{ReadBuffer: -1})
		if got := c.Caps().ReadBuffer; got != before {
			t.Fatalf("ReadBuffer -1: granted %d, want the untouched default %d", got, before)
		}
	})
}

// TestConcurrentReadWrite runs one reader and one writer on the same Conn
// (an echo), as the engine does; run with -race.
func TestConcurrentReadWrite(t *testing.T) {
	for _, o := range []Options{{}, {DisableGSO: true, DisableGRO: true}} {
		t.Run(optName(o), func(t *testing.T) {
			echo := open(t, "udp4", "127.0.0.1:0", o)
			peer := open(t, "udp4", "127.0.0.1:0", o)
			const total = 2000
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { // echo: read a batch, write it back
				defer wg.Done()
				ms := make([]Message, 16)
				for i := range ms {
					ms[i].Buf = make([]byte, 1500)
				}
				echo.SetReadDeadline(time.Now().Add(hangGuard))
				for n := 0; n < total; {
					k, err := echo.ReadBatch(ms)
					if err != nil {
						t.Errorf("echo read: %v", err)
						return
					}
					out := make([]Message, k)
					for i := range out {
						out[i] = Message{Buf: ms[i].Buf[:ms[i].N], Addr: ms[i].Addr}
					}
					if _, err := echo.WriteBatch(out); err != nil {
						t.Errorf("echo write: %v", err)
						return
					}
					n += k
				}
			}()
			var want []Message
			for i := range total {
				want = append(want, Message{Buf: datagram(i, 1000+i%3), Addr: addrOf(t, echo)})
			}
			wait := recvAsync(t, peer, total, 1500, 32)
			for i := 0; i < total; i += 50 {
				send(t, peer, want[i:i+50])
			}
			expect(t, wait(), want, addrOf(t, echo))
			wg.Wait()
		})
	}
}

func TestNotUDPConnFallsBack(t *testing.T) {
	pc := listen(t, "udp4", "127.0.0.1:0")
	c, err := New(struct{ net.PacketConn }{pc}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok := c.(*genericConn); !ok || c.Caps() != (Caps{}) {
		t.Fatalf("New over a wrapped PacketConn = %T with %+v, want the fallback with no offloads", c, c.Caps())
	}
}

// TestForgetsCallerBuffers: after a call, no header still points at the
// caller's memory (which would keep it from being collected).
func TestForgetsCallerBuffers(t *testing.T) {
	rx := open(t, "udp4", "127.0.0.1:0", Options{DisableGRO: true})
	tx := open(t, "udp4", "127.0.0.1:0", Options{})
	var ms []Message
	for i := range 1500 { // more than the first allocation of headers
		ms = append(ms, Message{Buf: datagram(i, 100), Addr: addrOf(t, rx)})
	}
	wait := recvAsync(t, rx, len(ms), 200, 64)
	send(t, tx, ms)
	wait()
	for name, iovs := range map[string][]iovec{"writer": linuxOf(t, tx).w.iovs, "reader": linuxOf(t, rx).r.iovs} {
		for i, v := range iovs {
			if v.base != nil {
				t.Fatalf("%s iovec %d still points at a caller's buffer", name, i)
			}
		}
	}
}

// withSockopt opens a socket, sets an option on it before New, and wraps it.
func withSockopt(t *testing.T, network, addr string, level, opt, value int) Conn {
	t.Helper()
	u := listen(t, network, addr)
	rc, err := u.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), level, opt, value) })
	if serr != nil {
		t.Fatalf("setsockopt(%d, %d, %d): %v", level, opt, value, serr)
	}
	c, err := New(u, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestGSORefusedByKernel: a socket that sends without UDP checksums
// (SO_NO_CHECK) cannot use GSO, and the kernel says so with EINVAL, as it
// does with EIO for a NIC without checksum offload. The batch must arrive
// and GSO stay off.
func TestGSORefusedByKernel(t *testing.T) {
	requireGSOGRO(t)
	rx := open(t, "udp4", "127.0.0.1:0", Options{})
	tx := withSockopt(t, "udp4", "127.0.0.1:0", syscall.SOL_SOCKET, syscall.SO_NO_CHECK, 1)
	var ms []Message
	for i := range 20 {
		ms = append(ms, Message{Buf: datagram(i, 1400), Addr: addrOf(t, rx)})
	}
	wait := recvAsync(t, rx, len(ms), 2048, 16)
	send(t, tx, ms)
	expect(t, wait(), ms, addrOf(t, tx))
	if tx.Caps().GSO || linuxOf(t, tx).w.gsoSends != 0 {
		t.Fatalf("after the kernel refused GSO: Caps() = %+v, %d GSO sends", tx.Caps(), linuxOf(t, tx).w.gsoSends)
	}
}

// TestGSOSegmentsAboveMTU: segments larger than the socket's MTU (IPV6_MTU
// 1280) make the kernel refuse the GSO send with EMSGSIZE; they are sent as
// separate datagrams (fragmented), and GSO stays on for segments that fit.
func TestGSOSegmentsAboveMTU(t *testing.T) {
	requireGSOGRO(t)
	rx := open(t, "udp6", "[::1]:0", Options{})
	tx := withSockopt(t, "udp6", "[::1]:0", syscall.IPPROTO_IPV6, syscall.IPV6_MTU, 1280)
	var big, small []Message
	for i := range 10 {
		big = append(big, Message{Buf: datagram(i, 1400), Addr: addrOf(t, rx)})
		small = append(small, Message{Buf: datagram(100+i, 1000), Addr: addrOf(t, rx)})
	}
	wait := recvAsync(t, rx, len(big), 2048, 16)
	send(t, tx, big)
	expect(t, wait(), big, addrOf(t, tx))
	w := &linuxOf(t, tx).w
	if !tx.Caps().GSO || w.gsoSends != 0 {
		t.Fatalf("after oversized segments: Caps() = %+v, %d GSO sends; want GSO on, 0", tx.Caps(), w.gsoSends)
	}
	wait = recvAsync(t, rx, len(small), 2048, 16)
	send(t, tx, small)
	expect(t, wait(), small, addrOf(t, tx))
	if w.gsoSends != 1 {
		t.Fatalf("segments under the MTU: %d GSO sends, want 1", w.gsoSends)
	}
}

// TestConnectedSocket: on a connected socket the zero Addr sends to the
// peer, grouped for GSO like any other destination.
func TestConnectedSocket(t *testing.T) {
	for _, o := range []Options{{}, {DisableGSO: true, DisableMMsg: true}} {
		t.Run(optName(o), func(t *testing.T) {
			rx := open(t, "udp4", "127.0.0.1:0", o)
			u, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(addrOf(t, rx)))
			if err != nil {
				t.Fatal(err)
			}
			tx, err := New(u, o)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Close()
			var ms []Message
			for i := range 10 {
				ms = append(ms, Message{Buf: datagram(i, 1200)})
			}
			wait := recvAsync(t, rx, len(ms), 2048, 16)
			send(t, tx, ms)
			expect(t, wait(), ms, addrOf(t, tx))
			if w := &linuxOf(t, tx).w; w.gsoSends != btoi(!o.DisableGSO) {
				t.Fatalf("%d GSO sends, want %d", w.gsoSends, btoi(!o.DisableGSO))
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestReceiveTimestamps: datagrams carry the time the kernel received
// them, not the time they were read — the difference is how long they
// waited in the socket's buffer.
func TestReceiveTimestamps(t *testing.T) {
	for _, o := range []Options{{}, {DisableGRO: true}, {DisableGRO: true, DisableMMsg: true}, {DisableGSO: true}} {
		t.Run(optName(o), func(t *testing.T) {
			rx := open(t, "udp4", "127.0.0.1:0", o)
			tx := open(t, "udp4", "127.0.0.1:0", o)
			if !rx.Caps().RxTimestamps {
				t.Fatal("Caps().RxTimestamps is false: SO_TIMESTAMPNS was refused")
			}
			want := mixedBatch(addrOf(t, rx))
			before := time.Now()
			send(t, tx, want)
			sent := time.Now()
			const wait = 60 * time.Millisecond
			time.Sleep(wait)
			ms := make([]Message, len(want))
			for i := range ms {
				ms[i].Buf = make([]byte, maxDatagram)
			}
			rx.SetReadDeadline(time.Now().Add(5 * time.Second))
			got := 0
			for got < len(want) {
				n, err := rx.ReadBatch(ms[got:])
				if err != nil {
					t.Fatalf("ReadBatch after %d datagrams: %v", got, err)
				}
				read := time.Now()
				for _, m := range ms[got : got+n] {
					if m.At.IsZero() {
						t.Fatalf("datagram %d has no receive time", got)
					}
					// The kernel's wall clock, to the tolerance of a clock
					// read (loopback delivers within the send call).
					if m.At.Before(before.Add(-time.Millisecond)) || m.At.After(sent.Add(time.Millisecond)) {
						t.Fatalf("datagram %d received at %v, outside the send call [%v, %v]", got, m.At, before, sent)
					}
					if d := read.Sub(m.At); d < wait-5*time.Millisecond {
						t.Fatalf("datagram %d: %v between receipt and read, want ≥ %v (the time it sat in the buffer)", got, d, wait)
					}
				}
				got += n
			}
		})
	}
}
