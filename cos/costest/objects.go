package costest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chute/chute/cos"
)

func testBuckets(t *testing.T, e env) {
	ctx := ctxFor(t)
	s := e.newStore(t)
	bucket := randomName()
	if ok, err := s.BucketExists(ctx, bucket); err != nil || ok {
		t.Fatalf("BucketExists(new name) = %v, %v; want false, nil", ok, err)
	}
	if err := s.CreateBucket(ctx, bucket); err != nil {
		t.Fatalf("CreateBucket: %v", err)
	}
	if ok, err := s.BucketExists(ctx, bucket); err != nil || !ok {
		t.Fatalf("BucketExists after CreateBucket = %v, %v; want true, nil", ok, err)
	}
	wantErr(t, "CreateBucket twice", s.CreateBucket(ctx, bucket), cos.ErrExists)
	for _, name := range []string{"ab", "Upper-case", "-dash-first", "dash-last-", "under_score", "a..b", "192.168.1.2", strings.Repeat("x", 64)} {
		wantErr(t, fmt.Sprintf("CreateBucket(%q)", name), s.CreateBucket(ctx, name), cos.ErrInvalidBucket)
		_, err := s.BucketExists(ctx, name)
		wantErr(t, fmt.Sprintf("BucketExists(%q)", name), err, cos.ErrInvalidBucket)
	}
}

func testMissingBucket(t *testing.T, e env) {
	ctx := ctxFor(t)
	s := e.newStore(t)
	bucket := randomName()
	_, err := s.Stat(ctx, bucket, "k")
	wantErr(t, "Stat in a missing bucket", err, cos.ErrNotFound)
	_, err = s.Put(ctx, bucket, "k", strings.NewReader("x"), 1, cos.Meta{})
	wantErr(t, "Put in a missing bucket", err, cos.ErrNotFound)
	_, err = s.List(ctx, bucket, cos.ListOptions{})
	wantErr(t, "List of a missing bucket", err, cos.ErrNotFound)
	_, err = s.CreateUpload(ctx, bucket, "k", cos.UploadOptions{Size: 1})
	wantErr(t, "CreateUpload in a missing bucket", err, cos.ErrNotFound)
}

func testInvalidKeys(t *testing.T, e env) {
	ctx, s, bucket := setup(t, e.newStore)
	put(t, ctx, s, bucket, "good", []byte("g"), cos.Meta{})
	bad := []string{"", "/abs", "a//b", "a/./b", "a/../b", "..", ".", "a/..", "nul\x00byte", "\xff\xfe", strings.Repeat("k", cos.MaxKeyLen+1)}
	for _, key := range bad {
		t.Run(fmt.Sprintf("%.20q", key), func(t *testing.T) {
			_, err := s.Stat(ctx, bucket, key)
			wantErr(t, "Stat", err, cos.ErrInvalidKey)
			_, err = s.Read(ctx, bucket, key, cos.ReadOptions{Length: -1})
			wantErr(t, "Read", err, cos.ErrInvalidKey)
			_, err = s.Put(ctx, bucket, key, strings.NewReader("x"), 1, cos.Meta{})
			wantErr(t, "Put", err, cos.ErrInvalidKey)
			wantErr(t, "Delete", s.Delete(ctx, bucket, key), cos.ErrInvalidKey)
			_, err = s.Copy(ctx, bucket, "good", key, nil)
			wantErr(t, "Copy to", err, cos.ErrInvalidKey)
			_, err = s.Copy(ctx, bucket, key, "good2", nil)
			wantErr(t, "Copy from", err, cos.ErrInvalidKey)
			_, err = s.CreateUpload(ctx, bucket, key, cos.UploadOptions{Size: 1})
			wantErr(t, "CreateUpload", err, cos.ErrInvalidKey)
		})
	}
	keys, _, _ := listAll(t, ctx, s, bucket, cos.ListOptions{})
	if !sameStrings(keys, []string{"good"}) {
		t.Errorf("after refusing invalid keys the bucket holds %q; want only \"good\"", keys)
	}
}

