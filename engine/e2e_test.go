package engine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/chute/chute/cos"
)

// testNode is a server on loopback with one authorized client key.
type testNode struct {
	srv     *Server
	dir     string
	keyPath string
	known   string
	cancel  context.CancelFunc
	done    chan struct{}
}

// startNode starts a server whose authorized_keys holds the lines given
// (use "%s" for the client's public key).
func startNode(t testing.TB, store cos.Store, authLine string, buckets ...string) *testNode {
	t.Helper()
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "client", "id_ed25519")
	pub, err := GenerateKey(keyPath, "test")
	if err != nil {
		t.Fatal(err)
	}
	if authLine == "" {
		authLine = "%s"
	}
	data := filepath.Join(dir, "node")
	os.MkdirAll(data, 0o700)
	if err := os.WriteFile(filepath.Join(data, "authorized_keys"), []byte(fmt.Sprintf(authLine, pub)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if len(buckets) == 0 {
		buckets = []string{"photos"}
	}
	n := &testNode{dir: dir, keyPath: keyPath, known: filepath.Join(dir, "client", "known_hosts")}
	n.start(t, data, store, buckets)
	return n
}

func (n *testNode) start(t testing.TB, data string, store cos.Store, buckets []string) {
	t.Helper()
	srv, err := NewServer(ServerConfig{DataDir: data, Store: store, Listen: "127.0.0.1:0", Buckets: buckets, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.srv, n.cancel, n.done = srv, cancel, make(chan struct{})
	go func() {
		defer close(n.done)
		srv.Serve(ctx)
	}()
	t.Cleanup(n.stop)
}

func (n *testNode) stop() {
	n.cancel()
	<-n.done
}

// config is a client configuration with the node's client key.
func (n *testNode) config(t testing.TB) ClientConfig {
	t.Helper()
	signer, err := LoadKey(n.keyPath)
	if err != nil {
		t.Fatal(err)
	}
	return ClientConfig{Signer: signer, KnownHosts: n.known, Logger: quietLog()}
}

func (n *testNode) dial(t testing.TB, mod func(*ClientConfig)) (*Client, error) {
	t.Helper()
	cfg := n.config(t)
	if mod != nil {
		mod(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := Dial(ctx, n.srv.Addr().String(), cfg)
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

func (n *testNode) client(t testing.TB) *Client {
	t.Helper()
	c, err := n.dial(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// testLogger logs to stderr when CHUTE_TEST_LOG is set.

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestUploadDownloadSizes(t *testing.T) {
	n := startNode(t, nil, "")
	c := n.client(t)
	ctx := context.Background()
	for _, size := range []int{0, 1, 1400, MaxInline, MaxInline + 1, 3<<20 + 7, 16<<20 + 1, 40 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			data := randomBytes(size, uint64(size))
			key := fmt.Sprintf("dir with space/é-%d.bin", size)
			mtime := time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.UTC)
			res, err := c.Upload(ctx, UploadRequest{Bucket: "photos", Key: key, Source: bytes.NewReader(data), Size: int64(size), Meta: cos.Meta{Mtime: mtime, Mode: 0o100640}})
			if err != nil {
				t.Fatal(err)
			}
			if res.SHA256 != sha(data) {
				t.Fatalf("upload SHA-256 %s, want %s", res.SHA256, sha(data))
			}
			if res.Object.Size != int64(size) {
				t.Fatalf("committed size %d", res.Object.Size)
			}
			info, err := c.Stat(ctx, "photos", key)
			if err != nil {
				t.Fatal(err)
			}
			if !info.Meta.Mtime.Equal(mtime.Truncate(time.Microsecond)) && info.Meta.Mtime.UnixMilli() != mtime.UnixMilli() {
				t.Errorf("mtime %v, want %v", info.Meta.Mtime, mtime)
			}
			dest := &memFile{}
			dres, err := c.Download(ctx, DownloadRequest{Bucket: "photos", Key: key, Length: -1, Dest: dest})
			if err != nil {
				t.Fatal(err)
			}
			got := dest.bytes()
			if len(got) < size {
				got = append(got, make([]byte, size-len(got))...)
			}
			if !bytes.Equal(got[:size], data) {
				t.Fatal("downloaded bytes differ")
			}
			if dres.SHA256 != sha(data) {
				t.Fatalf("download SHA-256 %s, want %s", dres.SHA256, sha(data))
			}
			if dres.Sent < int64(size) {
				t.Errorf("download reports %d bytes sent by the server, want at least %d", dres.Sent, size)
			}
			// A range in the middle.
			if size > 10 {
				part := &memFile{}
				if _, err := c.Download(ctx, DownloadRequest{Bucket: "photos", Key: key, Offset: int64(size / 3), Length: int64(size / 3), Dest: part}); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(part.bytes()[size/3:size/3*2], data[size/3:size/3*2]) {
					t.Fatal("ranged download differs")
				}
			}
		})
	}
	// Past what a data packet's offset holds: refused at once, nothing sent.
	t.Run("beyond MaxObjectSize", func(t *testing.T) {
		_, err := c.Upload(ctx, UploadRequest{Bucket: "photos", Key: "huge.bin", Source: bytes.NewReader(nil), Size: MaxObjectSize + 1})
		if !errors.Is(err, cos.ErrTooLarge) || !strings.Contains(err.Error(), "huge.bin") {
			t.Fatalf("upload of %d bytes: %v, want cos.ErrTooLarge naming the key", int64(MaxObjectSize+1), err)
		}
		if _, err := c.Stat(ctx, "photos", "huge.bin"); !errors.Is(err, cos.ErrNotFound) {
			t.Fatalf("after the refused upload, stat: %v, want not found", err)
		}
	})
}

func TestUploadResumesAfterInterruption(t *testing.T) {
	n := startNode(t, nil, "")
	c := n.client(t)
	ctx := context.Background()
	data := randomBytes(24<<20, 9)
	meta := cos.Meta{Mtime: time.Unix(1700000000, 5e8)}
	// Stop the upload (as Ctrl-C would) once a good part is acknowledged.
	uctx, stop := context.WithCancel(ctx)
	go func() {
		for uctx.Err() == nil {
			for _, s := range c.Transfers() {
				if s.Done >= 10<<20 {
					stop()
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	_, err := c.Upload(uctx, UploadRequest{Bucket: "photos", Key: "big", Source: bytes.NewReader(data), Size: int64(len(data)), Meta: meta, Rate: Rate{Target: 80e6}})
	stop()
	if err == nil {
		t.Fatal("the stopped upload succeeded")
	}
	// The server made what arrived durable within a moment.
	time.Sleep(600 * time.Millisecond)
	res, err := c.Upload(ctx, UploadRequest{Bucket: "photos", Key: "big", Source: bytes.NewReader(data), Size: int64(len(data)), Meta: meta})
	if err != nil {
		t.Fatal(err)
	}
	if res.Skipped < 8<<20 {
		t.Fatalf("resume skipped %d bytes, want most of the first 10 MiB", res.Skipped)
	}
	if res.SHA256 != sha(data) {
		t.Fatal("checksum differs after resume")
	}
	// Once stored, the same upload is skipped whole (sparse check).
	again, err := c.Upload(ctx, UploadRequest{Bucket: "photos", Key: "big", Source: bytes.NewReader(data), Size: int64(len(data)), Meta: meta})
	if err != nil {
		t.Fatal(err)
	}
	if again.Skipped != int64(len(data)) || again.Sent != 0 {
		t.Fatalf("re-upload of a stored object: skipped %d sent %d, want all skipped", again.Skipped, again.Sent)
	}
	// With resume none everything goes again.
	none, err := c.Upload(ctx, UploadRequest{Bucket: "photos", Key: "big", Source: bytes.NewReader(data), Size: int64(len(data)), Meta: meta, Resume: ResumeNone})
	if err != nil {
		t.Fatal(err)
	}
	if none.Skipped != 0 || none.Sent < int64(len(data)) {
		t.Fatalf("resume none: skipped %d sent %d", none.Skipped, none.Sent)
	}
}

func TestResumeSparseDetectsChangedSource(t *testing.T) {
	n := startNode(t, nil, "")
	c := n.client(t)
	ctx := context.Background()
	store := n.srv.Store()
	mtime := time.Unix(1700000000, 0)
	for _, tc := range []struct {
		policy   ResumePolicy
		wantSkip bool
	}{{ResumeAttrs, true}, {ResumeSparse, false}, {ResumeFull, false}} {
		// An object another tool wrote (no SHA-256 recorded), and a source
		// with the same size and mtime but different bytes at the start,
		// which a sample covers: sparse and full notice, attrs trusts it.
		key := "other-tool/" + string(tc.policy)
		data := randomBytes(20<<20, 11)
		if _, err := store.Put(ctx, "photos", key, bytes.NewReader(data), int64(len(data)), cos.Meta{Mtime: mtime}); err != nil {
			t.Fatal(err)
		}
		changed := append([]byte{}, data...)
		copy(changed, "changed!")
		res, err := c.Upload(ctx, UploadRequest{Bucket: "photos", Key: key, Source: bytes.NewReader(changed), Size: int64(len(changed)), Meta: cos.Meta{Mtime: mtime}, Resume: tc.policy})
		if err != nil {
			t.Fatal(err)
		}
		if skipped := res.Skipped == int64(len(data)); skipped != tc.wantSkip {
			t.Errorf("%s: skipped=%v, want %v", tc.policy, skipped, tc.wantSkip)
		}
		if tc.wantSkip {
			if res.Verified != Verified(tc.policy) {
				t.Errorf("%s: skip reported as verified by %q", tc.policy, res.Verified)
			}
			continue
		}
		if res.SHA256 != sha(changed) || res.Verified != VerifiedSHA256 {
			t.Errorf("%s: stored checksum %s (verified %q), want the changed file's", tc.policy, res.SHA256, res.Verified)
		}
	}

	// An object chute wrote records its SHA-256: even attrs then notices a
	// changed source, and an unchanged one is skipped as verified.
	data := randomBytes(20<<20, 12)
	if _, err := c.Upload(ctx, UploadRequest{Bucket: "photos", Key: "chute-wrote", Source: bytes.NewReader(data), Size: int64(len(data)), Meta: cos.Meta{Mtime: mtime}}); err != nil {
		t.Fatal(err)
	}
	same, err := c.Upload(ctx, UploadRequest{Bucket: "photos", Key: "chute-wrote", Source: bytes.NewReader(data), Size: int64(len(data)), Meta: cos.Meta{Mtime: mtime}, Resume: ResumeAttrs})
	if err != nil {
		t.Fatal(err)
	}
	if same.Skipped != int64(len(data)) || same.Verified != VerifiedSHA256 || same.SHA256 != sha(data) {
		t.Errorf("unchanged source: skipped %d, verified %q, sha %s", same.Skipped, same.Verified, same.SHA256)
	}
	changed := append([]byte{}, data...)
	copy(changed[10<<20:], "in the middle, where no sample looks")
	res, err := c.Upload(ctx, UploadRequest{Bucket: "photos", Key: "chute-wrote", Source: bytes.NewReader(changed), Size: int64(len(changed)), Meta: cos.Meta{Mtime: mtime}, Resume: ResumeAttrs})
	if err != nil {
		t.Fatal(err)
	}
	if res.Skipped == int64(len(changed)) || res.SHA256 != sha(changed) {
		t.Errorf("changed source under attrs: skipped %d, sha %s; want it sent", res.Skipped, res.SHA256)
	}
}

func TestAuthentication(t *testing.T) {
	n := startNode(t, nil, "")
	// A key the server does not know.
	other := filepath.Join(t.TempDir(), "other")
	if _, err := GenerateKey(other, ""); err != nil {
		t.Fatal(err)
	}
	otherSigner, _ := LoadKey(other)
	_, err := n.dial(t, func(cfg *ClientConfig) { cfg.Signer = otherSigner })
	if !errors.Is(err, ErrAuth) {
		t.Fatalf("unknown key: err = %v, want ErrAuth", err)
	}
	if !strings.Contains(err.Error(), "authorized_keys") {
		t.Errorf("message does not say what to do: %v", err)
	}
	// First contact records the host key.
	if _, err := n.dial(t, nil); err != nil {
		t.Fatal(err)
	}
	kh, _ := os.ReadFile(n.known)
	if !bytes.Contains(kh, []byte("ssh-ed25519")) {
		t.Fatalf("known_hosts not written: %q", kh)
	}
	// A different host key at the same address is refused.
	badHost := filepath.Join(t.TempDir(), "hostkey")
	GenerateKey(badHost, "")
	hk, _ := LoadKey(badHost)
	line := strings.Fields(string(kh))
	forged := line[0] + " " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(hk.PublicKey()))) + "\n"
	os.WriteFile(n.known, []byte(forged), 0o600)
	_, err = n.dial(t, nil)
	if !errors.Is(err, ErrHostKeyChanged) {
		t.Fatalf("changed host key: err = %v, want ErrHostKeyChanged", err)
	}
	if !strings.Contains(err.Error(), "line 1") {
		t.Errorf("message does not say which line to fix: %v", err)
	}
}

func TestAccessRestrictions(t *testing.T) {
	mem, err := cos.NewFolder(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	n := startNode(t, mem, `buckets="photos",prefix="run42/" %s`, "photos", "other")
	c := n.client(t)
	ctx := context.Background()
	data := randomBytes(5000, 1)
	put := func(bucket, key string) error {
		_, err := c.Upload(ctx, UploadRequest{Bucket: bucket, Key: key, Source: bytes.NewReader(data), Size: int64(len(data))})
		return err
	}
	if err := put("photos", "run42/a"); err != nil {
		t.Fatalf("allowed upload failed: %v", err)
	}
	for _, tc := range []struct{ bucket, key string }{{"other", "run42/a"}, {"photos", "run43/a"}} {
		if err := put(tc.bucket, tc.key); !errors.Is(err, cos.ErrPermission) {
			t.Errorf("upload to %s/%s: err = %v, want permission denied", tc.bucket, tc.key, err)
		}
		if _, err := c.Download(ctx, DownloadRequest{Bucket: tc.bucket, Key: tc.key, Length: -1, Dest: &memFile{}}); !errors.Is(err, cos.ErrPermission) {
			t.Errorf("download of %s/%s: err = %v, want permission denied", tc.bucket, tc.key, err)
		}
		if _, err := c.Stat(ctx, tc.bucket, tc.key); !errors.Is(err, cos.ErrPermission) {
			t.Errorf("stat of %s/%s: err = %v, want permission denied", tc.bucket, tc.key, err)
		}
	}
	// Nothing reached the other bucket.
	page, err := mem.List(ctx, "other", cos.ListOptions{})
	if err != nil || len(page.Objects) != 0 {
		t.Fatalf("other bucket holds %v (%v)", page.Objects, err)
	}
	// Listing the bucket root shows only the way to the prefix.
	mem.Put(ctx, "photos", "secret", strings.NewReader("x"), 1, cos.Meta{})
	root, err := c.List(ctx, "photos", cos.ListOptions{Delimiter: "/"})
	if err != nil {
		t.Fatal(err)
	}
	if len(root.Objects) != 0 || len(root.CommonPrefixes) != 1 || root.CommonPrefixes[0] != "run42/" {
		t.Fatalf("root listing = %+v, want only run42/", root)
	}

	ro := startNode(t, nil, `read-only %s`)
	rc := ro.client(t)
	if _, err := rc.Upload(ctx, UploadRequest{Bucket: "photos", Key: "x", Source: bytes.NewReader(data), Size: int64(len(data))}); !errors.Is(err, cos.ErrPermission) {
		t.Errorf("read-only key uploaded: %v", err)
	}
	if err := rc.Delete(ctx, "photos", "x"); !errors.Is(err, cos.ErrPermission) {
		t.Errorf("read-only key deleted: %v", err)
	}
}

func TestBadKeysRejected(t *testing.T) {
	n := startNode(t, nil, "")
	c := n.client(t)
	ctx := context.Background()
	for _, key := range []string{"../etc/passwd", "a/../../b", "/abs", "nul\x00byte", "", "a//b"} {
		_, err := c.Upload(ctx, UploadRequest{Bucket: "photos", Key: key, Source: bytes.NewReader([]byte("x")), Size: 1})
		if !errors.Is(err, cos.ErrInvalidKey) {
			t.Errorf("key %q: err = %v, want invalid key", key, err)
		}
		if _, err := c.Download(ctx, DownloadRequest{Bucket: "photos", Key: key, Length: -1, Dest: &memFile{}}); !errors.Is(err, cos.ErrInvalidKey) {
			t.Errorf("download key %q: err = %v, want invalid key", key, err)
		}
	}
	// Nothing escaped the objects folder.
	if _, err := os.Stat(filepath.Join(n.dir, "etc")); err == nil {
		t.Fatal("a file was written outside the store")
	}
}

func TestNotFound(t *testing.T) {
	n := startNode(t, nil, "")
	c := n.client(t)
	ctx := context.Background()
	if _, err := c.Stat(ctx, "photos", "nope"); !errors.Is(err, cos.ErrNotFound) {
		t.Fatalf("stat: %v", err)
	}
	if _, err := c.Download(ctx, DownloadRequest{Bucket: "photos", Key: "nope", Length: -1, Dest: &memFile{}}); !errors.Is(err, cos.ErrNotFound) {
		t.Fatalf("download: %v", err)
	}
}

// TestResumeThroughAnotherServer interrupts a multipart upload through one
// server and finishes it through another in front of the same store,
// sending only what the first did not checkpoint.
func TestResumeThroughAnotherServer(t *testing.T) {
	store, err := cos.NewFolder(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a := startNode(t, store, "")
	ca := a.client(t)
	data := randomBytes(64<<20, 21)
	var mu sync.Mutex
	var state []byte
	ctx, cancel := context.WithCancel(context.Background())
	got2 := make(chan struct{})
	var once sync.Once
	go func() {
		ca.Upload(ctx, UploadRequest{
			Bucket: "photos", Key: "far/big.bin", Source: bytes.NewReader(data), Size: int64(len(data)),
			Rate: Rate{Target: 120e6},
			OnCheckpoint: func(s []byte) {
				mu.Lock()
				state = s
				mu.Unlock()
				if bytes.Contains(s, []byte(`"offset":33554432`)) {
					once.Do(func() { close(got2) })
				}
			},
		})
	}()
	select {
	case <-got2:
	case <-time.After(time.Minute):
		t.Fatal("no checkpoint at two parts")
	}
	// Server A dies.
	a.stop()
	cancel()

	// Server B: a new data folder, the same store.
	b := startNode(t, store, "")
	cb := b.client(t)
	mu.Lock()
	st := state
	mu.Unlock()
	res, err := cb.Upload(context.Background(), UploadRequest{Bucket: "photos", Key: "far/big.bin", Source: bytes.NewReader(data), Size: int64(len(data)), State: st})
	if err != nil {
		t.Fatal(err)
	}
	if res.Skipped < 32<<20 {
		t.Fatalf("server B skipped %d bytes, want at least the two checkpointed parts (32 MiB)", res.Skipped)
	}
	if res.SHA256 != sha(data) {
		t.Fatal("checksum mismatch")
	}
	rc, err := store.Read(context.Background(), "photos", "far/big.bin", cos.ReadOptions{Length: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var buf bytes.Buffer
	buf.ReadFrom(rc)
	if !bytes.Equal(buf.Bytes(), data) {
		t.Fatal("stored object differs")
	}
}

func TestTransfersVisibleAndCancellable(t *testing.T) {
	n := startNode(t, nil, "")
	c := n.client(t)
	data := randomBytes(30<<20, 5)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Upload(context.Background(), UploadRequest{Bucket: "photos", Key: "slow", Source: bytes.NewReader(data), Size: int64(len(data)), Rate: Rate{Target: 40e6}})
		errc <- err
	}()
	var st Stats
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		ts := c.Transfers()
		if len(ts) == 1 && ts[0].Done > 0 {
			st = ts[0]
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st.ID == "" || st.Direction != DirUpload || st.Key != "slow" || st.State != StateRunning {
		t.Fatalf("transfer not listed while running: %+v", st)
	}
	if err := c.SetTransferRate(context.Background(), st.ID, 400e6); err != nil {
		t.Fatal(err)
	}
	if err := c.Cancel(st.ID); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, ErrCancelled) && !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled upload returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("cancel did not stop the upload")
	}
	if _, err := c.Stat(context.Background(), "photos", "slow"); !errors.Is(err, cos.ErrNotFound) {
		t.Fatalf("cancelled upload left an object: %v", err)
	}
}

// TestCommitAfterServerFinished commits only after the server has made the
// whole upload durable and its loop has ended: the commit must still find
// it (a mount's close hit this when the server was quick).
func TestCommitAfterServerFinished(t *testing.T) {
	n := startNode(t, nil, "")
	c := n.client(t)
	testHookBeforeCommit = func() { time.Sleep(700 * time.Millisecond) }
	defer func() { testHookBeforeCommit = nil }()
	for _, size := range []int{1200000, 20 << 20} {
		data := randomBytes(size, 77)
		res, err := c.Upload(context.Background(), UploadRequest{Bucket: "photos", Key: fmt.Sprint("late/", size), Source: bytes.NewReader(data), Size: int64(size)})
		if err != nil {
			t.Fatalf("%d bytes: %v", size, err)
		}
		if res.SHA256 != sha(data) {
			t.Fatal("checksum mismatch")
		}
	}
}

// TestListWithMeta: one listing carries every object's metadata and the
// folders' markers, so a mount far away needs no round trip per entry.
func TestListWithMeta(t *testing.T) {
	n := startNode(t, nil, "")
	c := n.client(t)
	ctx := context.Background()
	mt := time.Unix(1710000000, 0)
	if _, err := c.Put(ctx, "photos", "d/file", []byte("x"), cos.Meta{Mtime: mt, Mode: 0o100640}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, "photos", "d/sub/", nil, cos.Meta{Mtime: mt, Mode: 0o40750}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, "photos", "d/bare/x", []byte("y"), cos.Meta{}); err != nil {
		t.Fatal(err)
	}
	page, err := c.List(ctx, "photos", cos.ListOptions{Prefix: "d/", Delimiter: "/", WithMeta: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Objects) != 1 || !page.Objects[0].HasMeta || page.Objects[0].Meta.Mode != 0o100640 || !page.Objects[0].Meta.Mtime.Equal(mt) {
		t.Fatalf("objects: %+v", page.Objects)
	}
	if len(page.CommonPrefixes) != 2 || len(page.Markers) != 1 || page.Markers[0].Key != "d/sub/" || page.Markers[0].Meta.Mode != 0o40750 {
		t.Fatalf("prefixes %v, markers %+v", page.CommonPrefixes, page.Markers)
	}
	plain, err := c.List(ctx, "photos", cos.ListOptions{Prefix: "d/", Delimiter: "/"})
	if err != nil {
		t.Fatal(err)
	}
	if plain.Markers != nil {
		t.Fatalf("markers without WithMeta: %+v", plain.Markers)
	}
}

// TestPathMemoryStartsTheNextSession: a client with a path memory records
// what a large transfer reached (not what a small one did), and its next
// session to the server starts at half of it, on both ends.
func TestPathMemoryStartsTheNextSession(t *testing.T) {
	n := startNode(t, nil, "")
	mem := filepath.Join(n.dir, "client", "paths.json")
	withMemory := func(cfg *ClientConfig) { cfg.PathMemory = mem }
	c, err := n.dial(t, withMemory)
	if err != nil {
		t.Fatal(err)
	}
	payload := randomBytes(pathMemoryMinBytes+1<<20, 7)
	up, err := c.Upload(context.Background(), UploadRequest{Bucket: "photos", Key: "big", Source: bytes.NewReader(payload), Size: int64(len(payload))})
	if err != nil {
		t.Fatal(err)
	}
	m, err := readPaths(mem)
	if err != nil {
		t.Fatal(err)
	}
	addr := n.srv.Addr().String()
	rec, ok := m[addr]
	if !ok || rec.Rate != int64(up.Goodput()) {
		t.Fatalf("memory after a %d-byte upload: %v, want %s at %d bit/s", len(payload), m, addr, int64(up.Goodput()))
	}
	if _, err := c.Upload(context.Background(), UploadRequest{Bucket: "photos", Key: "small", Source: bytes.NewReader(payload[:1<<20]), Size: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	if m, _ := readPaths(mem); m[addr] != rec {
		t.Errorf("a 1 MiB upload changed the memory to %v", m[addr])
	}
	c.Close()

	c2, err := n.dial(t, withMemory)
	if err != nil {
		t.Fatal(err)
	}
	want := float64(rec.Rate/2) / 8
	sess := c2.cc.sess
	sess.mu.Lock()
	got := sess.cc.Rate()
	sess.mu.Unlock()
	if math.Abs(got-want) > 1 {
		t.Errorf("the next session's sender starts at %.0f B/s, want half the remembered rate, %.0f", got, want)
	}
	var srvSess *session
	n.srv.mu.Lock()
	for sc := range n.srv.conns {
		if s, err := sc.session(); err == nil && s.id == sess.id {
			srvSess = s
		}
	}
	n.srv.mu.Unlock()
	if srvSess == nil {
		t.Fatal("the server has no session for the new connection")
	}
	srvSess.mu.Lock()
	got = srvSess.cc.Rate()
	srvSess.mu.Unlock()
	if math.Abs(got-want) > 1 {
		t.Errorf("the server's sender starts at %.0f B/s, want %.0f", got, want)
	}
}

// TestUploadWithKnownChecksum: a caller that knows the source's SHA-256
// (the mount, which hashes as it is written) spares the engine reading the
// source for it; a wrong one fails the upload and stores nothing.
func TestUploadWithKnownChecksum(t *testing.T) {
	n := startNode(t, nil, "")
	c := n.client(t)
	ctx := context.Background()
	payload := randomBytes(smallUpload+3<<20, 11)
	for _, tc := range []struct {
		key, sum string
		ok       bool
	}{
		{"right", sha(payload), true},
		{"wrong", sha(payload[1:]), false},
	} {
		res, err := c.Upload(ctx, UploadRequest{Bucket: "photos", Key: tc.key, Source: bytes.NewReader(payload), Size: int64(len(payload)),
			Meta: cos.Meta{SHA256: tc.sum}})
		if tc.ok && (err != nil || res.SHA256 != sha(payload)) {
			t.Fatalf("%s: upload with the right checksum: %v (sha %s)", tc.key, err, res.SHA256)
		}
		if !tc.ok && !errors.Is(err, ErrChecksum) {
			t.Fatalf("%s: upload with a wrong checksum: %v, want ErrChecksum", tc.key, err)
		}
		_, err = c.Stat(ctx, "photos", tc.key)
		if tc.ok != (err == nil) {
			t.Errorf("%s: stat after the upload: %v", tc.key, err)
		}
	}
}

// TestUploadStartsBeforeTheChecksum: a large upload's bytes go out while
// the client is still hashing the source, and the object still records
// its SHA-256 — in a store that takes metadata late (the folder store) and
// in one that fixes it when the upload is created (here the folder store
// behind a wrapper without cos.LateMeta, as S3 is: the node creates the
// store's upload once the checksum comes). A checksum sent ahead that the
// bytes do not match fails the upload and stores nothing; one never sent
// ahead comes with the commit.
func TestUploadStartsBeforeTheChecksum(t *testing.T) {
	payload := randomBytes(smallUpload+5<<20, 12)
	wrong := sha(payload[1:])
	defer func() { testHookHashing, testHookUploadSHA = nil, nil }()
	for _, store := range []string{"late meta", "meta at creation"} {
		for _, ahead := range []string{"right", "none", "wrong"} {
			t.Run(store+"/"+ahead, func(t *testing.T) {
				var st cos.Store
				if store == "meta at creation" {
					f, err := cos.NewFolder(t.TempDir())
					if err != nil {
						t.Fatal(err)
					}
					defer f.Close()
					f.CreateBucket(context.Background(), "photos")
					st = &countingStore{Store: f}
				}
				n := startNode(t, st, "")
				c := n.client(t)
				ctx := context.Background()

				// Hold the hash back until bytes have gone out.
				release := make(chan struct{})
				var once sync.Once
				open := func() { once.Do(func() { close(release) }) }
				defer open()
				testHookHashing = func() { <-release }
				testHookUploadSHA = func(sum string) string {
					switch ahead {
					case "none":
						return ""
					case "wrong":
						return wrong
					}
					return sum
				}
				type result struct {
					res Result
					err error
				}
				done := make(chan result, 1)
				go func() {
					res, err := c.Upload(ctx, UploadRequest{Bucket: "photos", Key: ahead, Source: bytes.NewReader(payload), Size: int64(len(payload))})
					done <- result{res, err}
				}()
				deadline := time.Now().Add(20 * time.Second)
				for {
					var sent int64
					for _, s := range c.Transfers() {
						sent += s.Sent
					}
					if sent >= int64(len(payload))/2 {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("%d bytes sent in 20 s while the source was being hashed: the upload waits for its checksum", sent)
					}
					time.Sleep(5 * time.Millisecond)
				}
				open()
				r := <-done
				if ahead == "wrong" {
					if !errors.Is(r.err, ErrChecksum) {
						t.Fatalf("upload with a wrong checksum sent ahead: %v, want ErrChecksum", r.err)
					}
					if _, err := c.Stat(ctx, "photos", ahead); !errors.Is(err, cos.ErrNotFound) {
						t.Errorf("stat after the failed upload: %v, want not found", err)
					}
					return
				}
				if r.err != nil || r.res.SHA256 != sha(payload) {
					t.Fatalf("upload: %v (sha %s)", r.err, r.res.SHA256)
				}
				info, err := c.Stat(ctx, "photos", ahead)
				if err != nil {
					t.Fatal(err)
				}
				if info.Meta.SHA256 != sha(payload) {
					t.Errorf("the object records SHA-256 %q, want %s", info.Meta.SHA256, sha(payload))
				}
			})
		}
	}
}

// TestUploadDataComesWithItsRequest: with nothing to skip (resume none),
// an upload's first bytes leave with its request, not a round trip later:
// a node still setting the upload up holds what comes first and uses it.
// A client told the node holds nothing (as an older node) waits for the
// answer instead, and so does one whose resume policy may skip the bytes.
func TestUploadDataComesWithItsRequest(t *testing.T) {
	n := startNode(t, nil, "")
	payload := randomBytes(smallUpload+1<<20, 13)
	defer func() { testHookUploadRegister, testNoEarlyData = nil, false }()
	// Shorter than the sender's smallest probe timeout: the held bytes are
	// acknowledged before it would send them again.
	testHookUploadRegister = func() { time.Sleep(15 * time.Millisecond) }
	for _, tc := range []struct {
		policy ResumePolicy
		held   bool // the node holds early data
		early  bool // so the client sends some
	}{
		{ResumeNone, true, true},
		{ResumeNone, false, false},
		{ResumeSparse, true, false},
	} {
		testNoEarlyData = !tc.held
		early := tc.early
		c := n.client(t)
		key := fmt.Sprintf("%s-held-%v", tc.policy, tc.held)
		res, err := c.Upload(context.Background(), UploadRequest{Bucket: "photos", Key: key, Source: bytes.NewReader(payload), Size: int64(len(payload)), Resume: tc.policy})
		if err != nil || res.SHA256 != sha(payload) {
			t.Fatalf("%s: %v (sha %s)", key, err, res.SHA256)
		}
		held := n.srv.ep.lookup(c.cc.sess.id).counters.earlyHeld.Load()
		t.Logf("%s: node held %d packets that came before the upload was set up; %d bytes sent, %d again", key, held, res.Sent, res.Retrans)
		if early && held == 0 {
			t.Errorf("%s: no bytes came before the upload was set up; want the first ones sent with the request", key)
		}
		if !early && held != 0 {
			t.Errorf("%s: %d packets came before the upload was set up; want none", key, held)
		}
		c.Close()
	}
}

// A transfer does not wait a round trip for the node to answer the data
// session's hello: the node learns the client's address from the hello
// itself. A path on which no answer ever comes still ends the connection
// within the dial timeout, saying what to check.
func TestDataHelloAnsweredInTheBackground(t *testing.T) {
	n := startNode(t, nil, "")
	ctx := context.Background()
	if err := n.client(t).DataReady(ctx); err != nil {
		t.Fatalf("data path of a plain connection: %v", err)
	}

	testDropHelloAcks.Store(true)
	defer testDropHelloAcks.Store(false)
	const timeout = 3 * time.Second
	dialed := time.Now()
	c, err := n.dial(t, func(cfg *ClientConfig) { cfg.DialTimeout = timeout })
	if err != nil {
		t.Fatalf("dial with no answer on the data path yet: %v", err)
	}
	data := randomBytes(1<<20, 9)
	if _, err := c.Upload(ctx, UploadRequest{Bucket: "photos", Key: "unanswered", Source: bytes.NewReader(data), Size: int64(len(data))}); err != nil {
		t.Fatalf("upload before any answer to the data hello: %v", err)
	}
	dest := &memFile{}
	if _, err := c.Download(ctx, DownloadRequest{Bucket: "photos", Key: "unanswered", Length: -1, Dest: dest}); err != nil {
		t.Fatalf("download before any answer to the data hello: %v", err)
	}
	if !bytes.Equal(dest.bytes(), data) {
		t.Fatal("downloaded bytes differ")
	}
	if waited := time.Since(dialed); waited >= timeout {
		t.Fatalf("the transfers took %v, as long as the dial timeout; the test needs them done before it", waited)
	}

	err = c.DataReady(ctx)
	waited := time.Since(dialed)
	if !errors.Is(err, ErrUnreachable) || !errors.Is(err, ErrNoDataPath) || !strings.Contains(err.Error(), "UDP port") {
		t.Fatalf("no answer on the data path: got %v, want ErrUnreachable and ErrNoDataPath naming the UDP port", err)
	}
	if waited < timeout || waited > timeout+2*time.Second {
		t.Fatalf("no answer reported after %v, want the dial timeout (%v)", waited, timeout)
	}
	t.Logf("reported after %v: %v", waited.Round(time.Millisecond), err)
}
