package costest

import (
	"bytes"
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chute/chute/cos"
)

// A three-part object at the smallest part size S3 allows.
const (
	upPart = cos.MinPartSize
	upSize = 2*upPart + 12345
)

func section(b []byte, u cos.Upload, n int) *io.SectionReader {
	off, size := cos.PartRange(u.Size(), u.PartSize(), n)
	return io.NewSectionReader(bytes.NewReader(b), off, size)
}

func createUpload(t *testing.T, ctx context.Context, s cos.Store, bucket, key string, size int64, meta cos.Meta) cos.Upload {
	t.Helper()
	u, err := s.CreateUpload(ctx, bucket, key, cos.UploadOptions{Size: size, PartSize: upPart, Meta: meta})
	if err != nil {
		t.Fatalf("CreateUpload(%s, %d bytes): %v", key, size, err)
	}
	if u.ID() == "" || u.Bucket() != bucket || u.Key() != key || u.Size() != size {
		t.Fatalf("CreateUpload gave id %q bucket %q key %q size %d", u.ID(), u.Bucket(), u.Key(), u.Size())
	}
	return u
}

func writePart(t *testing.T, ctx context.Context, u cos.Upload, b []byte, n int) cos.Part {
	t.Helper()
	p, err := u.WritePart(ctx, n, section(b, u, n))
	if err != nil {
		t.Fatalf("WritePart(%d): %v", n, err)
	}
	_, size := cos.PartRange(u.Size(), u.PartSize(), n)
	if p.Number != n || p.Size != size {
		t.Errorf("WritePart(%d) returned part %d of %d bytes; want %d bytes", n, p.Number, p.Size, size)
	}
	return p
}

func partNumbers(ps []cos.Part) []int {
	var out []int
	for _, p := range ps {
		out = append(out, p.Number)
	}
	return out
}

func testUploadOutOfOrder(t *testing.T, e env) {
	ctx, s, bucket := setup(t, e.newStore)
	body := data(20, upSize)
	meta := cos.Meta{Mtime: time.Unix(1700000000, 7), Mode: 0o100644}
	u := createUpload(t, ctx, s, bucket, "big/object", upSize, meta)
	if u.PartSize() != upPart || u.NumParts() != 3 {
		t.Fatalf("part size %d, %d parts; want %d and 3", u.PartSize(), u.NumParts(), upPart)
	}
	writePart(t, ctx, u, body, 3)
	var wg sync.WaitGroup
	for _, n := range []int{2, 1} {
		wg.Go(func() {
			if _, err := u.WritePart(ctx, n, section(body, u, n)); err != nil {
				t.Errorf("concurrent WritePart(%d): %v", n, err)
			}
		})
	}
	wg.Wait()
	if got := partNumbers(u.Parts()); len(got) != 3 || got[0] != 1 || got[2] != 3 {
		t.Errorf("Parts() = %v; want [1 2 3]", got)
	}
	oi, err := u.Complete(ctx)
	if err != nil {
		t.Fatalf("Complete: %v", err)
	}
	if oi.Size != upSize {
		t.Errorf("Complete reported size %d; want %d", oi.Size, upSize)
	}
	st, err := s.Stat(ctx, bucket, "big/object")
	if err != nil || st.Size != upSize || !st.Meta.Equal(meta) {
		t.Errorf("Stat after Complete: size %d meta %+v, %v; want %d, %+v", st.Size, st.Meta, err, upSize, meta)
	}
	if got := read(t, ctx, s, bucket, "big/object", 0, -1); !bytes.Equal(got, body) {
		t.Errorf("the completed object reads %s; want the %d bytes sent", describe(got), len(body))
	}
	_, err = u.Complete(ctx)
	wantErr(t, "Complete twice", err, cos.ErrNotFound)
}

func testUploadRewritePart(t *testing.T, e env) {
	ctx, s, bucket := setup(t, e.newStore)
	body := data(21, upSize)
	u := createUpload(t, ctx, s, bucket, "rewritten", upSize, cos.Meta{})
	junk := data(22, upSize)
	for n := 1; n <= 3; n++ {
		writePart(t, ctx, u, junk, n)
	}
	writePart(t, ctx, u, body, 2)
	writePart(t, ctx, u, body, 1)
	writePart(t, ctx, u, body, 3)
	if _, err := u.Complete(ctx); err != nil {
		t.Fatal(err)
	}
	if got := read(t, ctx, s, bucket, "rewritten", 0, -1); !bytes.Equal(got, body) {
		t.Errorf("after rewriting every part the object reads %s; want the second writes", describe(got))
	}
}

