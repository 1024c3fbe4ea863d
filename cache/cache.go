package cache

// Lock order, outermost first:
//
//	Cache.mu  →  Staged.mu  →  blockItem.mu
//
// Queue.mu and the index (Badger) are leaves: the queue never calls out
// while holding its lock, and index writes may happen under Staged.mu or
// Cache.mu. No lock of ours is held during a Remote call, while waiting for
// an upload to stop, or while waiting for a fetch: code that must do those
// drops its locks first and checks its state again afterwards.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/chute/chute/cos"
	"github.com/chute/chute/engine"
)

// ErrNoSpace is returned (wrapping syscall.ENOSPC) when the cache disk has
// no room for more staged data, even after evicting cached read blocks.
var ErrNoSpace = fmt.Errorf("cache disk full: %w", syscall.ENOSPC)

// Options configure a Cache. Zero values are documented defaults.
type Options struct {
	Dir    string // the cache folder, one per server and bucket; created if missing
	Remote Remote // the server; required
	Bucket string // required
	// Size caps cached read blocks plus staged data; when over, read blocks
	// are evicted least recently used first. Staged data is never evicted,
	// so it alone may exceed Size. 0 means 10 GiB.
	Size int64
	// MinFree is space kept free on the cache disk: a staged write that
	// would eat into it fails with ErrNoSpace. 0 means 2% of the disk,
	// between 4 MiB and 1 GiB; negative means no reserve.
	MinFree int64
	// ListTTL is how long folder listings and attributes are trusted. 0
	// means 10 s; negative means they are fetched again every time.
	ListTTL time.Duration
	// IOTimeout bounds how long a call waits for a server that does not
	// answer or stops sending before it fails with engine.ErrUnreachable.
	// 0 means 60 s.
	IOTimeout time.Duration
	// WriteBack makes Staged.Flush return at once and upload in the
	// background; otherwise Flush returns when the object is committed.
	WriteBack bool
	Rate      engine.Rate // for every transfer of this cache
	Uploads   int         // background uploads at once; 0 means 4
	// RetryMin and RetryMax bound the backoff between background upload
	// attempts; 0 means 1 s and 1 min.
	RetryMin, RetryMax time.Duration
	Logger             *slog.Logger // nil means no logs
}

// Cache is one cache folder in use. It is safe for concurrent use.
type Cache struct {
	opt    Options
	remote Remote // opt.Remote wrapped in retries
	log    *slog.Logger
	ix     *index
	queue  *Queue

	ctx     context.Context // ends at Close or Kill: cancels uploads and fetches
	cancel  context.CancelFunc
	killed  atomic.Bool
	bg      sync.WaitGroup // the evictor
	fetches sync.WaitGroup // background fetches (read-ahead)
	evictC  chan struct{}

	mu     sync.Mutex
	staged map[string]*Staged    // by id
	byKey  map[string]*Staged    // by current key; removed files are not here
	items  map[string]*blockItem // by id
	dirs   map[string]*dirList   // by folder
}

// Open opens (or creates) the cache folder opt.Dir. Unfinished uploads
// recorded there are queued again in the background: Open does not wait for
// them, nor for the server.
func Open(ctx context.Context, opt Options) (*Cache, error) {
	if opt.Remote == nil || opt.Bucket == "" || opt.Dir == "" {
		return nil, errors.New("cache: Options need Dir, Remote and Bucket")
	}
	if opt.Size == 0 {
		opt.Size = 10 << 30
	}
	if opt.ListTTL == 0 {
		opt.ListTTL = 10 * time.Second
	}
	if opt.IOTimeout <= 0 {
		opt.IOTimeout = 60 * time.Second
	}
	if opt.Uploads <= 0 {
		opt.Uploads = 4
	}
	if opt.RetryMin <= 0 {
		opt.RetryMin = time.Second
	}
	if opt.RetryMax <= 0 {
		opt.RetryMax = time.Minute
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	for _, d := range []string{opt.Dir, filepath.Join(opt.Dir, "staged"), filepath.Join(opt.Dir, "blocks")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("cache: %w", err)
		}
	}
	if opt.MinFree == 0 {
		var st syscall.Statfs_t
		if err := syscall.Statfs(opt.Dir, &st); err != nil {
			return nil, fmt.Errorf("cache: statfs %s: %w", opt.Dir, err)
		}
		opt.MinFree = min(max(int64(st.Blocks)*st.Bsize/50, 4<<20), 1<<30)
	}
	log := opt.Logger.With("cache", opt.Dir)
	ix, unclean, err := openIndex(filepath.Join(opt.Dir, "index"), log)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithCancel(context.Background())
	c := &Cache{
		opt: opt, remote: newRetrying(opt.Remote, opt.IOTimeout, log), log: log, ix: ix,
		ctx: cctx, cancel: cancel, evictC: make(chan struct{}, 1),
		staged: map[string]*Staged{}, byKey: map[string]*Staged{},
		items: map[string]*blockItem{}, dirs: map[string]*dirList{},
	}
	dirty, err := c.loadStaged()
	if err == nil {
		err = c.loadBlocks(unclean)
	}
	if err != nil {
		cancel()
		ix.close(false)
		return nil, err
	}
	c.queue = NewQueue(c.putStaged, opt.Uploads, opt.RetryMin, opt.RetryMax, log)
	for _, id := range dirty {
		c.queue.Add(id, 0)
	}
	if len(dirty) > 0 {
		log.Info("resuming unfinished uploads", "count", len(dirty))
	}
	c.bg.Add(1)
	go c.evictor()
	return c, nil
}

