package cos

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Folder is the embedded store: buckets are folders under a root folder and
// objects are plain files, so the data can be read (and seeded) with
// ordinary tools.
//
// # Layout
//
//	<root>/<bucket>/<key>          object data; a folder marker "a/" is the folder <bucket>/a
//	<root>/.chute/meta/<bucket>/…  one small JSON record per object: metadata, size, ETag
//	<root>/.chute/tmp/             files being written, renamed into place when complete
//	<root>/.chute/uploads/<id>/    multipart uploads: state.json, the data file, a record per part
//
// The metadata tree mirrors the data tree with each name given a two-byte
// tag: "d." for a folder, "o." for an object's record, "p." for a folder
// marker's record. No key is reserved: every valid key maps to a distinct
// data path and record path, and ".chute" cannot clash with a bucket (bucket
// names start with a letter or digit). Files placed in a bucket folder by
// hand are objects without metadata.
//
// # Guarantees
//
// Put, Copy and Complete write the data to a temporary file in the same file
// system, fsync it, rename it over the key and fsync the folder: a reader
// sees the old object or the new one. The record is replaced right after
// the data; it carries the data file's size and modification time, and a
// record that does not match its data file (after a crash between the two
// renames, or an edit by hand) is ignored, so an object is never shown with
// another object's metadata. The data file's own modification time is set
// to Meta.Mtime when one is given.
//
// Multipart uploads live in one preallocated file per upload: WritePart
// writes its range in place, syncs it and records the part; Complete renames
// the file over the key, so it costs the same for any size. Uploads survive
// restarts and are found again by ID from any Folder on the same root.
//
// # Limits
//
// A file system cannot hold a file and a folder of the same name, so the
// folder store cannot hold object "a" together with objects under "a/"
// (S3 can): the second Put fails with an error wrapping ErrConflict. Folder
// markers ("a/") cannot hold data (ErrUnsupported). Each element of a key
// is at most 253 bytes (ErrInvalidKey). Symbolic links inside the root are
// followed only when they stay inside it, and are left out of listings.
type Folder struct {
	dir  string
	root *os.Root
	log  *slog.Logger

	// mu orders changes to names (rename, unlink, mkdir, rmdir): held for
	// writing while one is made, for reading where data and record must be
	// read as a pair. Data is written and synced outside it.
	mu sync.RWMutex
	// partMu serializes writers of one part of one upload in this process.
	partMu [64]sync.Mutex
}

var _ Store = (*Folder)(nil)

// Names inside the root that are the store's own.
const (
	folderInternal = ".chute"
	folderMeta     = folderInternal + "/meta"
	folderTmp      = folderInternal + "/tmp"
	folderUploads  = folderInternal + "/uploads"
	folderFormat   = folderInternal + "/format"
	formatLine     = "chute folder store, format 1\n"

	maxFolderElem = 253 // NAME_MAX less the record tag
	staleTmpAge   = time.Hour
)

// NewFolder opens (creating it if needed) a folder store rooted at dir.
// Temporary files older than an hour, left by a crash, are removed.
func NewFolder(dir string) (*Folder, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("cos: open folder store %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("cos: open folder store %s: %w", abs, err)
	}
	root, err := os.OpenRoot(abs)
	if err != nil {
		return nil, fmt.Errorf("cos: open folder store %s: %w", abs, err)
	}
	f := &Folder{dir: abs, root: root, log: slog.Default().With("store", "folder", "root", abs)}
	if err := f.init(); err != nil {
		root.Close()
		return nil, fmt.Errorf("cos: open folder store %s: %w", abs, err)
	}
	return f, nil
}

func (f *Folder) init() error {
	for _, d := range []string{folderInternal, folderMeta, folderTmp, folderUploads} {
		if err := f.root.Mkdir(d, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
	got, err := f.root.ReadFile(folderFormat)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := f.writeFileAtomic(folderFormat, []byte(formatLine)); err != nil {
			return err
		}
	case err != nil:
		return err
	case string(got) != formatLine:
		return fmt.Errorf("%s says %q; this chute reads %q", folderFormat, strings.TrimSpace(string(got)), strings.TrimSpace(formatLine))
	}
	ents, err := f.readDir(folderTmp)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > staleTmpAge {
			if err := f.root.RemoveAll(folderTmp + "/" + e.Name()); err != nil {
				f.log.Warn("removing a stale temporary file", "name", e.Name(), "err", err)
			}
		}
	}
	return nil
}

