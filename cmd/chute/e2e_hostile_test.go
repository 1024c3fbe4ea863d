//go:build linux

package main

// Hostile UDP traffic at a transfer node while it serves real transfers.
//
// How the replays are made: the test sniffs loopback with an AF_PACKET
// socket and keeps the chute datagrams going to or from the server's UDP
// port (splitting UDP GSO groups, which cross loopback unsegmented, into
// their datagrams). It sends copies of them back in two ways: from the
// genuine source address and port, through a raw IP socket (a true replay,
// which the kernel delivers to the connected client socket too), and from
// the test's own UDP socket (a replay from an attacker's address, which
// must not move the session to that address).

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/chute/chute/engine/wire"
	"github.com/chute/chute/internal/testenv"
)

// datagram is one captured chute datagram.
type datagram struct {
	src, dst netip.AddrPort
	payload  []byte
}

// sniffer captures the chute datagrams to and from one UDP port on lo.
type sniffer struct {
	fd     int
	port   uint16
	ignore uint16 // the attacker's port: its own datagrams are not chute's

	mu       sync.Mutex
	kept     []datagram // the latest ones, for replays
	ctrl     []datagram // the first control datagrams (hellos, acks), kept for good
	sessions map[uint32]bool
	captured int
	hijacked int // datagrams from the server to the attacker's address
	done     chan struct{}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func newSniffer(t *testing.T, port int) *sniffer {
	t.Helper()
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW, int(htons(syscall.ETH_P_ALL)))
	if err != nil {
		t.Fatalf("AF_PACKET socket: %v", err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrLinklayer{Protocol: htons(syscall.ETH_P_ALL), Ifindex: lo.Index}); err != nil {
		syscall.Close(fd)
		t.Fatal(err)
	}
	tv := syscall.Timeval{Usec: 100_000}
	syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
	syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUF, 8<<20)
	return &sniffer{fd: fd, port: uint16(port), sessions: map[uint32]bool{}, done: make(chan struct{})}
}

// run captures until stop is closed.
func (s *sniffer) run(stop <-chan struct{}) {
	defer close(s.done)
	defer syscall.Close(s.fd)
	buf := make([]byte, 256<<10)
	for {
		select {
		case <-stop:
			return
		default:
		}
		n, from, err := syscall.Recvfrom(s.fd, buf, 0)
		if err != nil || n <= 0 {
			continue
		}
		// Loopback shows each packet twice, going out and coming in.
		if ll, ok := from.(*syscall.SockaddrLinklayer); !ok || ll.Pkttype != syscall.PACKET_HOST {
			continue
		}
		s.parse(buf[:min(n, len(buf))])
	}
}

// parse keeps an Ethernet/IPv4/UDP frame to or from the port.
func (s *sniffer) parse(f []byte) {
	if len(f) < 14+20+8 || binary.BigEndian.Uint16(f[12:14]) != 0x0800 {
		return
	}
	ip := f[14:]
	ihl := int(ip[0]&0x0f) * 4
	if ip[0]>>4 != 4 || ip[9] != syscall.IPPROTO_UDP || len(ip) < ihl+8 {
		return
	}
	udp := ip[ihl:]
	src := netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip[12:16])), binary.BigEndian.Uint16(udp[0:2]))
	dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip[16:20])), binary.BigEndian.Uint16(udp[2:4]))
	if src.Port() != s.port && dst.Port() != s.port || src.Port() == s.ignore {
		return
	}
	payload := udp[8:]
	s.mu.Lock()
	defer s.mu.Unlock()
	if dst.Port() == s.ignore {
		s.hijacked++
		return
	}
	for _, d := range splitGSO(payload) {
		if len(d) < wire.HeaderLen || d[0] != wire.Version {
			continue // the test's own hostile datagrams
		}
		id, _ := wire.PeekSession(d)
		s.captured++
		s.sessions[id] = true
		if len(s.kept) >= 4096 {
			copy(s.kept, s.kept[1:])
			s.kept = s.kept[:len(s.kept)-1]
		}
		dg := datagram{src: src, dst: dst, payload: bytes.Clone(d)}
		s.kept = append(s.kept, dg)
		if h, err := wire.ParseHeader(d); err == nil && h.Type != wire.TypeData && len(s.ctrl) < 256 {
			s.ctrl = append(s.ctrl, dg)
		}
	}
}

