package cos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// uploadState is an upload's state.json.
type uploadState struct {
	Bucket   string            `json:"bucket"`
	Key      string            `json:"key"`
	Size     int64             `json:"size"`
	PartSize int64             `json:"part_size"`
	User     map[string]string `json:"user,omitempty"`
	Created  int64             `json:"created_ns"`
}

// partRecord is an upload's record of one finished part.
type partRecord struct {
	Size int64  `json:"size"`
	ETag string `json:"etag"`
}

const uploadIDLen = 32 // hex digits

func uploadDir(id string) string { return folderUploads + "/" + id }

func validUploadID(id string) bool {
	return len(id) == uploadIDLen && isHex(id, uploadIDLen)
}

func partName(id string, n int) string {
	return fmt.Sprintf("%s/part.%05d", uploadDir(id), n)
}

// CreateUpload starts a multipart upload: a preallocated data file and a
// state record under .chute/uploads.
func (f *Folder) CreateUpload(ctx context.Context, bucket, key string, opt UploadOptions) (Upload, error) {
	if err := f.check("create-upload", bucket, key); err != nil {
		return nil, err
	}
	if IsFolderKey(key) {
		return nil, opError("create-upload", bucket, key, fmt.Errorf("%w: a folder marker cannot be uploaded in parts", ErrUnsupported))
	}
	partSize, n, err := PlanParts(opt.Size, opt.PartSize)
	if err != nil {
		return nil, opError("create-upload", bucket, key, err)
	}
	id := randomHex(uploadIDLen / 2)
	st := uploadState{Bucket: bucket, Key: key, Size: opt.Size, PartSize: partSize, User: opt.Meta.Encode(), Created: time.Now().UnixNano()}
	dir := uploadDir(id)
	err = func() error {
		if err := f.root.Mkdir(dir, 0o755); err != nil {
			return err
		}
		data, err := f.root.OpenFile(dir+"/data", os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return err
		}
		err = data.Truncate(opt.Size)
		if err == nil {
			err = data.Sync()
		}
		if cerr := data.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		b, _ := json.Marshal(st)
		if err := f.writeFileAtomic(dir+"/state.json", b); err != nil {
			return err
		}
		return f.syncDir(folderUploads)
	}()
	if err != nil {
		f.root.RemoveAll(dir)
		return nil, fsError("create-upload", bucket, key, err)
	}
	f.log.Debug("upload created", "bucket", bucket, "key", key, "upload", id, "size", opt.Size, "part_size", partSize)
	return &folderUpload{f: f, id: id, st: st, n: n, parts: map[int]Part{}}, nil
}

// ResumeUpload finds an upload again from its state on disk.
func (f *Folder) ResumeUpload(ctx context.Context, bucket, key, uploadID string) (Upload, error) {
	if err := f.check("resume-upload", bucket, key); err != nil {
		return nil, err
	}
	notFound := func(why string) error {
		return opError("resume-upload", bucket, key, fmt.Errorf("%w: upload %q %s", ErrNotFound, uploadID, why))
	}
	if !validUploadID(uploadID) {
		return nil, notFound("is not an upload ID of this store")
	}
	st, err := f.readUploadState(uploadID)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, notFound("does not exist (completed, aborted, or never started)")
		}
		return nil, fsError("resume-upload", bucket, key, err)
	}
	if st.Bucket != bucket || st.Key != key {
		return nil, notFound(fmt.Sprintf("belongs to %s/%s", st.Bucket, st.Key))
	}
	if _, err := f.root.Stat(uploadDir(uploadID) + "/data"); err != nil {
		return nil, notFound("has completed")
	}
	_, n, err := PlanParts(st.Size, st.PartSize)
	if err != nil {
		return nil, opError("resume-upload", bucket, key, err)
	}
	u := &folderUpload{f: f, id: uploadID, st: st, n: n}
	if u.parts, err = u.loadParts(); err != nil {
		return nil, fsError("resume-upload", bucket, key, err)
	}
	return u, nil
}

