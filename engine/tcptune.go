package engine

import (
	"context"
	"net"
	"time"
)

// The control connection carries a few dozen small messages per command
// (the SSH handshake, the hello, the request, the commit), and each is
// waited on. On a lossy path a lost segment of one is repaired by TCP's
// tail-loss probe or its retransmission timeout, which Linux keeps at
// least 200 ms beyond the round trip, in case the peer delays its
// acknowledgements that long. Both ends of a control connection are
// chute, and acknowledge within controlDelAckMax, so the floor comes down
// to controlRTOMin (Linux 6.15 and later allow both per socket). QUIC's
// probe timeout has no floor beyond the peer's acknowledgement delay
// either.
const (
	controlDelAckMax = 5 * time.Millisecond
	controlRTOMin    = 20 * time.Millisecond
)

// controlBackupDial is how long a control connection's first attempt may
// go unanswered before a second one starts beside it: Linux repeats a
// lost SYN (or a SYN whose answer was lost) only after a second. Browsers
// start their backup connection after 250 ms too. On a path with a longer
// round trip both attempts connect, and the later one is closed at once.
//
// Across 100 ms with 2% loss each way, a command copying 1 KiB took
// 1.30 s on average (200 runs; 90th percentile 1.71 s, longest 4.48 s)
// with the kernel's timers and one attempt, and 1.20 s (120 runs; 1.44 s,
// 1.77 s) with both changes; one that met no loss took 1.07–1.10 s.
const controlBackupDial = 250 * time.Millisecond

// dialControl connects to addr over TCP, starting a second attempt beside
// the first if it has not connected within backup; the first to connect
// wins and the other is closed. An attempt that fails at once (refused,
// no route) ends the dial with its error.
//
// The attempts run on other goroutines, so on other OS threads. A caller
// whose thread has entered another network namespace than the process's
// (as a test that runs client and server in two does) would have them
// dial from the wrong one: it gets one attempt, on its own thread.
func dialControl(ctx context.Context, addr string, backup time.Duration) (net.Conn, error) {
	dial := func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
	if !threadInProcessNetns() {
		return dial(ctx)
	}
	return dialWithBackup(ctx, backup, dial)
}

func dialWithBackup(ctx context.Context, backup time.Duration, dial func(context.Context) (net.Conn, error)) (net.Conn, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		c   net.Conn
		err error
	}
	results := make(chan result, 2)
	attempt := func() {
		c, err := dial(ctx)
		results <- result{c, err}
	}
	go attempt()
	timer := time.NewTimer(backup)
	defer timer.Stop()
	running := 1
	for {
		select {
		case <-timer.C:
			running++
			go attempt()
		case r := <-results:
			running--
			if r.err == nil {
				// The other attempt, if any, is cancelled as this returns;
				// if it connected all the same, close it.
				go func(n int) {
					for range n {
						if r := <-results; r.c != nil {
							r.c.Close()
						}
					}
				}(running)
				return r.c, nil
			}
			if running == 0 {
				return nil, r.err
			}
		}
	}
}
