package engine

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chute/chute/cos"
	"github.com/chute/chute/engine/internal/ranges"
)

// TestPartStreamReadsAsBytesArrive: a streamed part yields the staged
// bytes as the receiver writes them, in order, and gives up when none
// come (or the upload ends) instead of holding the store's request open.
func TestPartStreamReadsAsBytesArrive(t *testing.T) {
	const size = 3 * recvBlockSize
	f, err := os.OpenFile(filepath.Join(t.TempDir(), "data"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Truncate(2 * size)
	recv := newRecvStream(1, f, ranges.Of(ranges.Range{Off: 0, Len: 2 * size}), nil, true)
	defer recv.close()
	u := &serverUpload{recv: recv, file: f, stopCh: make(chan struct{}), loopEnd: make(chan struct{})}
	payload := randomBytes(size, 21)

	got := make(chan []byte, 1)
	go func() {
		b, err := io.ReadAll(&partStream{u: u, off: 0, end: size, size: size})
		if err != nil {
			t.Errorf("reading the streamed part: %v", err)
		}
		got <- b
	}()
	// Deliver the part's blocks out of order, in packets, one at a time;
	// the reader must not return before the block it needs is written.
	// (Once the last is written it may, at once.)
	order := []int{1, 0, 2}
	for i, blk := range order {
		for off := blk * recvBlockSize; off < (blk+1)*recvBlockSize; off += 1400 {
			end := min(off+1400, (blk+1)*recvBlockSize)
			recv.deliver(int64(off), payload[off:end])
		}
		if i == len(order)-1 {
			break
		}
		select {
		case b := <-got:
			t.Fatalf("the part's reader ended with %d bytes after block %d of 3", len(b), blk)
		case <-time.After(20 * time.Millisecond):
		}
	}
	select {
	case b := <-got:
		if !bytes.Equal(b, payload) {
			t.Fatalf("streamed part: %d bytes, not the %d delivered", len(b), len(payload))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the part's reader did not end after every block was written")
	}

	// Bytes that never come: the reader gives up after partStallTimeout.
	defer func(d time.Duration) { partStallTimeout = d }(partStallTimeout)
	partStallTimeout = 50 * time.Millisecond
	_, err = (&partStream{u: u, off: size, end: 2 * size, size: size}).Read(make([]byte, 10))
	if !errors.Is(err, errPartStalled) {
		t.Errorf("read of bytes that never arrive: %v, want errPartStalled", err)
	}
	// The upload's loop ending stops a waiting reader at once.
	partStallTimeout = time.Hour
	close(u.loopEnd)
	_, err = (&partStream{u: u, off: size, end: 2 * size, size: size}).Read(make([]byte, 10))
	if !errors.Is(err, ErrCancelled) {
		t.Errorf("read after the loop ended: %v, want ErrCancelled", err)
	}
}

// partWatchStore is the folder store behind a wrapper that hides its
// in-place uploads (as S3 has none) and watches each part's request:
// whether it began before the node had all of the upload's bytes, and,
// when failFirst is set, failing the first streamed one half way.
type partWatchStore struct {
	cos.Store
	failFirst bool

	mu     sync.Mutex
	early  map[int]bool // part number → its request began before the last byte arrived
	failed bool
}

func (s *partWatchStore) CreateUpload(ctx context.Context, bucket, key string, opt cos.UploadOptions) (cos.Upload, error) {
	u, err := s.Store.CreateUpload(ctx, bucket, key, opt)
	if err != nil {
		return nil, err
	}
	return &partWatchUpload{Upload: u, s: s}, nil
}

type partWatchUpload struct {
	cos.Upload
	s *partWatchStore
}

func (u *partWatchUpload) WritePart(ctx context.Context, n int, r io.Reader) (cos.Part, error) {
	ps, streamed := r.(*partStream)
	u.s.mu.Lock()
	if streamed && ps.u.recv.received() < ps.u.size {
		u.s.early[n] = true
	}
	fail := streamed && u.s.failFirst && !u.s.failed
	u.s.failed = u.s.failed || fail
	u.s.mu.Unlock()
	if fail {
		io.CopyN(io.Discard, r, ps.size/2)
		return cos.Part{}, &cos.Error{Op: "write-part", Bucket: u.Bucket(), Key: u.Key(), Err: errors.New("connection reset by the test")}
	}
	return u.Upload.WritePart(ctx, n, r)
}

// TestLastPartStreamsToTheStore: a multipart upload's last part goes to
// the store while its bytes are still arriving, so the object is stored
// moments after the last byte; a streamed part whose request fails is
// sent again whole, and the object is still right.
func TestLastPartStreamsToTheStore(t *testing.T) {
	payload := randomBytes(2*smallUpload-(1<<20), 22) // two parts, the last 15 MiB
	for _, fail := range []bool{false, true} {
		name := map[bool]string{false: "streamed", true: "stream fails"}[fail]
		t.Run(name, func(t *testing.T) {
			f, err := cos.NewFolder(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			f.CreateBucket(context.Background(), "photos")
			st := &partWatchStore{Store: f, failFirst: fail, early: map[int]bool{}}
			n := startNode(t, st, "")
			c := n.client(t)
			ctx := context.Background()
			res, err := c.Upload(ctx, UploadRequest{Bucket: "photos", Key: "two-parts", Source: bytes.NewReader(payload),
				Size: int64(len(payload)), Rate: Rate{Target: 80e6}})
			if err != nil || res.SHA256 != sha(payload) {
				t.Fatalf("upload: %v (sha %s)", err, res.SHA256)
			}
			rc, err := f.Read(ctx, "photos", "two-parts", cos.ReadOptions{Length: -1})
			if err != nil {
				t.Fatal(err)
			}
			stored, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || !bytes.Equal(stored, payload) {
				t.Fatalf("stored object: %d bytes, %v; not what was sent", len(stored), err)
			}
			st.mu.Lock()
			defer st.mu.Unlock()
			if fail {
				if !st.failed {
					t.Error("no part was streamed to the store")
				}
				return
			}
			if !st.early[2] {
				t.Errorf("the last part's store request began only after every byte had arrived (streamed early: %v)", st.early)
			}
		})
	}
}
