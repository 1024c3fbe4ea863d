package cos_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chute/chute/cos"
)

func newFolder(t *testing.T, dir string) *cos.Folder {
	t.Helper()
	f, err := cos.NewFolder(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func folderWithBucket(t *testing.T) (*cos.Folder, string) {
	t.Helper()
	f := newFolder(t, t.TempDir())
	if err := f.CreateBucket(context.Background(), "bkt"); err != nil {
		t.Fatal(err)
	}
	return f, "bkt"
}

// TestFolderSymlinksDoNotEscape plants links out of the root by hand: the
// store must not read or write through them.
func TestFolderSymlinksDoNotEscape(t *testing.T) {
	f, bucket := folderWithBucket(t)
	ctx := context.Background()
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	bdir := filepath.Join(f.Dir(), bucket)
	links := map[string]string{
		"abs-dir":  outside,
		"abs-file": filepath.Join(outside, "secret"),
		"rel-dir":  "../../" + filepath.Base(outside),
	}
	// A relative link climbing out of the root: make it resolve for real.
	rel, err := filepath.Rel(bdir, outside)
	if err != nil {
		t.Fatal(err)
	}
	links["rel-dir"] = rel
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(bdir, name)); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct{ key string }{{"abs-dir/secret"}, {"abs-file"}, {"rel-dir/secret"}}
	for _, tc := range tests {
		t.Run(tc.key, func(t *testing.T) {
			if rc, err := f.Read(ctx, bucket, tc.key, cos.ReadOptions{Length: -1}); err == nil {
				b, _ := io.ReadAll(rc)
				rc.Close()
				t.Errorf("Read(%s) through a link out of the root gave %q", tc.key, b)
			}
			if _, err := f.Stat(ctx, bucket, tc.key); err == nil {
				t.Errorf("Stat(%s) through a link out of the root succeeded", tc.key)
			}
			if dir, _, ok := strings.Cut(tc.key, "/"); ok {
				if _, err := f.Put(ctx, bucket, dir+"/planted", strings.NewReader("x"), 1, cos.Meta{}); err == nil {
					t.Errorf("Put(%s/planted) through a link out of the root succeeded", dir)
				}
			}
		})
	}
	if _, err := os.Stat(filepath.Join(outside, "planted")); err == nil {
		t.Error("a file appeared outside the root")
	}
	page, err := f.List(ctx, bucket, cos.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range page.Objects {
		t.Errorf("List shows %s; the bucket holds only links", o.Key)
	}
}

// TestFolderNoReservedNames checks that names resembling the store's own
// (its internal folder, the record tags) are ordinary keys.
func TestFolderNoReservedNames(t *testing.T) {
	f, bucket := folderWithBucket(t)
	ctx := context.Background()
	keys := []string{".chute-file", ".chute/meta/x", ".chute/tmp/", "o.a", "d.b/o.c", "p.d/", "x/o.x", "x/p.x", "x/d.x/y"}
	for i, k := range keys {
		var body []byte
		if !cos.IsFolderKey(k) {
			body = []byte(k)
		}
		if _, err := f.Put(ctx, bucket, k, bytes.NewReader(body), int64(len(body)), cos.Meta{UID: ptr(uint32(i))}); err != nil {
			t.Fatalf("Put(%s): %v", k, err)
		}
	}
	for i, k := range keys {
		st, err := f.Stat(ctx, bucket, k)
		if err != nil || st.Meta.UID == nil || *st.Meta.UID != uint32(i) {
			t.Errorf("Stat(%s) = uid %v, %v; want %d", k, st.Meta.UID, err, i)
		}
	}
	page, err := f.List(ctx, bucket, cos.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Objects) != len(keys) {
		var got []string
		for _, o := range page.Objects {
			got = append(got, o.Key)
		}
		t.Errorf("List shows %q; want the %d keys put", got, len(keys))
	}
}

func ptr[T any](v T) *T { return &v }

// TestFolderRecordMustMatchData edits data files by hand: a record that no
// longer matches its data is ignored rather than shown with other bytes.
func TestFolderRecordMustMatchData(t *testing.T) {
	f, bucket := folderWithBucket(t)
	ctx := context.Background()
	mtime := time.Unix(1600000000, 0)
	if _, err := f.Put(ctx, bucket, "doc", strings.NewReader("version one"), 11, cos.Meta{Mtime: mtime, Mode: 0o100600}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(f.Dir(), bucket, "doc")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.ModTime().Equal(mtime) {
		t.Errorf("the data file's own mtime is %v; want the object's mtime %v", fi.ModTime(), mtime)
	}
	tests := []struct {
		name string
		edit func() error
	}{
		{"rewritten, other size", func() error { return os.WriteFile(path, []byte("edited by hand"), 0o644) }},
		{"same size, touched", func() error {
			if err := os.WriteFile(path, []byte("version two"), 0o644); err != nil {
				return err
			}
			return os.Chtimes(path, time.Now(), time.Now())
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := f.Put(ctx, bucket, "doc", strings.NewReader("version one"), 11, cos.Meta{Mtime: mtime, Mode: 0o100600}); err != nil {
				t.Fatal(err)
			}
			if err := tc.edit(); err != nil {
				t.Fatal(err)
			}
			st, err := f.Stat(ctx, bucket, "doc")
			if err != nil {
				t.Fatal(err)
			}
			if st.Meta.Mode != 0 || !st.Meta.Mtime.IsZero() {
				t.Errorf("after an edit by hand Stat shows the old record: %+v", st.Meta)
			}
			fi, _ := os.Stat(path)
			if st.Size != fi.Size() || !st.LastModified.Equal(fi.ModTime()) {
				t.Errorf("Stat = size %d, modified %v; want the file's %d, %v", st.Size, st.LastModified, fi.Size(), fi.ModTime())
			}
		})
	}
}

func TestFolderFilesPlacedByHand(t *testing.T) {
	f, bucket := folderWithBucket(t)
	ctx := context.Background()
	bdir := filepath.Join(f.Dir(), bucket)
	if err := os.MkdirAll(filepath.Join(bdir, "seed/deep"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"seed/a.txt", "seed/deep/b.txt"} {
		if err := os.WriteFile(filepath.Join(bdir, name), []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(bdir, "empty/dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	keys, prefixes := list(t, f, bucket, cos.ListOptions{Delimiter: "/"})
	if len(keys) != 0 || strings.Join(prefixes, ",") != "seed/" {
		t.Errorf("top level: objects %q prefixes %q; want none and [seed/] (an empty folder is no prefix)", keys, prefixes)
	}
	keys, _ = list(t, f, bucket, cos.ListOptions{})
	if strings.Join(keys, ",") != "seed/a.txt,seed/deep/b.txt" {
		t.Errorf("flat listing %q", keys)
	}
	for _, prefix := range []string{"../", "../bkt/seed/", "seed//", "./seed/", "/seed/"} {
		if keys, prefixes := list(t, f, bucket, cos.ListOptions{Prefix: prefix}); len(keys)+len(prefixes) != 0 {
			t.Errorf("List(prefix %q) = %q %q; want nothing", prefix, keys, prefixes)
		}
	}
	st, err := f.Stat(ctx, bucket, "seed/a.txt")
	if err != nil || st.Size != int64(len("seed/a.txt")) || st.ETag == "" {
		t.Errorf("Stat of a file placed by hand: %+v, %v", st, err)
	}
}

func list(t *testing.T, s cos.Store, bucket string, opt cos.ListOptions) (keys, prefixes []string) {
	t.Helper()
	page, err := s.List(context.Background(), bucket, opt)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range page.Objects {
		keys = append(keys, o.Key)
	}
	return keys, page.CommonPrefixes
}

func TestFolderConflictSaysWhy(t *testing.T) {
	f, bucket := folderWithBucket(t)
	ctx := context.Background()
	if _, err := f.Put(ctx, bucket, "a/b", strings.NewReader("x"), 1, cos.Meta{}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Put(ctx, bucket, "c", strings.NewReader("x"), 1, cos.Meta{}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		key, want string
	}{
		{"a", `keys under "a/" exist`},
		{"c/d", `object "c" exists`},
		{"c/d/e", `object "c" exists`},
		{"c/", `object "c" exists`},
	}
	for _, tc := range tests {
		_, err := f.Put(ctx, bucket, tc.key, strings.NewReader(""), 0, cos.Meta{})
		if !errors.Is(err, cos.ErrConflict) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Put(%s) = %v; want ErrConflict saying %q", tc.key, err, tc.want)
		}
	}
	if _, err := f.Copy(ctx, bucket, "c", "a", nil); !errors.Is(err, cos.ErrConflict) {
		t.Errorf("Copy onto a folder = %v; want ErrConflict", err)
	}
}

func TestFolderOpen(t *testing.T) {
	dir := t.TempDir()
	f := newFolder(t, dir)
	f.Close()
	tmp := filepath.Join(dir, ".chute", "tmp")
	old, fresh := filepath.Join(tmp, "put-old"), filepath.Join(tmp, "put-fresh")
	for _, p := range []string{old, fresh} {
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	past := time.Now().Add(-2 * time.Hour)
	os.Chtimes(old, past, past)
	newFolder(t, dir)
	if _, err := os.Stat(old); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a temporary file two hours old survived NewFolder: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("a fresh temporary file (another writer's) was removed: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".chute", "format"), []byte("chute folder store, format 99\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := cos.NewFolder(dir); err == nil || !strings.Contains(err.Error(), "format 99") {
		t.Errorf("NewFolder on an unknown format = %v; want an error naming it", err)
	}
}

// TestFolderUploadLeftAfterCrash simulates a crash after Complete renamed
// the data but before it removed the upload's folder.
func TestFolderUploadLeftAfterCrash(t *testing.T) {
	dir := t.TempDir()
	f := newFolder(t, dir)
	ctx := context.Background()
	if err := f.CreateBucket(ctx, "bkt"); err != nil {
		t.Fatal(err)
	}
	u, err := f.CreateUpload(ctx, "bkt", "k", cos.UploadOptions{Size: 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u.WritePart(ctx, 1, strings.NewReader("abc")); err != nil {
		t.Fatal(err)
	}
	updir := filepath.Join(dir, ".chute", "uploads", u.ID())
	if err := os.Rename(filepath.Join(updir, "data"), filepath.Join(dir, "bkt", "k")); err != nil {
		t.Fatal(err)
	}
	_, err = newFolder(t, dir).ResumeUpload(ctx, "bkt", "k", u.ID())
	if !errors.Is(err, cos.ErrNotFound) {
		t.Errorf("ResumeUpload of an upload whose data was committed = %v; want ErrNotFound", err)
	}
	n, err := f.AbortStaleUploads(ctx, "bkt", time.Now().Add(time.Minute))
	if err != nil || n != 1 {
		t.Errorf("AbortStaleUploads = %d, %v; want the leftover cleaned (1)", n, err)
	}
	if _, err := os.Stat(updir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the leftover upload folder is still there: %v", err)
	}
}

// TestFolderSetUploadMeta: metadata learnt after the upload began is what
// the object gets, also when the upload is found again after a restart.
func TestFolderSetUploadMeta(t *testing.T) {
	dir := t.TempDir()
	f := newFolder(t, dir)
	ctx := context.Background()
	if err := f.CreateBucket(ctx, "bkt"); err != nil {
		t.Fatal(err)
	}
	u, err := f.CreateUpload(ctx, "bkt", "k", cos.UploadOptions{Size: 3, Meta: cos.Meta{Mode: 0o100640}})
	if err != nil {
		t.Fatal(err)
	}
	sum := strings.Repeat("ab", 32)
	var late cos.LateMeta = f
	if err := late.SetUploadMeta(ctx, u, cos.Meta{Mode: 0o100640, SHA256: sum}); err != nil {
		t.Fatal(err)
	}
	// Another store on the same folder (a restarted node) finishes it.
	g := newFolder(t, dir)
	u2, err := g.ResumeUpload(ctx, "bkt", "k", u.ID())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u2.WritePart(ctx, 1, strings.NewReader("abc")); err != nil {
		t.Fatal(err)
	}
	o, err := u2.Complete(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if o.Meta.SHA256 != sum || o.Meta.Mode != 0o100640 {
		t.Errorf("completed object's meta: sha256 %q mode %o; want %q and 100640", o.Meta.SHA256, o.Meta.Mode, sum)
	}
	if st, err := g.Stat(ctx, "bkt", "k"); err != nil || st.Meta.SHA256 != sum {
		t.Errorf("Stat after Complete: %+v, %v; want sha256 %q", st.Meta, err, sum)
	}
	if err := late.SetUploadMeta(ctx, u, cos.Meta{}); !errors.Is(err, cos.ErrNotFound) {
		t.Errorf("SetUploadMeta on a completed upload = %v; want ErrNotFound", err)
	}
}