// splitGSO splits a UDP GSO group into its datagrams: all the same size but
// the last, each starting with a header of the same session. A lone
// datagram comes back as it is.
func splitGSO(p []byte) [][]byte {
	if len(p) < wire.HeaderLen {
		return [][]byte{p}
	}
	for seg := wire.HeaderLen; seg+wire.HeaderLen <= len(p); seg++ {
		if p[seg] != wire.Version || p[seg+1] != p[1] || !bytes.Equal(p[seg+3:seg+7], p[3:7]) {
			continue
		}
		var out [][]byte
		for off := 0; off < len(p); off += seg {
			d := p[off:min(off+seg, len(p))]
			if len(d) < wire.HeaderLen || d[0] != wire.Version || !bytes.Equal(d[3:7], p[3:7]) {
				return [][]byte{p} // not a group after all
			}
			out = append(out, d)
		}
		return out
	}
	return [][]byte{p}
}

// sample returns a few captured datagrams and the sessions seen.
func (s *sniffer) sample(r *rand.Rand, n int) ([]datagram, []uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ds []datagram
	for i := 0; i < n && len(s.kept) > 0; i++ {
		if i%4 == 3 && len(s.ctrl) > 0 {
			ds = append(ds, s.ctrl[r.IntN(len(s.ctrl))])
			continue
		}
		ds = append(ds, s.kept[r.IntN(len(s.kept))])
	}
	var ids []uint32
	for id := range s.sessions {
		ids = append(ids, id)
	}
	return ds, ids
}

// attacker sends hostile datagrams until stopped, counting each kind.
type attacker struct {
	server  *net.UDPAddr
	udp     *net.UDPConn // the attacker's own address
	raw     int          // raw IP socket, for replays from the genuine source
	sniff   *sniffer
	random  atomic.Int64 // random bytes of random sizes
	unknown atomic.Int64 // valid-looking headers, unknown sessions
	forged  atomic.Int64 // live sessions' ids, bodies that fail authentication
	exact   atomic.Int64 // captured datagrams replayed from their genuine source
	foreign atomic.Int64 // captured datagrams replayed from the attacker's address
	errs    atomic.Int64 // sends the kernel refused
}

func newAttacker(t *testing.T, port int, sniff *sniffer) *attacker {
	t.Helper()
	udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_RAW)
	if err != nil {
		udp.Close()
		t.Fatalf("raw IP socket: %v", err)
	}
	return &attacker{server: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}, udp: udp, raw: raw, sniff: sniff}
}

func (a *attacker) close() {
	a.udp.Close()
	syscall.Close(a.raw)
}

func (a *attacker) send(to *net.UDPAddr, b []byte, n *atomic.Int64) {
	if _, err := a.udp.WriteToUDP(b, to); err != nil {
		a.errs.Add(1)
		return
	}
	n.Add(1)
}

// sendFrom sends payload from src to dst through the raw socket, with a UDP
// checksum of 0 (none, allowed over IPv4).
func (a *attacker) sendFrom(src, dst netip.AddrPort, payload []byte) {
	pkt := make([]byte, 20+8+len(payload))
	pkt[0] = 0x45
	binary.BigEndian.PutUint16(pkt[2:4], uint16(len(pkt)))
	pkt[8] = 64
	pkt[9] = syscall.IPPROTO_UDP
	s4, d4 := src.Addr().As4(), dst.Addr().As4()
	copy(pkt[12:16], s4[:])
	copy(pkt[16:20], d4[:])
	binary.BigEndian.PutUint16(pkt[20:22], src.Port())
	binary.BigEndian.PutUint16(pkt[22:24], dst.Port())
	binary.BigEndian.PutUint16(pkt[24:26], uint16(8+len(payload)))
	copy(pkt[28:], payload)
	if err := syscall.Sendto(a.raw, pkt, 0, &syscall.SockaddrInet4{Addr: d4}); err != nil {
		a.errs.Add(1)
		return
	}
	a.exact.Add(1)
}