// loadStaged reads the staged records and returns the ids to upload.
func (c *Cache) loadStaged() (dirty []string, err error) {
	var recs []stagedRecord
	err = c.ix.scan(prefStaged, func(k string, v []byte) error {
		var r stagedRecord
		if err := json.Unmarshal(v, &r); err != nil {
			c.log.Error("dropping unreadable staged record", "record", k, "err", err)
			return c.ix.del(k)
		}
		recs = append(recs, r)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cache: read staged records: %w", err)
	}
	known := map[string]bool{}
	var retire []*Staged
	for _, r := range recs {
		f, err := os.OpenFile(c.stagedPath(r.ID), os.O_RDWR, 0)
		if err != nil {
			c.log.Error("staged file lost, dropping its record", "key", r.Key, "id", r.ID, "err", err)
			if err := c.ix.del(prefStaged + r.ID); err != nil {
				return nil, err
			}
			continue
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("cache: staged file %s: %w", r.ID, err)
		}
		r.Size = st.Size()
		if r.State == StateUploading {
			r.State = StateDirty
		}
		s := &Staged{c: c, id: r.ID, rec: r, f: f}
		if other := c.byKey[r.Key]; other != nil {
			// Two records for one key can only come from a crash in the
			// middle of replacing one: keep the newer one.
			if other.rec.Mtime.After(r.Mtime) {
				c.dropStagedFile(s)
				continue
			}
			c.dropStagedFile(other)
		}
		known[r.ID] = true
		c.staged[r.ID] = s
		c.byKey[r.Key] = s
		if r.State == StateDirty {
			dirty = append(dirty, r.ID)
		} else {
			retire = append(retire, s)
		}
	}
	for _, s := range retire {
		c.maybeRetire(s)
	}
	c.removeStrays(filepath.Join(c.opt.Dir, "staged"), known)
	return dirty, nil
}

// dropStagedFile forgets a staged file that is in no map.
func (c *Cache) dropStagedFile(s *Staged) {
	s.f.Close()
	os.Remove(c.stagedPath(s.id))
	if err := c.ix.del(prefStaged + s.id); err != nil {
		c.log.Error("drop staged record", "id", s.id, "err", err)
	}
	delete(c.staged, s.id)
	if c.byKey[s.rec.Key] == s {
		delete(c.byKey, s.rec.Key)
	}
}

// removeStrays deletes files in dir that no record names.
func (c *Cache) removeStrays(dir string, known map[string]bool) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		c.log.Warn("scan cache folder", "dir", dir, "err", err)
		return
	}
	for _, e := range ents {
		if !known[e.Name()] {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

func (c *Cache) stagedPath(id string) string { return filepath.Join(c.opt.Dir, "staged", id) }
func (c *Cache) blockPath(id string) string  { return filepath.Join(c.opt.Dir, "blocks", id) }

// Close drains the upload queue until ctx ends; uploads still waiting or
// running then are stopped and left recorded for the next Open. It returns
// how many were left.
func (c *Cache) Close(ctx context.Context) (left int, err error) {
	drainErr := c.queue.Drain(ctx)
	c.cancel() // stops running uploads and fetches
	c.queue.Stop()
	c.bg.Wait()
	c.fetches.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.staged {
		s.mu.Lock()
		if s.rec.State != StateUploaded && !s.removed {
			left++
		}
		if s.rec.State == StateUploading {
			s.rec.State = StateDirty
		}
		if !s.removed {
			err = errors.Join(err, s.persistLocked())
		}
		s.f.Close()
		s.mu.Unlock()
	}
	for _, it := range c.items {
		it.mu.Lock()
		err = errors.Join(err, c.saveItemLocked(it))
		if it.f != nil {
			it.f.Close()
		}
		it.mu.Unlock()
	}
	if drainErr != nil && left > 0 {
		c.log.Warn("uploads left for the next mount", "count", left)
	}
	err = errors.Join(err, c.ix.close(true))
	return left, err
}

// Kill stops the cache the way a crash would: uploads and fetches are
// abandoned where they are and nothing more is written to the index, which
// is closed without marking a clean stop. It exists so that tests can
// check recovery.
func (c *Cache) Kill() {
	c.killed.Store(true)
	c.cancel()
	c.queue.Stop()
	c.bg.Wait()
	c.fetches.Wait()
	c.mu.Lock()
	for _, s := range c.staged {
		s.mu.Lock()
		s.f.Close()
		s.mu.Unlock()
	}
	for _, it := range c.items {
		it.mu.Lock()
		if it.f != nil {
			it.f.Close()
		}
		it.mu.Unlock()
	}
	c.mu.Unlock()
	c.ix.close(false)
}

// Pending reports the staged files not yet on the server.
func (c *Cache) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, s := range c.staged {
		s.mu.Lock()
		if s.rec.State != StateUploaded && !s.removed {
			n++
		}
		s.mu.Unlock()
	}
	return n
}

// WaitUploads waits until the upload queue is empty or ctx ends.
func (c *Cache) WaitUploads(ctx context.Context) error { return c.queue.Drain(ctx) }

// newID returns a fresh random id.
func newID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func isNotFound(err error) bool {
	return errors.Is(err, cos.ErrNotFound) || errors.Is(err, fs.ErrNotExist)
}

// freeSpace returns the free bytes on the cache disk.
func (c *Cache) freeSpace() int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(c.opt.Dir, &st); err != nil {
		return 1 << 62
	}
	return int64(st.Bavail) * st.Bsize
}

