package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"sync"
	"syscall"
	"time"

	"github.com/chute/chute/cos"
	"github.com/chute/chute/engine"
)

// Staged is a file being written: a local copy in the cache folder that is
// uploaded as an object on Flush (or in the background with
// Options.WriteBack). Every open handle of one key shares one Staged. It is
// safe for concurrent use.
type Staged struct {
	c  *Cache
	id string

	mu      sync.Mutex
	rec     stagedRecord
	f       *os.File
	gen     uint64     // bumped by every change of bytes or metadata
	opens   int        // handles (and internal users) holding it
	removed bool       // unlinked or retired: no longer uploaded or recorded
	up      *uploadRun // the running upload, if any
	// changing counts changes under way (see quiesceLocked); idle is
	// closed when it drops to zero.
	changing int
	idle     chan struct{}
	// sum hashes the bytes while they are written in order from the start
	// (as cp and most writers write), so the upload needs no second read
	// of the file for its SHA-256; any other change drops it (nil).
	sum    hash.Hash
	summed int64
}

type uploadRun struct {
	gen       uint64
	cancel    context.CancelFunc
	done      chan struct{}
	err       error
	preempted bool // cancelled to make way for a change
}

// MetaChange is a change of a file's metadata; nil fields stay as they are.
type MetaChange struct {
	Mode  *uint32 // permission bits (07777); the file type is kept
	UID   *uint32
	GID   *uint32
	Mtime *time.Time
}

func (ch MetaChange) apply(m *cos.Meta, isDir bool) {
	if ch.Mode != nil {
		typ := uint32(syscall.S_IFREG)
		if isDir {
			typ = syscall.S_IFDIR
		}
		m.Mode = typ | *ch.Mode&07777
	}
	if ch.UID != nil {
		u := *ch.UID
		m.UID = &u
	}
	if ch.GID != nil {
		g := *ch.GID
		m.GID = &g
	}
	if ch.Mtime != nil {
		m.Mtime = *ch.Mtime
	}
}

// Key returns the object key the file will be stored as.
func (s *Staged) Key() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rec.Key
}

// Attr returns the file's attributes as the mount shows them.
func (s *Staged) Attr() Entry { return s.entry() }

func (s *Staged) entry() Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.entryLocked()
}

func (s *Staged) entryLocked() Entry {
	return Entry{
		Name: path.Base(s.rec.Key), Size: s.rec.Size, Mtime: s.rec.Mtime, Mode: s.rec.Mode,
		UID: s.rec.UID, GID: s.rec.GID, ETag: s.rec.ETag, Full: true,
	}
}

// State reports where the file is on its way to the server.
func (s *Staged) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rec.State
}

func (s *Staged) metaLocked() cos.Meta {
	return cos.Meta{Mtime: s.rec.Mtime, Mode: s.rec.Mode, UID: s.rec.UID, GID: s.rec.GID}
}

func (s *Staged) persistLocked() error {
	if s.c.killed.Load() || s.removed {
		return nil
	}
	return s.c.ix.putJSON(prefStaged+s.id, &s.rec)
}

func (s *Staged) persistOrLogLocked() {
	if err := s.persistLocked(); err != nil {
		s.c.log.Error("record staged file", "key", s.rec.Key, "err", err)
	}
}

// quiesceLocked starts a change: it stops a running upload and waits for
// it to end (the lock is dropped while waiting), and no upload starts
// until the matching endChangeLocked.
func (s *Staged) quiesceLocked() {
	s.changing++
	for s.up != nil {
		up := s.up
		up.preempted = true
		up.cancel()
		s.mu.Unlock()
		<-up.done
		s.mu.Lock()
	}
}

// endChangeLocked ends a change begun by quiesceLocked.
func (s *Staged) endChangeLocked() {
	s.changing--
	if s.changing == 0 && s.idle != nil {
		close(s.idle)
		s.idle = nil
	}
}

// waitChangesLocked waits until no change is under way. The lock is
// dropped while waiting.
func (s *Staged) waitChangesLocked() {
	for s.changing > 0 {
		if s.idle == nil {
			s.idle = make(chan struct{})
		}
		ch := s.idle
		s.mu.Unlock()
		<-ch
		s.mu.Lock()
	}
}

