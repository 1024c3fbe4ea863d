package engine

import (
	"errors"
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// tuneControl shortens TCP's recovery of a lost segment on a control
// connection (see controlRTOMin), where the kernel allows it (Linux 6.15
// and later). It reports what it could not set; the connection works
// either way.
func tuneControl(c net.Conn) error {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return err
	}
	var errs []error
	cerr := rc.Control(func(fd uintptr) {
		set := func(name string, opt int, d time.Duration) {
			if err := unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, opt, int(d/time.Microsecond)); err != nil {
				errs = append(errs, &net.OpError{Op: "setsockopt " + name, Net: "tcp", Addr: c.RemoteAddr(), Err: err})
			}
		}
		set("TCP_DELACK_MAX_US", unix.TCP_DELACK_MAX_US, controlDelAckMax)
		set("TCP_RTO_MIN_US", unix.TCP_RTO_MIN_US, controlRTOMin)
	})
	return errors.Join(append(errs, cerr)...)
}

// threadInProcessNetns reports whether the calling thread is in the same
// network namespace as the threads other goroutines run on (true when that
// cannot be told): it asks one.
func threadInProcessNetns() bool {
	netns := func() (unix.Stat_t, error) {
		var st unix.Stat_t
		err := unix.Stat("/proc/thread-self/ns/net", &st)
		return st, err
	}
	self, err := netns()
	if err != nil {
		return true
	}
	type answer struct {
		st  unix.Stat_t
		err error
	}
	ch := make(chan answer, 1)
	go func() {
		st, err := netns()
		ch <- answer{st, err}
	}()
	other := <-ch
	return other.err != nil || (self.Dev == other.st.Dev && self.Ino == other.st.Ino)
}
