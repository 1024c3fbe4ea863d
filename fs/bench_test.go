package fs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"github.com/chute/chute/cache/cachetest"
	"github.com/chute/chute/cos"
	"github.com/chute/chute/engine"
)

const benchSize = 64 << 20

// BenchmarkFakeRaw measures the fake server alone: the ceiling the mount
// benchmarks below compare against.
func BenchmarkFakeRaw(b *testing.B) {
	data := randomBytes(benchSize, 1)
	ctx := context.Background()
	b.Run("upload", func(b *testing.B) {
		f := cachetest.NewFake()
		b.SetBytes(benchSize)
		for b.Loop() {
			if _, err := f.Upload(ctx, engine.UploadRequest{Bucket: testBucket, Key: "k", Source: bytes.NewReader(data), Size: benchSize}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("download", func(b *testing.B) {
		f := cachetest.NewFake()
		f.Store(testBucket, "k", data, cos.Meta{})
		dst := make([]byte, benchSize)
		b.SetBytes(benchSize)
		for b.Loop() {
			if _, err := f.Download(ctx, engine.DownloadRequest{Bucket: testBucket, Key: "k", Length: -1, Dest: sliceWriter(dst)}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

type sliceWriter []byte

func (s sliceWriter) WriteAt(p []byte, off int64) (int, error) { return copy(s[off:], p), nil }

// BenchmarkSeqWrite writes a 64 MiB file through the mount in 1 MiB
// writes; the time includes the upload at close (or, with write-back,
// only the staging).
func BenchmarkSeqWrite(b *testing.B) {
	data := randomBytes(1<<20, 2)
	for _, wb := range []bool{false, true} {
		b.Run(fmt.Sprintf("writeback=%v", wb), func(b *testing.B) {
			tm := mountFake(b, func(o *Options) { o.WriteBack = wb })
			b.SetBytes(benchSize)
			i := 0
			for b.Loop() {
				f, err := os.Create(tm.path(fmt.Sprintf("f%d", i)))
				if err != nil {
					b.Fatal(err)
				}
				for off := 0; off < benchSize; off += len(data) {
					if _, err := f.Write(data); err != nil {
						b.Fatal(err)
					}
				}
				if err := f.Close(); err != nil {
					b.Fatal(err)
				}
				i++
			}
			b.StopTimer()
			tm.m.WaitUploads(context.Background())
		})
	}
}

// BenchmarkSeqRead reads a 64 MiB object through the mount: cold (every
// byte fetched from the fake) and warm (served from cached blocks).
func BenchmarkSeqRead(b *testing.B) {
	data := randomBytes(benchSize, 3)
	buf := make([]byte, 1<<20)
	read := func(b *testing.B, p string) {
		f, err := os.Open(p)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		n, err := io.CopyBuffer(io.Discard, f, buf)
		if err != nil || n != benchSize {
			b.Fatalf("read %d bytes: %v", n, err)
		}
	}
	b.Run("cold", func(b *testing.B) {
		fake := cachetest.NewFake()
		tm := mountWith(b, fake, b.TempDir(), nil)
		b.SetBytes(benchSize)
		i := 0
		for b.Loop() {
			b.StopTimer()
			key := fmt.Sprintf("o%d", i) // a new object: nothing cached
			fake.Store(testBucket, key, data, cos.Meta{})
			tm.m.cache.Forget()
			b.StartTimer()
			read(b, tm.path(key))
			i++
		}
	})
	b.Run("warm", func(b *testing.B) {
		fake := cachetest.NewFake()
		fake.Store(testBucket, "o", data, cos.Meta{})
		tm := mountWith(b, fake, b.TempDir(), nil)
		read(b, tm.path("o"))
		b.SetBytes(benchSize)
		for b.Loop() {
			read(b, tm.path("o"))
		}
	})
}

// BenchmarkSmallFiles creates 200 files of 4 KiB per iteration (the
// per-file cost: lookup, create, write, upload at close) and reports files
// per second.
func BenchmarkSmallFiles(b *testing.B) {
	const files = 200
	data := randomBytes(4<<10, 4)
	for _, wb := range []bool{false, true} {
		b.Run(fmt.Sprintf("writeback=%v", wb), func(b *testing.B) {
			tm := mountFake(b, func(o *Options) { o.WriteBack = wb })
			i := 0
			start := time.Now()
			for b.Loop() {
				dir := tm.path(fmt.Sprintf("d%d", i))
				if err := os.Mkdir(dir, 0o755); err != nil {
					b.Fatal(err)
				}
				for j := 0; j < files; j++ {
					if err := os.WriteFile(fmt.Sprintf("%s/f%d", dir, j), data, 0o644); err != nil {
						b.Fatal(err)
					}
				}
				i++
			}
			b.ReportMetric(float64(i*files)/time.Since(start).Seconds(), "files/s")
			b.StopTimer()
			tm.m.WaitUploads(context.Background())
		})
	}
}