// usage returns the bytes of cached blocks and of staged files.
func (c *Cache) usage() (blocks, staged int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.staged {
		s.mu.Lock()
		staged += s.rec.Size
		s.mu.Unlock()
	}
	for _, it := range c.items {
		it.mu.Lock()
		blocks += it.have.size()
		it.mu.Unlock()
	}
	return blocks, staged
}

// kickEvict asks the evictor to check the cache size.
func (c *Cache) kickEvict() {
	select {
	case c.evictC <- struct{}{}:
	default:
	}
}

func (c *Cache) evictor() {
	defer c.bg.Done()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.evictC:
			blocks, staged := c.usage()
			if over := blocks + staged - c.opt.Size; over > 0 {
				c.evict(over)
			}
			// Kicks come with every write and fetch: check at most five
			// times a second.
			select {
			case <-c.ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
}

// evict removes unused cached objects, least recently used first, until
// need bytes are freed (need < 0: all of them). It returns the bytes freed.
// Staged files and objects open for reading are never touched.
func (c *Cache) evict(need int64) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var cands []*blockItem
	for _, it := range c.items {
		it.mu.Lock()
		if it.refs == 0 && len(it.fetching) == 0 {
			cands = append(cands, it)
		}
		it.mu.Unlock()
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].rec.ATime.Before(cands[j].rec.ATime) })
	var freed int64
	for _, it := range cands {
		if need >= 0 && freed >= need {
			break
		}
		it.mu.Lock()
		freed += it.have.size()
		c.removeItemLocked(it)
		it.mu.Unlock()
	}
	if freed > 0 {
		c.log.Debug("evicted cached blocks", "bytes", freed)
	}
	return freed
}

// dropItems forgets every cached version of key: at once where unused,
// on last close otherwise.
func (c *Cache) dropItems(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, it := range c.items {
		if it.rec.Key != key {
			continue
		}
		it.mu.Lock()
		if it.refs == 0 && len(it.fetching) == 0 {
			c.removeItemLocked(it)
		} else {
			it.gone = true
		}
		it.mu.Unlock()
	}
}

// dropItemsUnder forgets the cached versions of every key under prefix.
func (c *Cache) dropItemsUnder(prefix string) {
	c.mu.Lock()
	var keys []string
	for _, it := range c.items {
		if strings.HasPrefix(it.rec.Key, prefix) {
			keys = append(keys, it.rec.Key)
		}
	}
	c.mu.Unlock()
	for _, k := range keys {
		c.dropItems(k)
	}
}