// Dir returns the store's root folder.
func (f *Folder) Dir() string { return f.dir }

// Close releases the root folder. The store must not be used afterwards.
func (f *Folder) Close() error { return f.root.Close() }

// ---- names ----------------------------------------------------------------

func checkFolderKey(key string) error {
	if err := ValidKey(key); err != nil {
		return err
	}
	for elem := range strings.SplitSeq(strings.TrimSuffix(key, "/"), "/") {
		if len(elem) > maxFolderElem {
			return fmt.Errorf("%w %.60q...: an element of %d bytes is longer than the folder store's limit of %d", ErrInvalidKey, key, len(elem), maxFolderElem)
		}
	}
	return nil
}

func dataPath(bucket, key string) string {
	return bucket + "/" + strings.TrimSuffix(key, "/")
}

// metaDir returns the record folder that mirrors the data folder holding
// the keys below dirKey ("" or ending in "/").
func metaDir(bucket, dirKey string) string {
	var b strings.Builder
	b.WriteString(folderMeta + "/" + bucket)
	for elem := range strings.SplitSeq(strings.TrimSuffix(dirKey, "/"), "/") {
		if elem != "" {
			b.WriteString("/d." + elem)
		}
	}
	return b.String()
}

// metaPath returns the record path of key.
func metaPath(bucket, key string) string {
	name := strings.TrimSuffix(key, "/")
	dir, base := "", name
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		dir, base = name[:i+1], name[i+1:]
	}
	tag := "o."
	if IsFolderKey(key) {
		tag = "p."
	}
	return metaDir(bucket, dir) + "/" + tag + base
}

// parentKey returns the folder key holding key ("" at the top).
func parentKey(key string) string {
	name := strings.TrimSuffix(key, "/")
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		return name[:i+1]
	}
	return ""
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// ---- records --------------------------------------------------------------

// record is the JSON kept for each object beside its data.
type record struct {
	Size      int64             `json:"size"`
	FileMtime int64             `json:"file_mtime_ns,omitempty"` // the data file's mtime when written
	Written   int64             `json:"written_ns"`              // LastModified
	ETag      string            `json:"etag"`
	User      map[string]string `json:"user,omitempty"`
}

func (f *Folder) readRecord(name string) (record, bool) {
	b, err := f.root.ReadFile(name)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			f.log.Warn("reading an object record", "record", name, "err", err)
		}
		return record{}, false
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		f.log.Warn("ignoring a damaged object record", "record", name, "err", err)
		return record{}, false
	}
	return r, true
}

// fingerprint makes an ETag for a file that has no record.
func fingerprint(fi fs.FileInfo) string {
	h := fnv.New64a()
	fmt.Fprintf(h, "%d/%d", fi.Size(), fi.ModTime().UnixNano())
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		fmt.Fprintf(h, "/%d", st.Ino)
	}
	return fmt.Sprintf("%016x", h.Sum64())
}

// fileInfo builds an object's info from its data file and its record,
// ignoring a record that does not belong to the data.
func fileInfo(key string, fi fs.FileInfo, r record, ok bool) ObjectInfo {
	oi := ObjectInfo{Key: key, Size: fi.Size(), LastModified: fi.ModTime(), ETag: fingerprint(fi)}
	if ok && r.Size == fi.Size() && r.FileMtime == fi.ModTime().UnixNano() {
		oi.LastModified = time.Unix(0, r.Written)
		oi.ETag = r.ETag
		oi.Meta = DecodeMeta(r.User)
	}
	return oi
}

func markerInfo(key string, r record) ObjectInfo {
	return ObjectInfo{Key: key, LastModified: time.Unix(0, r.Written), ETag: r.ETag, Meta: DecodeMeta(r.User)}
}

// ---- small file-system helpers --------------------------------------------

func (f *Folder) readDir(name string) ([]fs.DirEntry, error) {
	d, err := f.root.Open(name)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.ReadDir(-1)
}

func (f *Folder) syncDir(name string) error {
	d, err := f.root.Open(name)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// createTemp makes a new file in the temporary folder.
func (f *Folder) createTemp(kind string) (*os.File, string, error) {
	name := folderTmp + "/" + kind + "-" + randomHex(12)
	file, err := f.root.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	return file, name, err
}

// writeTemp writes data to a new synced temporary file and returns its name.
func (f *Folder) writeTemp(kind string, data []byte) (string, error) {
	file, name, err := f.createTemp(kind)
	if err != nil {
		return "", err
	}
	_, err = file.Write(data)
	if err == nil {
		err = file.Sync()
	}
	if cerr := file.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		f.root.Remove(name)
		return "", err
	}
	return name, nil
}

