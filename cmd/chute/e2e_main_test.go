package main

// Helpers for the end-to-end tests: the chute binary (built once per run),
// transfer nodes started as real `chute server` processes on 127.0.0.1,
// clients with their own CHUTE_HOME, and files of known content.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chute/chute/internal/testenv"
)

// chuteBin is the chute binary the tests run; e2eDir holds it and the
// files shared between tests.
var chuteBin, e2eDir string

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "chute-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	e2eDir = dir
	chuteBin = filepath.Join(dir, "chute")
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	build := exec.Command(goTool, "build", "-o", chuteBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building the chute binary:", err)
		return 1
	}
	return m.Run()
}

// cmdTimeout bounds every chute invocation: generous, since other jobs load
// the machine; a command that hangs fails the test instead of the run.
const cmdTimeout = 5 * time.Minute

// bigSize is the size of the large file: at least 256 MiB, and odd, so the
// last packet and the last part are short. -short runs use a smaller one.
func bigSize() int64 {
	if testing.Short() {
		return 32<<20 + 3
	}
	return 256<<20 + 3
}

// freePort finds a port number free for both TCP and UDP on 127.0.0.1.
func freePort(t testing.TB) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		return port
	}
	t.Fatal("no port free for both TCP and UDP on 127.0.0.1")
	return 0
}

// node is a `chute server` process.
type node struct {
	t       testing.TB
	data    string
	port    int
	buckets []string
	flags   []string // more server flags

	cmd    *exec.Cmd
	stdout *testenv.Buffer
	stderr *testenv.Buffer
	exited chan struct{}
	err    error // from Wait, once exited is closed
	logs   []string
}

// startNode starts a server with a fresh data folder on a free port.
func startNode(t testing.TB, buckets ...string) *node {
	t.Helper()
	return newNode(t, 0, buckets)
}

// startNodeOn starts a server with a fresh data folder on the given port.
func startNodeOn(t testing.TB, port int, buckets ...string) *node {
	t.Helper()
	return newNode(t, port, buckets)
}

func newNode(t testing.TB, port int, buckets []string, flags ...string) *node {
	t.Helper()
	n := &node{t: t, data: t.TempDir(), buckets: buckets, flags: flags}
	// The server needs the file; the tests add keys as they go.
	if err := os.WriteFile(filepath.Join(n.data, "authorized_keys"), []byte("# chute e2e tests\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for attempt := 0; ; attempt++ {
		n.port = port
		if port == 0 {
			n.port = freePort(t)
		}
		err := n.start()
		if err == nil {
			break
		}
		if port == 0 && attempt < 3 && strings.Contains(err.Error(), "address already in use") {
			continue // someone took the port in between
		}
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n.kill()
		if t.Failed() {
			for i, l := range n.logs {
				t.Logf("server run %d:\n%s", i+1, l)
			}
		}
	})
	return n
}