func (f *Folder) readUploadState(id string) (uploadState, error) {
	var st uploadState
	b, err := f.root.ReadFile(uploadDir(id) + "/state.json")
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("upload %s: damaged state.json: %w", id, err)
	}
	return st, nil
}

// AbortStaleUploads aborts the bucket's uploads created before olderThan.
// Upload folders without a state record (a crash while creating one) are
// removed too, but not counted.
func (f *Folder) AbortStaleUploads(ctx context.Context, bucket string, olderThan time.Time) (int, error) {
	if err := ValidBucket(bucket); err != nil {
		return 0, opError("abort-stale-uploads", bucket, "", err)
	}
	if err := f.checkBucket("abort-stale-uploads", bucket, ""); err != nil {
		return 0, err
	}
	ents, err := f.readDir(folderUploads)
	if err != nil {
		return 0, fsError("abort-stale-uploads", bucket, "", err)
	}
	count := 0
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return count, opError("abort-stale-uploads", bucket, "", err)
		}
		id := e.Name()
		st, err := f.readUploadState(id)
		if errors.Is(err, fs.ErrNotExist) {
			if fi, ierr := e.Info(); ierr == nil && fi.ModTime().Before(olderThan) {
				f.root.RemoveAll(uploadDir(id))
			}
			continue
		}
		if err != nil || st.Bucket != bucket || !time.Unix(0, st.Created).Before(olderThan) {
			continue
		}
		if err := f.removeUpload(id); err != nil {
			return count, fsError("abort-stale-uploads", bucket, st.Key, err)
		}
		f.log.Info("aborted a stale upload", "bucket", bucket, "key", st.Key, "upload", id, "created", time.Unix(0, st.Created))
		count++
	}
	return count, nil
}

// removeUpload takes an upload's folder out of sight in one rename, then
// deletes it.
func (f *Folder) removeUpload(id string) error {
	trash := folderTmp + "/abort-" + id
	if err := f.root.Rename(uploadDir(id), trash); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	if err := f.syncDir(folderUploads); err != nil {
		return err
	}
	return f.root.RemoveAll(trash)
}

// folderUpload is a multipart upload of the folder store.
type folderUpload struct {
	f  *Folder
	id string
	st uploadState
	n  int

	mu    sync.Mutex
	parts map[int]Part
}

var _ LocalUpload = (*folderUpload)(nil)

// DataFile opens the upload's data file for writing in place.
func (u *folderUpload) DataFile() (*os.File, error) {
	f, err := u.f.root.OpenFile(uploadDir(u.id)+"/data", os.O_RDWR, 0)
	if err != nil {
		return nil, u.err("write-part", withCause(osSentinel(err), fmt.Errorf("upload %s: %w", u.id, err)))
	}
	return f, nil
}

// CommitPart syncs the data file and records part n, whose bytes the
// caller wrote through DataFile.
func (u *folderUpload) CommitPart(ctx context.Context, n int) (Part, error) {
	if n < 1 || n > u.n {
		return Part{}, u.err("write-part", fmt.Errorf("part %d is out of range: the upload has parts 1 to %d", n, u.n))
	}
	_, size := PartRange(u.st.Size, u.st.PartSize, n)
	mu := u.partLock(n)
	mu.Lock()
	defer mu.Unlock()
	dir := uploadDir(u.id)
	data, err := u.f.root.OpenFile(dir+"/data", os.O_WRONLY, 0)
	if err != nil {
		return Part{}, u.err("write-part", withCause(osSentinel(err), fmt.Errorf("upload %s is gone: %w", u.id, err)))
	}
	err = fdatasync(int(data.Fd()))
	if cerr := data.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return Part{}, u.err("write-part", withCause(osSentinel(err), err))
	}
	return u.recordPart(n, size)
}

func (u *folderUpload) ID() string      { return u.id }
func (u *folderUpload) Bucket() string  { return u.st.Bucket }
func (u *folderUpload) Key() string     { return u.st.Key }
func (u *folderUpload) Size() int64     { return u.st.Size }
func (u *folderUpload) PartSize() int64 { return u.st.PartSize }
func (u *folderUpload) NumParts() int   { return u.n }