func testPutStatRead(t *testing.T, e env) {
	ctx, s, bucket := setup(t, e.newStore)
	body := data(1, 100_000)
	before := time.Now().Add(-2 * time.Second)
	oi := put(t, ctx, s, bucket, "dir/sub/file.bin", body, cos.Meta{})
	after := time.Now().Add(2 * time.Second)
	if oi.Key != "dir/sub/file.bin" || oi.Size != int64(len(body)) {
		t.Errorf("Put returned key %q size %d; want %q, %d", oi.Key, oi.Size, "dir/sub/file.bin", len(body))
	}
	st, err := s.Stat(ctx, bucket, "dir/sub/file.bin")
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	if st.Size != int64(len(body)) {
		t.Errorf("Stat size %d; want %d", st.Size, len(body))
	}
	if st.ETag == "" {
		t.Error("Stat: empty ETag")
	}
	if st.LastModified.Before(before) || st.LastModified.After(after) {
		t.Errorf("Stat LastModified %v; want between %v and %v", st.LastModified, before, after)
	}
	if !st.ModTime().Equal(st.LastModified) {
		t.Errorf("ModTime without mtime metadata = %v; want LastModified %v", st.ModTime(), st.LastModified)
	}
	if got := read(t, ctx, s, bucket, "dir/sub/file.bin", 0, -1); !bytes.Equal(got, body) {
		t.Errorf("Read whole object: got %s; want the %d bytes put", describe(got), len(body))
	}
}

func testReadRanges(t *testing.T, e env) {
	ctx, s, bucket := setup(t, e.newStore)
	body := data(2, 10_000)
	put(t, ctx, s, bucket, "r", body, cos.Meta{})
	size := int64(len(body))
	tests := []struct {
		name   string
		off, n int64
		lo, hi int64 // expected bytes body[lo:hi]
	}{
		{"whole", 0, -1, 0, size},
		{"head", 0, 5, 0, 5},
		{"middle", 3000, 1234, 3000, 4234},
		{"tail from offset", 9000, -1, 9000, size},
		{"past the end is cut", size - 10, 100, size - 10, size},
		{"last byte", size - 1, 1, size - 1, size},
		{"at the end is empty", size, -1, size, size},
		{"beyond the end is empty", size + 100, 10, size, size},
		{"zero length", 10, 0, 10, 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := read(t, ctx, s, bucket, "r", tc.off, tc.n)
			if want := body[tc.lo:tc.hi]; !bytes.Equal(got, want) {
				t.Errorf("Read(off %d, len %d): got %s; want body[%d:%d] (%d bytes)", tc.off, tc.n, describe(got), tc.lo, tc.hi, len(want))
			}
		})
	}
	_, err := s.Read(ctx, bucket, "r", cos.ReadOptions{Offset: -1, Length: 1})
	if err == nil {
		t.Error("Read with a negative offset succeeded")
	}
}

func testEmptyObject(t *testing.T, e env) {
	ctx, s, bucket := setup(t, e.newStore)
	put(t, ctx, s, bucket, "empty", nil, cos.Meta{Mode: 0o100600})
	st, err := s.Stat(ctx, bucket, "empty")
	if err != nil || st.Size != 0 {
		t.Fatalf("Stat(empty) = size %d, %v; want 0, nil", st.Size, err)
	}
	if st.Meta.Mode != 0o100600 {
		t.Errorf("empty object mode %o; want 100600", st.Meta.Mode)
	}
	for _, r := range [][2]int64{{0, -1}, {0, 10}, {5, -1}, {0, 0}} {
		if got := read(t, ctx, s, bucket, "empty", r[0], r[1]); len(got) != 0 {
			t.Errorf("Read(empty, off %d, len %d) = %q; want nothing", r[0], r[1], got)
		}
	}
}

func testMissing(t *testing.T, e env) {
	ctx, s, bucket := setup(t, e.newStore)
	_, err := s.Stat(ctx, bucket, "no/such/key")
	wantErr(t, "Stat", err, cos.ErrNotFound)
	var ce *cos.Error
	if errors.As(err, &ce) && (ce.Bucket != bucket || ce.Key != "no/such/key" || ce.Op == "") {
		t.Errorf("Stat error records op %q bucket %q key %q; want a non-empty op, %q and %q", ce.Op, ce.Bucket, ce.Key, bucket, "no/such/key")
	}
	_, err = s.Read(ctx, bucket, "no/such/key", cos.ReadOptions{Length: -1})
	wantErr(t, "Read", err, cos.ErrNotFound)
	_, err = s.Read(ctx, bucket, "no/such/key", cos.ReadOptions{Length: 0})
	wantErr(t, "Read of zero bytes", err, cos.ErrNotFound)
	_, err = s.Copy(ctx, bucket, "no/such/key", "dst", nil)
	wantErr(t, "Copy", err, cos.ErrNotFound)
	if _, err := s.Stat(ctx, bucket, "dst"); !errors.Is(err, cos.ErrNotFound) {
		t.Errorf("a failed Copy left dst behind (Stat: %v)", err)
	}
}

