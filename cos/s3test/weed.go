// Package s3test runs SeaweedFS as a real S3 server for tests and
// benchmarks: Start and Shared for tests, StartWeed for programs.
//
// Each instance listens on free ports of one IP address, keeps its data in
// its own folder, and checks signatures against one generated access key.
// SeaweedFS also keeps unix sockets in /tmp named after its gRPC ports
// (seaweedfs-<kind>-grpc-<port>.sock); an instance removes stale ones for
// its own ports before it starts and after it stops, and never takes a port
// whose socket another live instance holds, so parallel test packages (and
// instances in other network namespaces) do not collide.
package s3test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/chute/chute/cos"
)

// Options configures StartWeed.
type Options struct {
	// Binary is the weed executable. Required.
	Binary string
	// Dir holds the server's data, and survives Restart. "" means a new
	// temporary folder, removed by Close.
	Dir string
	// BindIP is the address every port listens on; "" means 127.0.0.1.
	BindIP string
	// AccessKey and SecretKey are the one identity the server accepts;
	// "" means generated ones.
	AccessKey, SecretKey string
	// Region is what clients sign with; "" means "us-east-1" (SeaweedFS
	// accepts any).
	Region string
	// Log receives the server's output as well as the in-memory tail
	// Logs returns.
	Log io.Writer
	// StartTimeout bounds the wait for the S3 endpoint; 0 means 90s.
	StartTimeout time.Duration
}

// Weed is a running SeaweedFS server with its S3 gateway.
type Weed struct {
	Endpoint  string // http://ip:port
	Region    string
	AccessKey string
	SecretKey string
	Dir       string // the data folder

	opt     Options
	ownDir  bool
	ports   ports
	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
	exitErr error
	log     *tail
}

// ports are the eight TCP ports of one instance.
type ports struct {
	master, masterGRPC, volume, volumeGRPC, filer, filerGRPC, s3, s3GRPC int
}

func (p ports) grpc() map[string]int {
	return map[string]int{"master": p.masterGRPC, "volume": p.volumeGRPC, "filer": p.filerGRPC, "s3": p.s3GRPC}
}

// socketPath is where SeaweedFS puts the unix socket of a gRPC port.
func socketPath(kind string, port int) string {
	return fmt.Sprintf("/tmp/seaweedfs-%s-grpc-%d.sock", kind, port)
}

// StartWeed starts a server and waits until its S3 endpoint accepts a
// signed write.
func StartWeed(ctx context.Context, opt Options) (*Weed, error) {
	if opt.Binary == "" {
		return nil, errors.New("s3test: no weed binary given")
	}
	if _, err := os.Stat(opt.Binary); err != nil {
		return nil, fmt.Errorf("s3test: weed binary: %w", err)
	}
	if opt.BindIP == "" {
		opt.BindIP = "127.0.0.1"
	}
	if opt.Region == "" {
		opt.Region = "us-east-1"
	}
	if opt.AccessKey == "" {
		opt.AccessKey = "CHUTE" + strings.ToUpper(randomHex(8))
	}
	if opt.SecretKey == "" {
		opt.SecretKey = randomHex(20)
	}
	if opt.StartTimeout == 0 {
		opt.StartTimeout = 90 * time.Second
	}
	w := &Weed{Region: opt.Region, AccessKey: opt.AccessKey, SecretKey: opt.SecretKey, opt: opt, log: newTail(400)}
	if opt.Dir == "" {
		d, err := os.MkdirTemp("", "chute-weed-")
		if err != nil {
			return nil, fmt.Errorf("s3test: %w", err)
		}
		opt.Dir, w.ownDir = d, true
	}
	w.Dir = opt.Dir
	w.opt = opt
	if err := w.writeConfig(); err != nil {
		w.cleanupDir()
		return nil, err
	}
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if w.ports, err = freePorts(opt.BindIP); err != nil {
			break
		}
		w.Endpoint = "http://" + net.JoinHostPort(opt.BindIP, strconv.Itoa(w.ports.s3))
		if err = w.start(ctx); err == nil {
			return w, nil
		}
		if !errors.Is(err, errPortTaken) {
			break
		}
	}
	w.cleanupDir()
	return nil, err
}

