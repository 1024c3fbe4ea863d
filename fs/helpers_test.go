package fs

import (
	"bytes"
	"context"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chute/chute/cache/cachetest"
	"github.com/chute/chute/internal/testenv"
)

const testBucket = "bucket"

// testMount is a mount over a Fake, unmounted when the test ends.
type testMount struct {
	t     testing.TB
	fake  *cachetest.Fake
	m     *Mounted
	dir   string // the mount point
	cache string // the cache folder
	opt   Options
}

// mountFake mounts a fresh Fake; edit changes the options first.
func mountFake(t testing.TB, edit func(*Options)) *testMount {
	t.Helper()
	return mountWith(t, cachetest.NewFake(), t.TempDir(), edit)
}

func mountWith(t testing.TB, fake *cachetest.Fake, cacheDir string, edit func(*Options)) *testMount {
	t.Helper()
	testenv.RequireFUSE(t)
	opt := Options{
		Remote: fake, Bucket: testBucket, MountPoint: t.TempDir(), CacheDir: cacheDir,
		IOTimeout: 5 * time.Second, Logger: testLogger(t),
	}
	if edit != nil {
		edit(&opt)
	}
	m, err := Mount(context.Background(), opt)
	if err != nil {
		t.Fatalf("mount: %v", err)
	}
	tm := &testMount{t: t, fake: fake, m: m, dir: opt.MountPoint, cache: cacheDir, opt: opt}
	t.Cleanup(func() { tm.unmount() })
	return tm
}

// unmount unmounts (once), waiting up to 30 s for uploads.
func (tm *testMount) unmount() {
	select {
	case <-tm.m.closed:
		return
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var err error
	for i := 0; i < 50; i++ {
		if _, err = tm.m.Unmount(ctx); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	tm.t.Errorf("unmount %s: %v", tm.dir, err)
}

func (tm *testMount) path(p string) string { return filepath.Join(tm.dir, p) }

// object returns what the server holds under key.
func (tm *testMount) object(key string) ([]byte, bool) {
	b, _, ok := tm.fake.Object(testBucket, key)
	return b, ok
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("CHUTE_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// randomBytes returns n reproducible pseudo-random bytes.
func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

func mustWrite(t testing.TB, p string, data []byte) {
	t.Helper()
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatalf("write %s: %v", p, err)
	}
}

func mustRead(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	return b
}

func equalBytes(t testing.TB, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && i < len(want) && got[i] == want[i] {
			i++
		}
		t.Fatalf("%s: got %d bytes, want %d; first difference at %d", what, len(got), len(want), i)
	}
}
