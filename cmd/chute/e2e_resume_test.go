package main

// Resume after the client or the server dies, and clean server stops.

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// slowRate is the target rate of the transfers the tests interrupt: slow
// enough that a large file takes several seconds, so a kill lands in the
// middle.
func slowRate() string {
	if testing.Short() {
		return "60m"
	}
	return "250m"
}

// partialHave reads a download's .chute-partial.json and returns how many
// bytes it records as held.
func partialHave(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	var st partialState
	if json.Unmarshal(b, &st) != nil {
		return 0
	}
	var n int64
	for _, r := range st.Have {
		n += r.Len
	}
	return n
}

// TestResumeUploadAfterClientKill kills chute cp with SIGKILL in the middle
// of a large upload and runs the same command again.
func TestResumeUploadAfterClientKill(t *testing.T) {
	n := startNode(t, "photos")
	c := newClient(t)
	n.authorize("", c.pub)
	src, sum := bigFile(t)
	size := bigSize()
	args := []string{"cp", "--json", "-l", slowRate(), src, n.url("photos/big.bin")}

	r := c.start(args...)
	r.waitFor("a quarter of the upload acknowledged and checkpointed", func() bool {
		return r.progressDone() >= size/4 && len(c.checkpoints()) > 0
	})
	r.kill9()
	if _, err := os.Stat(n.objectPath("photos", "big.bin")); err == nil {
		t.Fatal("the object exists although its upload was killed")
	}

	again := c.ok(args...)
	d := oneDone(t, again)
	checkDone(t, d, "upload", "big.bin", size, sum)
	if *d.Skipped <= 0 {
		t.Errorf("the resumed upload skipped nothing: %+v", *d.Skipped)
	}
	t.Logf("killed at >= %d bytes; resumed with %d skipped, %d sent", size/4, *d.Skipped, *d.Sent)
	if got := sha256File(t, n.objectPath("photos", "big.bin")); got != sum {
		t.Errorf("the server's object has SHA-256 %s, want %s", got, sum)
	}
	if left := c.checkpoints(); len(left) > 0 {
		t.Errorf("upload checkpoints left after success: %v", left)
	}
}

// TestResumeDownloadAfterClientKill kills chute cp with SIGKILL in the
// middle of a large download and runs the same command again.
func TestResumeDownloadAfterClientKill(t *testing.T) {
	n := startNode(t, "photos")
	c := newClient(t)
	n.authorize("", c.pub)
	src, sum := bigFile(t)
	size := bigSize()
	c.ok("cp", "--quiet", src, n.url("photos/big.bin"))

	dst := filepath.Join(t.TempDir(), "big copy.bin")
	partial := dst + ".chute-partial"
	args := []string{"cp", "--json", "-l", slowRate(), n.url("photos/big.bin"), dst}
	r := c.start(args...)
	r.waitFor("a quarter of the download received and recorded", func() bool {
		return r.progressDone() >= size/4 && partialHave(partial+".json") > 0
	})
	r.kill9()
	if _, err := os.Stat(dst); err == nil {
		t.Fatal("the destination exists although its download was killed")
	}
	if _, err := os.Stat(partial); err != nil {
		t.Fatalf("no partial file after the kill: %v", err)
	}

	again := c.ok(args...)
	d := oneDone(t, again)
	checkDone(t, d, "download", "big.bin", size, sum)
	if *d.Skipped <= 0 {
		t.Errorf("the resumed download skipped nothing")
	}
	t.Logf("resumed with %d bytes skipped", *d.Skipped)
	if got := sha256File(t, dst); got != sum {
		t.Errorf("downloaded file has SHA-256 %s, want %s", got, sum)
	}
	if left, _ := filepath.Glob(partial + "*"); len(left) > 0 {
		t.Errorf("partial files left after success: %v", left)
	}
}

