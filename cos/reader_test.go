package cos_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chute/chute/cos"
	"github.com/chute/chute/cos/costest"
)

func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed+1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestReaderRanges(t *testing.T) {
	f, bucket := folderWithBucket(t)
	ctx := context.Background()
	body := randomBytes(1, 1<<20+12345)
	if _, err := f.Put(ctx, bucket, "obj", bytes.NewReader(body), int64(len(body)), cos.Meta{}); err != nil {
		t.Fatal(err)
	}
	size := int64(len(body))
	tests := []struct {
		off, n      int64
		chunk       int64
		concurrency int
		lo, hi      int64
	}{
		{0, -1, 64 << 10, 4, 0, size},
		{0, -1, 1 << 30, 4, 0, size}, // one chunk
		{0, -1, 1000, 1, 0, size},    // many tiny chunks, one at a time
		{12345, 300000, 7777, 8, 12345, 312345},
		{size - 10, 100, 4096, 2, size - 10, size}, // cut at the end
		{size, -1, 4096, 2, size, size},            // nothing
		{size + 5, 10, 4096, 2, size, size},
		{100, 0, 4096, 2, 100, 100},
	}
	for _, tc := range tests {
		name := fmt.Sprintf("off=%d,n=%d,chunk=%d,c=%d", tc.off, tc.n, tc.chunk, tc.concurrency)
		t.Run(name, func(t *testing.T) {
			for _, viaWriteTo := range []bool{false, true} {
				r, err := cos.NewReader(ctx, f, bucket, "obj", tc.off, tc.n, cos.ReaderOptions{ChunkSize: tc.chunk, Concurrency: tc.concurrency})
				if err != nil {
					t.Fatal(err)
				}
				if r.Size() != tc.hi-tc.lo {
					t.Errorf("Size() = %d; want %d", r.Size(), tc.hi-tc.lo)
				}
				var got []byte
				if viaWriteTo {
					var buf bytes.Buffer
					_, err = r.WriteTo(&buf)
					got = buf.Bytes()
				} else {
					got, err = io.ReadAll(io.LimitReader(onlyReader{r}, 1<<40)) // Read in io.ReadAll's sizes
				}
				r.Close()
				if err != nil {
					t.Fatalf("reading (WriteTo %v): %v", viaWriteTo, err)
				}
				if !bytes.Equal(got, body[tc.lo:tc.hi]) {
					t.Errorf("got %d bytes; want body[%d:%d] (WriteTo %v)", len(got), tc.lo, tc.hi, viaWriteTo)
				}
			}
		})
	}
}

// onlyReader hides WriteTo, so that io.ReadAll goes through Read.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