// writeFileAtomic replaces name with data durably.
func (f *Folder) writeFileAtomic(name string, data []byte) error {
	tmp, err := f.writeTemp("file", data)
	if err != nil {
		return err
	}
	if err := f.root.Rename(tmp, name); err != nil {
		f.root.Remove(tmp)
		return err
	}
	return f.syncDir(path.Dir(name))
}

// conflictError explains why the folder store cannot hold key.
func (f *Folder) conflictError(bucket, key string, err error) error {
	if !errors.Is(err, syscall.ENOTDIR) && !errors.Is(err, syscall.EISDIR) &&
		!errors.Is(err, fs.ErrExist) && !errors.Is(err, syscall.ENOTEMPTY) {
		return err
	}
	name := strings.TrimSuffix(key, "/")
	elems := strings.Split(name, "/")
	for i := 1; i < len(elems); i++ {
		p := strings.Join(elems[:i], "/")
		if fi, serr := f.root.Lstat(bucket + "/" + p); serr == nil && !fi.IsDir() {
			return withCause(ErrConflict, fmt.Errorf("object %q exists, and a folder store cannot also hold keys under %q (a file system has no file and folder of one name): %w", p, p+"/", err))
		}
	}
	if fi, serr := f.root.Lstat(bucket + "/" + name); serr == nil {
		if fi.IsDir() && !IsFolderKey(key) {
			return withCause(ErrConflict, fmt.Errorf("keys under %q exist, and a folder store cannot also hold object %q (a file system has no file and folder of one name): %w", name+"/", name, err))
		}
		if !fi.IsDir() && IsFolderKey(key) {
			return withCause(ErrConflict, fmt.Errorf("object %q exists, and a folder store cannot also hold the folder marker %q: %w", name, key, err))
		}
	}
	return withCause(ErrConflict, err)
}

// ---- buckets ----------------------------------------------------------------

// CreateBucket makes the bucket's folder.
func (f *Folder) CreateBucket(ctx context.Context, bucket string) error {
	if err := ValidBucket(bucket); err != nil {
		return opError("create-bucket", bucket, "", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.root.Mkdir(bucket, 0o755); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return opError("create-bucket", bucket, "", withCause(ErrExists, err))
		}
		return fsError("create-bucket", bucket, "", err)
	}
	if err := f.root.MkdirAll(metaDir(bucket, ""), 0o755); err != nil {
		return fsError("create-bucket", bucket, "", err)
	}
	if err := f.syncDir("."); err != nil {
		return fsError("create-bucket", bucket, "", err)
	}
	return nil
}

// BucketExists reports whether the bucket's folder exists.
func (f *Folder) BucketExists(ctx context.Context, bucket string) (bool, error) {
	if err := ValidBucket(bucket); err != nil {
		return false, opError("bucket-exists", bucket, "", err)
	}
	fi, err := f.root.Stat(bucket)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, fsError("bucket-exists", bucket, "", err)
	}
	return fi.IsDir(), nil
}

// check validates bucket and key and makes sure the bucket exists.
func (f *Folder) check(op, bucket, key string) error {
	if err := ValidBucket(bucket); err != nil {
		return opError(op, bucket, key, err)
	}
	if err := checkFolderKey(key); err != nil {
		return opError(op, bucket, key, err)
	}
	return f.checkBucket(op, bucket, key)
}

func (f *Folder) checkBucket(op, bucket, key string) error {
	fi, err := f.root.Stat(bucket)
	if err != nil || !fi.IsDir() {
		if err == nil || errors.Is(err, fs.ErrNotExist) {
			return opError(op, bucket, key, fmt.Errorf("%w: no such bucket", ErrNotFound))
		}
		return fsError(op, bucket, key, err)
	}
	return nil
}

// ---- objects ------------------------------------------------------------------