func testOverwrite(t *testing.T, e env) {
	ctx, s, bucket := setup(t, e.newStore)
	put(t, ctx, s, bucket, "k", data(3, 5000), cos.Meta{Mode: 0o100644, Other: map[string]string{"color": "red"}})
	v1, _ := s.Stat(ctx, bucket, "k")
	v2 := data(4, 1234)
	put(t, ctx, s, bucket, "k", v2, cos.Meta{UID: u32(7)})
	st, err := s.Stat(ctx, bucket, "k")
	if err != nil {
		t.Fatal(err)
	}
	if st.Size != int64(len(v2)) || st.ETag == v1.ETag {
		t.Errorf("after overwrite: size %d etag %q; want size %d and an etag other than %q", st.Size, st.ETag, len(v2), v1.ETag)
	}
	want := cos.Meta{UID: u32(7)}
	if !st.Meta.Equal(want) {
		t.Errorf("after overwrite the metadata is %+v; want only the new %+v (nothing kept from the old object)", st.Meta, want)
	}
	if got := read(t, ctx, s, bucket, "k", 0, -1); !bytes.Equal(got, v2) {
		t.Errorf("after overwrite Read gives %s; want the new bytes", describe(got))
	}
}

func testPutFailureKeepsOld(t *testing.T, e env) {
	ctx, s, bucket := setup(t, e.newStore)
	old := data(5, 3000)
	put(t, ctx, s, bucket, "k", old, cos.Meta{Mode: 0o100640})
	big := data(6, 6<<20) // more than one part, for stores that switch to multipart
	tests := []struct {
		name string
		r    io.Reader
		size int64
		meta cos.Meta
		want error
	}{
		{"reader fails", &errReader{b: data(7, 1000), err: errInjected}, 5000, cos.Meta{}, errInjected},
		{"reader fails in a large put", &errReader{b: big[:5<<20+100], err: errInjected}, int64(len(big)), cos.Meta{}, errInjected},
		{"reader fails, size unknown", &errReader{b: big[:5<<20+100], err: errInjected}, -1, cos.Meta{}, errInjected},
		{"reader too short", bytes.NewReader(data(8, 100)), 5000, cos.Meta{}, io.ErrUnexpectedEOF},
		{"checksum mismatch", bytes.NewReader(data(9, 100)), 100, cos.Meta{SHA256: strings.Repeat("ab", 32)}, cos.ErrChecksum},
		{"checksum mismatch in a large put", bytes.NewReader(big), int64(len(big)), cos.Meta{SHA256: strings.Repeat("cd", 32)}, cos.ErrChecksum},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Put(ctx, bucket, "k", tc.r, tc.size, tc.meta)
			if !errors.Is(err, tc.want) {
				t.Errorf("Put: got %v; want an error wrapping %v", err, tc.want)
			}
			if got := read(t, ctx, s, bucket, "k", 0, -1); !bytes.Equal(got, old) {
				t.Errorf("after a failed Put the key holds %s; want the old %d bytes", describe(got), len(old))
			}
			if st, err := s.Stat(ctx, bucket, "k"); err != nil || st.Meta.Mode != 0o100640 {
				t.Errorf("after a failed Put: mode %o, %v; want the old 100640", st.Meta.Mode, err)
			}
		})
	}
	sum := sha256.Sum256(big)
	put(t, ctx, s, bucket, "k", big, cos.Meta{SHA256: hex.EncodeToString(sum[:])})
	if st, err := s.Stat(ctx, bucket, "k"); err != nil || st.Size != int64(len(big)) || st.Meta.SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("Put with the right checksum: size %d sha256 %q, %v", st.Size, st.Meta.SHA256, err)
	}
}