func TestReaderErrors(t *testing.T) {
	f, bucket := folderWithBucket(t)
	ctx := context.Background()
	body := randomBytes(2, 256<<10)
	if _, err := f.Put(ctx, bucket, "obj", bytes.NewReader(body), int64(len(body)), cos.Meta{}); err != nil {
		t.Fatal(err)
	}
	unavailable := fmt.Errorf("%w: connection reset", cos.ErrUnavailable)
	tests := []struct {
		name    string
		inject  func(fs *costest.FaultStore)
		wantErr error // nil: the read succeeds (after retries)
	}{
		{"a cut body is read again", func(fs *costest.FaultStore) { fs.FailNext(costest.OpReadBody, 2, unavailable) }, nil},
		{"a failed request is sent again", func(fs *costest.FaultStore) { fs.FailNext(costest.OpRead, 2, unavailable) }, nil},
		{"an outage outlasts the retries", func(fs *costest.FaultStore) { fs.FailAlways(costest.OpRead, unavailable) }, cos.ErrUnavailable},
		{"refusals are not retried", func(fs *costest.FaultStore) { fs.FailNext(costest.OpRead, 1, cos.ErrPermission) }, cos.ErrPermission},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := costest.NewFaultStore(f)
			tc.inject(fs)
			r, err := cos.NewReader(ctx, fs, bucket, "obj", 0, -1, cos.ReaderOptions{ChunkSize: 64 << 10, Concurrency: 2, Retries: 2})
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			r.Close()
			if tc.wantErr == nil {
				if err != nil || !bytes.Equal(got, body) {
					t.Errorf("read %d bytes, %v; want all %d after retries", len(got), err, len(body))
				}
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("read error %v; want one wrapping %v", err, tc.wantErr)
			}
		})
	}
	t.Run("missing object", func(t *testing.T) {
		_, err := cos.NewReader(ctx, f, bucket, "nothing", 0, -1, cos.ReaderOptions{})
		if !errors.Is(err, cos.ErrNotFound) {
			t.Errorf("NewReader of a missing object = %v; want ErrNotFound", err)
		}
	})
	t.Run("info given: no stat of its own", func(t *testing.T) {
		info, err := f.Stat(ctx, bucket, "obj")
		if err != nil {
			t.Fatal(err)
		}
		fs := costest.NewFaultStore(f)
		fs.FailAlways(costest.OpStat, unavailable)
		if _, err := cos.NewReader(ctx, fs, bucket, "obj", 0, -1, cos.ReaderOptions{}); !errors.Is(err, cos.ErrUnavailable) {
			t.Fatalf("NewReader without Info, the store's Stat failing: %v; want its error", err)
		}
		r, err := cos.NewReader(ctx, fs, bucket, "obj", 0, -1, cos.ReaderOptions{Info: &info})
		if err != nil {
			t.Fatalf("NewReader with Info made a Stat: %v", err)
		}
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil || !bytes.Equal(got, body) {
			t.Errorf("read %d bytes, %v; want all %d", len(got), err, len(body))
		}
	})
	t.Run("object replaced mid-way", func(t *testing.T) {
		r, err := cos.NewReader(ctx, f, bucket, "obj", 0, -1, cos.ReaderOptions{ChunkSize: 16 << 10, Concurrency: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if _, err := io.ReadFull(r, make([]byte, 100)); err != nil {
			t.Fatal(err)
		}
		if _, err := f.Put(ctx, bucket, "obj", strings.NewReader("new"), 3, cos.Meta{}); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadAll(r); !errors.Is(err, cos.ErrConflict) {
			t.Errorf("reading on after the object was replaced: %v; want ErrConflict", err)
		}
	})
}

// TestReaderCloseStopsReads closes a Reader with reads in flight and
// checks that no goroutine stays behind.
func TestReaderCloseStopsReads(t *testing.T) {
	f, bucket := folderWithBucket(t)
	ctx := context.Background()
	body := randomBytes(3, 512<<10)
	if _, err := f.Put(ctx, bucket, "obj", bytes.NewReader(body), int64(len(body)), cos.Meta{}); err != nil {
		t.Fatal(err)
	}
	slow := costest.NewFaultStore(f)
	slow.Delay(costest.OpRead, 50*time.Millisecond)
	before := runtime.NumGoroutine()
	r, err := cos.NewReader(ctx, slow, bucket, "obj", 0, -1, cos.ReaderOptions{ChunkSize: 32 << 10, Concurrency: 8})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(r, make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Read(make([]byte, 1)); err == nil {
		t.Error("Read after Close succeeded")
	}
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines after Close; %d before NewReader", n, before)
	}
	if calls := slow.Calls(costest.OpRead); calls > 8+1 {
		t.Errorf("%d ranged reads for a Reader closed after the first chunk; want at most 9", calls)
	}
}

// lengthsStore records the length of every ranged read.
type lengthsStore struct {
	cos.Store
	mu      sync.Mutex
	lengths map[int64]int64 // offset → length
}

func (s *lengthsStore) Read(ctx context.Context, bucket, key string, opt cos.ReadOptions) (io.ReadCloser, error) {
	s.mu.Lock()
	s.lengths[opt.Offset] = opt.Length
	s.mu.Unlock()
	return s.Store.Read(ctx, bucket, key, opt)
}

// TestReaderStartsSmall: the first ranged read is 1 MiB and each next one
// doubles up to the chunk size, so the first bytes do not wait for a whole
// large chunk.
func TestReaderStartsSmall(t *testing.T) {
	f, bucket := folderWithBucket(t)
	ctx := context.Background()
	body := randomBytes(4, 21<<20)
	if _, err := f.Put(ctx, bucket, "obj", bytes.NewReader(body), int64(len(body)), cos.Meta{}); err != nil {
		t.Fatal(err)
	}
	s := &lengthsStore{Store: f, lengths: map[int64]int64{}}
	r, err := cos.NewReader(ctx, s, bucket, "obj", 0, -1, cos.ReaderOptions{ChunkSize: 8 << 20, Concurrency: 4})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("read %d bytes, err %v; want the %d-byte body", len(got), err, len(body))
	}
	const mib = 1 << 20
	want := map[int64]int64{0: mib, mib: mib, 2 * mib: 2 * mib, 4 * mib: 4 * mib, 8 * mib: 8 * mib, 16 * mib: 5 * mib}
	if fmt.Sprint(s.lengths) != fmt.Sprint(want) {
		t.Errorf("ranged reads (offset:length) %v; want %v", s.lengths, want)
	}
}
