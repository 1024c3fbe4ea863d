package cos

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// TestFolderWritePartFromFile writes parts cut from a local file (the path
// a transfer node takes, copied inside the kernel) and checks the object.
func TestFolderWritePartFromFile(t *testing.T) {
	ctx := context.Background()
	f, err := NewFolder(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := f.CreateBucket(ctx, "bkt"); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 2*MinPartSize+12345)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	// The staging file holds the object at an offset, as part of a larger file.
	src, err := os.Create(filepath.Join(t.TempDir(), "staging"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	const lead = 4096
	if _, err := src.WriteAt(data, lead); err != nil {
		t.Fatal(err)
	}
	up, err := f.CreateUpload(ctx, "bkt", "k", UploadOptions{Size: int64(len(data)), PartSize: MinPartSize})
	if err != nil {
		t.Fatal(err)
	}
	for n := up.NumParts(); n >= 1; n-- { // out of order on purpose
		off, size := PartRange(up.Size(), up.PartSize(), n)
		if _, err := up.WritePart(ctx, n, io.NewSectionReader(src, lead+off, size)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := up.Complete(ctx); err != nil {
		t.Fatal(err)
	}
	rc, err := f.Read(ctx, "bkt", "k", ReadOptions{Length: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, _ := io.ReadAll(rc)
	if !bytes.Equal(got, data) {
		t.Fatalf("object differs from the parts written (%d vs %d bytes)", len(got), len(data))
	}
}
