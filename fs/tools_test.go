package fs

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/chute/chute/internal/testenv"
)

// run runs a command outside the mount (its working folder is not in the
// mount, so the child's chdir cannot call back into this process).
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = os.TempDir()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// sourceTree is a real tree of Go source files to copy around.
func sourceTree(t *testing.T) string {
	return filepath.Join(runtime.GOROOT(), "src", "encoding")
}

func TestTarExtractAndDiff(t *testing.T) {
	for _, wb := range []bool{false, true} {
		t.Run(fmt.Sprintf("writeback=%v", wb), func(t *testing.T) { testTar(t, wb) })
	}
}

func testTar(t *testing.T, writeBack bool) {
	testenv.RequireTool(t, "tar", "apt-get install tar")
	testenv.RequireTool(t, "diff", "apt-get install diffutils")
	src := sourceTree(t)
	archive := filepath.Join(t.TempDir(), "src.tar")
	run(t, "tar", "-C", filepath.Dir(src), "-cf", archive, filepath.Base(src))
	tm := mountFake(t, func(o *Options) { o.WriteBack = writeBack })
	run(t, "tar", "-C", tm.dir, "-xf", archive)
	run(t, "diff", "-r", src, tm.path(filepath.Base(src)))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := tm.m.WaitUploads(ctx); err != nil {
		t.Fatal(err)
	}
	// And the server holds the same bytes (read without the mount).
	n := 0
	filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(filepath.Dir(src), p)
		got, ok := tm.object(filepath.ToSlash(rel))
		if !ok {
			t.Errorf("%s not on the server", rel)
			return nil
		}
		equalBytes(t, rel, got, mustRead(t, p))
		n++
		return nil
	})
	if n < 50 {
		t.Fatalf("only %d files compared", n)
	}
}

func TestRsyncInAndOut(t *testing.T) {
	for _, wb := range []bool{false, true} {
		t.Run(fmt.Sprintf("writeback=%v", wb), func(t *testing.T) { testRsync(t, wb) })
	}
}

func testRsync(t *testing.T, writeBack bool) {
	testenv.RequireTool(t, "rsync", "apt-get install rsync")
	testenv.RequireTool(t, "diff", "apt-get install diffutils")
	src := sourceTree(t) + "/"
	tm := mountFake(t, func(o *Options) { o.WriteBack = writeBack })
	in := tm.path("r") + "/"
	run(t, "rsync", "-a", src, in)
	out := filepath.Join(t.TempDir(), "out") + "/"
	run(t, "rsync", "-a", in, out)
	run(t, "diff", "-r", src, out)
	// Sizes, modes and mtimes survived the trip: a second rsync finds
	// nothing to do.
	if changes := strings.TrimSpace(run(t, "rsync", "-a", "-n", "-i", src, in)); changes != "" {
		t.Fatalf("rsync sees differences after the copy in:\n%s", changes)
	}
	if changes := strings.TrimSpace(run(t, "rsync", "-a", "-n", "-i", in, out)); changes != "" {
		t.Fatalf("rsync sees differences after the copy out:\n%s", changes)
	}
	// Once uploaded, a fresh mount over a cold cache shows the same tree,
	// modes and times included.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := tm.m.Unmount(ctx); err != nil {
		t.Fatal(err)
	}
	cold := mountWith(t, tm.fake, t.TempDir(), nil)
	if changes := strings.TrimSpace(run(t, "rsync", "-a", "-n", "-i", "--exclude", ".*", src, cold.path("r")+"/")); changes != "" {
		t.Fatalf("rsync sees differences against the server's copy:\n%s", changes)
	}
}

// TestLargeFile writes and reads a 256 MiB file through the mount (32 MiB
// with -short).
func TestLargeFile(t *testing.T) {
	size := 256 << 20
	if testing.Short() {
		size = 32 << 20
	}
	tm := mountFake(t, nil)
	p := tm.path("big")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	for off := 0; off < size; off += 1 << 20 {
		chunk := randomBytes(1<<20, uint64(off))
		h.Write(chunk)
		if _, err := f.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	want := h.Sum(nil)
	got, ok := tm.object("big")
	if !ok || len(got) != size {
		t.Fatalf("server copy: present %v, %d bytes", ok, len(got))
	}
	if s := sha256.Sum256(got); string(s[:]) != string(want) {
		t.Fatal("server copy differs")
	}
	got = nil
	readHash := func() []byte {
		r, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		h := sha256.New()
		if n, err := io.Copy(h, r); err != nil || n != int64(size) {
			t.Fatalf("read back: %d bytes, %v", n, err)
		}
		return h.Sum(nil)
	}
	// The uploaded staged copy became the cache: no download at all.
	if string(readHash()) != string(want) {
		t.Fatal("read back differs")
	}
	if n := tm.fake.DownloadedBytes(); n != 0 {
		t.Fatalf("reading a file just written downloaded %d bytes", n)
	}
	// From a cold cache it is fetched once, then served locally.
	tm.unmount()
	tm2 := mountWith(t, tm.fake, t.TempDir(), nil)
	p = tm2.path("big")
	if string(readHash()) != string(want) {
		t.Fatal("cold read differs")
	}
	if n := tm.fake.DownloadedBytes(); n != int64(size) {
		t.Fatalf("cold read downloaded %d bytes, want %d", n, size)
	}
	if string(readHash()) != string(want) {
		t.Fatal("warm read differs")
	}
	if n := tm.fake.DownloadedBytes(); n != int64(size) {
		t.Fatalf("warm read downloaded %d more bytes", n-int64(size))
	}
}