// Stat returns the object's info and metadata.
func (f *Folder) Stat(ctx context.Context, bucket, key string) (ObjectInfo, error) {
	if err := f.check("stat", bucket, key); err != nil {
		return ObjectInfo{}, err
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	oi, err := f.statLocked(bucket, key)
	if err != nil {
		return ObjectInfo{}, opError("stat", bucket, key, err)
	}
	return oi, nil
}

func (f *Folder) statLocked(bucket, key string) (ObjectInfo, error) {
	fi, err := f.root.Stat(dataPath(bucket, key))
	if err != nil {
		return ObjectInfo{}, withCause(osSentinel(err), err)
	}
	if IsFolderKey(key) {
		r, ok := f.readRecord(metaPath(bucket, key))
		if !fi.IsDir() || !ok {
			return ObjectInfo{}, fmt.Errorf("%w: no folder marker %q", ErrNotFound, key)
		}
		return markerInfo(key, r), nil
	}
	if !fi.Mode().IsRegular() {
		return ObjectInfo{}, fmt.Errorf("%w: %q is a folder, not an object", ErrNotFound, key)
	}
	r, ok := f.readRecord(metaPath(bucket, key))
	return fileInfo(key, fi, r, ok), nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// Read returns a reader of the object's bytes in the requested range.
func (f *Folder) Read(ctx context.Context, bucket, key string, opt ReadOptions) (io.ReadCloser, error) {
	if err := f.check("read", bucket, key); err != nil {
		return nil, err
	}
	if opt.Offset < 0 || opt.Length < -1 {
		return nil, opError("read", bucket, key, fmt.Errorf("invalid range: offset %d, length %d", opt.Offset, opt.Length))
	}
	f.mu.RLock()
	oi, err := f.statLocked(bucket, key)
	var file *os.File
	switch {
	case err != nil:
	case opt.IfMatch != "" && opt.IfMatch != oi.ETag:
		err = fmt.Errorf("%w: the object's ETag is %s, not %s: it has changed", ErrConflict, oi.ETag, opt.IfMatch)
	case !IsFolderKey(key):
		file, err = f.root.Open(dataPath(bucket, key))
		err = withCause(osSentinel(err), err)
	}
	f.mu.RUnlock()
	if err != nil {
		return nil, opError("read", bucket, key, err)
	}
	if file == nil {
		return io.NopCloser(strings.NewReader("")), nil // a folder marker
	}
	fi, err := file.Stat()
	if err != nil {
		file.Close()
		return nil, fsError("read", bucket, key, err)
	}
	if !fi.Mode().IsRegular() {
		file.Close()
		return nil, opError("read", bucket, key, fmt.Errorf("%w: %q is a folder, not an object", ErrNotFound, key))
	}
	n := max(0, fi.Size()-opt.Offset)
	if opt.Length >= 0 {
		n = min(n, opt.Length)
	}
	return readCloser{Reader: io.NewSectionReader(file, opt.Offset, n), Closer: file}, nil
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// Put stores the object atomically.
func (f *Folder) Put(ctx context.Context, bucket, key string, r io.Reader, size int64, meta Meta) (ObjectInfo, error) {
	if err := f.check("put", bucket, key); err != nil {
		return ObjectInfo{}, err
	}
	if IsFolderKey(key) {
		if err := expectEmpty(r, size); err != nil {
			return ObjectInfo{}, opError("put", bucket, key, err)
		}
		return f.putMarker("put", bucket, key, meta)
	}
	file, tmp, err := f.createTemp("put")
	if err != nil {
		return ObjectInfo{}, fsError("put", bucket, key, err)
	}
	ok := false
	defer func() {
		if !ok {
			file.Close()
			f.root.Remove(tmp)
		}
	}()
	var w io.Writer = file
	var sum = sha256.New()
	if meta.SHA256 != "" {
		w = io.MultiWriter(file, sum)
	}
	if err := copyExact(ctx, w, r, size); err != nil {
		return ObjectInfo{}, opError("put", bucket, key, err)
	}
	if meta.SHA256 != "" {
		if got := hex.EncodeToString(sum.Sum(nil)); !strings.EqualFold(got, meta.SHA256) {
			return ObjectInfo{}, opError("put", bucket, key, fmt.Errorf("%w: the data's SHA-256 is %s, the metadata says %s", ErrChecksum, got, meta.SHA256))
		}
	}
	ok = true
	return f.commitFile("put", bucket, key, file, tmp, meta)
}

// expectEmpty checks that a folder marker's body is empty.
func expectEmpty(r io.Reader, size int64) error {
	if size > 0 {
		return fmt.Errorf("%w: a folder marker cannot hold data (%d bytes given)", ErrUnsupported, size)
	}
	if size < 0 && r != nil {
		var b [1]byte
		if n, _ := io.ReadFull(r, b[:]); n > 0 {
			return fmt.Errorf("%w: a folder marker cannot hold data", ErrUnsupported)
		}
	}
	return nil
}

// copyExact copies size bytes (or, for -1, everything) from r to w.
func copyExact(ctx context.Context, w io.Writer, r io.Reader, size int64) error {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	src := r
	if size >= 0 {
		src = io.LimitReader(r, size)
	}
	n, err := io.CopyBuffer(w, ctxReader{ctx, src}, *bp)
	if err != nil {
		return err
	}
	if size >= 0 && n < size {
		return fmt.Errorf("read %d of %d bytes: %w", n, size, io.ErrUnexpectedEOF)
	}
	return nil
}

// ctxReader stops reading once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// commitFile moves a written temporary file over key with meta, closing
// file. It removes the temporary file if it fails.
func (f *Folder) commitFile(op, bucket, key string, file *os.File, tmp string, meta Meta) (ObjectInfo, error) {
	return f.commit(op, bucket, key, file, tmp, meta, true)
}

// commit moves the written file src over key with meta, closing file. When
// it fails, it removes src if owned, and leaves it otherwise.
func (f *Folder) commit(op, bucket, key string, file *os.File, src string, meta Meta, owned bool) (ObjectInfo, error) {
	tmp := src
	drop := func() {
		if owned {
			f.root.Remove(tmp)
		}
	}
	fail := func(err error) (ObjectInfo, error) {
		file.Close()
		drop()
		return ObjectInfo{}, fsError(op, bucket, key, err)
	}
	if !meta.Mtime.IsZero() {
		if err := f.root.Chtimes(tmp, meta.Mtime, meta.Mtime); err != nil {
			return fail(err)
		}
	}
	if err := file.Sync(); err != nil {
		return fail(err)
	}
	fi, err := file.Stat()
	if err != nil {
		return fail(err)
	}
	if err := file.Close(); err != nil {
		drop()
		return ObjectInfo{}, fsError(op, bucket, key, err)
	}
	rec := record{Size: fi.Size(), FileMtime: fi.ModTime().UnixNano(), Written: time.Now().UnixNano(), ETag: randomHex(8), User: meta.Encode()}
	if err := f.install(bucket, key, tmp, rec); err != nil {
		drop()
		return ObjectInfo{}, opError(op, bucket, key, err)
	}
	return fileInfo(key, fi, rec, true), nil
}

// install renames the data file src (a temporary file or an upload's data)
// over key and writes its record. It syncs the folders involved.
func (f *Folder) install(bucket, key, src string, rec record) error {
	b, _ := json.Marshal(rec)
	metaTmp, err := f.writeTemp("record", b)
	if err != nil {
		return withCause(osSentinel(err), err)
	}
	dp, mp := dataPath(bucket, key), metaPath(bucket, key)
	err = func() error {
		f.mu.Lock()
		defer f.mu.Unlock()
		if err := f.root.MkdirAll(path.Dir(dp), 0o755); err != nil {
			return f.conflictError(bucket, key, err)
		}
		if err := f.root.MkdirAll(path.Dir(mp), 0o755); err != nil {
			return err
		}
		// The old record goes first: a crash now leaves the old data
		// without metadata, never the new data with the old metadata.
		if err := f.root.Remove(mp); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err := f.root.Rename(src, dp); err != nil {
			return f.conflictError(bucket, key, err)
		}
		return f.root.Rename(metaTmp, mp)
	}()
	if err != nil {
		f.root.Remove(metaTmp)
		return withCause(osSentinel(err), err)
	}
	if err := f.syncDir(path.Dir(dp)); err != nil {
		return withCause(osSentinel(err), err)
	}
	if err := f.syncDir(path.Dir(mp)); err != nil {
		return withCause(osSentinel(err), err)
	}
	return nil
}

// putMarker makes the folder marker key.
func (f *Folder) putMarker(op, bucket, key string, meta Meta) (ObjectInfo, error) {
	rec := record{Written: time.Now().UnixNano(), ETag: randomHex(8), User: meta.Encode()}
	b, _ := json.Marshal(rec)
	metaTmp, err := f.writeTemp("record", b)
	if err != nil {
		return ObjectInfo{}, fsError(op, bucket, key, err)
	}
	dp, mp := dataPath(bucket, key), metaPath(bucket, key)
	err = func() error {
		f.mu.Lock()
		defer f.mu.Unlock()
		if err := f.root.MkdirAll(dp, 0o755); err != nil {
			return f.conflictError(bucket, key, err)
		}
		if fi, err := f.root.Lstat(dp); err != nil || !fi.IsDir() {
			return f.conflictError(bucket, key, syscall.ENOTDIR)
		}
		if err := f.root.MkdirAll(path.Dir(mp), 0o755); err != nil {
			return err
		}
		return f.root.Rename(metaTmp, mp)
	}()
	if err != nil {
		f.root.Remove(metaTmp)
		return ObjectInfo{}, fsError(op, bucket, key, err)
	}
	if err := f.syncDir(path.Dir(dp)); err != nil {
		return ObjectInfo{}, fsError(op, bucket, key, err)
	}
	if err := f.syncDir(path.Dir(mp)); err != nil {
		return ObjectInfo{}, fsError(op, bucket, key, err)
	}
	return markerInfo(key, rec), nil
}

// Delete removes the object; a missing object is not an error. Folders
// left empty are removed, as S3 has no empty prefixes.
func (f *Folder) Delete(ctx context.Context, bucket, key string) error {
	if err := f.check("delete", bucket, key); err != nil {
		return err
	}
	dp, mp := dataPath(bucket, key), metaPath(bucket, key)
	f.mu.Lock()
	defer f.mu.Unlock()
	if IsFolderKey(key) {
		if err := f.root.Remove(mp); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return fsError("delete", bucket, key, err)
		}
		f.prune(bucket, key)
		return nil
	}
	fi, err := f.root.Lstat(dp)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fsError("delete", bucket, key, err)
	case fi.IsDir():
		return nil // "a" when only "a/..." exist: no such object
	}
	if err := f.root.Remove(mp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fsError("delete", bucket, key, err)
	}
	if err := f.root.Remove(dp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fsError("delete", bucket, key, err)
	}
	if err := f.syncDir(path.Dir(dp)); err != nil {
		return fsError("delete", bucket, key, err)
	}
	f.prune(bucket, parentKey(key))
	return nil
}

// prune removes dirKey's folder and its parents while they are empty and
// not folder markers. f.mu is held.
func (f *Folder) prune(bucket, dirKey string) {
	for dirKey != "" {
		if _, err := f.root.Lstat(metaPath(bucket, dirKey)); err == nil {
			return // a marker keeps its folder
		}
		if err := f.root.Remove(dataPath(bucket, dirKey)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return // not empty
		}
		f.root.Remove(metaDir(bucket, dirKey))
		dirKey = parentKey(dirKey)
	}
}

// Copy copies src to dst within the bucket.
func (f *Folder) Copy(ctx context.Context, bucket, src, dst string, meta *Meta) (ObjectInfo, error) {
	if err := f.check("copy", bucket, src); err != nil {
		return ObjectInfo{}, err
	}
	if err := checkFolderKey(dst); err != nil {
		return ObjectInfo{}, opError("copy", bucket, dst, err)
	}
	if src == dst {
		if meta == nil {
			return f.Stat(ctx, bucket, src)
		}
		return f.replaceMeta(bucket, src, *meta)
	}
	// Open the source and read its record as a pair.
	f.mu.RLock()
	info, err := f.statLocked(bucket, src)
	var file *os.File
	if err == nil && !IsFolderKey(src) {
		file, err = f.root.Open(dataPath(bucket, src))
		if err == nil {
			if fi, serr := file.Stat(); serr != nil || fi.Size() != info.Size {
				file.Close()
				err = fmt.Errorf("%w: the source changed while being opened", ErrConflict)
			}
		}
	}
	f.mu.RUnlock()
	if err != nil {
		return ObjectInfo{}, opError("copy", bucket, src, withCause(osSentinel(err), err))
	}
	newMeta := info.Meta
	if meta != nil {
		newMeta = *meta
	}
	if IsFolderKey(dst) {
		if file != nil {
			file.Close()
		}
		if err := expectEmpty(nil, info.Size); err != nil {
			return ObjectInfo{}, opError("copy", bucket, dst, err)
		}
		return f.putMarker("copy", bucket, dst, newMeta)
	}
	tmpFile, tmp, err := f.createTemp("copy")
	if err != nil {
		if file != nil {
			file.Close()
		}
		return ObjectInfo{}, fsError("copy", bucket, dst, err)
	}
	if file != nil {
		_, err = io.Copy(tmpFile, ctxReader{ctx, file}) // copy_file_range where the kernel can
		file.Close()
		if err != nil {
			tmpFile.Close()
			f.root.Remove(tmp)
			return ObjectInfo{}, fsError("copy", bucket, dst, err)
		}
	}
	return f.commitFile("copy", bucket, dst, tmpFile, tmp, newMeta)
}

// replaceMeta gives an object new metadata without touching its data.
func (f *Folder) replaceMeta(bucket, key string, meta Meta) (ObjectInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if IsFolderKey(key) {
		if _, err := f.statLocked(bucket, key); err != nil {
			return ObjectInfo{}, opError("copy", bucket, key, err)
		}
		rec := record{Written: time.Now().UnixNano(), ETag: randomHex(8), User: meta.Encode()}
		b, _ := json.Marshal(rec)
		if err := f.writeFileAtomic(metaPath(bucket, key), b); err != nil {
			return ObjectInfo{}, fsError("copy", bucket, key, err)
		}
		return markerInfo(key, rec), nil
	}
	dp := dataPath(bucket, key)
	if _, err := f.statLocked(bucket, key); err != nil {
		return ObjectInfo{}, opError("copy", bucket, key, err)
	}
	if !meta.Mtime.IsZero() {
		// The old record stops matching here; the new one replaces it next.
		if err := f.root.Chtimes(dp, meta.Mtime, meta.Mtime); err != nil {
			return ObjectInfo{}, fsError("copy", bucket, key, err)
		}
	}
	fi, err := f.root.Stat(dp)
	if err != nil {
		return ObjectInfo{}, fsError("copy", bucket, key, err)
	}
	rec := record{Size: fi.Size(), FileMtime: fi.ModTime().UnixNano(), Written: time.Now().UnixNano(), ETag: randomHex(8), User: meta.Encode()}
	b, _ := json.Marshal(rec)
	if err := f.writeFileAtomic(metaPath(bucket, key), b); err != nil {
		return ObjectInfo{}, fsError("copy", bucket, key, err)
	}
	return fileInfo(key, fi, rec, true), nil
}

// ---- listing ------------------------------------------------------------------

// List returns one page of keys in byte order. Objects carry their
// metadata (it costs one small read each).
func (f *Folder) List(ctx context.Context, bucket string, opt ListOptions) (ListPage, error) {
	if err := ValidBucket(bucket); err != nil {
		return ListPage{}, opError("list", bucket, "", err)
	}
	if err := f.checkBucket("list", bucket, ""); err != nil {
		return ListPage{}, err
	}
	l := &lister{f: f, ctx: ctx, bucket: bucket, prefix: opt.Prefix, delim: opt.Delimiter, after: opt.StartAfter, max: pageSize(opt.MaxKeys)}
	start := opt.Prefix[:strings.LastIndexByte(opt.Prefix, '/')+1]
	if start != "" && checkFolderKey(start) != nil {
		return ListPage{}, nil // no valid key has this prefix ("../", "a//")
	}
	if start != "" && start == opt.Prefix {
		if r, ok := f.readRecord(metaPath(bucket, start)); ok {
			if fi, err := f.root.Stat(dataPath(bucket, start)); err == nil && fi.IsDir() {
				l.consider(start, func() (ObjectInfo, bool) { return markerInfo(start, r), true })
			}
		}
	}
	if !l.stopped {
		l.walk(start)
	}
	if l.err != nil {
		return ListPage{}, opError("list", bucket, "", l.err)
	}
	return l.page, nil
}

// pageSize applies S3's page-size rule.
func pageSize(n int) int {
	if n <= 0 || n > 1000 {
		return 1000
	}
	return n
}

type lister struct {
	f             *Folder
	ctx           context.Context
	bucket        string
	prefix, delim string
	after         string
	max           int

	page    ListPage
	count   int
	last    string // the last key or prefix added
	lastCP  string
	stopped bool
	err     error
}

// full stops the walk when the page is full; the item that did not fit
// proves that more remain.
func (l *lister) full() bool {
	if l.count < l.max {
		return false
	}
	l.page.NextStartAfter = l.last
	l.stopped = true
	return true
}

func (l *lister) addPrefix(cp string) {
	if l.full() {
		return
	}
	l.page.CommonPrefixes = append(l.page.CommonPrefixes, cp)
	l.count++
	l.last, l.lastCP = cp, cp
}

// consider adds key, or the common prefix it rolls up into, if the options
// select it.
func (l *lister) consider(key string, info func() (ObjectInfo, bool)) {
	if !strings.HasPrefix(key, l.prefix) || key <= l.after {
		return
	}
	if l.delim != "" {
		if i := strings.Index(key[len(l.prefix):], l.delim); i >= 0 {
			cp := key[:len(l.prefix)+i+len(l.delim)]
			if cp > l.after && cp != l.lastCP {
				l.addPrefix(cp)
			}
			return
		}
	}
	if l.full() {
		return
	}
	oi, ok := info()
	if !ok {
		return
	}
	l.page.Objects = append(l.page.Objects, oi)
	l.count++
	l.last = key
}

type dirItem struct {
	name  string
	sort  string // the key, with "/" after a folder's name
	dir   bool
	entry fs.DirEntry
}

// readItems returns the folder's entries in the byte order of their keys.
func (l *lister) readItems(dirKey string) ([]dirItem, map[string]bool, error) {
	ents, err := l.f.readDir(dataPath(l.bucket, dirKey))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return nil, nil, nil
		}
		return nil, nil, err
	}
	items := make([]dirItem, 0, len(ents))
	for _, e := range ents {
		it := dirItem{name: e.Name(), sort: dirKey + e.Name(), entry: e}
		switch {
		case e.Type().IsRegular():
		case e.IsDir():
			it.dir = true
			it.sort += "/"
		default:
			continue // symbolic links and devices are not objects
		}
		if checkFolderKey(it.sort) != nil {
			continue // a name no key can have, placed by hand
		}
		items = append(items, it)
	}
	slices.SortFunc(items, func(a, b dirItem) int { return strings.Compare(a.sort, b.sort) })
	recs := map[string]bool{}
	if ments, err := l.f.readDir(metaDir(l.bucket, dirKey)); err == nil {
		for _, e := range ments {
			recs[e.Name()] = true
		}
	}
	return items, recs, nil
}

