package engine

import (
	"context"
	"errors"
	"net"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Both ends of a control connection shorten TCP's recovery timers: the
// client's dial and the server's accept.
func TestControlConnectionTimers(t *testing.T) {
	n := startNode(t, nil, "")
	c := n.client(t)
	cc, err := c.conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n.srv.mu.Lock()
	var server net.Conn
	for sc := range n.srv.conns {
		server = sc.tcp
	}
	n.srv.mu.Unlock()
	for _, end := range []struct {
		name string
		conn net.Conn
	}{{"client", cc.tcp}, {"server", server}} {
		if end.conn == nil {
			t.Fatalf("%s: no control connection", end.name)
		}
		delAck, rtoMin, err := controlTimers(end.conn)
		if errors.Is(err, unix.ENOPROTOOPT) {
			t.Skipf("SKIPPED: this kernel has no TCP_DELACK_MAX_US / TCP_RTO_MIN_US (Linux 6.15 and later): %v", err)
		}
		if err != nil {
			t.Fatalf("%s: %v", end.name, err)
		}
		// The kernel keeps the delayed-ACK bound in jiffies: up to one
		// jiffy (10 ms at HZ=100) more than asked.
		if delAck < controlDelAckMax || delAck > controlDelAckMax+10*time.Millisecond {
			t.Errorf("%s: delayed ACKs wait at most %v, want %v", end.name, delAck, controlDelAckMax)
		}
		if rtoMin != controlRTOMin {
			t.Errorf("%s: the retransmission timeout's floor is %v, want %v", end.name, rtoMin, controlRTOMin)
		}
	}
}

// controlTimers reads back what tuneControl set, for tests.
func controlTimers(c net.Conn) (delAckMax, rtoMin time.Duration, err error) {
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return 0, 0, err
	}
	var e1, e2 error
	var d, r int
	if cerr := rc.Control(func(fd uintptr) {
		d, e1 = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_DELACK_MAX_US)
		r, e2 = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_RTO_MIN_US)
	}); cerr != nil {
		return 0, 0, cerr
	}
	return time.Duration(d) * time.Microsecond, time.Duration(r) * time.Microsecond, errors.Join(e1, e2)
}

// A thread that entered another network namespace is told apart: the
// backup attempt would dial from the process's namespace instead.
func TestThreadInProcessNetns(t *testing.T) {
	if !threadInProcessNetns() {
		t.Fatal("an ordinary goroutine's thread is said to be in another network namespace")
	}
	type answer struct {
		in  bool
		err error
	}
	ch := make(chan answer, 1)
	go func() {
		// The thread is left in the new namespace: exiting while locked
		// ends it, so no other goroutine runs there.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			ch <- answer{err: err}
			return
		}
		ch <- answer{in: threadInProcessNetns()}
	}()
	a := <-ch
	if errors.Is(a.err, unix.EPERM) {
		t.Skipf("SKIPPED: cannot make a network namespace here (needs root): %v", a.err)
	}
	if a.err != nil {
		t.Fatal(a.err)
	}
	if a.in {
		t.Error("a thread in a new network namespace is said to be in the process's")
	}
}