func (u *folderUpload) Parts() []Part {
	u.mu.Lock()
	defer u.mu.Unlock()
	return sortedParts(u.parts)
}

func sortedParts(m map[int]Part) []Part {
	out := make([]Part, 0, len(m))
	for _, p := range m {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b Part) int { return a.Number - b.Number })
	return out
}

func (u *folderUpload) err(op string, err error) error {
	return opError(op, u.st.Bucket, u.st.Key, err)
}

// loadParts reads the part records on disk.
func (u *folderUpload) loadParts() (map[int]Part, error) {
	ents, err := u.f.readDir(uploadDir(u.id))
	if err != nil {
		return nil, err
	}
	parts := map[int]Part{}
	for _, e := range ents {
		num, ok := strings.CutPrefix(e.Name(), "part.")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(num)
		if err != nil || n < 1 || n > u.n {
			continue
		}
		b, err := u.f.root.ReadFile(uploadDir(u.id) + "/" + e.Name())
		if err != nil {
			return nil, err
		}
		var pr partRecord
		if err := json.Unmarshal(b, &pr); err != nil {
			u.f.log.Warn("ignoring a damaged part record", "upload", u.id, "part", n, "err", err)
			continue
		}
		if _, want := PartRange(u.st.Size, u.st.PartSize, n); pr.Size != want {
			continue
		}
		parts[n] = Part{Number: n, Size: pr.Size, ETag: pr.ETag}
	}
	return parts, nil
}

func (u *folderUpload) partLock(n int) *sync.Mutex {
	h := fnv.New32a()
	fmt.Fprintf(h, "%s/%d", u.id, n)
	return &u.f.partMu[h.Sum32()%uint32(len(u.f.partMu))]
}

// WritePart writes part n in place in the upload's data file, syncs it, and
// then records it. A part written again loses its record first, so that a
// crash while it is rewritten leaves it missing, never half-old.
func (u *folderUpload) WritePart(ctx context.Context, n int, r io.Reader) (Part, error) {
	if n < 1 || n > u.n {
		return Part{}, u.err("write-part", fmt.Errorf("part %d is out of range: the upload has parts 1 to %d", n, u.n))
	}
	off, size := PartRange(u.st.Size, u.st.PartSize, n)
	mu := u.partLock(n)
	mu.Lock()
	defer mu.Unlock()
	dir := uploadDir(u.id)
	if _, err := u.f.root.Stat(dir + "/state.json"); err != nil {
		return Part{}, u.err("write-part", withCause(ErrNotFound, fmt.Errorf("upload %s is gone: %w", u.id, err)))
	}
	name := partName(u.id, n)
	switch err := u.f.root.Remove(name); {
	case err == nil:
		u.mu.Lock()
		delete(u.parts, n)
		u.mu.Unlock()
		if err := u.f.syncDir(dir); err != nil {
			return Part{}, u.err("write-part", withCause(osSentinel(err), err))
		}
	case !errors.Is(err, fs.ErrNotExist):
		return Part{}, u.err("write-part", withCause(osSentinel(err), err))
	}
	data, err := u.f.root.OpenFile(dir+"/data", os.O_WRONLY, 0)
	if err != nil {
		return Part{}, u.err("write-part", withCause(osSentinel(err), fmt.Errorf("upload %s: %w", u.id, err)))
	}
	// A part cut from a local file (a transfer node's staging file) is
	// copied inside the kernel.
	copied := false
	if sr, ok := r.(*io.SectionReader); ok {
		if src, soff, sn := sr.Outer(); sn == size {
			if sf, ok := src.(*os.File); ok {
				copied, err = copyRange(data, off, sf, soff, size)
			}
		}
	}
	if !copied {
		err = copyExact(ctx, io.NewOffsetWriter(data, off), r, size)
		if err == nil {
			err = exhausted(r, n, size)
		}
	}
	if err == nil {
		err = fdatasync(int(data.Fd()))
	}
	if cerr := data.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return Part{}, u.err("write-part", withCause(osSentinel(err), err))
	}
	return u.recordPart(n, size)
}

