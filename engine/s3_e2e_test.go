package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chute/chute/cos"
	"github.com/chute/chute/cos/s3test"
)

func TestMain(m *testing.M) { s3test.Main(m) }

// countingStore counts the parts written through it.
type countingStore struct {
	cos.Store
	parts atomic.Int64
}

func (s *countingStore) CreateUpload(ctx context.Context, bucket, key string, opt cos.UploadOptions) (cos.Upload, error) {
	u, err := s.Store.CreateUpload(ctx, bucket, key, opt)
	if err != nil {
		return nil, err
	}
	return &countingUpload{Upload: u, n: &s.parts}, nil
}

func (s *countingStore) ResumeUpload(ctx context.Context, bucket, key, id string) (cos.Upload, error) {
	u, err := s.Store.ResumeUpload(ctx, bucket, key, id)
	if err != nil {
		return nil, err
	}
	return &countingUpload{Upload: u, n: &s.parts}, nil
}

type countingUpload struct {
	cos.Upload
	n *atomic.Int64
}

func (u *countingUpload) WritePart(ctx context.Context, n int, r io.Reader) (cos.Part, error) {
	p, err := u.Upload.WritePart(ctx, n, r)
	if err == nil {
		u.n.Add(1)
	}
	return p, err
}

func readAll(t *testing.T, store cos.Store, bucket, key string) []byte {
	t.Helper()
	rc, err := store.Read(context.Background(), bucket, key, cos.ReadOptions{Length: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestS3UploadDownload moves objects of several sizes, and a folder
// tree, through a server whose store is a real SeaweedFS.
func TestS3UploadDownload(t *testing.T) {
	weed := s3test.Shared(t)
	bucket := weed.NewBucket(t)
	store := weed.Store(t)
	n := startNode(t, store, "", bucket)
	c := n.client(t)
	ctx := context.Background()
	sizes := []int{0, 1, 300 << 10, 40<<20 + 3}
	if !testing.Short() {
		sizes = append(sizes, 256<<20)
	}
	for _, size := range sizes {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			data := randomBytes(size, uint64(size)+3)
			key := fmt.Sprintf("sizes/ü %d.bin", size)
			mtime := time.Date(2025, 6, 7, 8, 9, 10, 0, time.UTC)
			up, err := c.Upload(ctx, UploadRequest{Bucket: bucket, Key: key, Source: bytes.NewReader(data), Size: int64(size), Meta: cos.Meta{Mtime: mtime, Mode: 0o100644}})
			if err != nil {
				t.Fatal(err)
			}
			if up.SHA256 != sha(data) {
				t.Fatal("upload checksum differs")
			}
			if got := readAll(t, store, bucket, key); !bytes.Equal(got, data) {
				t.Fatalf("the S3 object differs from the file (%d vs %d bytes)", len(got), len(data))
			}
			info, err := store.Stat(ctx, bucket, key)
			if err != nil {
				t.Fatal(err)
			}
			if !info.Meta.Mtime.Equal(mtime) {
				t.Errorf("S3 object mtime %v, want %v", info.Meta.Mtime, mtime)
			}
			// Large objects go in parts, begun before the client has its
			// checksum; S3 still records it (the node creates the
			// multipart upload once it comes).
			if size > 0 && info.Meta.SHA256 != sha(data) {
				t.Errorf("S3 object records SHA-256 %q, want %s", info.Meta.SHA256, sha(data))
			}
			dest := &memFile{}
			down, err := c.Download(ctx, DownloadRequest{Bucket: bucket, Key: key, Length: -1, Dest: dest})
			if err != nil {
				t.Fatal(err)
			}
			got := append(dest.bytes(), make([]byte, max(0, size-len(dest.bytes())))...)
			if !bytes.Equal(got[:size], data) || down.SHA256 != sha(data) {
				t.Fatalf("download differs (sha %s)", down.SHA256)
			}
		})
	}
	// A folder tree: keys with folders, a marker, listing by level.
	for _, k := range []string{"tree/a.txt", "tree/sub dir/b.txt", "tree/sub dir/é/c.txt"} {
		if _, err := c.Upload(ctx, UploadRequest{Bucket: bucket, Key: k, Source: bytes.NewReader([]byte(k)), Size: int64(len(k))}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Put(ctx, bucket, "tree/empty/", nil, cos.Meta{}); err != nil {
		t.Fatal(err)
	}
	page, err := c.List(ctx, bucket, cos.ListOptions{Prefix: "tree/", Delimiter: "/"})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Objects) != 1 || page.Objects[0].Key != "tree/a.txt" || len(page.CommonPrefixes) != 2 {
		t.Fatalf("listing tree/: %+v", page)
	}
}

// TestS3TwoServersResume interrupts a multipart upload through server A
// (killed) and completes it through server B in front of the same bucket,
// without sending again the parts A had finished.
func TestS3TwoServersResume(t *testing.T) {
	weed := s3test.Shared(t)
	bucket := weed.NewBucket(t)
	storeA := &countingStore{Store: weed.Store(t)}
	a := startNode(t, storeA, "", bucket)
	ca := a.client(t)
	data := randomBytes(80<<20, 31)
	var mu sync.Mutex
	var state []byte
	checkpointed := make(chan struct{})
	var once sync.Once
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go ca.Upload(ctx, UploadRequest{
		Bucket: bucket, Key: "two/servers.bin", Source: bytes.NewReader(data), Size: int64(len(data)),
		Meta: cos.Meta{Mtime: time.Unix(1750000000, 0)}, Rate: Rate{Target: 150e6},
		OnCheckpoint: func(s []byte) {
			mu.Lock()
			state = s
			mu.Unlock()
			if bytes.Contains(s, []byte(`"offset":33554432`)) {
				once.Do(func() { close(checkpointed) })
			}
		},
	})
	select {
	case <-checkpointed:
	case <-time.After(2 * time.Minute):
		t.Fatal("no checkpoint at two parts from server A")
	}
	a.stop() // server A dies
	cancel()
	partsA := storeA.parts.Load()
	if _, err := weed.Store(t).Stat(context.Background(), bucket, "two/servers.bin"); !errors.Is(err, cos.ErrNotFound) {
		t.Fatalf("a partial object is visible under the key: %v", err)
	}

	storeB := &countingStore{Store: weed.Store(t)}
	b := startNode(t, storeB, "", bucket)
	cb := b.client(t)
	mu.Lock()
	st := state
	mu.Unlock()
	res, err := cb.Upload(context.Background(), UploadRequest{
		Bucket: bucket, Key: "two/servers.bin", Source: bytes.NewReader(data), Size: int64(len(data)),
		Meta: cos.Meta{Mtime: time.Unix(1750000000, 0)}, State: st,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("server A stored %d parts; server B skipped %d bytes and stored %d parts", partsA, res.Skipped, storeB.parts.Load())
	if res.Skipped < 32<<20 {
		t.Fatalf("server B skipped %d bytes, want at least the 32 MiB of the two checkpointed parts", res.Skipped)
	}
	// 80 MiB in 16 MiB parts is 5 parts; B must not store the two that A
	// had finished and checkpointed.
	if got := storeB.parts.Load(); got > 3 {
		t.Fatalf("server B stored %d parts, want at most the 3 A had not checkpointed", got)
	}
	if res.SHA256 != sha(data) {
		t.Fatal("checksum mismatch")
	}
	if got := readAll(t, weed.Store(t), bucket, "two/servers.bin"); !bytes.Equal(got, data) {
		t.Fatal("stored object differs")
	}
}

// TestS3StoreKilledMidTransfer kills SeaweedFS during an upload: the upload
// fails with an error that says the store is unavailable, no object
// appears under the key, and once the store is back a rerun completes.
func TestS3StoreKilledMidTransfer(t *testing.T) {
	weed := s3test.Start(t)
	bucket := weed.NewBucket(t)
	store := weed.Store(t)
	n := startNode(t, store, "", bucket)
	c := n.client(t)
	data := randomBytes(64<<20, 41)
	meta := cos.Meta{Mtime: time.Unix(1760000000, 0)}
	errc := make(chan error, 1)
	go func() {
		_, err := c.Upload(context.Background(), UploadRequest{Bucket: bucket, Key: "killed.bin", Source: bytes.NewReader(data), Size: int64(len(data)), Meta: meta, Rate: Rate{Target: 100e6}})
		errc <- err
	}()
	time.Sleep(1500 * time.Millisecond)
	if err := weed.Kill(); err != nil {
		t.Fatal(err)
	}
	var err error
	select {
	case err = <-errc:
	case <-time.After(3 * time.Minute):
		t.Fatal("upload did not fail with the store gone")
	}
	if err == nil {
		t.Fatal("upload succeeded with the store killed")
	}
	if !errors.Is(err, cos.ErrUnavailable) {
		t.Errorf("error does not say the store is unavailable: %v", err)
	}
	t.Logf("error seen by the client: %v", err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := weed.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Stat(ctx, bucket, "killed.bin"); !errors.Is(err, cos.ErrNotFound) {
		t.Fatalf("after the failure an object is visible under the key: %v", err)
	}
	res, err := c.Upload(context.Background(), UploadRequest{Bucket: bucket, Key: "killed.bin", Source: bytes.NewReader(data), Size: int64(len(data)), Meta: meta})
	if err != nil {
		t.Fatalf("rerun after the store came back: %v", err)
	}
	if res.SHA256 != sha(data) {
		t.Fatal("checksum mismatch on rerun")
	}
	if got := readAll(t, store, bucket, "killed.bin"); !bytes.Equal(got, data) {
		t.Fatal("stored object differs")
	}
}
