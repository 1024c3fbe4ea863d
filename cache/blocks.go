package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/chute/chute/cos"
	"github.com/chute/chute/engine"
)

// Read-ahead: a sequential reader's window starts at readAheadMin and
// doubles with every sequential read up to readAheadMax (or an eighth of
// the cache, if smaller). Random reads fetch the blocks of randomBlock they
// touch, nothing more. Large windows matter on a fast path: each fetch is a
// request to the server and a ranged read of the store, and the fewer there
// are, the fewer times the path waits on one starting.
const (
	readAheadMin = 1 << 20
	readAheadMax = 256 << 20
	randomBlock  = 64 << 10
)

// blockItem is one cached object version: a sparse file holding the ranges
// fetched so far.
type blockItem struct {
	mu       sync.Mutex
	rec      blockRecord // Ranges is filled from have when saved
	have     ranges
	fetching []*fetchRun
	f        *os.File // open while refs > 0 or a fetch runs
	refs     int
	gone     bool // dropped while in use: removed at the last release
	changed  bool // have or atime changed since the record was saved
	// arrived, when a reader waits for bytes a running fetch brings, is
	// closed (and cleared) as soon as more bytes are in.
	arrived chan struct{}
}

type fetchRun struct {
	r    engine.Range
	done chan struct{}
	err  error
}

// itemID names an object version: key, ETag and size.
func itemID(key, etag string, size int64) string {
	h := sha256.Sum256([]byte(key + "\x00" + etag + "\x00" + strconv.FormatInt(size, 10)))
	return hex.EncodeToString(h[:16])
}

// loadBlocks reads the block records. After an unclean stop they are
// dropped: their data may not have reached the disk.
func (c *Cache) loadBlocks(unclean bool) error {
	known := map[string]bool{}
	var drop []string
	err := c.ix.scan(prefBlocks, func(k string, v []byte) error {
		var r blockRecord
		if unclean || json.Unmarshal(v, &r) != nil {
			drop = append(drop, k)
			return nil
		}
		if _, err := os.Stat(c.blockPath(r.ID)); err != nil {
			drop = append(drop, k)
			return nil
		}
		it := &blockItem{rec: r}
		for _, x := range r.Ranges {
			it.have = it.have.add(x.Off, x.Len)
		}
		c.items[r.ID] = it
		known[r.ID] = true
		return nil
	})
	if err != nil {
		return fmt.Errorf("cache: read block records: %w", err)
	}
	for _, k := range drop {
		if err := c.ix.del(k); err != nil {
			return err
		}
	}
	if unclean && len(drop) > 0 {
		c.log.Info("unclean stop: dropped cached read blocks", "objects", len(drop))
	}
	c.removeStrays(filepath.Join(c.opt.Dir, "blocks"), known)
	return nil
}

func (c *Cache) saveItemLocked(it *blockItem) error {
	if c.killed.Load() || it.gone || !it.changed {
		return nil
	}
	it.rec.Ranges = append(it.rec.Ranges[:0], it.have...)
	it.changed = false
	return c.ix.putJSON(prefBlocks+it.rec.ID, &it.rec)
}

// removeItemLocked deletes a cached object version (Cache.mu and it.mu
// held).
func (c *Cache) removeItemLocked(it *blockItem) {
	delete(c.items, it.rec.ID)
	if it.f != nil {
		it.f.Close()
		it.f = nil
	}
	it.gone = true
	os.Remove(c.blockPath(it.rec.ID))
	if err := c.ix.del(prefBlocks + it.rec.ID); err != nil {
		c.log.Warn("drop block record", "key", it.rec.Key, "err", err)
	}
}

