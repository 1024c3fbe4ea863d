package main

// End-to-end tests of chute mount and chute unmount against a real
// `chute server` process, through the real protocol on loopback.

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chute/chute/internal/testenv"
)

// detachOnCleanup lazily unmounts mp at the end of the test if a mount is
// still there (a test that failed half-way).
func detachOnCleanup(t testing.TB, mp string) {
	t.Cleanup(func() {
		if isFuseMount(mp) {
			exec.Command("fusermount3", "-u", "-z", mp).Run()
		}
	})
}

// mountProc is a foreground `chute mount` process.
type mountProc struct {
	*running
	dir string
}

// startMount runs `chute mount` in the foreground and waits until the
// mount point is served.
func (c *client) startMount(t testing.TB, n *node, cacheDir string, flags ...string) *mountProc {
	t.Helper()
	mp := t.TempDir()
	args := append([]string{"mount", "--debug", "--cache-dir", cacheDir}, flags...)
	args = append(args, n.url("bkt"), mp)
	r := c.start(args...)
	r.waitFor("the mount", func() bool { return strings.Contains(r.stderr.String(), "chute: mounted") })
	detachOnCleanup(t, mp)
	return &mountProc{running: r, dir: mp}
}

func TestMountE2E(t *testing.T) {
	testenv.RequireFUSE(t)
	n := startNode(t, "bkt")
	c := newClient(t)
	n.authorize("", c.pub)
	cacheDir := t.TempDir()
	mp := t.TempDir()

	// --daemon reports a failure to mount (here: nobody listens)...
	bad := "chute://127.0.0.1:" + strconv.Itoa(freePort(t)) + "/bkt"
	if r := c.run("mount", "--daemon", "--io-timeout", "3s", "--cache-dir", t.TempDir(), bad, mp); r.code == 0 || isFuseMount(mp) {
		t.Fatalf("mount --daemon of an unreachable server: %v", r)
	}
	// ...and returns once the mount is ready.
	r := c.ok("mount", "--daemon", "--cache-dir", cacheDir, n.url("bkt"), mp)
	if !strings.Contains(r.stdout, "mounted on "+mp) || !isFuseMount(mp) {
		t.Fatalf("mount --daemon: %v; mounted: %v", r, isFuseMount(mp))
	}
	detachOnCleanup(t, mp)
	src := filepath.Join(t.TempDir(), "big")
	sum := makeFile(t, src, 64<<20+5, 1)
	if out, err := exec.Command("cp", src, filepath.Join(mp, "big")).CombinedOutput(); err != nil {
		t.Fatalf("cp into the mount: %v %s", err, out)
	}
	// Closed means committed: the server holds it now.
	if got := sha256File(t, n.objectPath("bkt", "big")); got != sum {
		t.Fatal("the server's copy differs right after cp returned")
	}
	if err := os.MkdirAll(filepath.Join(mp, "a", "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mp, "a", "b", "small.txt"), []byte("small\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ls := c.ok("ls", "-r", n.url("bkt/"))
	for _, want := range []string{"big", "a/b/small.txt"} {
		if !strings.Contains(ls.stdout, want) {
			t.Errorf("chute ls does not show %s:\n%s", want, ls.stdout)
		}
	}
	st, err := os.Stat(filepath.Join(mp, "a", "b", "small.txt"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("stat small.txt: %v %v", st, err)
	}

	r = c.ok("unmount", mp)
	if !strings.Contains(r.stdout, "unmounted "+mp) || isFuseMount(mp) {
		t.Fatalf("unmount: %v; still mounted: %v", r, isFuseMount(mp))
	}

	// A cold cache reads it back through the protocol.
	m := c.startMount(t, n, t.TempDir(), "--read-only")
	if got := sha256File(t, filepath.Join(m.dir, "big")); got != sum {
		t.Fatal("read back through a fresh mount differs")
	}
	if err := os.WriteFile(filepath.Join(m.dir, "x"), nil, 0o644); err == nil {
		t.Fatal("a --read-only mount took a new file")
	}
	c.ok("unmount", m.dir)
	m.wait()
}

// TestMountKilledMidUploadResumes kills a write-back mount process with
// SIGKILL while a large upload runs, mounts the same cache folder again,
// and checks that the upload completes from its checkpoint.
func TestMountKilledMidUploadResumes(t *testing.T) {
	testenv.RequireFUSE(t)
	n := startNode(t, "bkt")
	c := newClient(t)
	n.authorize("", c.pub)
	cacheDir := t.TempDir()
	src := filepath.Join(t.TempDir(), "big")
	size := int64(96 << 20)
	sum := makeFile(t, src, size, 2)

	m := c.startMount(t, n, cacheDir, "--write-back", "--target-rate", "100m")
	start := time.Now()
	if out, err := exec.Command("cp", src, filepath.Join(m.dir, "big")).CombinedOutput(); err != nil {
		t.Fatalf("cp into the mount: %v %s", err, out)
	}
	t.Logf("write-back cp of %d MiB returned after %v", size>>20, time.Since(start))
	m.waitFor("checkpoints", func() bool { return time.Since(start) > 4*time.Second })
	m.kill9()
	if _, err := os.Stat(n.objectPath("bkt", "big")); err == nil {
		t.Fatal("the upload finished before the kill; the test proves nothing")
	}
	exec.Command("fusermount3", "-u", "-z", m.dir).Run()

	m2 := c.startMount(t, n, cacheDir, "--write-back")
	m2.waitFor("the resumed upload", func() bool { return strings.Contains(m2.stderr.String(), "upload done") })
	if got := sha256File(t, n.objectPath("bkt", "big")); got != sum {
		t.Fatal("the server's copy differs after the resumed upload")
	}
	done := regexp.MustCompile(`upload done.*key=big.*skipped=(\d+)`).FindStringSubmatch(m2.stderr.String())
	if done == nil {
		t.Fatalf("no upload line in the log:\n%s", m2.stderr.String())
	}
	skipped, _ := strconv.ParseInt(done[1], 10, 64)
	if skipped == 0 {
		t.Fatalf("the resumed upload sent everything again:\n%s", done[0])
	}
	t.Logf("resumed upload skipped %d MiB the server already had", skipped>>20)
	if err := m2.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if res := m2.wait(); res.code != 0 || !strings.Contains(res.stderr, "all uploads done") {
		t.Fatalf("SIGINT: %v", res)
	}
}

// BenchmarkMountVsCp compares moving one 128 MiB file through the mount
// with chute cp, both against a real server on loopback: the mount should
// add little. Write goes through cp(1) into the mount (the upload at close
// included); read is a cold read through a fresh mount.
func BenchmarkMountVsCp(b *testing.B) {
	testenv.RequireFUSE(b)
	n := startNode(b, "bkt")
	c := newClient(b)
	n.authorize("", c.pub)
	const size = 128 << 20
	src := filepath.Join(b.TempDir(), "src")
	makeFile(b, src, size, 3)
	out := filepath.Join(b.TempDir(), "out")
	run := func(name string, args ...string) {
		if o, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			b.Fatalf("%s %v: %v %s", name, args, err, o)
		}
	}
	b.Run("cp-upload", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			c.as(b).ok("cp", src, n.url("bkt/up"))
		}
	})
	b.Run("cp-download", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			os.Remove(out)
			c.as(b).ok("cp", n.url("bkt/up"), out)
		}
	})
	m := c.startMount(b, n, b.TempDir())
	b.Run("mount-write", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			run("cp", src, filepath.Join(m.dir, "viamount"))
		}
	})
	b.Run("mount-read-cold", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			b.StopTimer()
			cold := c.startMount(b, n, b.TempDir(), "--read-only")
			b.StartTimer()
			run("cp", filepath.Join(cold.dir, "up"), out)
			b.StopTimer()
			c.as(b).ok("unmount", cold.dir)
			b.StartTimer()
		}
	})
	c.ok("unmount", m.dir)
}
