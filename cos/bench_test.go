package cos_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/chute/chute/cos"
	"github.com/chute/chute/cos/s3test"
)

const benchSize = 256 << 20

var benchObject struct {
	once   sync.Once
	bucket string
	err    error
}

// benchS3 returns the shared SeaweedFS store holding a benchSize object
// "big" in a bench bucket.
func benchS3(b *testing.B) (*cos.S3, string) {
	srv := s3test.Shared(b)
	store := srv.Store(b)
	benchObject.once.Do(func() {
		benchObject.bucket = srv.NewBucket(b)
		body := randomBytes(99, benchSize)
		_, benchObject.err = store.Put(context.Background(), benchObject.bucket, "big", bytes.NewReader(body), benchSize, cos.Meta{})
	})
	if benchObject.err != nil {
		b.Fatal(benchObject.err)
	}
	return store, benchObject.bucket
}

// BenchmarkS3Read reads a 256 MiB object from SeaweedFS on loopback: one
// GET against the read-ahead Reader at several depths and chunk sizes.
func BenchmarkS3Read(b *testing.B) {
	store, bucket := benchS3(b)
	ctx := context.Background()
	b.Run("single-GET", func(b *testing.B) {
		b.SetBytes(benchSize)
		for b.Loop() {
			rc, err := store.Read(ctx, bucket, "big", cos.ReadOptions{Length: -1})
			if err != nil {
				b.Fatal(err)
			}
			n, err := io.Copy(io.Discard, rc)
			rc.Close()
			if err != nil || n != benchSize {
				b.Fatalf("read %d bytes, %v", n, err)
			}
		}
	})
	for _, tc := range []struct {
		chunk int64
		depth int
	}{
		{8 << 20, 1}, {8 << 20, 2}, {8 << 20, 4}, {8 << 20, 8}, {4 << 20, 8}, {16 << 20, 4}, {32 << 20, 4},
	} {
		b.Run(fmt.Sprintf("readahead/chunk=%dMiB/depth=%d", tc.chunk>>20, tc.depth), func(b *testing.B) {
			b.SetBytes(benchSize)
			for b.Loop() {
				r, err := cos.NewReader(ctx, store, bucket, "big", 0, -1, cos.ReaderOptions{ChunkSize: tc.chunk, Concurrency: tc.depth})
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.Copy(io.Discard, r)
				r.Close()
				if err != nil || n != benchSize {
					b.Fatalf("read %d bytes, %v", n, err)
				}
			}
		})
	}
}

// BenchmarkS3ReadRemote is BenchmarkS3Read with the two things a distant
// S3 service adds and loopback lacks, emulated in front of SeaweedFS: 20 ms
// before the first byte of every request, and 50 MB/s per connection.
func BenchmarkS3ReadRemote(b *testing.B) {
	s3, bucket := benchS3(b)
	store := &remoteStore{Store: s3, firstByte: 20 * time.Millisecond, rate: 50e6}
	ctx := context.Background()
	b.Run("single-GET", func(b *testing.B) {
		b.SetBytes(benchSize)
		for b.Loop() {
			rc, err := store.Read(ctx, bucket, "big", cos.ReadOptions{Length: -1})
			if err != nil {
				b.Fatal(err)
			}
			n, err := io.Copy(io.Discard, rc)
			rc.Close()
			if err != nil || n != benchSize {
				b.Fatalf("read %d bytes, %v", n, err)
			}
		}
	})
	for _, depth := range []int{1, 4, 8, 16} {
		b.Run(fmt.Sprintf("readahead/chunk=8MiB/depth=%d", depth), func(b *testing.B) {
			b.SetBytes(benchSize)
			for b.Loop() {
				r, err := cos.NewReader(ctx, store, bucket, "big", 0, -1, cos.ReaderOptions{ChunkSize: 8 << 20, Concurrency: depth})
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.Copy(io.Discard, r)
				r.Close()
				if err != nil || n != benchSize {
					b.Fatalf("read %d bytes, %v", n, err)
				}
			}
		})
	}
}

// remoteStore delays each Read's first byte and paces each body.
type remoteStore struct {
	cos.Store
	firstByte time.Duration
	rate      float64 // bytes per second per body
}

func (s *remoteStore) Read(ctx context.Context, bucket, key string, opt cos.ReadOptions) (io.ReadCloser, error) {
	time.Sleep(s.firstByte)
	rc, err := s.Store.Read(ctx, bucket, key, opt)
	if err != nil {
		return nil, err
	}
	return &pacedBody{ReadCloser: rc, rate: s.rate, start: time.Now()}, nil
}