func testUploadResume(t *testing.T, e env) {
	ctx, s, bucket := setup(t, e.newStore)
	body := data(23, upSize)
	meta := cos.Meta{Mode: 0o100600}
	u := createUpload(t, ctx, s, bucket, "resumed", upSize, meta)
	p1 := writePart(t, ctx, u, body, 1)
	writePart(t, ctx, u, body, 3)
	id := u.ID()

	other := e.newStore(t) // another server, or this one restarted
	r, err := other.ResumeUpload(ctx, bucket, "resumed", id)
	if err != nil {
		t.Fatalf("ResumeUpload from a new store instance: %v", err)
	}
	if r.ID() != id || r.Size() != upSize || r.PartSize() != upPart || r.NumParts() != 3 {
		t.Errorf("resumed upload: id %q size %d part size %d parts %d; want %q %d %d 3", r.ID(), r.Size(), r.PartSize(), r.NumParts(), id, upSize, upPart)
	}
	parts := r.Parts()
	if got := partNumbers(parts); len(got) != 2 || got[0] != 1 || got[1] != 3 {
		t.Fatalf("resumed upload holds parts %v; want [1 3]", got)
	}
	if parts[0].Size != p1.Size || (p1.ETag != "" && parts[0].ETag != p1.ETag) {
		t.Errorf("resumed part 1 = %+v; want %+v", parts[0], p1)
	}
	writePart(t, ctx, r, body, 2)
	if _, err := r.Complete(ctx); err != nil {
		t.Fatalf("Complete of the resumed upload: %v", err)
	}
	st, err := s.Stat(ctx, bucket, "resumed")
	if err != nil || !st.Meta.Equal(meta) {
		t.Errorf("resumed object: meta %+v, %v; want %+v", st.Meta, err, meta)
	}
	if got := read(t, ctx, s, bucket, "resumed", 0, -1); !bytes.Equal(got, body) {
		t.Errorf("resumed object reads %s", describe(got))
	}
	_, err = other.ResumeUpload(ctx, bucket, "resumed", id)
	wantErr(t, "ResumeUpload of a completed upload", err, cos.ErrNotFound)
}

func testUploadMissingPart(t *testing.T, e env) {
	ctx, s, bucket := setup(t, e.newStore)
	body := data(24, upSize)
	u := createUpload(t, ctx, s, bucket, "gappy", upSize, cos.Meta{})
	writePart(t, ctx, u, body, 1)
	writePart(t, ctx, u, body, 3)
	_, err := u.Complete(ctx)
	wantErr(t, "Complete without part 2", err, cos.ErrConflict)
	if err != nil && !strings.Contains(err.Error(), "2") {
		t.Errorf("the error %q does not name the missing part", err)
	}
	_, err = s.Stat(ctx, bucket, "gappy")
	wantErr(t, "Stat after a refused Complete", err, cos.ErrNotFound)
	writePart(t, ctx, u, body, 2)
	if _, err := u.Complete(ctx); err != nil {
		t.Fatalf("Complete once the part is there: %v", err)
	}
	if got := read(t, ctx, s, bucket, "gappy", 0, -1); !bytes.Equal(got, body) {
		t.Errorf("object reads %s", describe(got))
	}
}

func testUploadAtomic(t *testing.T, e env) {
	ctx, s, bucket := setup(t, e.newStore)
	old := []byte("the previous object")
	put(t, ctx, s, bucket, "replaced", old, cos.Meta{})
	body := data(25, upSize)
	u := createUpload(t, ctx, s, bucket, "replaced", upSize, cos.Meta{})
	for n := 1; n <= 3; n++ {
		writePart(t, ctx, u, body, n)
		if got := read(t, ctx, s, bucket, "replaced", 0, -1); !bytes.Equal(got, old) {
			t.Fatalf("after part %d of an upload the key reads %s; want the previous object until Complete", n, describe(got))
		}
	}
	if _, err := u.Complete(ctx); err != nil {
		t.Fatal(err)
	}
	if got := read(t, ctx, s, bucket, "replaced", 0, -1); !bytes.Equal(got, body) {
		t.Errorf("after Complete the key reads %s; want the upload", describe(got))
	}
}

func testUploadAbort(t *testing.T, e env) {
	ctx, s, bucket := setup(t, e.newStore)
	body := data(26, upSize)
	u := createUpload(t, ctx, s, bucket, "aborted", upSize, cos.Meta{})
	writePart(t, ctx, u, body, 1)
	if err := u.Abort(ctx); err != nil {
		t.Fatalf("Abort: %v", err)
	}
	_, err := s.ResumeUpload(ctx, bucket, "aborted", u.ID())
	wantErr(t, "ResumeUpload after Abort", err, cos.ErrNotFound)
	_, err = s.Stat(ctx, bucket, "aborted")
	wantErr(t, "Stat after Abort", err, cos.ErrNotFound)
	if err := u.Abort(ctx); err != nil {
		t.Errorf("Abort twice: %v; want nil", err)
	}
	_, err = u.Complete(ctx)
	wantErr(t, "Complete after Abort", err, cos.ErrNotFound)
}