// testPutAtomic overwrites one key between two contents while readers read
// it whole: every read must be one content or the other.
func testPutAtomic(t *testing.T, e env) {
	ctx, s, bucket := setup(t, e.newStore)
	a, b := bytes.Repeat([]byte{'a'}, 300_000), bytes.Repeat([]byte{'b'}, 200_000)
	put(t, ctx, s, bucket, "flip", a, cos.Meta{})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var bad []string
	reads := 0
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				rc, err := s.Read(ctx, bucket, "flip", cos.ReadOptions{Length: -1})
				if err != nil {
					mu.Lock()
					bad = append(bad, "Read: "+err.Error())
					mu.Unlock()
					return
				}
				got, err := io.ReadAll(rc)
				rc.Close()
				mu.Lock()
				reads++
				if err != nil {
					bad = append(bad, "reading: "+err.Error())
				} else if !bytes.Equal(got, a) && !bytes.Equal(got, b) {
					bad = append(bad, "a mixed read: "+describe(got))
				}
				mu.Unlock()
			}
		})
	}
	for i := range 20 {
		v := a
		if i%2 == 0 {
			v = b
		}
		put(t, ctx, s, bucket, "flip", v, cos.Meta{})
	}
	close(stop)
	wg.Wait()
	for _, m := range bad {
		t.Error(m)
	}
	t.Logf("%d whole reads during 20 overwrites", reads)
}

func testPutUnknownSize(t *testing.T, e env) {
	ctx, s, bucket := setup(t, e.newStore)
	for _, n := range []int{0, 1000, 6 << 20} {
		body := data(uint64(10+n), n)
		key := fmt.Sprintf("unknown-%d", n)
		oi, err := s.Put(ctx, bucket, key, io.MultiReader(bytes.NewReader(body)), -1, cos.Meta{})
		if err != nil {
			t.Fatalf("Put(size -1, %d bytes): %v", n, err)
		}
		if oi.Size != int64(n) {
			t.Errorf("Put(size -1, %d bytes) reported size %d", n, oi.Size)
		}
		if got := read(t, ctx, s, bucket, key, 0, -1); !bytes.Equal(got, body) {
			t.Errorf("Read after Put(size -1, %d bytes): %s", n, describe(got))
		}
	}
}

func testReadIfMatch(t *testing.T, e env) {
	ctx, s, bucket := setup(t, e.newStore)
	put(t, ctx, s, bucket, "k", []byte("first"), cos.Meta{})
	st, err := s.Stat(ctx, bucket, "k")
	if err != nil {
		t.Fatal(err)
	}
	rc, err := s.Read(ctx, bucket, "k", cos.ReadOptions{Length: -1, IfMatch: st.ETag})
	if err != nil {
		t.Fatalf("Read with the current ETag: %v", err)
	}
	rc.Close()
	put(t, ctx, s, bucket, "k", []byte("second"), cos.Meta{})
	_, err = s.Read(ctx, bucket, "k", cos.ReadOptions{Offset: 1, Length: 3, IfMatch: st.ETag})
	wantErr(t, "Read with the ETag of a replaced object", err, cos.ErrConflict)
}

func testMetaRoundTrip(t *testing.T, e env) {
	ctx, s, bucket := setup(t, e.newStore)
	body := []byte("metadata")
	sum := sha256.Sum256(body)
	tests := []struct {
		name string
		meta cos.Meta
	}{
		{"none", cos.Meta{}},
		{"nanoseconds", cos.Meta{Mtime: time.Unix(1700000000, 123456789)}},
		{"whole seconds", cos.Meta{Mtime: time.Unix(1600000000, 0)}},
		{"trailing zeros", cos.Meta{Mtime: time.Unix(1700000000, 500000000)}},
		{"mode uid gid", cos.Meta{Mode: 0o100755, UID: u32(1000), GID: u32(100)}},
		{"zero ids", cos.Meta{UID: u32(0), GID: u32(0)}},
		{"everything", cos.Meta{Mtime: time.Unix(1234567890, 1), Mode: 0o100600, UID: u32(1), GID: u32(2),
			SHA256: hex.EncodeToString(sum[:]), Other: map[string]string{"color": "blue", "btime": "2024-01-02T03:04:05Z"}}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key := fmt.Sprintf("m%d", i)
			put(t, ctx, s, bucket, key, body, tc.meta)
			st, err := s.Stat(ctx, bucket, key)
			if err != nil {
				t.Fatal(err)
			}
			if !st.Meta.Equal(tc.meta) {
				t.Errorf("Stat meta = %+v; want %+v", st.Meta, tc.meta)
			}
			if !tc.meta.Mtime.IsZero() && !st.ModTime().Equal(tc.meta.Mtime) {
				t.Errorf("ModTime = %v; want the mtime %v", st.ModTime(), tc.meta.Mtime)
			}
		})
	}
}

