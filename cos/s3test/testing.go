package s3test

import (
	"context"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chute/chute/cos"
	"github.com/chute/chute/cos/costest"
	"github.com/chute/chute/internal/testenv"
)

// Server is a SeaweedFS instance serving a test.
type Server struct {
	*Weed
}

// Start starts a private server for t (for tests that kill or restart it)
// and stops it when t ends. Without the weed binary the test is skipped
// (failed under CHUTE_TEST_STRICT=1). The server's log goes to t's log if
// t fails.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := testenv.WeedBinary(t)
	w, err := StartWeed(context.Background(), Options{Binary: bin})
	if err != nil {
		t.Fatalf("starting SeaweedFS: %v", err)
	}
	s := &Server{w}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- SeaweedFS log (tail), endpoint %s ---\n%s", w.Endpoint, w.Logs())
		}
		w.Close()
	})
	return s
}

var shared struct {
	mu  sync.Mutex
	srv *Server
	err error
}

// Shared returns the test binary's shared server, starting it on first
// use. Call Main from TestMain so that it is stopped at the end; tests
// that use it create their own buckets (NewBucket).
func Shared(t testing.TB) *Server {
	t.Helper()
	bin := testenv.WeedBinary(t)
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.srv == nil && shared.err == nil {
		w, err := StartWeed(context.Background(), Options{Binary: bin})
		if err != nil {
			shared.err = err
		} else {
			shared.srv = &Server{w}
		}
	}
	if shared.err != nil {
		t.Fatalf("starting the shared SeaweedFS: %v", shared.err)
	}
	s := shared.srv
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- SeaweedFS log (tail), endpoint %s ---\n%s", s.Endpoint, s.Logs())
		}
	})
	return s
}

// Main runs the package's tests, stops the shared server, and exits. Use
// it as TestMain:
//
//	func TestMain(m *testing.M) { s3test.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	shared.mu.Lock()
	if shared.srv != nil {
		shared.srv.Close()
	}
	shared.mu.Unlock()
	os.Exit(code)
}

var unsafeBucketChars = regexp.MustCompile(`[^a-z0-9-]+`)

// NewBucket creates a bucket with a fresh name derived from t's name.
func (s *Server) NewBucket(t testing.TB) string {
	t.Helper()
	name := strings.Trim(unsafeBucketChars.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	if len(name) > 40 {
		name = strings.Trim(name[len(name)-40:], "-")
	}
	name = "t-" + name + "-" + randomHex(4)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.CreateBucket(ctx, name); err != nil {
		t.Fatalf("creating bucket %s: %v", name, err)
	}
	return name
}

// Store returns a cos.S3 connected to the server.
func (s *Server) Store(t testing.TB) *cos.S3 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := s.Weed.Store(ctx)
	if err != nil {
		t.Fatalf("connecting to SeaweedFS at %s: %v", s.Endpoint, err)
	}
	return st
}

// Quirks are the departures from S3 of the SeaweedFS version the tests
// run, for costest.RunWithQuirks.
var Quirks = costest.Quirks{MarkerMetaLost: true, FileHidesMarker: true, PrefixesLinger: true, ImplicitMarkers: true}
