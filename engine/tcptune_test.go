package engine

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/chute/chute/internal/testenv"
)

// fakeDials plays connection attempts: each call takes the next behaviour.
type fakeDials struct {
	mu     sync.Mutex
	plays  []func(ctx context.Context) (net.Conn, error)
	calls  int
	closed []bool // by attempt: whether its connection was closed
}

func (f *fakeDials) dial(ctx context.Context) (net.Conn, error) {
	f.mu.Lock()
	i := f.calls
	f.calls++
	f.closed = append(f.closed, false)
	play := f.plays[i]
	f.mu.Unlock()
	c, err := play(ctx)
	if c != nil {
		c = &closeNote{Conn: c, onClose: func() { f.mu.Lock(); f.closed[i] = true; f.mu.Unlock() }}
	}
	return c, err
}

type closeNote struct {
	net.Conn
	onClose func()
}

func (c *closeNote) Close() error { c.onClose(); return c.Conn.Close() }

func connectAfter(d time.Duration) func(context.Context) (net.Conn, error) {
	return func(ctx context.Context) (net.Conn, error) {
		select {
		case <-time.After(d):
			a, b := net.Pipe()
			b.Close()
			return a, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// A lost SYN: no answer until the attempt is cancelled.
func lostSYN(ctx context.Context) (net.Conn, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func refused(context.Context) (net.Conn, error) { return nil, syscall.ECONNREFUSED }

func TestDialWithBackup(t *testing.T) {
	const backup = 250 * time.Millisecond
	for _, tc := range []struct {
		name     string
		plays    []func(context.Context) (net.Conn, error)
		wantErr  error
		took     time.Duration
		attempts int
		closed   []bool // which attempts' connections dialWithBackup closed
	}{
		{"answered at once", []func(context.Context) (net.Conn, error){connectAfter(100 * time.Millisecond)}, nil, 100 * time.Millisecond, 1, []bool{false}},
		{"first SYN lost", []func(context.Context) (net.Conn, error){lostSYN, connectAfter(100 * time.Millisecond)}, nil, backup + 100*time.Millisecond, 2, []bool{false, false}},
		{"long round trip: both connect, the later is closed",
			[]func(context.Context) (net.Conn, error){connectAfter(600 * time.Millisecond), func(context.Context) (net.Conn, error) {
				time.Sleep(600 * time.Millisecond) // ignores the cancel: connected all the same
				a, b := net.Pipe()
				b.Close()
				return a, nil
			}}, nil, 600 * time.Millisecond, 2, []bool{false, true}},
		{"refused at once", []func(context.Context) (net.Conn, error){refused}, syscall.ECONNREFUSED, 0, 1, []bool{false}},
		{"nothing answers", []func(context.Context) (net.Conn, error){lostSYN, lostSYN}, context.DeadlineExceeded, 3 * time.Second, 2, []bool{false, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := &fakeDials{plays: tc.plays}
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				defer cancel()
				start := time.Now()
				c, err := dialWithBackup(ctx, backup, f.dial)
				took := time.Since(start)
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err %v, want %v", err, tc.wantErr)
				}
				if took != tc.took {
					t.Errorf("took %v, want %v", took, tc.took)
				}
				time.Sleep(time.Second) // the losing attempt finishes
				synctest.Wait()
				f.mu.Lock()
				if f.calls != tc.attempts {
					t.Errorf("%d attempts, want %d", f.calls, tc.attempts)
				}
				for i, want := range tc.closed {
					if i < len(f.closed) && f.closed[i] != want {
						t.Errorf("attempt %d's connection closed: %v, want %v", i+1, f.closed[i], want)
					}
				}
				f.mu.Unlock()
				if err == nil {
					c.Close()
				}
			})
		})
	}
}

// A connection closed before the SSH handshake (a client's spare attempt
// that lost the race, a port check) is logged at debug level, not info.
func TestSpareConnectionLoggedQuietly(t *testing.T) {
	var logs testenv.Buffer
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), []byte("# none\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(ServerConfig{DataDir: dir, Listen: "127.0.0.1:0", Buckets: []string{"photos"},
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(context.Background())
	}()
	defer func() { srv.Close(); <-done }()
	for _, wait := range []time.Duration{0, 50 * time.Millisecond} { // before and after the server's version line
		c, err := net.Dial("tcp", srv.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(wait)
		c.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for strings.Count(logs.String(), "ssh handshake failed") < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	out := logs.String()
	if n := strings.Count(out, "level=DEBUG msg=\"ssh handshake failed\""); n != 2 {
		t.Errorf("%d of 2 connections closed before the handshake were logged at debug level; the log:\n%s", n, out)
	}
}