var errPortTaken = errors.New("a port was taken by another process")

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (w *Weed) writeConfig() error {
	if err := os.MkdirAll(filepath.Join(w.Dir, "data"), 0o755); err != nil {
		return fmt.Errorf("s3test: %w", err)
	}
	type cred struct {
		AccessKey string `json:"accessKey"`
		SecretKey string `json:"secretKey"`
	}
	type identity struct {
		Name        string   `json:"name"`
		Credentials []cred   `json:"credentials"`
		Actions     []string `json:"actions"`
	}
	cfg := map[string][]identity{"identities": {{
		Name:        "chute",
		Credentials: []cred{{w.AccessKey, w.SecretKey}},
		Actions:     []string{"Admin", "Read", "Write", "List", "Tagging"},
	}}}
	b, _ := json.MarshalIndent(cfg, "", "  ")
	if err := os.WriteFile(filepath.Join(w.Dir, "s3.json"), b, 0o600); err != nil {
		return fmt.Errorf("s3test: %w", err)
	}
	// weed reads master.toml from its working folder: grow one volume per
	// bucket (collection) instead of seven, so many test buckets fit.
	// And allocate at once: the first allocation of a fresh topology
	// otherwise waits for volume servers that a test setup does not have.
	master := "[master.volume_growth]\ncopy_1 = 1\ncopy_2 = 1\ncopy_3 = 1\ncopy_other = 1\nallocation_deferral = \"0s\"\n"
	if err := os.WriteFile(filepath.Join(w.Dir, "master.toml"), []byte(master), 0o644); err != nil {
		return fmt.Errorf("s3test: %w", err)
	}
	// And filer.toml: the filer removes folders its last object leaves
	// after a delay (2m by default); S3 has no empty prefixes at all.
	filer := fmt.Sprintf("[filer.options]\ns3.empty_folder_cleanup_delay = \"1s\"\n\n[leveldb2]\nenabled = true\ndir = %q\n",
		filepath.Join(w.Dir, "data", "filerldb2"))
	if err := os.WriteFile(filepath.Join(w.Dir, "filer.toml"), []byte(filer), 0o644); err != nil {
		return fmt.Errorf("s3test: %w", err)
	}
	return nil
}

// freePorts picks eight free ports on ip whose gRPC sockets no live
// instance holds.
func freePorts(ip string) (ports, error) {
	var got []int
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	for len(got) < 8 {
		l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			return ports{}, fmt.Errorf("s3test: finding a free port on %s: %w", ip, err)
		}
		lns = append(lns, l)
		got = append(got, l.Addr().(*net.TCPAddr).Port)
	}
	p := ports{got[0], got[1], got[2], got[3], got[4], got[5], got[6], got[7]}
	for kind, port := range p.grpc() {
		if socketLive(socketPath(kind, port)) {
			return freePorts(ip) // another namespace's instance owns it
		}
	}
	return p, nil
}