// changedLocked records a change of the bytes: a new transfer, whose resume
// state starts empty.
func (s *Staged) changedLocked() {
	s.gen++
	s.rec.Mtime = time.Now()
	s.rec.ETag = ""
	if s.rec.State != StateDirty || s.rec.Resume != nil {
		s.rec.State = StateDirty
		s.rec.Resume = nil
		s.rec.TransferID = newID()
		s.persistOrLogLocked()
	}
}

// ReadAt reads the staged bytes.
func (s *Staged) ReadAt(p []byte, off int64) (int, error) {
	s.mu.Lock()
	size, f := s.rec.Size, s.f
	s.mu.Unlock()
	if off >= size {
		return 0, io.EOF
	}
	if int64(len(p)) > size-off {
		p = p[:size-off]
	}
	n, err := f.ReadAt(p, off)
	if err == io.EOF && n == len(p) {
		err = nil
	}
	return n, err
}

func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// WriteAt writes p at off. A full cache disk gives ErrNoSpace, after
// cached read blocks have been evicted to make room; the bytes staged so
// far stay intact.
func (s *Staged) WriteAt(p []byte, off int64) (int, error) {
	c := s.c
	for attempt := 0; ; attempt++ {
		s.mu.Lock()
		s.quiesceLocked()
		var n int
		var err error
		grow := off + int64(len(p)) - s.rec.Size
		if grow > 0 && c.opt.MinFree > 0 && c.freeSpace()-grow < c.opt.MinFree {
			err = ErrNoSpace
		} else {
			n, err = s.f.WriteAt(p, off)
			if n > 0 {
				s.rec.Size = max(s.rec.Size, off+int64(n))
				s.changedLocked()
				if s.sum != nil && off == s.summed {
					s.sum.Write(p[:n])
					s.summed += int64(n)
				} else {
					s.sum = nil
				}
			}
		}
		key := s.rec.Key
		s.endChangeLocked()
		s.mu.Unlock()
		if err == nil {
			if grow > 0 {
				c.kickEvict()
			}
			return n, nil
		}
		if !isNoSpace(err) {
			return n, fmt.Errorf("write %q: %w", key, err)
		}
		if attempt > 0 || c.evict(-1) == 0 {
			c.log.Warn("cache disk full", "key", key)
			return n, fmt.Errorf("write %q: %w", key, ErrNoSpace)
		}
	}
}

// Truncate sets the file's size.
func (s *Staged) Truncate(size int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.quiesceLocked()
	defer s.endChangeLocked()
	if err := s.f.Truncate(size); err != nil {
		if isNoSpace(err) {
			err = ErrNoSpace
		}
		return fmt.Errorf("truncate %q: %w", s.rec.Key, err)
	}
	s.rec.Size = size
	s.changedLocked()
	switch {
	case size == 0:
		s.sum, s.summed = sha256.New(), 0
	case size != s.summed:
		s.sum = nil
	}
	return nil
}