// start runs the server process and waits until it says where it listens.
func (n *node) start() error {
	args := []string{"server", "--data", n.data, "--listen", "127.0.0.1:" + strconv.Itoa(n.port), "-v"}
	for _, b := range n.buckets {
		args = append(args, "--bucket", b)
	}
	args = append(args, n.flags...)
	n.stdout, n.stderr = &testenv.Buffer{}, &testenv.Buffer{}
	n.cmd = exec.Command(chuteBin, args...)
	n.cmd.Env = append(os.Environ(), "TZ=UTC")
	n.cmd.Stdout, n.cmd.Stderr = n.stdout, n.stderr
	if err := n.cmd.Start(); err != nil {
		return err
	}
	n.exited = make(chan struct{})
	go func() {
		n.err = n.cmd.Wait()
		close(n.exited)
	}()
	deadline := time.After(time.Minute)
	for !strings.Contains(n.stdout.String(), "chute server: control (SSH) on tcp") {
		select {
		case <-n.exited:
			n.logs = append(n.logs, n.output())
			return fmt.Errorf("chute server exited before listening: %v\n%s", n.err, n.output())
		case <-deadline:
			n.cmd.Process.Kill()
			<-n.exited
			return fmt.Errorf("chute server did not say where it listens within a minute\n%s", n.output())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// output is what the current server process printed.
func (n *node) output() string {
	return "stdout:\n" + n.stdout.String() + "stderr:\n" + n.stderr.String()
}

// restart starts the server again on the same port and data folder.
func (n *node) restart() {
	n.t.Helper()
	if err := n.start(); err != nil {
		n.t.Fatal(err)
	}
}

// kill sends SIGKILL and waits for the process to end.
func (n *node) kill() {
	if n.cmd == nil {
		return
	}
	select {
	case <-n.exited:
	default:
		n.cmd.Process.Kill()
		<-n.exited
	}
	n.logs = append(n.logs, n.output())
	n.cmd = nil
}

// stop sends sig and returns the exit status once the process ends.
func (n *node) stop(sig os.Signal) int {
	n.t.Helper()
	if err := n.cmd.Process.Signal(sig); err != nil {
		n.t.Fatal(err)
	}
	select {
	case <-n.exited:
	case <-time.After(time.Minute):
		n.t.Fatalf("chute server still running a minute after %v\n%s", sig, n.output())
	}
	n.logs = append(n.logs, n.output())
	n.cmd = nil
	return exitCode(n.err)
}

// running reports whether the server process is still alive.
func (n *node) running() bool {
	if n.cmd == nil {
		return false
	}
	select {
	case <-n.exited:
		return false
	default:
		return true
	}
}

// url is the chute:// location of path ("bucket/key") on this node.
func (n *node) url(path string) string {
	return "chute://127.0.0.1:" + strconv.Itoa(n.port) + "/" + path
}

// objectPath is where the folder store keeps an object
// (DATA/objects/BUCKET/KEY).
func (n *node) objectPath(bucket, key string) string {
	return filepath.Join(n.data, "objects", bucket, filepath.FromSlash(key))
}

// authorize appends a line to the server's authorized_keys file (read
// again by the server whenever it changes).
func (n *node) authorize(options, pubLine string) {
	n.t.Helper()
	line := strings.TrimSpace(pubLine)
	if options != "" {
		line = options + " " + line
	}
	f, err := os.OpenFile(filepath.Join(n.data, "authorized_keys"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		n.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(line + "\n"); err != nil {
		n.t.Fatal(err)
	}
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	return -1
}

// client is a user of chute: a CHUTE_HOME with a key made by `chute keygen`.
type client struct {
	t    testing.TB
	home string
	key  string // private key file
	pub  string // public key line, as keygen printed it
}

// as returns the same client reporting to t (a subtest).
func (c *client) as(t testing.TB) *client {
	d := *c
	d.t = t
	return &d
}

func newClient(t testing.TB) *client {
	t.Helper()
	c := &client{t: t, home: t.TempDir()}
	c.key = filepath.Join(c.home, "id_ed25519")
	r := c.run("keygen", "--out", c.key, "--comment", "e2e@test")
	if r.code != 0 {
		t.Fatalf("chute keygen: exit %d\n%s", r.code, r.stderr)
	}
	c.pub = strings.TrimSpace(r.stdout)
	if !strings.HasPrefix(c.pub, "ssh-ed25519 ") {
		t.Fatalf("chute keygen printed %q, want an ssh-ed25519 public key line", r.stdout)
	}
	return c
}

// result is how a finished chute command went.
type result struct {
	args           []string
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("chute %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
}

func (c *client) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, chuteBin, args...)
	cmd.Env = append(os.Environ(), "CHUTE_HOME="+c.home, "TZ=UTC")
	return cmd
}

// run runs chute to the end.
func (c *client) run(args ...string) result {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := c.command(ctx, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		c.t.Fatalf("chute %s did not finish within %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), cmdTimeout, stdout.String(), stderr.String())
	}
	if err != nil && exitCode(err) < 0 {
		c.t.Fatalf("chute %s: %v", strings.Join(args, " "), err)
	}
	return result{args: args, code: exitCode(err), stdout: stdout.String(), stderr: stderr.String()}
}

// ok runs chute and fails the test unless it exits 0.
func (c *client) ok(args ...string) result {
	c.t.Helper()
	r := c.run(args...)
	if r.code != 0 {
		c.t.Fatalf("want exit 0; %v", r)
	}
	return r
}

// fails runs chute and fails the test unless it exits non-zero with a
// message on stderr that holds every one of wants.
func (c *client) fails(wants []string, args ...string) result {
	c.t.Helper()
	r := c.run(args...)
	if r.code == 0 {
		c.t.Fatalf("want a non-zero exit; %v", r)
	}
	for _, w := range wants {
		if !strings.Contains(r.stderr, w) {
			c.t.Errorf("stderr does not say %q; %v", w, r)
		}
	}
	return r
}

// running is a chute command in progress; the test reads its --json
// output as it grows.
type running struct {
	t      testing.TB
	cmd    *exec.Cmd
	stdout *testenv.Buffer
	stderr *testenv.Buffer
	exited chan struct{}
	err    error
}

// start starts chute in the background.
func (c *client) start(args ...string) *running {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	r := &running{t: c.t, stdout: &testenv.Buffer{}, stderr: &testenv.Buffer{}, exited: make(chan struct{})}
	r.cmd = c.command(ctx, args...)
	r.cmd.Stdout, r.cmd.Stderr = r.stdout, r.stderr
	if err := r.cmd.Start(); err != nil {
		cancel()
		c.t.Fatal(err)
	}
	go func() {
		r.err = r.cmd.Wait()
		close(r.exited)
	}()
	c.t.Cleanup(func() {
		r.cmd.Process.Kill()
		<-r.exited
		cancel()
	})
	return r
}

// progressDone returns the largest bytes_done of the progress events
// printed so far.
func (r *running) progressDone() int64 {
	var best int64
	for _, ev := range parseEvents(r.stdout.String()) {
		if ev["type"] == "progress" {
			if d, ok := ev["bytes_done"].(float64); ok && int64(d) > best {
				best = int64(d)
			}
		}
	}
	return best
}

// waitFor polls until cond holds; it fails the test if the command ends or
// a long time passes first.
func (r *running) waitFor(what string, cond func() bool) {
	r.t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for !cond() {
		select {
		case <-r.exited:
			r.t.Fatalf("chute %s ended (%v) before %s\nstdout:\n%s\nstderr:\n%s", strings.Join(r.cmd.Args[1:], " "), r.err, what, r.stdout.String(), r.stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("waited 3 minutes for %s\nstdout:\n%s\nstderr:\n%s", what, r.stdout.String(), r.stderr.String())
		}
	}
}

// kill9 sends SIGKILL and waits for the end.
func (r *running) kill9() {
	r.t.Helper()
	if err := r.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		r.t.Fatal(err)
	}
	<-r.exited
	if c := exitCode(r.err); c != 128+int(syscall.SIGKILL) {
		r.t.Fatalf("chute ended with status %d before SIGKILL reached it\nstdout:\n%s\nstderr:\n%s", c, r.stdout.String(), r.stderr.String())
	}
}

// wait waits for the command to end and returns how it went.
func (r *running) wait() result {
	r.t.Helper()
	<-r.exited
	code := exitCode(r.err)
	if code < 0 {
		r.t.Fatalf("chute %s: %v", strings.Join(r.cmd.Args[1:], " "), r.err)
	}
	return result{args: r.cmd.Args[1:], code: code, stdout: r.stdout.String(), stderr: r.stderr.String()}
}

// parseEvents reads --json output: one object per line.
func parseEvents(out string) []map[string]any {
	var evs []map[string]any
	for line := range strings.SplitSeq(out, "\n") {
		var ev map[string]any
		if json.Unmarshal([]byte(line), &ev) == nil {
			evs = append(evs, ev)
		}
	}
	return evs
}

// doneEvent is a "done" line of cp --json.
type doneEvent struct {
	Type      string   `json:"type"`
	Direction string   `json:"direction"`
	Bucket    string   `json:"bucket"`
	Key       string   `json:"key"`
	Local     string   `json:"local"`
	Bytes     *int64   `json:"bytes"`
	Seconds   *float64 `json:"seconds"`
	Goodput   *float64 `json:"goodput_bps"`
	Sent      *int64   `json:"bytes_sent"`
	Retrans   *int64   `json:"bytes_retransmitted"`
	Skipped   *int64   `json:"bytes_skipped"`
	SHA256    string   `json:"sha256"`
}

// doneEvents returns the "done" lines of cp --json output, checking that
// every one carries the summary fields the README promises, and that the
// output ends with a summary line.
func doneEvents(t testing.TB, r result) []doneEvent {
	t.Helper()
	var out []doneEvent
	var summary bool
	for line := range strings.SplitSeq(strings.TrimSpace(r.stdout), "\n") {
		var kind struct{ Type string }
		if err := json.Unmarshal([]byte(line), &kind); err != nil {
			t.Fatalf("--json printed a line that is not JSON: %q (%v)", line, err)
		}
		switch kind.Type {
		case "done":
			var d doneEvent
			if err := json.Unmarshal([]byte(line), &d); err != nil {
				t.Fatalf("done line %q: %v", line, err)
			}
			if d.Bytes == nil || d.Seconds == nil || d.Goodput == nil || d.Retrans == nil || d.Skipped == nil || d.Sent == nil {
				t.Fatalf("done line lacks bytes, seconds, goodput_bps, bytes_sent, bytes_retransmitted or bytes_skipped: %s", line)
			}
			if *d.Seconds < 0 || *d.Goodput < 0 || *d.Retrans < 0 || *d.Skipped < 0 || *d.Skipped > *d.Bytes {
				t.Errorf("done line with impossible figures: %s", line)
			}
			// A folder's marker is put, not transferred, and an object the
			// far side already held is skipped after the resume policy's
			// checks (sparse: samples only): neither has a whole checksum.
			if len(d.SHA256) != 64 && !(d.SHA256 == "" && *d.Skipped == *d.Bytes) {
				t.Errorf("done line without a SHA-256: %s", line)
			}
			out = append(out, d)
		case "summary":
			summary = true
		case "progress", "error":
		default:
			t.Errorf("--json line of unknown type %q: %s", kind.Type, line)
		}
	}
	if !summary {
		t.Errorf("--json output has no summary line\n%s", r.stdout)
	}
	return out
}

// oneDone returns the only "done" line of r.
func oneDone(t testing.TB, r result) doneEvent {
	t.Helper()
	ds := doneEvents(t, r)
	if len(ds) != 1 {
		t.Fatalf("want one done line, got %d\n%v", len(ds), r)
	}
	return ds[0]
}

// makeFile writes size bytes of seeded pseudo-random data to path and
// returns their SHA-256 in hex.
func makeFile(t testing.TB, path string, size int64, seed uint64) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	h := sha256.New()
	w := bufio.NewWriterSize(io.MultiWriter(f, h), 1<<20)
	if _, err := io.CopyN(w, rand.NewChaCha8(s), size); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func sha256File(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

var big struct {
	once sync.Once
	path string
	sum  string
}

// bigFile returns a file of bigSize bytes shared by the tests (they only
// read it), and its SHA-256.
func bigFile(t testing.TB) (string, string) {
	t.Helper()
	big.once.Do(func() {
		p := filepath.Join(e2eDir, "big.bin")
		big.sum = makeFile(t, p, bigSize(), 256)
		big.path = p
	})
	if big.path == "" {
		t.Fatal("the shared large file could not be made")
	}
	return big.path, big.sum
}

// checkpoints lists the upload checkpoints a client keeps between runs.
func (c *client) checkpoints() []string {
	m, _ := filepath.Glob(filepath.Join(c.home, "transfers", "*.json"))
	return m
}