// socketLive reports whether a process accepts connections on a unix
// socket.
func socketLive(path string) bool {
	c, err := net.DialTimeout("unix", path, 200*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func (w *Weed) removeSockets() {
	for kind, port := range w.ports.grpc() {
		p := socketPath(kind, port)
		if !socketLive(p) {
			os.Remove(p)
		}
	}
}

func (w *Weed) args() []string {
	p := w.ports
	ip := w.opt.BindIP
	return []string{
		"server",
		"-dir=" + filepath.Join(w.Dir, "data"),
		"-ip=" + ip, "-ip.bind=" + ip,
		"-master.port=" + strconv.Itoa(p.master), "-master.port.grpc=" + strconv.Itoa(p.masterGRPC),
		"-volume.port=" + strconv.Itoa(p.volume), "-volume.port.grpc=" + strconv.Itoa(p.volumeGRPC),
		"-filer.port=" + strconv.Itoa(p.filer), "-filer.port.grpc=" + strconv.Itoa(p.filerGRPC),
		"-s3", "-s3.port=" + strconv.Itoa(p.s3), "-s3.port.grpc=" + strconv.Itoa(p.s3GRPC),
		"-s3.config=" + filepath.Join(w.Dir, "s3.json"),
		"-s3.autoCreateBucket=false", // a missing bucket is an error, as on AWS
		"-s3.port.iceberg=0", "-s3.port.lance=0",
		"-filer.localSocket=" + filepath.Join(w.Dir, "filer.sock"),
		"-s3.localSocket=" + filepath.Join(w.Dir, "s3.sock"),
		"-master.volumeSizeLimitMB=64", "-volume.max=0",
		"-volume.preStopSeconds=0",
		// One master: it need not wait long for peers after a restart.
		"-master.electionTimeout=1s",
	}
}

func (w *Weed) start(ctx context.Context) error {
	w.removeSockets()
	os.Remove(filepath.Join(w.Dir, "filer.sock"))
	os.Remove(filepath.Join(w.Dir, "s3.sock"))
	cmd := exec.Command(w.opt.Binary, w.args()...)
	cmd.Dir = w.Dir
	var out io.Writer = w.log
	if w.opt.Log != nil {
		out = io.MultiWriter(w.log, w.opt.Log)
	}
	cmd.Stdout, cmd.Stderr = out, out
	// Die with the test process, and alone: a signal to the test's process
	// group must not reach it before its cleanup runs.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	fmt.Fprintf(w.log, "s3test: starting %s %s\n", w.opt.Binary, strings.Join(w.args(), " "))
	done := make(chan struct{})
	started := make(chan error, 1)
	go func() {
		// The parent-death signal follows the thread that forked: keep
		// that thread for as long as the child lives.
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		w.mu.Lock()
		w.cmd, w.done, w.exitErr = cmd, done, nil
		w.mu.Unlock()
		started <- nil
		err := cmd.Wait()
		w.mu.Lock()
		w.exitErr = err
		w.mu.Unlock()
		close(done)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("s3test: starting weed: %w", err)
	}
	if err := w.waitReady(ctx, done); err != nil {
		w.Kill()
		if strings.Contains(w.log.String(), "address already in use") {
			return fmt.Errorf("%w: %v", errPortTaken, err)
		}
		return fmt.Errorf("%w\n--- weed log (tail) ---\n%s", err, w.Logs())
	}
	return nil
}

// waitReady polls until a signed bucket creation, write and delete work:
// the S3 port answers well before the filer and volumes are ready.
func (w *Weed) waitReady(ctx context.Context, done chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, w.opt.StartTimeout)
	defer cancel()
	var last error
	probe := "chute-probe-" + randomHex(4)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return fmt.Errorf("s3test: weed exited while starting: %v", w.exitErr)
		case <-ctx.Done():
			return fmt.Errorf("s3test: the S3 endpoint %s was not ready within %s: %v", w.Endpoint, w.opt.StartTimeout, last)
		case <-tick.C:
		}
		if last = w.probe(ctx, probe); last == nil {
			return nil
		}
	}
}

func (w *Weed) probe(ctx context.Context, bucket string) error {
	resp, err := http.Get(w.Endpoint + "/")
	if err != nil {
		return err
	}
	resp.Body.Close()
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	store, err := cos.NewS3Unchecked(w.config(1))
	if err != nil {
		return err
	}
	if err := store.CreateBucket(rctx, bucket); err != nil && !errors.Is(err, cos.ErrExists) {
		return err
	}
	if _, err := store.Put(rctx, bucket, "probe", strings.NewReader("ok"), 2, cos.Meta{}); err != nil {
		return err
	}
	return store.Delete(rctx, bucket, "probe")
}

