package fs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/chute/chute/cache"
	"github.com/chute/chute/engine"
	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Options configure a mount. Zero values are documented defaults.
type Options struct {
	Remote     cache.Remote // the server; required
	Bucket     string       // required
	Prefix     string       // show only keys under this prefix ("" for the whole bucket)
	MountPoint string       // an existing folder; required
	CacheDir   string       // the cache folder for this server and bucket; required, not inside MountPoint
	CacheSize  int64        // cap of the cache folder (see cache.Options.Size); 0 means 10 GiB
	WriteBack  bool         // close returns at once; uploads run in the background
	ReadOnly   bool
	AllowOther bool // let other users in (needs user_allow_other in /etc/fuse.conf unless root)
	// UID and GID own the objects that record no owner. When both are
	// zero, the mounting process's own ids are used.
	UID, GID uint32
	// FileMode and DirMode are the permission bits of objects that record
	// no mode; 0 means 0644 and 0755.
	FileMode, DirMode os.FileMode
	// ListTTL is how long listings and attributes are trusted; 0 means
	// 10 s, negative means not at all.
	ListTTL time.Duration
	// IOTimeout: a call whose server does not answer (or stops sending) for
	// this long fails with EIO. 0 means 60 s.
	IOTimeout time.Duration
	// DrainTimeout is how long a mount unmounted from outside (fusermount3
	// -u) waits for pending uploads before leaving them recorded for the
	// next mount. 0 means 1 minute.
	DrainTimeout time.Duration
	Rate         engine.Rate  // for every transfer of the mount
	Uploads      int          // background uploads at once; 0 means 4
	Logger       *slog.Logger // nil means no logs
}

// Mounted is a mounted bucket (Mount returns it).
type Mounted struct {
	opt    Options
	server *fuse.Server
	cache  *cache.Cache
	log    *slog.Logger
	cancel context.CancelFunc

	served chan struct{} // closed when the FUSE server has stopped
	closed chan struct{} // closed when the cache is closed

	mu       sync.Mutex
	ours     bool // Unmount (or kill) started the unmount
	closing  bool
	left     int
	closeErr error
}

