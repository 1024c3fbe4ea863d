package engine

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkLoopbackUpload and BenchmarkLoopbackDownload move a file through
// a server with a folder store on loopback, client and server in this
// process. Bytes per second are the goodput.
func BenchmarkLoopbackUpload(b *testing.B) {
	for _, size := range []int{64 << 20, 256 << 20} {
		b.Run(fmt.Sprintf("%dMiB", size>>20), func(b *testing.B) {
			n := startNode(b, nil, "")
			c := n.client(b)
			data := randomBytes(size, 1)
			b.SetBytes(int64(size))
			for i := 0; b.Loop(); i++ {
				res, err := c.Upload(context.Background(), UploadRequest{Bucket: "photos", Key: fmt.Sprint("bench/", i), Source: bytes.NewReader(data), Size: int64(size), Resume: ResumeNone})
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(res.Retrans)/float64(size)*100, "%retrans")
			}
		})
	}
}

func BenchmarkLoopbackDownload(b *testing.B) {
	for _, size := range []int{64 << 20, 256 << 20} {
		b.Run(fmt.Sprintf("%dMiB", size>>20), func(b *testing.B) {
			n := startNode(b, nil, "")
			c := n.client(b)
			data := randomBytes(size, 1)
			if _, err := c.Upload(context.Background(), UploadRequest{Bucket: "photos", Key: "src", Source: bytes.NewReader(data), Size: int64(size)}); err != nil {
				b.Fatal(err)
			}
			dir := b.TempDir()
			b.SetBytes(int64(size))
			for i := 0; b.Loop(); i++ {
				f, err := os.Create(filepath.Join(dir, fmt.Sprint(i)))
				if err != nil {
					b.Fatal(err)
				}
				res, err := c.Download(context.Background(), DownloadRequest{Bucket: "photos", Key: "src", Length: -1, Dest: f})
				f.Close()
				os.Remove(f.Name())
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(res.Retrans)/float64(size)*100, "%retrans")
			}
		})
	}
}