func testDelete(t *testing.T, e env) {
	ctx, s, bucket := setup(t, e.newStore)
	put(t, ctx, s, bucket, "a/b", []byte("x"), cos.Meta{})
	put(t, ctx, s, bucket, "a/c", []byte("y"), cos.Meta{})
	if err := s.Delete(ctx, bucket, "a/b"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	_, err := s.Stat(ctx, bucket, "a/b")
	wantErr(t, "Stat after Delete", err, cos.ErrNotFound)
	if err := s.Delete(ctx, bucket, "a/b"); err != nil {
		t.Errorf("Delete of a deleted object: %v; want nil", err)
	}
	if err := s.Delete(ctx, bucket, "never/was"); err != nil {
		t.Errorf("Delete of a key never written: %v; want nil", err)
	}
	if err := s.Delete(ctx, bucket, "a"); err != nil {
		t.Errorf("Delete of a prefix that is no object: %v; want nil", err)
	}
	if got := read(t, ctx, s, bucket, "a/c", 0, -1); string(got) != "y" {
		t.Errorf("the sibling a/c reads %q after deletes; want %q", got, "y")
	}
}

func testCopy(t *testing.T, e env) {
	ctx, s, bucket := setup(t, e.newStore)
	body := data(11, 70_000)
	meta := cos.Meta{Mtime: time.Unix(1690000000, 42), Mode: 0o100640, Other: map[string]string{"k": "v"}}
	put(t, ctx, s, bucket, "src", body, meta)
	put(t, ctx, s, bucket, "existing", []byte("old"), cos.Meta{Mode: 0o100600})

	newMeta := cos.Meta{Mode: 0o100600, UID: u32(5)}
	tests := []struct {
		name     string
		dst      string
		meta     *cos.Meta
		wantMeta cos.Meta
	}{
		{"keeps metadata", "copy/plain", nil, meta},
		{"replaces metadata", "copy/new", &newMeta, newMeta},
		{"over an existing object", "existing", nil, meta},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			oi, err := s.Copy(ctx, bucket, "src", tc.dst, tc.meta)
			if err != nil {
				t.Fatalf("Copy: %v", err)
			}
			if oi.Key != tc.dst || oi.Size != int64(len(body)) {
				t.Errorf("Copy returned key %q size %d; want %q, %d", oi.Key, oi.Size, tc.dst, len(body))
			}
			st, err := s.Stat(ctx, bucket, tc.dst)
			if err != nil {
				t.Fatal(err)
			}
			if !st.Meta.Equal(tc.wantMeta) {
				t.Errorf("copy's metadata %+v; want %+v", st.Meta, tc.wantMeta)
			}
			if got := read(t, ctx, s, bucket, tc.dst, 0, -1); !bytes.Equal(got, body) {
				t.Errorf("copy reads %s; want the source's %d bytes", describe(got), len(body))
			}
		})
	}
	t.Run("onto itself with new metadata", func(t *testing.T) {
		self := cos.Meta{Mtime: time.Unix(1700000001, 0), Mode: 0o100444}
		if _, err := s.Copy(ctx, bucket, "src", "src", &self); err != nil {
			t.Fatalf("Copy onto itself: %v", err)
		}
		st, err := s.Stat(ctx, bucket, "src")
		if err != nil || !st.Meta.Equal(self) {
			t.Errorf("after Copy onto itself: meta %+v, %v; want %+v", st.Meta, err, self)
		}
		if got := read(t, ctx, s, bucket, "src", 0, -1); !bytes.Equal(got, body) {
			t.Errorf("after Copy onto itself the data reads %s", describe(got))
		}
	})
	if got := read(t, ctx, s, bucket, "src", 0, -1); !bytes.Equal(got, body) {
		t.Errorf("the source changed after copies: %s", describe(got))
	}
}