// run sends a few of each kind every few milliseconds until stop closes.
func (a *attacker) run(stop <-chan struct{}) {
	r := rand.New(rand.NewPCG(7, 7))
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		for range 2 {
			size := r.IntN(1500)
			if r.IntN(10) == 0 {
				size = r.IntN(65000) // some longer than any chute datagram
			}
			b := make([]byte, size)
			for i := range b {
				b[i] = byte(r.Uint32())
			}
			a.send(a.server, b, &a.random)
		}
		for range 2 {
			h := wire.Header{Type: wire.Type(1 + r.IntN(5)), Flags: byte(r.IntN(2)), Session: r.Uint32(), Number: r.Uint64() & wire.MaxNumber}
			b := h.Append(nil)
			if h.Type == wire.TypeData {
				b = wire.DataHeader{Stream: uint32(r.IntN(4)), Offset: int64(r.IntN(1 << 30)), SendTime: wire.SendTime(r.Uint32())}.Append(b)
			}
			body := make([]byte, r.IntN(1400))
			for i := range body {
				body[i] = byte(r.Uint32())
			}
			a.send(a.server, append(b, body...), &a.unknown)
		}
		ds, ids := a.sniff.sample(r, 8)
		for _, id := range ids {
			// The live session's id with a body that fails authentication,
			// in both packet-number spaces, sometimes with a number far
			// ahead that must not move the replay window.
			typ, num := wire.TypeData, uint64(r.IntN(1<<20))
			if r.IntN(2) == 0 {
				typ, num = wire.Type(1+r.IntN(5)), 1<<47|uint64(r.IntN(1<<20))
			}
			if r.IntN(4) == 0 {
				num |= 1<<46 - 1
			}
			b := wire.Header{Type: typ, Session: id, Number: num}.Append(nil)
			if typ == wire.TypeData {
				b = wire.DataHeader{Stream: 1, Offset: int64(r.IntN(1 << 26))}.Append(b)
			}
			body := make([]byte, 16+r.IntN(1400))
			for i := range body {
				body[i] = byte(r.Uint32())
			}
			a.send(a.server, append(b, body...), &a.forged)
		}
		for i, d := range ds {
			if i%2 == 0 {
				a.sendFrom(d.src, d.dst, d.payload)
			} else {
				a.send(net.UDPAddrFromAddrPort(d.dst), d.payload, &a.foreign)
			}
		}
	}
}