func testUploadAbortStale(t *testing.T, e env) {
	ctx, s, bucket := setup(t, e.newStore)
	before := time.Now().Add(-time.Hour)
	a := createUpload(t, ctx, s, bucket, "stale/a", upSize, cos.Meta{})
	b := createUpload(t, ctx, s, bucket, "stale/b", 10, cos.Meta{})
	writePart(t, ctx, a, data(27, upSize), 2)
	n, err := s.AbortStaleUploads(ctx, bucket, before)
	if err != nil || n != 0 {
		t.Fatalf("AbortStaleUploads(an hour ago) = %d, %v; want 0, nil", n, err)
	}
	if _, err := s.ResumeUpload(ctx, bucket, "stale/a", a.ID()); err != nil {
		t.Fatalf("a fresh upload was touched by AbortStaleUploads: %v", err)
	}
	n, err = s.AbortStaleUploads(ctx, bucket, time.Now().Add(time.Hour))
	if err != nil || n != 2 {
		t.Fatalf("AbortStaleUploads(in an hour) = %d, %v; want 2, nil", n, err)
	}
	for _, u := range []cos.Upload{a, b} {
		_, err := s.ResumeUpload(ctx, bucket, u.Key(), u.ID())
		wantErr(t, "ResumeUpload of an aborted stale upload", err, cos.ErrNotFound)
	}
}

func testUploadEmpty(t *testing.T, e env) {
	ctx, s, bucket := setup(t, e.newStore)
	u := createUpload(t, ctx, s, bucket, "empty-upload", 0, cos.Meta{Mode: 0o100600})
	if u.NumParts() != 1 {
		t.Fatalf("an empty upload has %d parts; want 1", u.NumParts())
	}
	if _, err := u.WritePart(ctx, 1, bytes.NewReader(nil)); err != nil {
		t.Fatalf("WritePart(1, empty): %v", err)
	}
	oi, err := u.Complete(ctx)
	if err != nil || oi.Size != 0 {
		t.Fatalf("Complete = size %d, %v; want 0, nil", oi.Size, err)
	}
	if st, err := s.Stat(ctx, bucket, "empty-upload"); err != nil || st.Size != 0 || st.Meta.Mode != 0o100600 {
		t.Errorf("Stat of the empty upload: size %d mode %o, %v", st.Size, st.Meta.Mode, err)
	}
}

func testUploadBadParts(t *testing.T, e env) {
	ctx, s, bucket := setup(t, e.newStore)
	body := data(28, upSize)
	u := createUpload(t, ctx, s, bucket, "bad-parts", upSize, cos.Meta{})
	tests := []struct {
		name string
		n    int
		r    io.Reader
	}{
		{"number 0", 0, bytes.NewReader(body[:upPart])},
		{"number past the end", 4, bytes.NewReader(body[:upPart])},
		{"too short", 1, bytes.NewReader(body[:upPart-1])},
		{"too long", 1, bytes.NewReader(body[:upPart+1])},
		{"too short, unsized reader", 2, io.MultiReader(bytes.NewReader(body[:100]))},
		{"reader fails", 3, &errReader{b: body[:10], err: errInjected}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := u.WritePart(ctx, tc.n, tc.r); err == nil {
				t.Errorf("WritePart(%d) succeeded", tc.n)
			}
		})
	}
	if got := u.Parts(); len(got) != 0 {
		t.Errorf("after only bad writes the upload holds parts %v", partNumbers(got))
	}
	if err := u.Abort(ctx); err != nil {
		t.Error(err)
	}
}

func testUploadWrongID(t *testing.T, e env) {
	ctx, s, bucket := setup(t, e.newStore)
	u := createUpload(t, ctx, s, bucket, "right", upSize, cos.Meta{})
	defer u.Abort(ctx)
	for _, tc := range []struct{ name, key, id string }{
		{"garbage id", "right", "no-such-upload"},
		{"empty id", "right", ""},
		{"other key", "wrong", u.ID()},
	} {
		_, err := s.ResumeUpload(ctx, bucket, tc.key, tc.id)
		wantErr(t, "ResumeUpload with "+tc.name, err, cos.ErrNotFound)
	}
}
