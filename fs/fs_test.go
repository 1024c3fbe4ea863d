package fs

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chute/chute/cos"
)

func TestCreateReadBack(t *testing.T) {
	tm := mountFake(t, nil)
	data := []byte("hello, bucket\n")
	mustWrite(t, tm.path("a.txt"), data)
	got, ok := tm.object("a.txt")
	if !ok {
		t.Fatal("a.txt not on the server after close")
	}
	equalBytes(t, "server copy", got, data)
	equalBytes(t, "read back", mustRead(t, tm.path("a.txt")), data)
	st, err := os.Stat(tm.path("a.txt"))
	if err != nil || st.Size() != int64(len(data)) {
		t.Fatalf("stat: %v size %v", err, st)
	}
}

// TestWrites changes files in the ways programs do and checks what the
// server holds after close, and what a fresh read shows.
func TestWrites(t *testing.T) {
	base := randomBytes(300<<10, 1)
	patch := randomBytes(5000, 2)
	tests := []struct {
		name   string
		seed   []byte // the object before (nil: none)
		change func(t *testing.T, p string)
		want   []byte
	}{
		{"create", nil, func(t *testing.T, p string) { mustWrite(t, p, base) }, base},
		{"empty file", nil, func(t *testing.T, p string) { mustWrite(t, p, nil) }, []byte{}},
		{"overwrite with O_TRUNC", base, func(t *testing.T, p string) { mustWrite(t, p, patch) }, patch},
		{"append", base, func(t *testing.T, p string) {
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.Write(patch); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
		}, append(bytes.Clone(base), patch...)},
		{"random write in the middle", base, func(t *testing.T, p string) {
			f, err := os.OpenFile(p, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt(patch, 100000); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
		}, func() []byte { b := bytes.Clone(base); copy(b[100000:], patch); return b }()},
		{"write past the end leaves a hole", []byte("abc"), func(t *testing.T, p string) {
			f, err := os.OpenFile(p, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt([]byte("z"), 10); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
		}, []byte("abc\x00\x00\x00\x00\x00\x00\x00z")},
		{"truncate shorter by path", base, func(t *testing.T, p string) {
			if err := os.Truncate(p, 1000); err != nil {
				t.Fatal(err)
			}
		}, base[:1000]},
		{"truncate longer by path", []byte("abc"), func(t *testing.T, p string) {
			if err := os.Truncate(p, 6); err != nil {
				t.Fatal(err)
			}
		}, []byte("abc\x00\x00\x00")},
		{"ftruncate then write", base, func(t *testing.T, p string) {
			f, err := os.OpenFile(p, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			if err := f.Truncate(10); err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt([]byte("XY"), 10); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
		}, append(bytes.Clone(base[:10]), 'X', 'Y')},
	}
	names := []string{"plain", "with space", "nön-åscii ünïcode ☃"}
	tm := mountFake(t, nil)
	for i, tc := range tests {
		for j, name := range names {
			t.Run(tc.name+"/"+name, func(t *testing.T) {
				key := strings.ReplaceAll(tc.name, " ", "_") + "-" + name
				_ = i
				_ = j
				if tc.seed != nil {
					tm.fake.Store(testBucket, key, tc.seed, cos.Meta{})
					tm.m.cache.Forget()
				}
				tc.change(t, tm.path(key))
				got, ok := tm.object(key)
				if !ok {
					t.Fatalf("%q not on the server", key)
				}
				equalBytes(t, "server copy", got, tc.want)
				equalBytes(t, "read back", mustRead(t, tm.path(key)), tc.want)
				st, err := os.Stat(tm.path(key))
				if err != nil || st.Size() != int64(len(tc.want)) {
					t.Fatalf("stat: %v, size %d want %d", err, st.Size(), len(tc.want))
				}
			})
		}
	}
}

// TestCloseUploadsOnlyWhenDirty checks that close uploads once per change,
// including closes of dup'd descriptors and of handles that only read.
func TestCloseUploadsOnlyWhenDirty(t *testing.T) {
	tm := mountFake(t, nil)
	p := tm.path("f")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("one")); err != nil {
		t.Fatal(err)
	}
	dup, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Close(dup); err != nil { // FLUSH: uploads "one"
		t.Fatalf("close dup: %v", err)
	}
	if got, _ := tm.object("f"); string(got) != "one" {
		t.Fatalf("after closing the dup, the server holds %q", got)
	}
	if err := f.Close(); err != nil { // FLUSH again: nothing changed
		t.Fatal(err)
	}
	if n := tm.fake.Commits(); n != 1 {
		t.Fatalf("uploads after two closes of one write: %d, want 1", n)
	}
	mustRead(t, p)
	g, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	g.Close()
	if n := tm.fake.Commits(); n != 1 {
		t.Fatalf("uploads after a read and an unchanged read-write open: %d, want 1", n)
	}
}

func TestRename(t *testing.T) {
	tm := mountFake(t, nil)
	mustWrite(t, tm.path("a"), []byte("A"))
	mustWrite(t, tm.path("b"), []byte("B"))
	if err := os.Rename(tm.path("a"), tm.path("c")); err != nil {
		t.Fatal(err)
	}
	if _, ok := tm.object("a"); ok {
		t.Error("a still on the server after rename")
	}
	if got, _ := tm.object("c"); string(got) != "A" {
		t.Errorf("c holds %q, want A", got)
	}
	// Over an existing file.
	if err := os.Rename(tm.path("c"), tm.path("b")); err != nil {
		t.Fatal(err)
	}
	if got, _ := tm.object("b"); string(got) != "A" {
		t.Errorf("b holds %q after being replaced, want A", got)
	}
	if _, err := os.Stat(tm.path("c")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stat c after rename: %v", err)
	}

	// A folder, recursively.
	for _, p := range []string{"d", "d/e", "d/e/f"} {
		if err := os.Mkdir(tm.path(p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mustWrite(t, tm.path("d/1"), []byte("one"))
	mustWrite(t, tm.path("d/e/f/2"), []byte("two"))
	if err := os.Rename(tm.path("d"), tm.path("moved")); err != nil {
		t.Fatal(err)
	}
	want := []string{"b", "moved/", "moved/1", "moved/e/", "moved/e/f/", "moved/e/f/2"}
	if got := tm.fake.Keys(testBucket); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("keys after folder rename:\n got %q\nwant %q", got, want)
	}
	equalBytes(t, "moved/e/f/2", mustRead(t, tm.path("moved/e/f/2")), []byte("two"))
	if _, err := os.Stat(tm.path("d")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stat d after rename: %v", err)
	}

	// A file onto a folder and a folder onto a non-empty folder fail.
	if err := os.Mkdir(tm.path("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, tm.path("x/in"), nil)
	// (syscall.Rename: os.Rename refuses a folder destination itself.)
	if err := syscall.Rename(tm.path("b"), tm.path("x")); !errors.Is(err, syscall.EISDIR) {
		t.Errorf("rename file onto folder: %v, want EISDIR", err)
	}
	if err := syscall.Rename(tm.path("moved"), tm.path("x")); !errors.Is(err, syscall.ENOTEMPTY) {
		t.Errorf("rename folder onto non-empty folder: %v, want ENOTEMPTY", err)
	}
	if err := syscall.Rename(tm.path("x/in"), tm.path("b")); err != nil {
		t.Errorf("rename emptying x: %v", err)
	}
	if err := syscall.Rename(tm.path("moved"), tm.path("x")); err != nil {
		t.Errorf("rename folder onto empty folder: %v", err)
	}
	equalBytes(t, "x/1", mustRead(t, tm.path("x/1")), []byte("one"))
}

func TestMkdirRmdirUnlink(t *testing.T) {
	tm := mountFake(t, nil)
	if err := os.Mkdir(tm.path("d"), 0o750); err != nil {
		t.Fatal(err)
	}
	if _, ok := tm.object("d/"); !ok {
		t.Fatal("mkdir stored no d/ marker")
	}
	st, err := os.Stat(tm.path("d"))
	if err != nil || !st.IsDir() || st.Mode().Perm() != 0o750 {
		t.Fatalf("stat d: %v %v", err, st.Mode())
	}
	mustWrite(t, tm.path("d/f"), []byte("x"))
	if err := os.Remove(tm.path("d")); !errors.Is(err, syscall.ENOTEMPTY) {
		t.Fatalf("rmdir non-empty: %v, want ENOTEMPTY", err)
	}
	if err := os.Remove(tm.path("d/f")); err != nil {
		t.Fatal(err)
	}
	if _, ok := tm.object("d/f"); ok {
		t.Fatal("unlinked file still on the server")
	}
	if err := os.Remove(tm.path("d")); err != nil {
		t.Fatalf("rmdir empty: %v", err)
	}
	if keys := tm.fake.Keys(testBucket); len(keys) != 0 {
		t.Fatalf("keys left: %q", keys)
	}
	// A prefix without a marker is a folder too.
	tm.fake.Store(testBucket, "implicit/deep/obj", []byte("x"), cos.Meta{})
	tm.m.cache.Forget()
	st, err = os.Stat(tm.path("implicit/deep"))
	if err != nil || !st.IsDir() {
		t.Fatalf("stat of a prefix without marker: %v", err)
	}
	ents, err := os.ReadDir(tm.path("implicit"))
	if err != nil || len(ents) != 1 || ents[0].Name() != "deep" || !ents[0].IsDir() {
		t.Fatalf("readdir implicit: %v %v", ents, err)
	}
}

func TestMetadata(t *testing.T) {
	tm := mountFake(t, nil)
	p := tm.path("f")
	mustWrite(t, p, []byte("data"))
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	mt := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	if err := os.Chtimes(p, mt, mt); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, 1234, 5678); err != nil {
		t.Fatal(err)
	}
	_, info, _ := tm.fake.Object(testBucket, "f")
	if info.Meta.Mode != syscall.S_IFREG|0o600 || !info.Meta.Mtime.Equal(mt) ||
		info.Meta.UID == nil || *info.Meta.UID != 1234 || info.Meta.GID == nil || *info.Meta.GID != 5678 {
		t.Fatalf("server metadata: %+v", info.Meta)
	}
	equalBytes(t, "content after metadata changes", mustRead(t, p), []byte("data"))
	// A fresh look (listing cache dropped) shows the stored metadata.
	tm.m.cache.Forget()
	time.Sleep(1100 * time.Millisecond) // past the kernel's attribute cache
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	if st.Mode().Perm() != 0o600 || !st.ModTime().Equal(mt) || sys.Uid != 1234 || sys.Gid != 5678 {
		t.Fatalf("stat: mode %v mtime %v uid %d gid %d", st.Mode(), st.ModTime(), sys.Uid, sys.Gid)
	}
	// Folders keep metadata on their marker.
	if err := os.Mkdir(tm.path("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tm.path("d"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, info, _ := tm.fake.Object(testBucket, "d/"); info.Meta.Mode&0o777 != 0o700 {
		t.Fatalf("folder marker mode %o", info.Meta.Mode)
	}
}

func TestUnsupportedCallsFail(t *testing.T) {
	tm := mountFake(t, nil)
	mustWrite(t, tm.path("f"), []byte("x"))
	tests := []struct {
		name string
		call func() error
		want []syscall.Errno
	}{
		{"symlink", func() error { return os.Symlink("f", tm.path("l")) }, []syscall.Errno{syscall.EPERM}},
		{"link", func() error { return os.Link(tm.path("f"), tm.path("h")) }, []syscall.Errno{syscall.EPERM}},
		{"mkfifo", func() error { return syscall.Mkfifo(tm.path("p"), 0o644) }, []syscall.Errno{syscall.EPERM}},
		{"setxattr", func() error { return syscall.Setxattr(tm.path("f"), "user.x", []byte("1"), 0) }, []syscall.Errno{syscall.EOPNOTSUPP}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			ok := false
			for _, w := range tc.want {
				ok = ok || errors.Is(err, w)
			}
			if !ok {
				t.Fatalf("%s: %v, want %v", tc.name, err, tc.want)
			}
		})
	}
}

func TestReadOnly(t *testing.T) {
	tm := mountFake(t, func(o *Options) { o.ReadOnly = true })
	tm.fake.Store(testBucket, "f", []byte("x"), cos.Meta{})
	if err := os.WriteFile(tm.path("g"), []byte("y"), 0o644); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("create on read-only mount: %v", err)
	}
	equalBytes(t, "read", mustRead(t, tm.path("f")), []byte("x"))
}

func TestListingCache(t *testing.T) {
	tm := mountFake(t, func(o *Options) { o.ListTTL = 2 * time.Second })
	if _, err := os.ReadDir(tm.dir); err != nil {
		t.Fatal(err)
	}
	lists := tm.fake.Calls("list")
	// Our own change shows at once, without asking the server.
	mustWrite(t, tm.path("mine"), nil)
	ents, err := os.ReadDir(tm.dir)
	if err != nil || len(ents) != 1 || ents[0].Name() != "mine" {
		t.Fatalf("readdir after create: %v %v", ents, err)
	}
	if n := tm.fake.Calls("list"); n != lists {
		t.Fatalf("listing asked the server %d more times within the TTL", n-lists)
	}
	// Another client's object shows once the TTL has passed.
	tm.fake.Store(testBucket, "theirs", []byte("t"), cos.Meta{})
	time.Sleep(2100 * time.Millisecond)
	ents, err = os.ReadDir(tm.dir)
	if err != nil || len(ents) != 2 {
		t.Fatalf("readdir after the TTL: %v %v", ents, err)
	}
}

func TestTreeWithSpacesAndUnicode(t *testing.T) {
	tm := mountFake(t, nil)
	dir := filepath.Join(tm.dir, "a folder", "ünïcödé")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(dir, "file name ☃.txt"), []byte("snow"))
	if got, _ := tm.object("a folder/ünïcödé/file name ☃.txt"); string(got) != "snow" {
		t.Fatalf("server holds %q", got)
	}
}

// TestPrefix mounts a prefix of the bucket: keys outside it stay hidden,
// and new files land under it.
func TestPrefix(t *testing.T) {
	tm := mountFake(t, func(o *Options) { o.Prefix = "team/a" })
	tm.fake.Store(testBucket, "team/a/in", []byte("in"), cos.Meta{})
	tm.fake.Store(testBucket, "team/b/out", []byte("out"), cos.Meta{})
	tm.fake.Store(testBucket, "top", []byte("top"), cos.Meta{})
	ents, err := os.ReadDir(tm.dir)
	if err != nil || len(ents) != 1 || ents[0].Name() != "in" {
		t.Fatalf("readdir of the prefix: %v %v", ents, err)
	}
	mustWrite(t, tm.path("new"), []byte("new"))
	if got, _ := tm.object("team/a/new"); string(got) != "new" {
		t.Fatalf("team/a/new holds %q", got)
	}
	if err := os.Mkdir(tm.path("sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, ok := tm.object("team/a/sub/"); !ok {
		t.Fatal("mkdir under a prefix stored no team/a/sub/ marker")
	}
}

// TestDefaultsForObjectsWithoutMetadata: objects another tool stored
// without mode or owner show the mount's defaults; recorded ones win.
func TestDefaultsForObjectsWithoutMetadata(t *testing.T) {
	tm := mountFake(t, func(o *Options) {
		o.UID, o.GID = 4321, 8765
		o.FileMode, o.DirMode = 0o640, 0o750
	})
	uid := uint32(0)
	tm.fake.Store(testBucket, "bare", []byte("x"), cos.Meta{})
	tm.fake.Store(testBucket, "dir/inner", []byte("x"), cos.Meta{})
	tm.fake.Store(testBucket, "owned", []byte("x"), cos.Meta{Mode: syscall.S_IFREG | 0o600, UID: &uid})
	tests := []struct {
		name     string
		perm     os.FileMode
		uid, gid uint32
		dir      bool
	}{
		{"bare", 0o640, 4321, 8765, false},
		{"dir", 0o750, 4321, 8765, true},
		{"owned", 0o600, 0, 8765, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, err := os.Stat(tm.path(tc.name))
			if err != nil {
				t.Fatal(err)
			}
			sys := st.Sys().(*syscall.Stat_t)
			if st.Mode().Perm() != tc.perm || st.IsDir() != tc.dir || sys.Uid != tc.uid || sys.Gid != tc.gid {
				t.Fatalf("mode %v uid %d gid %d; want %v %d %d", st.Mode(), sys.Uid, sys.Gid, tc.perm, tc.uid, tc.gid)
			}
		})
	}
}

// TestChangedObjectIsReadAfresh: the kernel keeps cached pages only while
// the object's version is unchanged; another client's change of the same
// size shows on the next open.
func TestChangedObjectIsReadAfresh(t *testing.T) {
	tm := mountFake(t, func(o *Options) { o.ListTTL = 200 * time.Millisecond })
	one, two := randomBytes(1<<20, 21), randomBytes(1<<20, 22)
	tm.fake.Store(testBucket, "f", one, cos.Meta{})
	equalBytes(t, "first read", mustRead(t, tm.path("f")), one)
	equalBytes(t, "second read (kept pages)", mustRead(t, tm.path("f")), one)
	tm.fake.Store(testBucket, "f", two, cos.Meta{})
	time.Sleep(1200 * time.Millisecond) // past the listing TTL and the kernel's attribute time
	equalBytes(t, "read after another client's change", mustRead(t, tm.path("f")), two)
	// A write through the mount, then a read.
	f, err := os.OpenFile(tm.path("f"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("XYZ"), 10); err != nil {
		t.Fatal(err)
	}
	f.Close()
	want := bytes.Clone(two)
	copy(want[10:], "XYZ")
	equalBytes(t, "read after a write", mustRead(t, tm.path("f")), want)
}

// TestOverwriteDoesNotFetch: writing over an existing file with O_TRUNC (as
// cp does) uploads the new bytes once and never downloads the old ones.
func TestOverwriteDoesNotFetch(t *testing.T) {
	tm := mountFake(t, nil)
	old := randomBytes(4<<20, 3)
	tm.fake.Store(testBucket, "f", old, cos.Meta{})
	tm.m.cache.Forget()
	down := tm.fake.DownloadedBytes()
	ups := tm.fake.Calls("upload") + tm.fake.Calls("put")
	patch := randomBytes(300<<10, 4)
	mustWrite(t, tm.path("f"), patch)
	if n := tm.fake.DownloadedBytes() - down; n != 0 {
		t.Errorf("overwriting a 4 MiB object with O_TRUNC downloaded %d bytes of it", n)
	}
	if n := tm.fake.Calls("upload") + tm.fake.Calls("put") - ups; n != 1 {
		t.Errorf("overwriting took %d uploads, want 1", n)
	}
	got, ok := tm.object("f")
	if !ok {
		t.Fatal("f is not on the server")
	}
	equalBytes(t, "server copy", got, patch)
}
