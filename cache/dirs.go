package cache

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/chute/chute/cos"
)

// Entry is what the mount shows of one name in a folder.
type Entry struct {
	Name  string
	Dir   bool
	Size  int64
	Mtime time.Time // zero when unknown (prefixes without a marker)
	Mode  uint32    // st_mode recorded in the object's metadata; 0 when none
	UID   *uint32
	GID   *uint32
	ETag  string
	// Full is set when the entry carries the object's metadata (from Stat,
	// or from the mount's own change), not just what a listing tells.
	Full bool
}

// dirList is one cached folder listing.
type dirList struct {
	loaded time.Time
	ents   map[string]*Entry
}

// dirOf splits a key into its folder ("" or ending in "/") and name.
func dirOf(key string) (dir, name string) {
	k := strings.TrimSuffix(key, "/")
	i := strings.LastIndexByte(k, '/')
	return k[:i+1], k[i+1:]
}

func entryFromInfo(name string, o cos.ObjectInfo, full bool) *Entry {
	return &Entry{
		Name: name, Size: o.Size, Mtime: o.ModTime(), Mode: o.Meta.Mode,
		UID: o.Meta.UID, GID: o.Meta.GID, ETag: o.ETag, Full: full,
	}
}

func (c *Cache) fresh(d *dirList) bool {
	return d != nil && c.opt.ListTTL > 0 && time.Since(d.loaded) < c.opt.ListTTL
}

// loadDir lists folder dir from the server and caches the result.
func (c *Cache) loadDir(ctx context.Context, dir string) (*dirList, error) {
	d := &dirList{loaded: time.Now(), ents: map[string]*Entry{}}
	// With metadata: the server, next to the store, reads it for the
	// whole page, so that lookups need no round trip per entry.
	opt := cos.ListOptions{Prefix: dir, Delimiter: "/", WithMeta: true}
	for {
		page, err := c.remote.List(ctx, c.opt.Bucket, opt)
		if err != nil {
			return nil, fmt.Errorf("list %q: %w", dir, err)
		}
		for _, o := range page.Objects {
			name := strings.TrimPrefix(o.Key, dir)
			if name == "" || strings.Contains(name, "/") {
				continue // the folder's own marker
			}
			if e, ok := d.ents[name]; ok && e.Dir {
				continue // a folder and a file of one name: the folder wins
			}
			full := o.HasMeta || o.Meta.Mode != 0 || !o.Meta.Mtime.IsZero()
			d.ents[name] = entryFromInfo(name, o, full)
		}
		markers := map[string]cos.ObjectInfo{}
		for _, m := range page.Markers {
			markers[m.Key] = m
		}
		for _, p := range page.CommonPrefixes {
			name := strings.TrimSuffix(strings.TrimPrefix(p, dir), "/")
			if name == "" {
				continue
			}
			e := &Entry{Name: name, Dir: true}
			if m, ok := markers[p]; ok {
				// The folder's metadata, from its marker.
				e = entryFromInfo(name, m, true)
				e.Dir, e.Size = true, 0
			} else if page.Markers != nil {
				// The page was filled: no marker means no metadata to ask for.
				e.Full = true
			}
			d.ents[name] = e
		}
		if page.NextStartAfter == "" {
			break
		}
		opt.StartAfter = page.NextStartAfter
	}
	c.mu.Lock()
	c.dirs[dir] = d
	c.mu.Unlock()
	return d, nil
}