// Allocate reserves space for [off, off+size) (fallocate(2)); mode 0
// extends the file, FALLOC_FL_KEEP_SIZE (1) does not.
func (s *Staged) Allocate(off, size int64, mode uint32) error {
	if mode&^1 != 0 {
		return fmt.Errorf("fallocate %q: mode %#x: %w", s.Key(), mode, syscall.EOPNOTSUPP)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.quiesceLocked()
	defer s.endChangeLocked()
	if err := syscall.Fallocate(int(s.f.Fd()), mode, off, size); err != nil {
		if isNoSpace(err) {
			err = ErrNoSpace
		}
		return fmt.Errorf("fallocate %q: %w", s.rec.Key, err)
	}
	if mode == 0 && off+size > s.rec.Size {
		s.rec.Size = off + size
		s.changedLocked()
		s.sum = nil
	}
	return nil
}

// Flush is called on every close of a handle. When the file changed, it
// uploads it and returns once the object is committed; with
// Options.WriteBack it records the staged file and queues the upload
// instead. A failed upload stays queued for a retry in the background.
//
// Write-back close does not fsync: like any local file, a staged file
// survives the mount process dying (its pages are the kernel's) and reaches
// the disk with the kernel's writeback; a power loss before that can lose
// it. fsync(2) (Sync) uploads at once.
func (s *Staged) Flush(ctx context.Context) error {
	c := s.c
	s.mu.Lock()
	if s.removed || s.rec.State == StateUploaded {
		s.mu.Unlock()
		return nil
	}
	if c.opt.WriteBack {
		s.persistOrLogLocked()
		s.mu.Unlock()
		c.queue.Add(s.id, 0)
		return nil
	}
	s.mu.Unlock()
	return s.Sync(ctx)
}

// Sync uploads the file now, if it changed, and returns once the object is
// committed. A failure leaves the upload queued for a retry.
func (s *Staged) Sync(ctx context.Context) error {
	if err := s.upload(ctx, false); err != nil {
		s.c.queue.Add(s.id, s.c.opt.RetryMin)
		return err
	}
	s.c.maybeRetire(s)
	return nil
}

// Release drops one handle.
func (s *Staged) Release() {
	c := s.c
	c.mu.Lock()
	s.mu.Lock()
	s.opens--
	if s.removed && s.opens <= 0 && c.staged[s.id] == s {
		s.f.Close()
		os.Remove(c.stagedPath(s.id))
		delete(c.staged, s.id)
	}
	// Changes nobody will flush any more go to the queue.
	orphan := !s.removed && s.opens <= 0 && s.rec.State == StateDirty && s.up == nil
	s.mu.Unlock()
	c.mu.Unlock()
	if orphan {
		c.queue.Add(s.id, 0)
	}
	c.maybeRetire(s)
}

// putStaged is the queue's PutFunc.
func (c *Cache) putStaged(ctx context.Context, id string) error {
	c.mu.Lock()
	s := c.staged[id]
	c.mu.Unlock()
	if s == nil {
		return nil
	}
	if err := s.upload(ctx, true); err != nil {
		return err
	}
	c.maybeRetire(s)
	return nil
}

// upload uploads the staged bytes unless the server has them already. If
// the file changes during the upload, the upload is cancelled (by the
// writer) and started again; with yield, it is left to the writer's next
// Flush instead while the file is open.
func (s *Staged) upload(ctx context.Context, yield bool) error {
	c := s.c
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if s.removed {
			return nil
		}
		if up := s.up; up != nil {
			s.mu.Unlock()
			select {
			case <-up.done:
			case <-ctx.Done():
				s.mu.Lock()
				return ctx.Err()
			}
			s.mu.Lock()
			if up.err != nil && s.gen == up.gen && s.up == nil && s.rec.State != StateUploaded {
				return up.err
			}
			continue
		}
		if s.changing > 0 {
			s.waitChangesLocked()
			continue
		}
		if s.rec.State == StateUploaded {
			return nil
		}
		if c.ctx.Err() != nil {
			return c.ctx.Err()
		}
		uctx, cancel := context.WithCancel(c.ctx)
		up := &uploadRun{gen: s.gen, cancel: cancel, done: make(chan struct{})}
		s.up = up
		s.rec.State = StateUploading
		if s.rec.TransferID == "" {
			s.rec.TransferID = newID()
		}
		s.persistOrLogLocked()
		key := s.rec.Key
		meta := s.metaLocked()
		if s.sum != nil && s.summed == s.rec.Size {
			meta.SHA256 = hex.EncodeToString(s.sum.Sum(nil))
		}
		req := engine.UploadRequest{
			Bucket: c.opt.Bucket, Key: key, Source: s.f, Size: s.rec.Size,
			Meta: meta, State: s.rec.Resume, Rate: c.opt.Rate,
			OnCheckpoint: func(st []byte) {
				s.mu.Lock()
				defer s.mu.Unlock()
				if s.up == up && s.gen == up.gen {
					s.rec.Resume = append([]byte(nil), st...)
					s.persistOrLogLocked()
				}
			},
		}
		s.mu.Unlock()
		c.log.Debug("upload start", "key", key, "size", req.Size, "resume", req.State != nil)
		res, err := c.remote.Upload(uctx, req)
		cancel()
		s.mu.Lock()
		s.up = nil
		up.err = err
		close(up.done)
		if s.removed {
			return nil
		}
		if up.preempted || s.gen != up.gen || s.rec.Key != key {
			// Changed while uploading: what went up is stale.
			if s.rec.State == StateUploading {
				s.rec.State = StateDirty
			}
			if yield && s.opens > 0 {
				s.persistOrLogLocked()
				return nil
			}
			continue
		}
		if err != nil {
			s.rec.State = StateDirty
			s.persistOrLogLocked()
			return fmt.Errorf("upload %q: %w", key, err)
		}
		c.log.Debug("upload done", "key", key, "size", req.Size, "sent", res.Sent, "skipped", res.Skipped)
		s.rec.State = StateUploaded
		s.rec.Resume = nil
		s.rec.ETag = res.Object.ETag
		s.persistOrLogLocked()
		return nil
	}
}