// TestHostileUDP sends random datagrams, datagrams for unknown sessions,
// forged datagrams for the live sessions and replays of genuine ones to the
// server's UDP port (and replays to the client's) while an upload and a
// download run: both complete with the right SHA-256, the server keeps
// serving new clients, and nothing crashes.
func TestHostileUDP(t *testing.T) {
	testenv.RequireRoot(t) // AF_PACKET and raw IP sockets
	n := startNode(t, "photos")
	c := newClient(t)
	n.authorize("", c.pub)
	dir := t.TempDir()
	size := int64(64<<20 + 5)
	if testing.Short() {
		size = 16<<20 + 5
	}
	src := filepath.Join(dir, "src")
	sum := makeFile(t, src, size, 77)

	sniff := newSniffer(t, n.port)
	att := newAttacker(t, n.port, sniff)
	defer att.close()
	sniff.ignore = uint16(att.udp.LocalAddr().(*net.UDPAddr).Port)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); sniff.run(stop) }()
	go func() { defer wg.Done(); att.run(stop) }()
	stopped := false
	halt := func() {
		if !stopped {
			stopped = true
			close(stop)
			wg.Wait()
		}
	}
	defer halt()

	// Long enough for the capture to gather packets to replay.
	rate := "150m"
	d := oneDone(t, c.ok("cp", "--json", "-l", rate, src, n.url("photos/hostile.bin")))
	checkDone(t, d, "upload", "hostile.bin", size, sum)
	exactDuringUpload := att.exact.Load()
	dst := filepath.Join(dir, "back")
	d = oneDone(t, c.ok("cp", "--json", "-l", rate, n.url("photos/hostile.bin"), dst))
	checkDone(t, d, "download", "hostile.bin", size, sum)
	halt()

	if got := sha256File(t, n.objectPath("photos", "hostile.bin")); got != sum {
		t.Errorf("the server's object has SHA-256 %s, want %s", got, sum)
	}
	if got := sha256File(t, dst); got != sum {
		t.Errorf("the downloaded file has SHA-256 %s, want %s", got, sum)
	}
	sniff.mu.Lock()
	captured, sessions, hijacked, hellos := sniff.captured, len(sniff.sessions), sniff.hijacked, 0
	for _, d := range sniff.ctrl {
		if d.payload[1] == byte(wire.TypeHello) {
			hellos++
		}
	}
	sniff.mu.Unlock()
	if hijacked > 0 {
		t.Errorf("the server sent %d datagrams to the attacker's address: it answered unauthenticated packets, or a replay moved a session", hijacked)
	}
	t.Logf("captured %d chute datagrams of %d sessions; sent %d random, %d unknown-session, %d forged, %d replays from the genuine source, %d from a foreign one (%d refused by the kernel)",
		captured, sessions, att.random.Load(), att.unknown.Load(), att.forged.Load(), att.exact.Load(), att.foreign.Load(), att.errs.Load())
	// The attack must have happened, or the test proves nothing.
	for name, v := range map[string]int64{
		"random": att.random.Load(), "unknown-session": att.unknown.Load(), "forged": att.forged.Load(),
		"replayed from the genuine source": att.exact.Load(), "replayed from a foreign address": att.foreign.Load(),
		"replayed during the upload": exactDuringUpload,
	} {
		if v < 50 {
			t.Errorf("only %d %s datagrams were sent", v, name)
		}
	}
	if hellos == 0 {
		t.Errorf("no hello was captured to replay")
	}
	if sessions < 2 {
		t.Errorf("saw %d sessions on the wire, want one per transfer", sessions)
	}

	if !n.running() {
		t.Fatalf("the server died\n%s", n.output())
	}
	if out := n.stderr.String(); strings.Contains(out, "panic") || strings.Contains(out, "fatal error") {
		t.Errorf("the server's log shows a crash:\n%s", out)
	}
	// A new client, after the attack, is served.
	fresh := newClient(t)
	n.authorize("", fresh.pub)
	small := filepath.Join(dir, "small")
	smallSum := makeFile(t, small, 1<<20+1, 78)
	checkDone(t, oneDone(t, fresh.ok("cp", "--json", small, n.url("photos/after"))), "upload", "after", 1<<20+1, smallSum)
	checkDone(t, oneDone(t, fresh.ok("cp", "--json", n.url("photos/after"), filepath.Join(dir, "after"))), "download", "after", 1<<20+1, smallSum)
}

// A firewall that passes the server's SSH port and drops its UDP port:
// chute cp starts the transfer without waiting for the data path, and
// stops at the connect timeout with one error that names the port, rather
// than retrying each file into the same wall; a mount refuses to start.
func TestBlockedUDPPortFailsOnce(t *testing.T) {
	testenv.RequireRoot(t) // nftables
	nft := testenv.RequireTool(t, "nft", "apt-get install nftables")
	n := startNode(t, "photos")
	c := newClient(t)
	n.authorize("", c.pub)
	table := fmt.Sprintf("chute_test_%d", n.port)
	rules := fmt.Sprintf("table inet %s {\n chain in {\n  type filter hook input priority 0;\n  iifname \"lo\" udp dport %d drop\n }\n}\n", table, n.port)
	cmd := exec.Command(nft, "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command(nft, "delete", "table", "inet", table).CombinedOutput(); err != nil {
			t.Errorf("removing the test's nftables table %s: %v\n%s", table, err, out)
		}
	})
	dir := t.TempDir()
	for i := range 3 {
		makeFile(t, filepath.Join(dir, fmt.Sprintf("f%d", i)), 2<<20, uint64(i)) // above what goes inline over SSH
	}
	start := time.Now()
	r := c.fails([]string{"UDP port " + strconv.Itoa(n.port), "firewall"},
		"cp", "--connect-timeout", "2s", "-r", dir, n.url("photos/blocked/"))
	took := time.Since(start)
	if took > 8*time.Second {
		t.Errorf("cp took %v to give up with a 2 s connect timeout; it retried", took)
	}
	if strings.Contains(r.stderr, "resuming") {
		t.Errorf("cp retried into a blocked UDP port:\n%s", r.stderr)
	}
	mp := t.TempDir()
	c.fails([]string{"UDP port " + strconv.Itoa(n.port)},
		"mount", "--connect-timeout", "2s", "--cache-dir", t.TempDir(), n.url("photos/"), mp)
	if isFuseMount(mp) {
		t.Fatalf("%s is mounted although the data path is blocked", mp)
	}
}