// ReadDir lists folder dir ("" for the bucket's top, else ending in "/"),
// sorted by name, staged files included.
func (c *Cache) ReadDir(ctx context.Context, dir string) ([]Entry, error) {
	c.mu.Lock()
	d := c.dirs[dir]
	if !c.fresh(d) {
		d = nil
	}
	c.mu.Unlock()
	if d == nil {
		var err error
		if d, err = c.loadDir(ctx, dir); err != nil {
			return nil, err
		}
	}
	c.mu.Lock()
	m := make(map[string]Entry, len(d.ents))
	for n, e := range d.ents {
		m[n] = *e
	}
	for k, s := range c.byKey {
		if !strings.HasPrefix(k, dir) {
			continue
		}
		rest := k[len(dir):]
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			if _, ok := m[rest[:i]]; !ok {
				m[rest[:i]] = Entry{Name: rest[:i], Dir: true}
			}
			continue
		}
		m[rest] = s.entry()
	}
	c.mu.Unlock()
	out := make([]Entry, 0, len(m))
	for _, e := range m {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Lookup finds name in folder dir. It answers cos.ErrNotFound (wrapped)
// when there is no such file or folder. A file's entry is Full: if the
// listing did not carry the object's metadata, Lookup asks for it.
func (c *Cache) Lookup(ctx context.Context, dir, name string) (Entry, error) {
	key := dir + name
	c.mu.Lock()
	if s := c.byKey[key]; s != nil {
		e := s.entry()
		c.mu.Unlock()
		return e, nil
	}
	d := c.dirs[dir]
	if !c.fresh(d) {
		d = nil
	}
	c.mu.Unlock()
	if d == nil {
		var err error
		if d, err = c.loadDir(ctx, dir); err != nil {
			return Entry{}, err
		}
	}
	c.mu.Lock()
	var e Entry
	p, ok := d.ents[name]
	if ok {
		e = *p
	} else if c.stagedUnderLocked(key + "/") {
		ok, e = true, Entry{Name: name, Dir: true}
	}
	c.mu.Unlock()
	if !ok {
		return Entry{}, fmt.Errorf("lookup %q: %w", key, cos.ErrNotFound)
	}
	if e.Full {
		return e, nil
	}
	if e.Dir {
		// A folder's metadata lives on its marker, if it has one.
		var ne Entry
		o, err := c.remote.Stat(ctx, c.opt.Bucket, key+"/")
		switch {
		case err == nil:
			ne = *entryFromInfo(name, o, true)
			ne.Dir, ne.Size = true, 0
		case isNotFound(err):
			ne = Entry{Name: name, Dir: true, Full: true}
		default:
			return Entry{}, fmt.Errorf("stat %q: %w", key+"/", err)
		}
		c.noteEntry(key+"/", ne)
		return ne, nil
	}
	o, err := c.remote.Stat(ctx, c.opt.Bucket, key)
	if err != nil {
		if isNotFound(err) {
			c.noteGone(key)
		}
		return Entry{}, fmt.Errorf("stat %q: %w", key, err)
	}
	ne := entryFromInfo(name, o, true)
	c.noteEntry(key, *ne)
	return *ne, nil
}

// stagedUnderLocked reports whether a staged file lives under prefix.
func (c *Cache) stagedUnderLocked(prefix string) bool {
	for k := range c.byKey {
		if strings.HasPrefix(k, prefix) {
			return true
		}
	}
	return false
}

// noteEntry records a change the mount made itself: key (a file key, or a
// folder key ending in "/") now shows as e in its folder's cached listing.
func (c *Cache) noteEntry(key string, e Entry) {
	dir, name := dirOf(key)
	e.Name = name
	c.mu.Lock()
	defer c.mu.Unlock()
	if d := c.dirs[dir]; d != nil {
		d.ents[name] = &e
	}
}

// noteGone records that key (file, or folder ending in "/") is gone.
func (c *Cache) noteGone(key string) {
	dir, name := dirOf(key)
	c.mu.Lock()
	defer c.mu.Unlock()
	if d := c.dirs[dir]; d != nil {
		delete(d.ents, name)
	}
	if strings.HasSuffix(key, "/") {
		for k := range c.dirs {
			if strings.HasPrefix(k, key) {
				delete(c.dirs, k)
			}
		}
	}
}

// Forget drops every cached listing, so the next look goes to the server.
func (c *Cache) Forget() {
	c.mu.Lock()
	c.dirs = map[string]*dirList{}
	c.mu.Unlock()
}