// maybeRetire turns an uploaded staged file nobody holds into cached blocks
// of the object version it became.
func (c *Cache) maybeRetire(s *Staged) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opens > 0 || s.up != nil || s.removed || s.rec.State != StateUploaded || c.staged[s.id] != s || c.killed.Load() {
		return
	}
	key := s.rec.Key
	delete(c.staged, s.id)
	if c.byKey[key] == s {
		delete(c.byKey, key)
	}
	s.removed = true
	e := s.entryLocked()
	if d := c.dirs[dirOfKey(key)]; d != nil {
		d.ents[e.Name] = &e
	}
	s.f.Close()
	kept := false
	if s.rec.ETag != "" {
		id := itemID(key, s.rec.ETag, s.rec.Size)
		if _, ok := c.items[id]; !ok {
			if err := os.Rename(c.stagedPath(s.id), c.blockPath(id)); err == nil {
				it := &blockItem{rec: blockRecord{
					ID: id, Key: key, Size: s.rec.Size, ETag: s.rec.ETag, Mtime: s.rec.Mtime, ATime: time.Now(),
				}}
				it.have = it.have.add(0, s.rec.Size)
				c.items[id] = it
				if err := c.saveItemLocked(it); err != nil {
					c.log.Warn("record cached blocks", "key", key, "err", err)
				}
				kept = true
			}
		}
	}
	if !kept {
		os.Remove(c.stagedPath(s.id))
	}
	if err := c.ix.del(prefStaged + s.id); err != nil {
		c.log.Error("drop staged record", "key", key, "err", err)
	}
	c.kickEvict()
}

func dirOfKey(key string) string {
	d, _ := dirOf(key)
	return d
}

// how a staged file starts
type openHow int

const (
	howCreate openHow = iota // a new, empty file
	howTrunc                 // an existing file, emptied (O_TRUNC)
	howFetch                 // an existing file's bytes, fetched first
)

// Create makes a new empty file to be stored as key.
func (c *Cache) Create(ctx context.Context, key string, mode uint32, uid, gid *uint32) (*Staged, error) {
	return c.openStaged(ctx, key, howCreate, cos.Meta{Mode: mode, UID: uid, GID: gid})
}

// OpenWrite opens key for writing. With trunc the file starts empty;
// otherwise the object's bytes are fetched into the staged file first
// (unless a staged copy exists already).
func (c *Cache) OpenWrite(ctx context.Context, key string, trunc bool) (*Staged, error) {
	how := howFetch
	if trunc {
		how = howTrunc
	}
	return c.openStaged(ctx, key, how, cos.Meta{})
}

// OpenStaged returns the staged copy of key, if there is one, held for
// the caller (Release it), or nil.
func (c *Cache) OpenStaged(key string) *Staged {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.byKey[key]
	if s != nil {
		s.mu.Lock()
		s.opens++
		s.mu.Unlock()
	}
	return s
}

