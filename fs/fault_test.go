package fs

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/chute/chute/cos"
	"github.com/chute/chute/internal/testenv"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCrashDuringUploadResumes kills the mount (no drain, nothing more
// recorded) in the middle of a large write-back upload, mounts the same
// cache folder again, and checks that the upload finishes from the saved
// resume state: the bytes the server had acknowledged are not sent again.
func TestCrashDuringUploadResumes(t *testing.T) {
	const size = 24 << 20
	data := randomBytes(size, 7)
	cacheDir := t.TempDir()
	tm := mountFake(t, func(o *Options) { o.WriteBack = true; o.CacheDir = cacheDir })
	tm.fake.SetRate(16 << 20) // about 1.5 s for the whole file
	start := time.Now()
	mustWrite(t, tm.path("big"), data)
	if d := time.Since(start); d > time.Second {
		t.Logf("write-back close took %v", d)
	}
	waitFor(t, "8 MiB acknowledged", 20*time.Second, func() bool { return tm.fake.PartialBytes("big") >= 8<<20 })
	tm.m.kill()
	acked := tm.fake.PartialBytes("big")
	if _, ok := tm.object("big"); ok {
		t.Fatal("the upload finished before the crash; the test proves nothing")
	}
	before := tm.fake.UploadedBytes()

	tm.fake.SetRate(0)
	tm2 := mountWith(t, tm.fake, cacheDir, func(o *Options) { o.WriteBack = true })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	waitFor(t, "the resumed upload", 30*time.Second, func() bool { _, ok := tm2.object("big"); return ok })
	if err := tm2.m.WaitUploads(ctx); err != nil {
		t.Fatal(err)
	}
	got, _ := tm2.object("big")
	equalBytes(t, "server copy after resume", got, data)
	resent := tm.fake.UploadedBytes() - before
	if tm.fake.Resumes() != 1 {
		t.Fatalf("resumed uploads: %d, want 1", tm.fake.Resumes())
	}
	// Only what the server lacked goes again (checkpoints come every MiB,
	// so up to one MiB past the last checkpoint may be sent twice).
	if resent > size-acked+(1<<20) || resent < size-acked-(1<<20) {
		t.Fatalf("after the crash %d bytes were sent; the server had %d of %d", resent, acked, size)
	}
	t.Logf("acknowledged before the crash: %d MiB; sent after: %d MiB", acked>>20, resent>>20)
	equalBytes(t, "read back", mustRead(t, tm2.path("big")), data)
}

// TestUnmountLeavesUploadsForNextMount unmounts while the server holds
// uploads back: unmount gives up waiting when its context ends and the next
// mount finishes the upload.
func TestUnmountLeavesUploadsForNextMount(t *testing.T) {
	cacheDir := t.TempDir()
	tm := mountFake(t, func(o *Options) { o.WriteBack = true; o.CacheDir = cacheDir })
	tm.fake.HoldUploads()
	data := randomBytes(3<<20, 3)
	mustWrite(t, tm.path("f"), data)
	if _, ok := tm.object("f"); ok {
		t.Fatal("write-back close uploaded before returning")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	left, err := tm.m.Unmount(ctx)
	cancel()
	if err != nil || left != 1 {
		t.Fatalf("unmount: left %d, %v; want 1 left", left, err)
	}
	tm.fake.ReleaseUploads()
	tm2 := mountWith(t, tm.fake, cacheDir, func(o *Options) { o.WriteBack = true })
	waitFor(t, "the upload left by the last mount", 20*time.Second, func() bool { _, ok := tm2.object("f"); return ok })
	got, _ := tm2.object("f")
	equalBytes(t, "server copy", got, data)
}

// TestUnmountDrains checks that Unmount waits for pending uploads.
func TestUnmountDrains(t *testing.T) {
	tm := mountFake(t, func(o *Options) { o.WriteBack = true })
	tm.fake.SetRate(8 << 20)
	data := randomBytes(4<<20, 4)
	mustWrite(t, tm.path("f"), data)
	left, err := tm.m.Unmount(context.Background())
	if err != nil || left != 0 {
		t.Fatalf("unmount: left %d, %v", left, err)
	}
	got, ok := tm.object("f")
	if !ok {
		t.Fatal("not uploaded when Unmount returned")
	}
	equalBytes(t, "server copy", got, data)
}

// TestFusermountUnmountDrains unmounts from outside with fusermount3 -u.
func TestFusermountUnmountDrains(t *testing.T) {
	tm := mountFake(t, func(o *Options) { o.WriteBack = true })
	mustWrite(t, tm.path("f"), []byte("external"))
	cmd := exec.Command("fusermount3", "-u", tm.dir)
	cmd.Dir = os.TempDir()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("fusermount3 -u: %v %s", err, out)
	}
	done := make(chan struct{})
	go func() { tm.m.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Wait did not return after fusermount3 -u")
	}
	if got, _ := tm.object("f"); string(got) != "external" {
		t.Fatalf("server holds %q after an outside unmount", got)
	}
}

// TestCloseWithServerDown: close returns EIO after IOTimeout; the staged
// file stays and is uploaded once the server is back.
func TestCloseWithServerDown(t *testing.T) {
	tm := mountFake(t, func(o *Options) { o.IOTimeout = time.Second; o.ListTTL = time.Minute })
	if _, err := os.ReadDir(tm.dir); err != nil { // the listing is cached: create needs no server
		t.Fatal(err)
	}
	tm.fake.SetDown(true)
	f, err := os.Create(tm.path("f"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("kept")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = f.Close()
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("close with the server down: %v, want EIO", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("close took %v with a 1 s I/O timeout", d)
	}
	tm.fake.SetDown(false)
	waitFor(t, "the retried upload", 20*time.Second, func() bool { got, _ := tm.object("f"); return string(got) == "kept" })
}

// TestServerGoneMidRead cuts the server off during a read: a read whose
// server comes back within IOTimeout succeeds, without fetching again what
// it already had; one whose server stays away fails with EIO, in bounded
// time.
func TestServerGoneMidRead(t *testing.T) {
	const size = 8 << 20
	data := randomBytes(size, 9)
	tests := []struct {
		name    string
		outage  time.Duration
		wantErr error
	}{
		{"back within the timeout", 700 * time.Millisecond, nil},
		{"gone for good", time.Hour, syscall.EIO},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			const timeout = 2 * time.Second
			tm := mountFake(t, func(o *Options) { o.IOTimeout = timeout })
			tm.fake.Store(testBucket, "f", data, cos.Meta{})
			tm.fake.SetRate(8 << 20)
			f, err := os.Open(tm.path("f"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			buf := make([]byte, size)
			if _, err := io.ReadFull(f, buf[:1<<20]); err != nil {
				t.Fatal(err)
			}
			tm.fake.SetDown(true)
			back := time.AfterFunc(tc.outage, func() { tm.fake.SetDown(false) })
			defer back.Stop()
			start := time.Now()
			_, err = io.ReadFull(f, buf[1<<20:])
			took := time.Since(start)
			tm.fake.SetDown(false)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("read: %v", err)
				}
				equalBytes(t, "read", buf, data)
				if n := tm.fake.DownloadedBytes(); n > size {
					t.Fatalf("downloaded %d bytes for a %d byte file", n, size)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("read: %v, want %v", err, tc.wantErr)
			}
			if took > timeout+5*time.Second {
				t.Fatalf("the failing read took %v with a %v I/O timeout", took, timeout)
			}
		})
	}
}

// TestCacheDiskFull stages data on a small tmpfs: the writer that fills it
// gets ENOSPC, data staged earlier is intact and uploads later, and the
// mount goes on working.
func TestCacheDiskFull(t *testing.T) {
	testenv.RequireRoot(t)
	cacheDir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", cacheDir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", cacheDir).Run() })
	tm := mountFake(t, func(o *Options) { o.WriteBack = true; o.CacheDir = cacheDir })
	tm.fake.HoldUploads()
	first := randomBytes(8<<20, 11)
	mustWrite(t, tm.path("first"), first)

	f, err := os.Create(tm.path("filler"))
	if err != nil {
		t.Fatal(err)
	}
	chunk := randomBytes(1<<20, 12)
	var werr error
	written := 0
	for i := 0; i < 100 && werr == nil; i++ {
		_, werr = f.Write(chunk)
		if werr == nil {
			written++
		}
	}
	cerr := f.Close()
	if !errors.Is(werr, syscall.ENOSPC) {
		t.Fatalf("filling the cache disk: write error %v after %d MiB, want ENOSPC", werr, written)
	}
	t.Logf("ENOSPC after %d MiB; close: %v", written, cerr)

	equalBytes(t, "staged file read while the disk is full", mustRead(t, tm.path("first")), first)
	if err := os.Remove(tm.path("filler")); err != nil {
		t.Fatalf("unlink the filler: %v", err)
	}
	mustWrite(t, tm.path("after"), []byte("still healthy"))
	tm.fake.ReleaseUploads()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := tm.m.WaitUploads(ctx); err != nil {
		t.Fatal(err)
	}
	got, _ := tm.object("first")
	equalBytes(t, "first on the server", got, first)
	if got, _ := tm.object("after"); string(got) != "still healthy" {
		t.Fatalf("after: %q", got)
	}
	if _, ok := tm.object("filler"); ok {
		t.Fatal("the unlinked filler reached the server")
	}
}
