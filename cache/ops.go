package cache

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/chute/chute/cos"
)

// Mkdir makes folder key (without the trailing slash) by storing its
// marker object "key/".
func (c *Cache) Mkdir(ctx context.Context, key string, meta cos.Meta) (Entry, error) {
	if meta.Mtime.IsZero() {
		meta.Mtime = time.Now()
	}
	o, err := c.remote.Put(ctx, c.opt.Bucket, key+"/", nil, meta)
	if err != nil {
		return Entry{}, fmt.Errorf("mkdir %q: %w", key, err)
	}
	e := *entryFromInfo("", o, true)
	e.Dir, e.Size = true, 0
	c.noteEntry(key, e)
	// A new folder is empty: no need to ask the server what it holds.
	c.mu.Lock()
	c.dirs[key+"/"] = &dirList{loaded: time.Now(), ents: map[string]*Entry{}}
	c.mu.Unlock()
	_, e.Name = dirOf(key)
	return e, nil
}

// Rmdir removes folder key (without the trailing slash). It fails with
// cos.ErrNotEmpty when anything is stored under it.
func (c *Cache) Rmdir(ctx context.Context, key string) error {
	prefix := key + "/"
	c.mu.Lock()
	staged := c.stagedUnderLocked(prefix)
	c.mu.Unlock()
	if staged {
		return fmt.Errorf("rmdir %q: %w", key, cos.ErrNotEmpty)
	}
	page, err := c.remote.List(ctx, c.opt.Bucket, cos.ListOptions{Prefix: prefix, MaxKeys: 2})
	if err != nil {
		return fmt.Errorf("rmdir %q: %w", key, err)
	}
	for _, o := range page.Objects {
		if o.Key != prefix {
			return fmt.Errorf("rmdir %q: %w", key, cos.ErrNotEmpty)
		}
	}
	if err := c.remote.Delete(ctx, c.opt.Bucket, prefix); err != nil {
		return fmt.Errorf("rmdir %q: %w", key, err)
	}
	c.noteGone(prefix)
	return nil
}

// dropStaged forgets the staged copy of key, if any: its upload is
// stopped and its record deleted; open handles keep their bytes until they
// close.
func (c *Cache) dropStaged(key string) {
	c.mu.Lock()
	s := c.byKey[key]
	if s != nil {
		delete(c.byKey, key)
	}
	c.mu.Unlock()
	if s == nil {
		return
	}
	c.queue.Remove(s.id)
	s.mu.Lock()
	s.quiesceLocked()
	if err := c.ix.del(prefStaged + s.id); err != nil {
		c.log.Error("drop staged record", "key", key, "err", err)
	}
	s.removed = true
	s.endChangeLocked()
	s.mu.Unlock()
	// With no handle left, Release-like cleanup happens here.
	s.mu.Lock()
	s.opens++
	s.mu.Unlock()
	s.Release()
}

// Remove deletes file key.
func (c *Cache) Remove(ctx context.Context, key string) error {
	c.dropStaged(key)
	if err := c.remote.Delete(ctx, c.opt.Bucket, key); err != nil {
		return fmt.Errorf("remove %q: %w", key, err)
	}
	c.noteGone(key)
	c.dropItems(key)
	return nil
}