// holdItem finds or makes the item for an object version and holds it open.
func (c *Cache) holdItem(key string, e Entry) (*blockItem, error) {
	id := itemID(key, e.ETag, e.Size)
	c.mu.Lock()
	defer c.mu.Unlock()
	it := c.items[id]
	if it == nil {
		it = &blockItem{rec: blockRecord{ID: id, Key: key, Size: e.Size, ETag: e.ETag, Mtime: e.Mtime}, changed: true}
		c.items[id] = it
		// Older versions of the key are of no more use.
		for _, o := range c.items {
			if o != it && o.rec.Key == key {
				o.mu.Lock()
				if o.refs == 0 && len(o.fetching) == 0 {
					c.removeItemLocked(o)
				}
				o.mu.Unlock()
			}
		}
	}
	it.mu.Lock()
	defer it.mu.Unlock()
	if it.f == nil {
		f, err := os.OpenFile(c.blockPath(id), os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			if it.refs == 0 && len(it.fetching) == 0 && it.have.size() == 0 {
				delete(c.items, id)
			}
			return nil, fmt.Errorf("cache blocks of %q: %w", key, err)
		}
		it.f = f
	}
	it.refs++
	it.rec.ATime = time.Now()
	it.changed = true
	return it, nil
}

func (c *Cache) releaseItem(it *blockItem) {
	c.mu.Lock()
	defer c.mu.Unlock()
	it.mu.Lock()
	defer it.mu.Unlock()
	it.refs--
	if it.refs > 0 || len(it.fetching) > 0 {
		return
	}
	if it.gone {
		if c.items[it.rec.ID] == it {
			c.removeItemLocked(it)
		}
		return
	}
	if err := c.saveItemLocked(it); err != nil {
		c.log.Warn("record cached blocks", "key", it.rec.Key, "err", err)
	}
	if it.f != nil {
		it.f.Close()
		it.f = nil
	}
}

// moveItem renames the cached blocks of (key, etag, size) to those of the
// copy (newKey, newETag): the bytes are the same.
func (c *Cache) moveItem(key, etag, newKey, newETag string, size int64) {
	from, to := itemID(key, etag, size), itemID(newKey, newETag, size)
	if from == to {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	it := c.items[from]
	if it == nil || c.items[to] != nil {
		return
	}
	it.mu.Lock()
	defer it.mu.Unlock()
	if it.refs > 0 || len(it.fetching) > 0 {
		return
	}
	if err := os.Rename(c.blockPath(from), c.blockPath(to)); err != nil {
		return
	}
	delete(c.items, from)
	c.ix.del(prefBlocks + from)
	it.rec.ID, it.rec.Key, it.rec.ETag = to, newKey, newETag
	it.changed = true
	c.items[to] = it
	if err := c.saveItemLocked(it); err != nil {
		c.log.Warn("record cached blocks", "key", newKey, "err", err)
	}
}

// Reader reads one object version through the block cache. Sequential
// reads grow a read-ahead window fetched in the background. It is safe for
// concurrent use.
type Reader struct {
	c   *Cache
	key string
	it  *blockItem

	mu       sync.Mutex
	seqEnd   int64 // end of the last read
	window   int64 // read-ahead window; 0 while reads look random
	aheadEnd int64 // end of what read-ahead asked for
	// ahead holds the read-ahead fetches still running (closed when done).
	// At most maxAhead run at once: the one being read and the next. More
	// would share the path with the bytes the reader waits for, and ask
	// the store for many ranges at once.
	ahead []<-chan struct{}
}

const maxAhead = 2

// OpenRead opens the object key, as e describes it (from Lookup), for
// reading.
func (c *Cache) OpenRead(ctx context.Context, key string, e Entry) (*Reader, error) {
	it, err := c.holdItem(key, e)
	if err != nil {
		return nil, err
	}
	return &Reader{c: c, key: key, it: it}, nil
}

// Size is the object's size.
func (r *Reader) Size() int64 { return r.it.rec.Size }

// Close releases the reader.
func (r *Reader) Close() { r.c.releaseItem(r.it) }

// ReadAt reads from the object, fetching what the cache lacks.
func (r *Reader) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	f, n, err := r.ReadFile(ctx, off, len(p))
	if err != nil {
		return 0, err
	}
	m, err := f.ReadAt(p[:n], off)
	if err == io.EOF && m == n {
		err = nil
	}
	if err != nil {
		return m, fmt.Errorf("read %q: %w", r.key, err)
	}
	return m, nil
}