// Config returns an S3Config for this server (path-style addressing).
func (w *Weed) Config() cos.S3Config { return w.config(0) }

func (w *Weed) config(retries int) cos.S3Config {
	return cos.S3Config{
		Endpoint:   w.Endpoint,
		Region:     w.Region,
		Addressing: "path",
		AccessKey:  w.AccessKey,
		SecretKey:  w.SecretKey,
		MaxRetries: retries,
		Logger:     slog.New(slog.DiscardHandler),
	}
}

// Store connects a cos.S3 to the server.
func (w *Weed) Store(ctx context.Context) (*cos.S3, error) {
	cfg := w.Config()
	cfg.Logger = nil
	return cos.NewS3(ctx, cfg)
}

// CreateBucket makes a bucket.
func (w *Weed) CreateBucket(ctx context.Context, name string) error {
	s, err := cos.NewS3Unchecked(w.Config())
	if err != nil {
		return err
	}
	return s.CreateBucket(ctx, name)
}

// PID returns the server's process id, or 0 when it is not running.
func (w *Weed) PID() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cmd == nil || w.cmd.Process == nil {
		return 0
	}
	return w.cmd.Process.Pid
}

// Logs returns the tail of the server's output.
func (w *Weed) Logs() string { return w.log.String() }

// Kill stops the server at once (SIGKILL), as a crash would, and removes
// its sockets.
func (w *Weed) Kill() error { return w.stop(syscall.SIGKILL, 0) }

// Stop stops the server gracefully: SIGTERM, then SIGKILL after 3s (its
// volume server and filer stop at once; its S3 gateway can linger).
func (w *Weed) Stop() error { return w.stop(syscall.SIGTERM, 3*time.Second) }

func (w *Weed) stop(sig syscall.Signal, grace time.Duration) error {
	w.mu.Lock()
	cmd, done := w.cmd, w.done
	w.cmd = nil
	w.mu.Unlock()
	if cmd == nil {
		return nil
	}
	cmd.Process.Signal(sig)
	if grace > 0 {
		select {
		case <-done:
		case <-time.After(grace):
			cmd.Process.Kill()
		}
	}
	<-done
	w.removeSockets()
	fmt.Fprintf(w.log, "s3test: weed stopped (%v)\n", sig)
	return nil
}

// Restart starts the server again on the same ports and data, after Kill
// or Stop (it stops a running one first).
func (w *Weed) Restart(ctx context.Context) error {
	if err := w.Stop(); err != nil {
		return err
	}
	return w.start(ctx)
}

// Close stops the server and removes its data folder if StartWeed made it.
func (w *Weed) Close() error {
	err := w.Stop()
	w.cleanupDir()
	return err
}

func (w *Weed) cleanupDir() {
	if w.ownDir {
		os.RemoveAll(w.Dir)
	}
}

// tail keeps the last lines written to it.
type tail struct {
	mu    sync.Mutex
	max   int
	lines []string
	part  []byte
}

func newTail(max int) *tail { return &tail{max: max} }

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.part = append(t.part, p...)
	for {
		i := bytes.IndexByte(t.part, '\n')
		if i < 0 {
			break
		}
		t.lines = append(t.lines, string(t.part[:i]))
		t.part = t.part[i+1:]
		if len(t.lines) > t.max {
			t.lines = t.lines[len(t.lines)-t.max:]
		}
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := strings.Join(t.lines, "\n")
	if len(t.part) > 0 {
		s += "\n" + string(t.part)
	}
	return s
}

// Sockets returns the unix-socket paths the server's gRPC ports use in
// /tmp.
func (w *Weed) Sockets() []string {
	var out []string
	for kind, port := range w.ports.grpc() {
		out = append(out, socketPath(kind, port))
	}
	return out
}
