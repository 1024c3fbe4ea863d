package cache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chute/chute/cache/cachetest"
	"github.com/chute/chute/cos"
	"github.com/chute/chute/engine"
)

const bucket = "b"

func openTest(t *testing.T, fake *cachetest.Fake, dir string, edit func(*Options)) *Cache {
	t.Helper()
	opt := Options{Dir: dir, Remote: fake, Bucket: bucket, IOTimeout: 2 * time.Second, RetryMin: 50 * time.Millisecond, RetryMax: 200 * time.Millisecond}
	if edit != nil {
		edit(&opt)
	}
	c, err := Open(context.Background(), opt)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func closeTest(t *testing.T, c *Cache) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

func fill(n int, b byte) []byte { return bytes.Repeat([]byte{b}, n) }

// openObject looks key up (at the bucket's top) and opens it for reading.
func openObject(t *testing.T, c *Cache, key string) *Reader {
	t.Helper()
	ctx := context.Background()
	e, err := c.Lookup(ctx, "", key)
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.OpenRead(ctx, key, e)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func writeFile(t *testing.T, c *Cache, key string, data []byte) *Staged {
	t.Helper()
	s, err := c.Create(context.Background(), key, 0o100644, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestStagedRecordsSurviveReopen: staged records (key, size, metadata,
// state) are in the index, and Open queues the dirty ones again.
func TestStagedRecordsSurviveReopen(t *testing.T) {
	fake := cachetest.NewFake()
	dir := t.TempDir()
	c := openTest(t, fake, dir, func(o *Options) { o.WriteBack = true })
	fake.HoldUploads()
	s := writeFile(t, c, "k", []byte("payload"))
	mt := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	mode := uint32(0o600)
	if _, err := c.SetMeta(context.Background(), "k", false, MetaChange{Mtime: &mt, Mode: &mode}); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.Release()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	left, err := c.Close(ctx)
	cancel()
	if err != nil || left != 1 {
		t.Fatalf("close: left %d, %v", left, err)
	}
	fake.ReleaseUploads()

	// The record as stored.
	ix, unclean, err := openIndex(filepath.Join(dir, "index"), c.log)
	if err != nil {
		t.Fatal(err)
	}
	if unclean {
		t.Error("a closed cache looks unclean")
	}
	var recs []stagedRecord
	ix.scan(prefStaged, func(k string, v []byte) error {
		var r stagedRecord
		if err := jsonUnmarshal(v, &r); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
		return nil
	})
	ix.close(true)
	if len(recs) != 1 || recs[0].Key != "k" || recs[0].Size != 7 || recs[0].State != StateDirty ||
		!recs[0].Mtime.Equal(mt) || recs[0].Mode != 0o100600 || recs[0].TransferID == "" {
		t.Fatalf("records: %+v", recs)
	}

	c = openTest(t, fake, dir, nil)
	defer closeTest(t, c)
	if err := c.WaitUploads(context.Background()); err != nil {
		t.Fatal(err)
	}
	got, info, ok := fake.Object(bucket, "k")
	if !ok || string(got) != "payload" || !info.Meta.Mtime.Equal(mt) || info.Meta.Mode != 0o100600 {
		t.Fatalf("after reopen: %q %+v %v", got, info.Meta, ok)
	}
	if c.Pending() != 0 {
		t.Fatalf("pending %d after the upload", c.Pending())
	}
}

// TestOpenDoesNotWaitForRecovery: with the server away, Open returns at
// once although uploads are waiting, and they go up once it is back.
func TestOpenDoesNotWaitForRecovery(t *testing.T) {
	fake := cachetest.NewFake()
	dir := t.TempDir()
	c := openTest(t, fake, dir, func(o *Options) { o.WriteBack = true })
	fake.SetDown(true)
	for _, k := range []string{"a", "b", "c"} {
		s := writeFile(t, c, k, []byte(k))
		s.Flush(context.Background())
		s.Release()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	c.Close(ctx)
	cancel()

	start := time.Now()
	c = openTest(t, fake, dir, func(o *Options) { o.IOTimeout = time.Hour })
	defer closeTest(t, c)
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Open took %v with the server away", d)
	}
	if c.Pending() != 3 {
		t.Fatalf("pending %d, want 3", c.Pending())
	}
	fake.SetDown(false)
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.WaitUploads(ctx); err != nil {
		t.Fatal(err)
	}
	if keys := fake.Keys(bucket); strings.Join(keys, ",") != "a,b,c" {
		t.Fatalf("keys %v", keys)
	}
}

// TestKillKeepsResumeState: after a crash mid-upload, the next Open resumes
// from the last checkpoint the index holds.
func TestKillKeepsResumeState(t *testing.T) {
	fake := cachetest.NewFake()
	fake.CheckpointEvery = 256 << 10
	dir := t.TempDir()
	c := openTest(t, fake, dir, func(o *Options) { o.WriteBack = true })
	data := randomData(4<<20, 7)
	fake.SetRate(4 << 20)
	s := writeFile(t, c, "big", data)
	s.Flush(context.Background())
	s.Release()
	for fake.PartialBytes("big") < 1<<20 {
		time.Sleep(10 * time.Millisecond)
	}
	c.Kill()
	fake.SetRate(0)
	before := fake.UploadedBytes()
	c = openTest(t, fake, dir, nil)
	defer closeTest(t, c)
	if err := c.WaitUploads(context.Background()); err != nil {
		t.Fatal(err)
	}
	got, _, _ := fake.Object(bucket, "big")
	if !bytes.Equal(got, data) {
		t.Fatal("content differs after resume")
	}
	if fake.Resumes() != 1 || fake.UploadedBytes()-before > int64(len(data))-(1<<20)+fake.CheckpointEvery {
		t.Fatalf("resumes %d, sent again %d of %d", fake.Resumes(), fake.UploadedBytes()-before, len(data))
	}
}

// TestEvictionSparesStagedAndOpen: over the size cap, cached read blocks go
// least recently used first; staged data and objects open for reading stay.
func TestEvictionSparesStagedAndOpen(t *testing.T) {
	fake := cachetest.NewFake()
	ctx := context.Background()
	for _, k := range []string{"old", "mid", "open"} {
		fake.Store(bucket, k, fill(1<<20, k[0]), cos.Meta{})
	}
	c := openTest(t, fake, t.TempDir(), func(o *Options) { o.Size = 3 << 20; o.WriteBack = true })
	defer closeTest(t, c)
	fake.HoldUploads()
	read := func(key string) *Reader {
		r := openObject(t, c, key)
		buf := make([]byte, 1<<20)
		if n, err := r.ReadAt(ctx, buf, 0); err != nil || n != len(buf) || buf[0] != key[0] {
			t.Fatalf("read %s: %d %v", key, n, err)
		}
		return r
	}
	r := read("old")
	r.Close()
	time.Sleep(10 * time.Millisecond)
	r = read("mid")
	r.Close()
	open := read("open") // stays open
	defer open.Close()
	// 2 MiB of staged data puts the cache 2 MiB over its cap.
	s := writeFile(t, c, "staged", fill(2<<20, 's'))
	s.Flush(ctx)
	s.Release()
	c.evict(2 << 20)
	present := func(key string) bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, it := range c.items {
			if it.rec.Key == key {
				return true
			}
		}
		return false
	}
	if present("old") || present("mid") || !present("open") {
		t.Fatalf("after eviction: old %v mid %v open %v; want only open kept", present("old"), present("mid"), present("open"))
	}
	got := make([]byte, 2<<20)
	st := c.OpenStaged("staged")
	if st == nil {
		t.Fatal("staged file evicted")
	}
	defer st.Release()
	if n, _ := st.ReadAt(got, 0); n != len(got) || !bytes.Equal(got, fill(2<<20, 's')) {
		t.Fatal("staged bytes changed")
	}
	// Everything that can go, goes; staged and open data stay.
	c.evict(-1)
	if !present("open") || c.OpenStaged("staged") == nil {
		t.Fatal("evict(-1) removed data in use")
	}
	c.OpenStaged("staged").Release()
	fake.ReleaseUploads()
}

// TestEvictionOrder: the least recently read object goes first.
func TestEvictionOrder(t *testing.T) {
	fake := cachetest.NewFake()
	ctx := context.Background()
	keys := []string{"a", "b", "c"}
	for _, k := range keys {
		fake.Store(bucket, k, fill(100<<10, k[0]), cos.Meta{})
	}
	c := openTest(t, fake, t.TempDir(), nil)
	defer closeTest(t, c)
	for _, k := range []string{"a", "b", "c", "a"} { // b is now the oldest
		r := openObject(t, c, k)
		if _, err := r.ReadAt(ctx, make([]byte, 10), 0); err != nil {
			t.Fatal(err)
		}
		r.Close()
		time.Sleep(5 * time.Millisecond)
	}
	c.evict(1)
	c.mu.Lock()
	var left []string
	for _, it := range c.items {
		left = append(left, it.rec.Key)
	}
	c.mu.Unlock()
	if len(left) != 2 || strings.Contains(strings.Join(left, ""), "b") {
		t.Fatalf("left %v, want a and c", left)
	}
}

// TestBlockRecordsPersist: blocks fetched in one session are served without
// the network in the next; after a crash they are dropped.
func TestBlockRecordsPersist(t *testing.T) {
	fake := cachetest.NewFake()
	ctx := context.Background()
	data := randomData(3<<20, 6)
	fake.Store(bucket, "o", data, cos.Meta{})
	dir := t.TempDir()
	readAll := func(c *Cache) {
		r := openObject(t, c, "o")
		defer r.Close()
		buf := make([]byte, len(data))
		for off := 0; off < len(buf); off += 128 << 10 {
			if _, err := r.ReadAt(ctx, buf[off:off+128<<10], int64(off)); err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(buf, data) {
			t.Fatal("content differs")
		}
	}
	c := openTest(t, fake, dir, nil)
	readAll(c)
	closeTest(t, c)
	if n := fake.DownloadedBytes(); n != int64(len(data)) {
		t.Fatalf("first read downloaded %d", n)
	}
	c = openTest(t, fake, dir, nil)
	readAll(c)
	if n := fake.DownloadedBytes(); n != int64(len(data)) {
		t.Fatalf("second session downloaded %d more bytes", n-int64(len(data)))
	}
	c.Kill()
	c = openTest(t, fake, dir, nil)
	defer closeTest(t, c)
	c.mu.Lock()
	n := len(c.items)
	c.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d cached objects kept after an unclean stop", n)
	}
}

// TestReadersTakeBytesAsTheyArrive: a reader waiting on a read-ahead fetch
// gets its bytes as they come in, not when the fetch ends (here it never
// does while the test holds it), and read-ahead keeps at most maxAhead
// fetches running beside the reader's own.
func TestReadersTakeBytesAsTheyArrive(t *testing.T) {
	fake := cachetest.NewFake()
	ctx := context.Background()
	data := randomData(24<<20, 9)
	fake.Store(bucket, "o", data, cos.Meta{})
	c := openTest(t, fake, t.TempDir(), nil)
	defer closeTest(t, c)
	r := openObject(t, c, "o")
	defer r.Close()
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	const chunk = 128 << 10
	read := func(off int64) error {
		buf := make([]byte, chunk)
		n, err := r.ReadAt(rctx, buf, off)
		if err != nil {
			return fmt.Errorf("read at %d: %w", off, err)
		}
		if !bytes.Equal(buf[:n], data[off:off+int64(n)]) {
			return fmt.Errorf("read at %d: wrong bytes", off)
		}
		return nil
	}
	const hold = 3 << 20
	fake.HoldDownloadsAt(hold)
	off := int64(0)
	for ; off+chunk <= hold; off += chunk {
		if err := read(off); err != nil {
			t.Fatal(err)
		}
	}
	// The fetch bringing [hold, hold+chunk) is held; the read waits for it.
	// Then the fetch goes on to hold+1 MiB and stops again, unfinished.
	got := make(chan error, 1)
	go func() { got <- read(off) }()
	time.Sleep(200 * time.Millisecond) // let the read start waiting
	fake.HoldDownloadsAt(hold + 1<<20)
	if err := <-got; err != nil {
		t.Fatalf("a read whose bytes arrived, in a fetch not yet finished: %v", err)
	}
	fake.ReleaseDownloads()
	for off += chunk; off < int64(len(data)); off += chunk {
		if err := read(off); err != nil {
			t.Fatal(err)
		}
	}
	c.fetches.Wait()
	if peak := fake.PeakDownloads(); peak > maxAhead+1 {
		t.Fatalf("%d downloads ran at once for one sequential reader; want at most %d", peak, maxAhead+1)
	}
}

// TestReadAheadAndRandomReads: sequential reads fetch ahead in growing
// windows; a random read fetches only the blocks it touches; an interrupted
// fetch resumes without sending again what arrived.
func TestReadAheadAndRandomReads(t *testing.T) {
	fake := cachetest.NewFake()
	ctx := context.Background()
	data := randomData(32<<20, 5)
	fake.Store(bucket, "o", data, cos.Meta{})
	c := openTest(t, fake, t.TempDir(), nil)
	defer closeTest(t, c)
	e, _ := c.Lookup(ctx, "", "o")

	r, _ := c.OpenRead(ctx, "o", e)
	buf := make([]byte, 4096)
	if _, err := r.ReadAt(ctx, buf, 20<<20); err != nil {
		t.Fatal(err)
	}
	if n := fake.DownloadedBytes(); n != randomBlock {
		t.Fatalf("a 4 KiB random read downloaded %d bytes, want %d", n, randomBlock)
	}
	r.Close()

	r, _ = c.OpenRead(ctx, "o", e)
	defer r.Close()
	calls := fake.Calls("download")
	big := make([]byte, 128<<10)
	for off := int64(0); off < 16<<20; off += int64(len(big)) {
		if _, err := r.ReadAt(ctx, big, off); err != nil {
			t.Fatal(err)
		}
	}
	c.fetches.Wait()
	if n := fake.Calls("download") - calls; n > 16 {
		t.Fatalf("16 MiB of sequential 128 KiB reads took %d downloads; read-ahead should batch them", n)
	}

	// An interrupted fetch resumes from what arrived.
	fake.Store(bucket, "p", data[:4<<20], cos.Meta{})
	c.Forget()
	ep, err := c.Lookup(ctx, "", "p")
	if err != nil {
		t.Fatal(err)
	}
	before := fake.DownloadedBytes()
	fake.FailAfter(1 << 20)
	rp, _ := c.OpenRead(ctx, "p", ep)
	defer rp.Close()
	whole := make([]byte, 4<<20)
	if _, err := rp.ReadAt(ctx, whole[:1<<20], 0); err != nil {
		t.Fatal(err)
	}
	if _, err := rp.ReadAt(ctx, whole[1<<20:], 1<<20); err != nil {
		t.Fatal(err)
	}
	c.fetches.Wait()
	if !bytes.Equal(whole, data[:4<<20]) {
		t.Fatal("content differs after an interrupted fetch")
	}
	if n := fake.DownloadedBytes() - before; n != 4<<20 {
		t.Fatalf("downloaded %d bytes for 4 MiB with one interruption", n)
	}
}

// TestRetryGivesUp: a server that stays away fails calls with
// engine.ErrUnreachable after IOTimeout; one that returns in time does not.
func TestRetryGivesUp(t *testing.T) {
	fake := cachetest.NewFake()
	rt := newRetrying(fake, 300*time.Millisecond, testLog())
	fake.SetDown(true)
	start := time.Now()
	_, err := rt.Stat(context.Background(), bucket, "x")
	if !errors.Is(err, engine.ErrUnreachable) || time.Since(start) > 2*time.Second {
		t.Fatalf("stat with the server away: %v after %v", err, time.Since(start))
	}
	time.AfterFunc(100*time.Millisecond, func() { fake.SetDown(false) })
	if _, err := rt.Stat(context.Background(), bucket, "x"); !errors.Is(err, cos.ErrNotFound) {
		t.Fatalf("stat after the server came back: %v", err)
	}
	// An upload interrupted part way continues from its checkpoint within
	// one call.
	fake.CheckpointEvery = 64 << 10
	fake.FailAfter(512 << 10)
	data := fill(1<<20, 'u')
	before := fake.UploadedBytes()
	if _, err := rt.Upload(context.Background(), engine.UploadRequest{Bucket: bucket, Key: "u", Source: bytes.NewReader(data), Size: int64(len(data))}); err != nil {
		t.Fatal(err)
	}
	if sent := fake.UploadedBytes() - before; sent != int64(len(data)) {
		t.Fatalf("sent %d bytes for a %d byte upload interrupted once", sent, len(data))
	}
}

func TestIndexFormatVersion(t *testing.T) {
	dir := t.TempDir()
	ix, _, err := openIndex(dir, testLog())
	if err != nil {
		t.Fatal(err)
	}
	ix.put(keyVersion, []byte("999"))
	ix.close(true)
	if _, _, err := openIndex(dir, testLog()); err == nil || !strings.Contains(err.Error(), "format version") {
		t.Fatalf("opening an index of another version: %v", err)
	}
}

// TestCacheFolderInUse: a second user of one cache folder is refused with
// a message that says what to do.
func TestCacheFolderInUse(t *testing.T) {
	fake := cachetest.NewFake()
	dir := t.TempDir()
	c := openTest(t, fake, dir, nil)
	defer closeTest(t, c)
	_, err := Open(context.Background(), Options{Dir: dir, Remote: fake, Bucket: bucket})
	if err == nil || !strings.Contains(err.Error(), "--cache-dir") {
		t.Fatalf("second Open of one folder: %v", err)
	}
}

// TestWritesInOrderCarryTheirChecksum: a file written in order from the
// start is uploaded with the SHA-256 hashed as it was written (the engine
// then need not read it again); a file written any other way claims none,
// and the engine computes it.
func TestWritesInOrderCarryTheirChecksum(t *testing.T) {
	fake := cachetest.NewFake()
	c := openTest(t, fake, t.TempDir(), nil)
	defer closeTest(t, c)
	ctx := context.Background()
	data := randomData(3<<20+17, 21)
	third := int64(len(data) / 3)
	tests := []struct {
		name   string
		write  func(s *Staged) error
		claims bool
	}{
		{"in order", func(s *Staged) error {
			for off := int64(0); off < int64(len(data)); off += third {
				if _, err := s.WriteAt(data[off:min(off+third, int64(len(data)))], off); err != nil {
					return err
				}
			}
			return nil
		}, true},
		{"emptied and written again", func(s *Staged) error {
			if _, err := s.WriteAt(data[:100], 0); err != nil {
				return err
			}
			if err := s.Truncate(0); err != nil {
				return err
			}
			_, err := s.WriteAt(data, 0)
			return err
		}, true},
		{"out of order", func(s *Staged) error {
			if _, err := s.WriteAt(data[third:], third); err != nil {
				return err
			}
			_, err := s.WriteAt(data[:third], 0)
			return err
		}, false},
		{"overwritten", func(s *Staged) error {
			if _, err := s.WriteAt(data, 0); err != nil {
				return err
			}
			_, err := s.WriteAt(data[10:20], 10)
			return err
		}, false},
	}
	for _, tc := range tests {
		s, err := c.Create(ctx, tc.name, 0o644, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := tc.write(s); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if err := s.Flush(ctx); err != nil {
			t.Fatalf("%s: flush: %v", tc.name, err)
		}
		s.Release()
		got, info, ok := fake.Object(bucket, tc.name)
		if !ok || !bytes.Equal(got, data) {
			t.Fatalf("%s: stored object differs", tc.name)
		}
		sum := sha256.Sum256(data)
		switch {
		case tc.claims && info.Meta.SHA256 != hex.EncodeToString(sum[:]):
			t.Errorf("%s: uploaded with checksum %q, want the data's %x", tc.name, info.Meta.SHA256, sum)
		case !tc.claims && info.Meta.SHA256 != "":
			t.Errorf("%s: uploaded claiming checksum %q for bytes not hashed in order", tc.name, info.Meta.SHA256)
		}
	}
}

// TestReadFileHoldsTheBytes checks that ReadFile fetches what is asked and
// hands back the cache file holding those bytes at the object's offsets
// (the mount splices FUSE replies from it), cut at the object's end.
func TestReadFileHoldsTheBytes(t *testing.T) {
	fake := cachetest.NewFake()
	data := randomData(5<<20+123, 4)
	fake.Store(bucket, "o", data, cos.Meta{})
	c := openTest(t, fake, t.TempDir(), nil)
	defer closeTest(t, c)
	r := openObject(t, c, "o")
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	size := int64(len(data))
	for _, tc := range []struct {
		off  int64
		n    int
		want int
	}{
		{0, 128 << 10, 128 << 10},
		{3 << 20, 1 << 20, 1 << 20},
		{size - 100, 1 << 20, 100}, // cut at the end
		{1 << 20, 1, 1},
	} {
		f, n, err := r.ReadFile(ctx, tc.off, tc.n)
		if err != nil {
			t.Fatalf("ReadFile(%d, %d): %v", tc.off, tc.n, err)
		}
		if n != tc.want {
			t.Fatalf("ReadFile(%d, %d) holds %d bytes, want %d", tc.off, tc.n, n, tc.want)
		}
		got := make([]byte, n)
		if _, err := f.ReadAt(got, tc.off); err != nil && !errors.Is(err, io.EOF) {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data[tc.off:tc.off+int64(n)]) {
			t.Fatalf("the cache file's bytes at %d differ from the object's", tc.off)
		}
	}
	if _, _, err := r.ReadFile(ctx, size, 10); !errors.Is(err, io.EOF) {
		t.Fatalf("ReadFile at the end: %v, want io.EOF", err)
	}
}