// recordPart records part n, whose bytes are synced, under a new ETag.
func (u *folderUpload) recordPart(n int, size int64) (Part, error) {
	p := Part{Number: n, Size: size, ETag: randomHex(8)}
	b, _ := json.Marshal(partRecord{Size: p.Size, ETag: p.ETag})
	if err := u.f.writeFileAtomic(partName(u.id, n), b); err != nil {
		return Part{}, u.err("write-part", withCause(osSentinel(err), err))
	}
	u.mu.Lock()
	u.parts[n] = p
	u.mu.Unlock()
	return p, nil
}

// exhausted checks that r has nothing beyond a part's size.
func exhausted(r io.Reader, n int, size int64) error {
	var b [1]byte
	for {
		k, err := r.Read(b[:])
		if k > 0 {
			return fmt.Errorf("part %d is longer than its %d bytes", n, size)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// SetUploadMeta replaces the metadata an unfinished upload of this store
// applies when it completes.
func (f *Folder) SetUploadMeta(ctx context.Context, up Upload, m Meta) error {
	u, ok := up.(*folderUpload)
	if !ok || u.f != f {
		return opError("set-upload-meta", up.Bucket(), up.Key(), fmt.Errorf("%w: not an upload of this store", ErrUnsupported))
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	st, err := f.readUploadState(u.id)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return u.err("set-upload-meta", fmt.Errorf("%w: upload %s is gone", ErrNotFound, u.id))
		}
		return u.err("set-upload-meta", withCause(osSentinel(err), err))
	}
	st.User = m.Encode()
	b, _ := json.Marshal(st)
	if err := f.writeFileAtomic(uploadDir(u.id)+"/state.json", b); err != nil {
		return u.err("set-upload-meta", withCause(osSentinel(err), err))
	}
	u.st.User = st.User
	return nil
}

// Complete checks that every part is recorded and renames the data file
// over the key.
func (u *folderUpload) Complete(ctx context.Context) (ObjectInfo, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	parts, err := u.loadParts()
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return ObjectInfo{}, u.err("complete", fmt.Errorf("%w: upload %s is gone", ErrNotFound, u.id))
		}
		return ObjectInfo{}, u.err("complete", withCause(osSentinel(err), err))
	}
	if missing := missingParts(parts, u.n); len(missing) > 0 {
		return ObjectInfo{}, u.err("complete", fmt.Errorf("%w: upload %s lacks %s", ErrConflict, u.id, missing))
	}
	dir := uploadDir(u.id)
	data, err := u.f.root.OpenFile(dir+"/data", os.O_RDWR, 0)
	if err != nil {
		return ObjectInfo{}, u.err("complete", withCause(osSentinel(err), fmt.Errorf("upload %s: %w", u.id, err)))
	}
	meta := DecodeMeta(u.st.User)
	oi, err := u.f.commit("complete", u.st.Bucket, u.st.Key, data, dir+"/data", meta, false)
	if err != nil {
		return ObjectInfo{}, err
	}
	if err := u.f.removeUpload(u.id); err != nil {
		u.f.log.Warn("removing a completed upload", "upload", u.id, "err", err)
	}
	u.parts = map[int]Part{}
	return oi, nil
}

// missingList names missing part numbers compactly.
type missingList []int

func (m missingList) String() string {
	const show = 10
	var b strings.Builder
	if len(m) == 1 {
		b.WriteString("part ")
	} else {
		b.WriteString("parts ")
	}
	for i, n := range m {
		if i == show {
			fmt.Fprintf(&b, " and %d more", len(m)-show)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Itoa(n))
	}
	return b.String()
}

func missingParts(parts map[int]Part, n int) missingList {
	var missing missingList
	for i := 1; i <= n; i++ {
		if _, ok := parts[i]; !ok {
			missing = append(missing, i)
		}
	}
	return missing
}

// Abort removes the upload. An upload already gone is not an error.
func (u *folderUpload) Abort(ctx context.Context) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if err := u.f.removeUpload(u.id); err != nil {
		return u.err("abort", withCause(osSentinel(err), err))
	}
	u.parts = map[int]Part{}
	return nil
}