// ReadFile makes sure the cache holds the n bytes at off (fewer at the
// object's end; io.EOF at or past it), fetching what it lacks, and returns
// the cache file that holds them at the same offsets, so that the caller
// can move them on without copying (a FUSE reply spliced from the file).
// The file stays open until the Reader is closed.
func (r *Reader) ReadFile(ctx context.Context, off int64, n int) (*os.File, int, error) {
	size := r.it.rec.Size
	if off >= size {
		return nil, 0, io.EOF
	}
	end := min(off+int64(n), size)
	r.mu.Lock()
	// Reads a little out of order (the kernel's own read-ahead) still count
	// as sequential.
	if off == 0 || (off >= r.seqEnd-readAheadMin && off <= r.seqEnd+readAheadMin) {
		r.window = min(max(r.window*2, readAheadMin), max(min(readAheadMax, r.c.opt.Size/8), readAheadMin))
	} else {
		r.window = 0
		r.aheadEnd = 0
	}
	r.seqEnd = max(r.seqEnd, end)
	if r.window == 0 {
		r.seqEnd = end
	}
	running := r.ahead[:0]
	for _, ch := range r.ahead {
		select {
		case <-ch:
		default:
			running = append(running, ch)
		}
	}
	r.ahead = running
	var ahead engine.Range
	if r.window > 0 && r.aheadEnd-end < r.window/2 && end < size && len(r.ahead) < maxAhead {
		from := max(r.aheadEnd, end)
		to := min(end+r.window, size)
		if to > from {
			ahead = engine.Range{Off: from, Len: to - from}
			r.aheadEnd = to
		}
	}
	window := r.window
	r.mu.Unlock()

	need := engine.Range{Off: off, Len: end - off}
	if window == 0 {
		lo := off / randomBlock * randomBlock
		hi := min((end+randomBlock-1)/randomBlock*randomBlock, size)
		need = engine.Range{Off: lo, Len: hi - lo}
	}
	if ahead.Len > 0 {
		if done := r.c.prefetch(r.it, ahead); done != nil {
			r.mu.Lock()
			r.ahead = append(r.ahead, done)
			r.mu.Unlock()
		}
	}
	if err := r.c.ensure(ctx, r.it, need); err != nil {
		return nil, 0, err
	}
	r.it.mu.Lock()
	f := r.it.f
	r.it.mu.Unlock()
	return f, int(end - off), nil
}

// claimLocked registers fetches for the parts of want neither present nor
// being fetched, and returns them with the running fetches it must wait for.
func claimLocked(it *blockItem, want engine.Range) (mine, others []*fetchRun) {
	miss := it.have.missing(want)
	if len(miss) == 0 {
		return nil, nil
	}
	var busy []engine.Range
	for _, f := range it.fetching {
		for _, m := range miss {
			if f.r.Off < m.End() && m.Off < f.r.End() {
				others = append(others, f)
				break
			}
		}
		busy = append(busy, f.r)
	}
	for _, m := range subtract(miss, busy) {
		f := &fetchRun{r: m, done: make(chan struct{})}
		it.fetching = append(it.fetching, f)
		mine = append(mine, f)
	}
	return mine, others
}

// ensure makes want present in it, fetching and waiting as needed.
func (c *Cache) ensure(ctx context.Context, it *blockItem, want engine.Range) error {
	for {
		it.mu.Lock()
		if it.have.contains(want) {
			it.rec.ATime = time.Now()
			it.mu.Unlock()
			return nil
		}
		mine, others := claimLocked(it, want)
		// A reader needs its bytes, not the whole of the fetch that brings
		// them: it wakes whenever more arrive.
		var arrived chan struct{}
		if len(others) > 0 {
			if it.arrived == nil {
				it.arrived = make(chan struct{})
			}
			arrived = it.arrived
		}
		it.mu.Unlock()
		for _, f := range mine {
			c.runFetch(it, f)
			if f.err != nil {
				for _, g := range mine {
					if g != f {
						c.runFetchIfPending(it, g)
					}
				}
				return f.err
			}
		}
	wait:
		for _, f := range others {
			select {
			case <-f.done:
				if f.err != nil {
					return f.err
				}
			case <-arrived:
				break wait // look again: what this reader needs may be in
			case <-ctx.Done():
				return fmt.Errorf("read %q: %w", it.rec.Key, ctx.Err())
			case <-c.ctx.Done():
				return fmt.Errorf("read %q: cache closed: %w", it.rec.Key, c.ctx.Err())
			}
		}
	}
}