// Rename moves file src to dst, replacing dst. A staged file that is not
// on the server yet just changes its key; one that is, is copied on the
// server and the source deleted.
func (c *Cache) Rename(ctx context.Context, src, dst string) error {
	if src == dst {
		return nil
	}
	c.mu.Lock()
	s := c.byKey[src]
	if s != nil {
		s.mu.Lock()
		s.opens++ // held for the rename
		s.mu.Unlock()
	}
	c.mu.Unlock()
	c.dropStaged(dst)
	if s == nil {
		e, err := c.Lookup(ctx, dirOfKey(src), lastName(src))
		if err != nil {
			return fmt.Errorf("rename %q: %w", src, err)
		}
		o, err := c.remote.Copy(ctx, c.opt.Bucket, src, dst, nil)
		if err != nil {
			return fmt.Errorf("rename %q to %q: %w", src, dst, err)
		}
		if err := c.remote.Delete(ctx, c.opt.Bucket, src); err != nil {
			return fmt.Errorf("rename %q to %q: delete source: %w", src, dst, err)
		}
		c.noteGone(src)
		ne := *entryFromInfo("", o, true)
		if o.Meta.Mode == 0 && e.Mode != 0 {
			ne.Mode = e.Mode
		}
		c.noteEntry(dst, ne)
		c.moveItem(src, e.ETag, dst, o.ETag, e.Size)
		return nil
	}
	defer s.Release()
	s.mu.Lock()
	s.quiesceLocked()
	clean := s.rec.State == StateUploaded
	etag, size := s.rec.ETag, s.rec.Size
	s.mu.Unlock()
	var o cos.ObjectInfo
	if clean {
		var err error
		if o, err = c.remote.Copy(ctx, c.opt.Bucket, src, dst, nil); err != nil {
			s.mu.Lock()
			s.endChangeLocked()
			s.mu.Unlock()
			return fmt.Errorf("rename %q to %q: %w", src, dst, err)
		}
	}
	c.mu.Lock()
	s.mu.Lock()
	s.rec.Key = dst
	if clean {
		s.rec.ETag = o.ETag
	} else {
		s.gen++
		s.rec.State = StateDirty
		s.rec.Resume = nil
		s.rec.TransferID = newID()
	}
	s.persistOrLogLocked()
	open := s.opens > 1
	s.endChangeLocked()
	s.mu.Unlock()
	if c.byKey[src] == s {
		delete(c.byKey, src)
	}
	c.byKey[dst] = s
	c.mu.Unlock()
	if err := c.remote.Delete(ctx, c.opt.Bucket, src); err != nil {
		return fmt.Errorf("rename %q to %q: delete source: %w", src, dst, err)
	}
	c.noteGone(src)
	c.dropItems(src)
	if clean {
		c.moveItem(src, etag, dst, o.ETag, size)
		return nil
	}
	switch {
	case c.opt.WriteBack || open:
		c.queue.Add(s.id, 0)
	default:
		if err := s.Sync(ctx); err != nil {
			return fmt.Errorf("rename %q to %q: %w", src, dst, err)
		}
	}
	return nil
}

// RenameDir moves folder src to dst (keys without the trailing slash),
// object by object: it is not atomic. A crash or error part way leaves some
// objects under each name; running it again finishes the move.
func (c *Cache) RenameDir(ctx context.Context, src, dst string) error {
	sp, dp := src+"/", dst+"/"
	// dst must be absent or an empty folder.
	page, err := c.remote.List(ctx, c.opt.Bucket, cos.ListOptions{Prefix: dp, MaxKeys: 2})
	if err != nil {
		return fmt.Errorf("rename %q to %q: %w", src, dst, err)
	}
	for _, o := range page.Objects {
		if o.Key != dp {
			return fmt.Errorf("rename %q to %q: %w", src, dst, cos.ErrNotEmpty)
		}
	}
	c.mu.Lock()
	var stagedKeys []string
	for k := range c.byKey {
		if strings.HasPrefix(k, sp) {
			stagedKeys = append(stagedKeys, k)
		}
		if strings.HasPrefix(k, dp) {
			c.mu.Unlock()
			return fmt.Errorf("rename %q to %q: %w", src, dst, cos.ErrNotEmpty)
		}
	}
	c.mu.Unlock()
	for _, k := range stagedKeys {
		if err := c.Rename(ctx, k, dp+k[len(sp):]); err != nil {
			return err
		}
	}
	opt := cos.ListOptions{Prefix: sp}
	var keys []string
	for {
		page, err := c.remote.List(ctx, c.opt.Bucket, opt)
		if err != nil {
			return fmt.Errorf("rename %q to %q: %w", src, dst, err)
		}
		for _, o := range page.Objects {
			keys = append(keys, o.Key)
		}
		if page.NextStartAfter == "" {
			break
		}
		opt.StartAfter = page.NextStartAfter
	}
	for _, k := range keys {
		nk := dp + k[len(sp):]
		if _, err := c.remote.Copy(ctx, c.opt.Bucket, k, nk, nil); err != nil {
			return fmt.Errorf("rename %q to %q: copy %q: %w", src, dst, k, err)
		}
		if err := c.remote.Delete(ctx, c.opt.Bucket, k); err != nil {
			return fmt.Errorf("rename %q to %q: delete %q: %w", src, dst, k, err)
		}
	}
	c.dropItemsUnder(sp)
	c.noteGone(sp)
	c.mu.Lock()
	delete(c.dirs, dirOfKey(src))
	delete(c.dirs, dirOfKey(dst))
	for k := range c.dirs {
		if strings.HasPrefix(k, dp) {
			delete(c.dirs, k)
		}
	}
	c.mu.Unlock()
	return nil
}