func (c *Cache) openStaged(ctx context.Context, key string, how openHow, meta cos.Meta) (*Staged, error) {
	if s := c.OpenStaged(key); s != nil {
		if how != howFetch {
			if err := s.Truncate(0); err != nil {
				s.Release()
				return nil, err
			}
		}
		if how == howCreate {
			s.mu.Lock()
			s.rec.Mode, s.rec.UID, s.rec.GID = meta.Mode, meta.UID, meta.GID
			s.gen++
			s.mu.Unlock()
		}
		return s, nil
	}
	id := newID()
	f, err := os.OpenFile(c.stagedPath(id), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if isNoSpace(err) {
			err = ErrNoSpace
		}
		return nil, fmt.Errorf("stage %q: %w", key, err)
	}
	s := &Staged{c: c, id: id, f: f, rec: stagedRecord{
		ID: id, Key: key, Mtime: time.Now(), Mode: meta.Mode, UID: meta.UID, GID: meta.GID,
		State: StateDirty, TransferID: newID(),
	}, sum: sha256.New()}
	fail := func(err error) (*Staged, error) {
		f.Close()
		os.Remove(c.stagedPath(id))
		c.ix.del(prefStaged + id)
		return nil, err
	}
	if how != howCreate {
		dir, name := dirOf(key)
		e, err := c.Lookup(ctx, dir, name)
		switch {
		case err == nil && e.Dir:
			return fail(fmt.Errorf("open %q: %w", key, syscall.EISDIR))
		case err == nil:
			s.rec.Mode, s.rec.UID, s.rec.GID = e.Mode, e.UID, e.GID
			if how == howFetch {
				if err := c.fetchWhole(ctx, key, e, f); err != nil {
					return fail(err)
				}
				s.rec.Size, s.rec.Mtime, s.rec.ETag = e.Size, e.Mtime, e.ETag
				s.rec.State = StateUploaded
				s.sum = nil
			}
		case isNotFound(err):
			// A file known to the kernel but gone from the server: start empty.
		default:
			return fail(err)
		}
	}
	if err := s.persistLocked(); err != nil {
		return fail(err)
	}
	c.mu.Lock()
	if c.byKey[key] != nil {
		c.mu.Unlock()
		fail(nil)
		return c.openStaged(ctx, key, how, meta)
	}
	s.opens = 1
	c.staged[id] = s
	c.byKey[key] = s
	c.mu.Unlock()
	return s, nil
}

// fetchWhole downloads object key (as e describes it) into f, starting with
// whatever cached blocks hold of it.
func (c *Cache) fetchWhole(ctx context.Context, key string, e Entry, f *os.File) error {
	if e.Size == 0 {
		return nil
	}
	var have []engine.Range
	c.mu.Lock()
	_, cached := c.items[itemID(key, e.ETag, e.Size)]
	c.mu.Unlock()
	if cached {
		it, err := c.holdItem(key, e)
		if err != nil {
			return err
		}
		defer c.releaseItem(it)
		it.mu.Lock()
		have = append(have, it.have...)
		it.mu.Unlock()
		buf := make([]byte, 1<<20)
		for _, r := range have {
			for off := r.Off; off < r.End(); {
				n := min(int64(len(buf)), r.End()-off)
				if _, err := it.f.ReadAt(buf[:n], off); err != nil {
					return fmt.Errorf("fetch %q: read cached blocks: %w", key, err)
				}
				if _, err := f.WriteAt(buf[:n], off); err != nil {
					if isNoSpace(err) {
						err = ErrNoSpace
					}
					return fmt.Errorf("fetch %q: %w", key, err)
				}
				off += n
			}
		}
	}
	if err := f.Truncate(e.Size); err != nil {
		return fmt.Errorf("fetch %q: %w", key, err)
	}
	if ranges(have).contains(engine.Range{Off: 0, Len: e.Size}) {
		return nil
	}
	res, err := c.remote.Download(c.ctx, engine.DownloadRequest{
		Bucket: c.opt.Bucket, Key: key, Offset: 0, Length: e.Size, Dest: f, Have: have, Rate: c.opt.Rate,
	})
	if err != nil {
		if isNoSpace(err) {
			err = ErrNoSpace
		}
		return fmt.Errorf("fetch %q: %w", key, err)
	}
	if e.ETag != "" && res.Object.ETag != "" && res.Object.ETag != e.ETag {
		c.noteGone(key)
		return fmt.Errorf("fetch %q: object changed while reading: %w", key, cos.ErrConflict)
	}
	return nil
}