// runFetchIfPending ends a claimed fetch that will not run.
func (c *Cache) runFetchIfPending(it *blockItem, f *fetchRun) {
	select {
	case <-f.done:
	default:
		c.finishFetch(it, f, fmt.Errorf("read %q: abandoned", it.rec.Key))
	}
}

// prefetch fetches r in the background; the channel it returns is closed
// when the fetch ends (nil when there was nothing to fetch).
func (c *Cache) prefetch(it *blockItem, r engine.Range) <-chan struct{} {
	it.mu.Lock()
	mine, _ := claimLocked(it, r)
	if len(mine) > 0 {
		it.refs++ // the fetch holds the file open
	}
	it.mu.Unlock()
	if len(mine) == 0 {
		return nil
	}
	done := make(chan struct{})
	c.fetches.Add(1)
	go func() {
		defer c.fetches.Done()
		defer close(done)
		defer c.releaseItem(it)
		for _, f := range mine {
			c.runFetch(it, f)
		}
	}()
	return done
}

// runFetch downloads one claimed range into the item's file.
func (c *Cache) runFetch(it *blockItem, f *fetchRun) {
	it.mu.Lock()
	file, key, etag := it.f, it.rec.Key, it.rec.ETag
	it.mu.Unlock()
	if file == nil || c.ctx.Err() != nil {
		c.finishFetch(it, f, fmt.Errorf("read %q: cache closed", key))
		return
	}
	req := engine.DownloadRequest{
		Bucket: c.opt.Bucket, Key: key, Offset: f.r.Off, Length: f.r.Len, Dest: file, Volatile: true, Rate: c.opt.Rate,
		// Cached blocks need no durability (their records are dropped after
		// an unclean stop) and readers take them from the page cache.
		OnData: func(off, n int64) {
			it.mu.Lock()
			it.have = it.have.add(off, n)
			it.changed = true
			if it.arrived != nil {
				close(it.arrived)
				it.arrived = nil
			}
			it.mu.Unlock()
		},
	}
	start := time.Now()
	res, err := c.remote.Download(c.ctx, req)
	c.log.Debug("fetch", "key", key, "off", f.r.Off, "len", f.r.Len, "elapsed", time.Since(start), "err", err)
	if err != nil && isNoSpace(err) && c.evict(-1) > 0 {
		// The cache disk filled up: make room and fetch what is missing.
		it.mu.Lock()
		req.Have = append([]engine.Range(nil), it.have...)
		it.mu.Unlock()
		res, err = c.remote.Download(c.ctx, req)
	}
	switch {
	case err != nil:
		err = fmt.Errorf("read %q [%d,+%d): %w", key, f.r.Off, f.r.Len, err)
	case etag != "" && res.Object.ETag != "" && res.Object.ETag != etag:
		c.noteGone(key)
		it.mu.Lock()
		it.gone = true
		it.have = nil
		it.mu.Unlock()
		err = fmt.Errorf("read %q: object changed while reading: %w", key, cos.ErrConflict)
	}
	c.finishFetch(it, f, err)
	c.kickEvict()
}

func (c *Cache) finishFetch(it *blockItem, f *fetchRun, err error) {
	it.mu.Lock()
	defer it.mu.Unlock()
	f.err = err
	for i, g := range it.fetching {
		if g == f {
			it.fetching = append(it.fetching[:i], it.fetching[i+1:]...)
			break
		}
	}
	close(f.done)
}