func lastName(key string) string {
	_, n := dirOf(key)
	return n
}

// SetMeta changes the metadata of file or folder key (a folder's without
// the trailing slash). A staged file not yet uploaded takes the change with
// it; otherwise the object is copied onto itself with the new metadata.
func (c *Cache) SetMeta(ctx context.Context, key string, isDir bool, ch MetaChange) (Entry, error) {
	if isDir {
		return c.setDirMeta(ctx, key, ch)
	}
	if s := c.OpenStaged(key); s != nil {
		defer s.Release()
		s.mu.Lock()
		if s.rec.State != StateUploaded || s.up != nil {
			s.quiesceLocked()
			m := s.metaLocked()
			ch.apply(&m, false)
			s.rec.Mode, s.rec.UID, s.rec.GID, s.rec.Mtime = m.Mode, m.UID, m.GID, m.Mtime
			s.gen++
			s.rec.State = StateDirty
			s.persistOrLogLocked()
			e := s.entryLocked()
			// An open file is uploaded when it is closed; with write-back
			// (or when nobody holds it) the queue takes the change.
			queue := c.opt.WriteBack || s.opens <= 1
			s.endChangeLocked()
			s.mu.Unlock()
			if queue {
				c.queue.Add(s.id, 0)
			}
			return e, nil
		}
		m := s.metaLocked()
		ch.apply(&m, false)
		gen, etag, size := s.gen, s.rec.ETag, s.rec.Size
		s.mu.Unlock()
		o, err := c.remote.Copy(ctx, c.opt.Bucket, key, key, &m)
		if err != nil {
			return Entry{}, fmt.Errorf("set metadata of %q: %w", key, err)
		}
		s.mu.Lock()
		if s.gen == gen {
			s.rec.Mode, s.rec.UID, s.rec.GID, s.rec.Mtime = m.Mode, m.UID, m.GID, m.Mtime
			s.rec.ETag = o.ETag
			s.gen++
			s.persistOrLogLocked()
		}
		e := s.entryLocked()
		s.mu.Unlock()
		c.moveItem(key, etag, key, o.ETag, size)
		return e, nil
	}
	o, err := c.remote.Stat(ctx, c.opt.Bucket, key)
	if err != nil {
		return Entry{}, fmt.Errorf("set metadata of %q: %w", key, err)
	}
	m := o.Meta
	if m.Mtime.IsZero() {
		m.Mtime = o.LastModified
	}
	ch.apply(&m, false)
	n, err := c.remote.Copy(ctx, c.opt.Bucket, key, key, &m)
	if err != nil {
		return Entry{}, fmt.Errorf("set metadata of %q: %w", key, err)
	}
	if n.Meta.Mtime.IsZero() && n.Meta.Mode == 0 {
		n.Meta = m
	}
	e := *entryFromInfo(lastName(key), n, true)
	c.noteEntry(key, e)
	c.moveItem(key, o.ETag, key, n.ETag, o.Size)
	return e, nil
}

func (c *Cache) setDirMeta(ctx context.Context, key string, ch MetaChange) (Entry, error) {
	marker := key + "/"
	var m cos.Meta
	o, err := c.remote.Stat(ctx, c.opt.Bucket, marker)
	switch {
	case err == nil:
		m = o.Meta
	case errors.Is(err, cos.ErrNotFound):
		m.Mode = syscall.S_IFDIR | 0o755
	default:
		return Entry{}, fmt.Errorf("set metadata of %q: %w", key, err)
	}
	ch.apply(&m, true)
	n, err := c.remote.Put(ctx, c.opt.Bucket, marker, nil, m)
	if err != nil {
		return Entry{}, fmt.Errorf("set metadata of %q: %w", key, err)
	}
	if n.Meta.Mode == 0 && n.Meta.Mtime.IsZero() {
		n.Meta = m
	}
	e := *entryFromInfo(lastName(key), n, true)
	e.Dir, e.Size = true, 0
	c.noteEntry(key, e)
	return e, nil
}

// Truncate sets the size of file key (truncate(2) on a path): the file is
// staged, cut, and stored like a written file.
func (c *Cache) Truncate(ctx context.Context, key string, size int64) (Entry, error) {
	s, err := c.OpenWrite(ctx, key, size == 0)
	if err != nil {
		return Entry{}, err
	}
	defer s.Release()
	if err := s.Truncate(size); err != nil {
		return Entry{}, err
	}
	if err := s.Flush(ctx); err != nil {
		return Entry{}, err
	}
	return s.Attr(), nil
}