// Mount mounts the bucket and serves it until Unmount, or until it is
// unmounted from outside. Uploads left unfinished by an earlier mount of the
// same cache folder resume in the background; Mount does not wait for them.
func Mount(ctx context.Context, opt Options) (*Mounted, error) {
	if opt.Remote == nil || opt.Bucket == "" || opt.MountPoint == "" || opt.CacheDir == "" {
		return nil, errors.New("mount: Options need Remote, Bucket, MountPoint and CacheDir")
	}
	mp, err := filepath.Abs(opt.MountPoint)
	if err != nil {
		return nil, fmt.Errorf("mount: %w", err)
	}
	cd, err := filepath.Abs(opt.CacheDir)
	if err != nil {
		return nil, fmt.Errorf("mount: %w", err)
	}
	if cd == mp || strings.HasPrefix(cd, mp+string(filepath.Separator)) {
		return nil, fmt.Errorf("mount: the cache folder %s must not be inside the mount point %s", cd, mp)
	}
	opt.MountPoint, opt.CacheDir = mp, cd
	if opt.Prefix != "" && !strings.HasSuffix(opt.Prefix, "/") {
		opt.Prefix += "/"
	}
	opt.Prefix = strings.TrimPrefix(opt.Prefix, "/")
	if opt.UID == 0 && opt.GID == 0 {
		opt.UID, opt.GID = uint32(os.Getuid()), uint32(os.Getgid())
	}
	if opt.FileMode == 0 {
		opt.FileMode = 0o644
	}
	if opt.DirMode == 0 {
		opt.DirMode = 0o755
	}
	if opt.ListTTL == 0 {
		opt.ListTTL = 10 * time.Second
	}
	if opt.IOTimeout <= 0 {
		opt.IOTimeout = 60 * time.Second
	}
	if opt.DrainTimeout <= 0 {
		opt.DrainTimeout = time.Minute
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	log := opt.Logger.With("mount", mp)

	c, err := cache.Open(ctx, cache.Options{
		Dir: cd, Remote: opt.Remote, Bucket: opt.Bucket, Size: opt.CacheSize,
		ListTTL: opt.ListTTL, IOTimeout: opt.IOTimeout, WriteBack: opt.WriteBack,
		Rate: opt.Rate, Uploads: opt.Uploads, Logger: opt.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", mp, err)
	}
	mctx, cancel := context.WithCancel(context.Background())
	state := &mountFS{c: c, opt: opt, log: log, ctx: mctx, started: time.Now()}
	root := &dirNode{m: state}

	// The kernel may keep attributes and names for a second at most (our
	// own changes go through it, others' show within ListTTL anyway).
	kernelTTL := min(time.Second, max(opt.ListTTL, 0))
	negative := time.Duration(0)
	mopts := fuse.MountOptions{
		AllowOther:    opt.AllowOther,
		FsName:        "chute:" + opt.Bucket + "/" + opt.Prefix,
		Name:          "chute",
		MaxWrite:      1 << 20,
		MaxReadAhead:  1 << 20,
		MaxBackground: 64,
		DisableXAttrs: true,
		// O_TRUNC reaches Open: without it the kernel opens without the
		// flag and truncates after, and an existing object would be
		// fetched whole only to be thrown away (cp over a file does that).
		ExtraCapabilities: fuse.CAP_ATOMIC_O_TRUNC,
	}
	if opt.ReadOnly {
		mopts.Options = append(mopts.Options, "ro")
	}
	if opt.AllowOther {
		mopts.Options = append(mopts.Options, "default_permissions")
	}
	server, err := gofs.Mount(mp, root, &gofs.Options{
		MountOptions:    mopts,
		EntryTimeout:    &kernelTTL,
		AttrTimeout:     &kernelTTL,
		NegativeTimeout: &negative,
		// UID and GID stay unset: fillAttr sets owners itself, and go-fuse
		// would turn a recorded uid 0 into them.
	})
	if err != nil {
		cancel()
		c.Close(ctx)
		return nil, fmt.Errorf("mount %s: %w", mp, err)
	}
	m := &Mounted{
		opt: opt, server: server, cache: c, log: log, cancel: cancel,
		served: make(chan struct{}), closed: make(chan struct{}),
	}
	go m.watch()
	log.Info("mounted", "bucket", opt.Bucket, "prefix", opt.Prefix, "write_back", opt.WriteBack, "read_only", opt.ReadOnly)
	return m, nil
}

// watch waits for the FUSE server to stop; an unmount from outside then
// closes the cache, draining uploads for up to DrainTimeout.
func (m *Mounted) watch() {
	m.server.Wait()
	close(m.served)
	m.mu.Lock()
	ours := m.ours
	m.mu.Unlock()
	if !ours {
		m.log.Info("unmounted from outside; draining uploads", "timeout", m.opt.DrainTimeout)
		ctx, cancel := context.WithTimeout(context.Background(), m.opt.DrainTimeout)
		defer cancel()
		m.closeCache(ctx)
	}
}

func (m *Mounted) closeCache(ctx context.Context) {
	m.mu.Lock()
	if m.closing {
		m.mu.Unlock()
		<-m.closed
		return
	}
	m.closing = true
	m.mu.Unlock()
	left, err := m.cache.Close(ctx)
	m.cancel()
	m.mu.Lock()
	m.left, m.closeErr = left, err
	m.mu.Unlock()
	if left > 0 {
		m.log.Warn("uploads left recorded for the next mount", "count", left)
	}
	close(m.closed)
}

// Unmount unmounts the file system (it fails, and the mount goes on, while
// files in it are in use), then waits for pending uploads until ctx ends;
// uploads not finished by then are left recorded in the cache folder for
// the next mount. It returns how many were left.
func (m *Mounted) Unmount(ctx context.Context) (left int, err error) {
	m.mu.Lock()
	m.ours = true
	m.mu.Unlock()
	select {
	case <-m.served:
	default:
		if err := m.server.Unmount(); err != nil {
			select {
			case <-m.served:
			default:
				m.mu.Lock()
				m.ours = false
				m.mu.Unlock()
				return 0, fmt.Errorf("unmount %s: %w", m.opt.MountPoint, err)
			}
		}
	}
	<-m.served
	m.closeCache(ctx)
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.left, m.closeErr
}

// Wait blocks until the mount has ended and its cache is closed.
func (m *Mounted) Wait() {
	<-m.served
	<-m.closed
}

// Pending reports the files not yet stored on the server.
func (m *Mounted) Pending() int { return m.cache.Pending() }

// WaitUploads waits until no upload is queued or running, or ctx ends.
func (m *Mounted) WaitUploads(ctx context.Context) error { return m.cache.WaitUploads(ctx) }

// kill ends the mount as a crash would: nothing more is recorded, nothing
// drains. For tests of recovery.
func (m *Mounted) kill() {
	m.mu.Lock()
	m.ours = true
	m.closing = true
	m.mu.Unlock()
	m.cache.Kill()
	if err := m.server.Unmount(); err != nil {
		m.log.Warn("unmount after kill", "err", err)
	}
	<-m.served
	m.cancel()
	close(m.closed)
}

// mountFS is the state every node reaches through its root pointer.
type mountFS struct {
	c       *cache.Cache
	opt     Options
	log     *slog.Logger
	ctx     context.Context // the mount's life: network work is not cut short by signals to the caller
	started time.Time
}

// errno logs a failure worth a look and translates it.
func (m *mountFS) errno(op, key string, err error) syscall.Errno {
	e := toErrno(err)
	switch e {
	case 0, syscall.ENOENT, syscall.EEXIST, syscall.ENOTEMPTY:
		m.log.Debug(op, "key", key, "err", err)
	default:
		m.log.Warn(op+" failed", "key", key, "errno", e.Error(), "err", err)
	}
	return e
}
