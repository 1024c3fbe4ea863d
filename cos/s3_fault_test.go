package cos_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/chute/chute/cos"
	"github.com/chute/chute/cos/s3test"
)

func fastFailing(t *testing.T, srv *s3test.Server) *cos.S3 {
	t.Helper()
	cfg := srv.Config()
	cfg.MaxRetries = 2
	s, err := cos.NewS3Unchecked(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestS3KilledMidTransfer kills SeaweedFS in the middle of a Put and of a
// multipart upload: calls fail with ErrUnavailable, no object appears
// under either key, and after a restart the upload resumes by ID in a new
// store and completes.
func TestS3KilledMidTransfer(t *testing.T) {
	t.Parallel() // a private server; it mostly waits for it
	srv := s3test.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bucket := srv.NewBucket(t)
	store := fastFailing(t, srv)
	const part = cos.MinPartSize
	body := randomBytes(7, 3*part-1000)
	u, err := store.CreateUpload(ctx, bucket, "big", cos.UploadOptions{Size: int64(len(body)), PartSize: part, Meta: cos.Meta{Mode: 0o100640}})
	if err != nil {
		t.Fatal(err)
	}
	sec := func(n int) *io.SectionReader {
		off, l := cos.PartRange(u.Size(), u.PartSize(), n)
		return io.NewSectionReader(bytes.NewReader(body), off, l)
	}
	if _, err := u.WritePart(ctx, 1, sec(1)); err != nil {
		t.Fatal(err)
	}
	id := u.ID()

	// Put streams a multipart object; its reader kills the server once two
	// parts have gone.
	putBody := randomBytes(8, 4*part)
	r := &killingReader{r: bytes.NewReader(putBody), after: 2*part + 1, kill: func() { srv.Kill() }}
	if _, err := store.Put(ctx, bucket, "put", r, int64(len(putBody)), cos.Meta{}); !errors.Is(err, cos.ErrUnavailable) {
		t.Errorf("Put while the server dies: %v; want ErrUnavailable", err)
	}
	if !r.done {
		t.Fatal("the server was never killed")
	}
	if _, err := u.WritePart(ctx, 2, sec(2)); !errors.Is(err, cos.ErrUnavailable) {
		t.Errorf("WritePart with the server down: %v; want ErrUnavailable", err)
	}
	if _, err := u.Complete(ctx); !errors.Is(err, cos.ErrUnavailable) {
		t.Errorf("Complete with the server down: %v; want ErrUnavailable", err)
	}

	if err := srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"big", "put"} {
		if _, err := store.Stat(ctx, bucket, key); !errors.Is(err, cos.ErrNotFound) {
			t.Errorf("Stat(%s) after the crash: %v; want ErrNotFound (nothing visible before Complete)", key, err)
		}
	}
	other := srv.Store(t) // another server process, in effect
	ru, err := other.ResumeUpload(ctx, bucket, "big", id)
	if err != nil {
		t.Fatalf("ResumeUpload after the restart: %v", err)
	}
	if got := partNumbers(ru.Parts()); len(got) != 1 || got[0] != 1 {
		t.Fatalf("after the restart the upload holds parts %v; want [1]", got)
	}
	for _, n := range []int{3, 2} {
		if _, err := ru.WritePart(ctx, n, sec(n)); err != nil {
			t.Fatalf("WritePart(%d) after the restart: %v", n, err)
		}
	}
	if _, err := ru.Complete(ctx); err != nil {
		t.Fatalf("Complete after the restart: %v", err)
	}
	st, err := other.Stat(ctx, bucket, "big")
	if err != nil || st.Size != int64(len(body)) || st.Meta.Mode != 0o100640 {
		t.Errorf("the completed object: size %d mode %o, %v", st.Size, st.Meta.Mode, err)
	}
	rc, err := other.Read(ctx, bucket, "big", cos.ReadOptions{Length: -1})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, body) {
		t.Errorf("the completed object reads %d bytes, %v; want the %d sent", len(got), err, len(body))
	}
}

type killingReader struct {
	r     io.Reader
	n     int
	after int
	kill  func()
	done  bool
}

func (k *killingReader) Read(p []byte) (int, error) {
	if !k.done && k.n >= k.after {
		k.done = true
		k.kill()
	}
	n, err := k.r.Read(p)
	k.n += n
	return n, err
}

func partNumbers(ps []cos.Part) []int {
	var out []int
	for _, p := range ps {
		out = append(out, p.Number)
	}
	return out
}