// TestResumeAfterServerKill kills the server with SIGKILL in the middle of
// an upload and starts it again on the same port and data folder; the
// client reconnects by itself (--retries) and sends only what is missing.
func TestResumeAfterServerKill(t *testing.T) {
	n := startNode(t, "photos")
	c := newClient(t)
	n.authorize("", c.pub)
	src, sum := bigFile(t)
	size := bigSize()

	r := c.start("cp", "--json", "-l", slowRate(), "--retries", "5", src, n.url("photos/big.bin"))
	r.waitFor("a quarter of the upload acknowledged", func() bool { return r.progressDone() >= size/4 })
	n.kill()
	n.restart()
	res := r.wait()
	if res.code != 0 {
		t.Fatalf("the upload did not survive the server's restart; %v", res)
	}
	if !strings.Contains(res.stderr, "resuming") {
		t.Errorf("the client does not say it lost the connection and resumed; %v", res)
	}
	d := oneDone(t, res)
	checkDone(t, d, "upload", "big.bin", size, sum)
	if *d.Skipped <= 0 {
		t.Errorf("the upload resumed after the server's restart skipped nothing")
	}
	t.Logf("resumed with %d bytes skipped", *d.Skipped)
	if got := sha256File(t, n.objectPath("photos", "big.bin")); got != sum {
		t.Errorf("the server's object has SHA-256 %s, want %s", got, sum)
	}
}

// TestServerStopsOnSignals stops the server with SIGTERM in the middle of
// an upload and with SIGINT in the middle of a download: each time it exits
// 0 saying it stopped, the client fails with a message that says how to
// resume, and after a restart the same commands finish, sending only what
// is missing: the staged upload and the partial download survived.
func TestServerStopsOnSignals(t *testing.T) {
	n := startNode(t, "photos")
	c := newClient(t)
	n.authorize("", c.pub)
	src, sum := bigFile(t)
	size := bigSize()

	// SIGTERM during an upload.
	up := []string{"cp", "--json", "-l", slowRate(), "--retries", "0", src, n.url("photos/big.bin")}
	r := c.start(up...)
	r.waitFor("a quarter of the upload acknowledged", func() bool { return r.progressDone() >= size/4 })
	if code := n.stop(syscall.SIGTERM); code != 0 {
		t.Errorf("chute server exited %d on SIGTERM, want 0\n%s", code, n.logs[len(n.logs)-1])
	}
	if !strings.Contains(n.logs[len(n.logs)-1], "chute server: stopped") {
		t.Errorf("chute server did not say it stopped\n%s", n.logs[len(n.logs)-1])
	}
	res := r.wait()
	if res.code == 0 {
		t.Fatalf("the upload succeeded although its server stopped; %v", res)
	}
	if !strings.Contains(res.stderr, "run the same command again") {
		t.Errorf("the failed upload does not say how to resume; %v", res)
	}
	n.restart()
	d := oneDone(t, c.ok(up...))
	checkDone(t, d, "upload", "big.bin", size, sum)
	if *d.Skipped <= 0 {
		t.Errorf("the upload after the restart skipped nothing: the staged data did not survive")
	}
	if got := sha256File(t, n.objectPath("photos", "big.bin")); got != sum {
		t.Errorf("the server's object has SHA-256 %s, want %s", got, sum)
	}

	// SIGINT during a download.
	dst := filepath.Join(t.TempDir(), "big.bin")
	down := []string{"cp", "--json", "-l", slowRate(), "--retries", "0", n.url("photos/big.bin"), dst}
	r = c.start(down...)
	r.waitFor("a quarter of the download received and recorded", func() bool {
		return r.progressDone() >= size/4 && partialHave(dst+".chute-partial.json") > 0
	})
	if code := n.stop(syscall.SIGINT); code != 0 {
		t.Errorf("chute server exited %d on SIGINT, want 0\n%s", code, n.logs[len(n.logs)-1])
	}
	if !strings.Contains(n.logs[len(n.logs)-1], "chute server: stopped") {
		t.Errorf("chute server did not say it stopped\n%s", n.logs[len(n.logs)-1])
	}
	if res := r.wait(); res.code == 0 {
		t.Fatalf("the download succeeded although its server stopped; %v", res)
	}
	n.restart()
	d = oneDone(t, c.ok(down...))
	checkDone(t, d, "download", "big.bin", size, sum)
	if *d.Skipped <= 0 {
		t.Errorf("the download after the restart skipped nothing")
	}
	if got := sha256File(t, dst); got != sum {
		t.Errorf("downloaded file has SHA-256 %s, want %s", got, sum)
	}
}