func testFolderMarkers(t *testing.T, e env) {
	ctx, s, bucket := setup(t, e.newStore)
	meta := cos.Meta{Mode: 0o40755, Mtime: time.Unix(1650000000, 0)}
	put(t, ctx, s, bucket, "dir/", nil, meta)
	st, err := s.Stat(ctx, bucket, "dir/")
	if err != nil || st.Size != 0 {
		t.Fatalf("Stat(dir/) = size %d, %v; want 0, nil", st.Size, err)
	}
	if !e.skip(t, e.quirks.MarkerMetaLost, "a folder marker's metadata") && !st.Meta.Equal(meta) {
		t.Errorf("Stat(dir/) meta %+v; want %+v", st.Meta, meta)
	}
	_, err = s.Stat(ctx, bucket, "dir")
	wantErr(t, "Stat(dir) beside marker dir/", err, cos.ErrNotFound)
	if got := read(t, ctx, s, bucket, "dir/", 0, -1); len(got) != 0 {
		t.Errorf("a marker reads %q; want nothing", got)
	}
	_, err = s.Put(ctx, bucket, "full/", strings.NewReader("data"), 4, cos.Meta{})
	wantErr(t, "Put of a marker with data", err, cos.ErrUnsupported)

	put(t, ctx, s, bucket, "dir/child", []byte("c"), cos.Meta{})
	if err := s.Delete(ctx, bucket, "dir/child"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx, bucket, "dir/"); err != nil {
		t.Errorf("the marker dir/ is gone after deleting its only child: %v", err)
	}
	put(t, ctx, s, bucket, "implicit/deep/file", []byte("f"), cos.Meta{})
	if !e.skip(t, e.quirks.ImplicitMarkers, "Stat of a prefix without a marker") {
		_, err = s.Stat(ctx, bucket, "implicit/")
		wantErr(t, "Stat(implicit/) with no marker", err, cos.ErrNotFound)
	}

	if err := s.Delete(ctx, bucket, "dir/"); err != nil {
		t.Fatalf("Delete(dir/): %v", err)
	}
	_, err = s.Stat(ctx, bucket, "dir/")
	wantErr(t, "Stat(dir/) after Delete", err, cos.ErrNotFound)
	_, prefixes, _ := listAll(t, ctx, s, bucket, cos.ListOptions{Delimiter: "/"})
	if !e.skip(t, e.quirks.PrefixesLinger, "a prefix going with its last object") && !sameStrings(prefixes, []string{"implicit/"}) {
		t.Errorf("prefixes after deleting dir/: %q; want [implicit/]", prefixes)
	}
}

// testFileAndFolder puts "f" and "f/g". S3 holds both; a store that cannot
// must refuse the second with ErrConflict and keep the first.
func testFileAndFolder(t *testing.T, e env) {
	ctx, s, bucket := setup(t, e.newStore)
	tests := []struct{ first, second string }{
		{"f", "f/g"},
		{"h/i", "h"},
		{"m/", "m"},
	}
	for _, tc := range tests {
		t.Run(tc.first+" then "+tc.second, func(t *testing.T) {
			put(t, ctx, s, bucket, tc.first, nil, cos.Meta{})
			_, err := s.Put(ctx, bucket, tc.second, strings.NewReader(""), 0, cos.Meta{})
			if err != nil {
				wantErr(t, "the second Put", err, cos.ErrConflict)
				if _, err := s.Stat(ctx, bucket, tc.first); err != nil {
					t.Errorf("after the refused Put, %s is gone: %v", tc.first, err)
				}
				return
			}
			for _, k := range []string{tc.first, tc.second} {
				if _, err := s.Stat(ctx, bucket, k); err != nil {
					t.Errorf("both puts succeeded but Stat(%s): %v", k, err)
				}
			}
			if cos.IsFolderKey(tc.first) && e.skip(t, e.quirks.FileHidesMarker, "listing a marker beside a file of its name") {
				return
			}
			keys, _, _ := listAll(t, ctx, s, bucket, cos.ListOptions{Prefix: tc.first[:1]})
			if want, _ := expectList([]string{tc.first, tc.second}, cos.ListOptions{}); !sameStrings(keys, want) {
				t.Errorf("listing %q; want %q", keys, want)
			}
		})
	}
}

func testConcurrentPutDelete(t *testing.T, e env) {
	ctx, s, bucket := setup(t, e.newStore)
	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range n {
		wg.Go(func() {
			tmp := fmt.Sprintf("d/e/tmp%02d", i)
			if _, err := s.Put(ctx, bucket, tmp, strings.NewReader("t"), 1, cos.Meta{}); err != nil {
				errs <- err
				return
			}
			if _, err := s.Put(ctx, bucket, fmt.Sprintf("d/e/keep%02d", i), strings.NewReader("k"), 1, cos.Meta{}); err != nil {
				errs <- err
			}
			if err := s.Delete(ctx, bucket, tmp); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent put/delete: %v", err)
	}
	keys, _, _ := listAll(t, ctx, s, bucket, cos.ListOptions{})
	var want []string
	for i := range n {
		want = append(want, fmt.Sprintf("d/e/keep%02d", i))
	}
	if !sameStrings(keys, want) {
		t.Errorf("after concurrent puts and deletes the bucket holds %q; want %q", keys, want)
	}
}