type pacedBody struct {
	io.ReadCloser
	rate  float64
	start time.Time
	n     int64
}

func (p *pacedBody) Read(b []byte) (int, error) {
	n, err := p.ReadCloser.Read(b)
	p.n += int64(n)
	due := p.start.Add(time.Duration(float64(p.n) / p.rate * float64(time.Second)))
	time.Sleep(time.Until(due))
	return n, err
}

// BenchmarkS3Upload writes a 256 MiB object to SeaweedFS: Put (streamed,
// parts sent Concurrency at a time) and an Upload with its parts written
// by concurrent writers, as the engine does.
func BenchmarkS3Upload(b *testing.B) {
	srv := s3test.Shared(b)
	bucket := srv.NewBucket(b)
	body := randomBytes(98, benchSize)
	ctx := context.Background()
	for _, c := range []int{1, 4, 8} {
		b.Run(fmt.Sprintf("Put/concurrency=%d", c), func(b *testing.B) {
			cfg := srv.Config()
			cfg.Concurrency = c
			store, err := cos.NewS3Unchecked(cfg)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(benchSize)
			for b.Loop() {
				if _, err := store.Put(ctx, bucket, "put", bytes.NewReader(body), benchSize, cos.Meta{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	store := srv.Store(b)
	for _, writers := range []int{1, 4, 8} {
		b.Run(fmt.Sprintf("WritePart/writers=%d", writers), func(b *testing.B) {
			b.SetBytes(benchSize)
			for b.Loop() {
				u, err := store.CreateUpload(ctx, bucket, "upload", cos.UploadOptions{Size: benchSize})
				if err != nil {
					b.Fatal(err)
				}
				writeParts(b, ctx, u, body, writers)
				if _, err := u.Complete(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func writeParts(b *testing.B, ctx context.Context, u cos.Upload, body []byte, writers int) {
	next := make(chan int)
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for n := range next {
				off, l := cos.PartRange(u.Size(), u.PartSize(), n)
				if _, err := u.WritePart(ctx, n, io.NewSectionReader(bytes.NewReader(body), off, l)); err != nil {
					b.Error(err)
				}
			}
		})
	}
	for n := 1; n <= u.NumParts(); n++ {
		next <- n
	}
	close(next)
	wg.Wait()
}

// BenchmarkFolderUpload writes a 256 MiB object into the folder store with
// concurrent part writers (each part synced), and with Put.
func BenchmarkFolderUpload(b *testing.B) {
	f := newFolderB(b)
	ctx := context.Background()
	body := randomBytes(97, benchSize)
	b.Run("Put", func(b *testing.B) {
		b.SetBytes(benchSize)
		for b.Loop() {
			if _, err := f.Put(ctx, "bench", "put", bytes.NewReader(body), benchSize, cos.Meta{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, writers := range []int{1, 4} {
		b.Run(fmt.Sprintf("WritePart/writers=%d", writers), func(b *testing.B) {
			b.SetBytes(benchSize)
			for b.Loop() {
				u, err := f.CreateUpload(ctx, "bench", "upload", cos.UploadOptions{Size: benchSize})
				if err != nil {
					b.Fatal(err)
				}
				writeParts(b, ctx, u, body, writers)
				if _, err := u.Complete(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func newFolderB(b *testing.B) *cos.Folder {
	f, err := cos.NewFolder(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	if err := f.CreateBucket(context.Background(), "bench"); err != nil {
		b.Fatal(err)
	}
	return f
}

// BenchmarkReaderWindows reads a 64 MiB object from a folder store as a
// mount's read-ahead does: one Reader per 16 MiB window, one after the
// other. B/op shows what each window allocates (its chunk buffers are
// recycled from the windows before).
func BenchmarkReaderWindows(b *testing.B) {
	const size, window = 64 << 20, 16 << 20
	ctx := context.Background()
	store, err := cos.NewFolder(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	if err := store.CreateBucket(ctx, "bench"); err != nil {
		b.Fatal(err)
	}
	if _, err := store.Put(ctx, "bench", "obj", bytes.NewReader(randomBytes(97, size)), size, cos.Meta{}); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		for off := int64(0); off < size; off += window {
			r, err := cos.NewReader(ctx, store, "bench", "obj", off, window, cos.ReaderOptions{})
			if err != nil {
				b.Fatal(err)
			}
			n, err := io.Copy(io.Discard, r)
			r.Close()
			if err != nil || n != window {
				b.Fatalf("window at %d: read %d bytes, %v", off, n, err)
			}
		}
	}
}