func (l *lister) walk(dirKey string) {
	if err := l.ctx.Err(); err != nil {
		l.err, l.stopped = err, true
		return
	}
	items, recs, err := l.readItems(dirKey)
	if err != nil {
		l.err, l.stopped = withCause(osSentinel(err), err), true
		return
	}
	for _, it := range items {
		if l.stopped {
			return
		}
		if !it.dir {
			key := it.sort
			l.consider(key, func() (ObjectInfo, bool) {
				fi, err := it.entry.Info()
				if err != nil {
					return ObjectInfo{}, false
				}
				var r record
				ok := false
				if recs["o."+it.name] {
					r, ok = l.f.readRecord(metaPath(l.bucket, key))
				}
				return fileInfo(key, fi, r, ok), true
			})
			continue
		}
		p := it.sort
		if !strings.HasPrefix(p, l.prefix) && !strings.HasPrefix(l.prefix, p) {
			continue
		}
		if p < l.after && !strings.HasPrefix(l.after, p) {
			continue // every key below sorts before StartAfter
		}
		if l.lastCP != "" && strings.HasPrefix(p, l.lastCP) {
			continue // already rolled up
		}
		if l.delim != "" && strings.HasPrefix(p, l.prefix) {
			rest := p[len(l.prefix):]
			if i := strings.Index(rest, l.delim); i >= 0 && i+len(l.delim) <= len(rest) {
				// Every key below rolls up into the same prefix.
				cp := p[:len(l.prefix)+i+len(l.delim)]
				if cp > l.after && cp != l.lastCP && l.hasObjects(p, recs["p."+it.name]) {
					l.addPrefix(cp)
				}
				continue
			}
		}
		if recs["p."+it.name] {
			l.consider(p, func() (ObjectInfo, bool) {
				r, ok := l.f.readRecord(metaPath(l.bucket, p))
				return markerInfo(p, r), ok
			})
		}
		l.walk(p)
	}
}

// hasObjects reports whether the folder dirKey holds any object (or is a
// marker itself), so that it shows as a common prefix.
func (l *lister) hasObjects(dirKey string, marker bool) bool {
	if marker {
		return true
	}
	items, recs, err := l.readItems(dirKey)
	if err != nil {
		return false
	}
	for _, it := range items {
		if !it.dir || l.hasObjects(it.sort, recs["p."+it.name]) {
			return true
		}
	}
	return false
}
