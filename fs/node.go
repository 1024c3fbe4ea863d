package fs

import (
	"context"
	"sync"
	"syscall"
	"time"

	"github.com/chute/chute/cache"
	"github.com/chute/chute/cos"
	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// dirNode is a folder: the mount's root, a marker object, or a prefix.
type dirNode struct {
	gofs.Inode
	m *mountFS
}

// fileNode is an object.
type fileNode struct {
	gofs.Inode
	m *mountFS

	mu sync.Mutex
	// etag is the object version the kernel's page cache holds for this
	// node, "" when it may hold anything else (after a write through the
	// mount, or before any read).
	etag string
}

// keepCache reports whether the kernel may keep its cached pages for an
// open of version etag, and records etag as the cached version.
func (f *fileNode) keepCache(etag string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	keep := etag != "" && f.etag == etag
	f.etag = etag
	return keep
}

var (
	_ gofs.NodeLookuper  = (*dirNode)(nil)
	_ gofs.NodeReaddirer = (*dirNode)(nil)
	_ gofs.NodeGetattrer = (*dirNode)(nil)
	_ gofs.NodeSetattrer = (*dirNode)(nil)
	_ gofs.NodeMkdirer   = (*dirNode)(nil)
	_ gofs.NodeRmdirer   = (*dirNode)(nil)
	_ gofs.NodeCreater   = (*dirNode)(nil)
	_ gofs.NodeUnlinker  = (*dirNode)(nil)
	_ gofs.NodeRenamer   = (*dirNode)(nil)
	_ gofs.NodeStatfser  = (*dirNode)(nil)
	_ gofs.NodeSymlinker = (*dirNode)(nil)
	_ gofs.NodeLinker    = (*dirNode)(nil)
	_ gofs.NodeMknoder   = (*dirNode)(nil)

	_ gofs.NodeGetattrer = (*fileNode)(nil)
	_ gofs.NodeSetattrer = (*fileNode)(nil)
	_ gofs.NodeOpener    = (*fileNode)(nil)
	_ gofs.NodeStatfser  = (*fileNode)(nil)
)

// path returns the inode's path below the mount's root ("" for the root).
func (m *mountFS) path(n *gofs.Inode) string { return n.Path(nil) }

// fileKey is the object key of a file node.
func (m *mountFS) fileKey(n *gofs.Inode) string { return m.opt.Prefix + m.path(n) }

// dirKey is the listing prefix of a folder node: "" or ending in "/".
func (m *mountFS) dirKey(n *gofs.Inode) string {
	p := m.path(n)
	if p == "" {
		return m.opt.Prefix
	}
	return m.opt.Prefix + p + "/"
}

// fillAttr turns an entry into attributes.
func (m *mountFS) fillAttr(e cache.Entry, out *fuse.Attr) {
	perm := e.Mode & 0o7777
	if e.Dir {
		if e.Mode == 0 {
			perm = uint32(m.opt.DirMode.Perm())
		}
		out.Mode = syscall.S_IFDIR | perm
		out.Nlink = 2
		out.Size = 4096
	} else {
		if e.Mode == 0 {
			perm = uint32(m.opt.FileMode.Perm())
		}
		out.Mode = syscall.S_IFREG | perm
		out.Nlink = 1
		out.Size = uint64(e.Size)
	}
	if m.opt.ReadOnly {
		out.Mode &^= 0o222
	}
	out.Blksize = 1 << 20
	out.Blocks = (out.Size + 511) / 512
	mt := e.Mtime
	if mt.IsZero() {
		mt = m.started
	}
	out.SetTimes(&mt, &mt, &mt)
	out.Uid, out.Gid = m.opt.UID, m.opt.GID
	if e.UID != nil {
		out.Uid = *e.UID
	}
	if e.GID != nil {
		out.Gid = *e.GID
	}
}

// caller returns the uid and gid of the process behind a request.
func caller(ctx context.Context) (uid, gid *uint32) {
	if c, ok := fuse.FromContext(ctx); ok {
		u, g := c.Uid, c.Gid
		return &u, &g
	}
	return nil, nil
}

// child returns the inode for name, reusing a live one of the same kind.
func (d *dirNode) child(ctx context.Context, name string, e cache.Entry) *gofs.Inode {
	if ch := d.GetChild(name); ch != nil && ch.IsDir() == e.Dir {
		return ch
	}
	if e.Dir {
		return d.NewInode(ctx, &dirNode{m: d.m}, gofs.StableAttr{Mode: syscall.S_IFDIR})
	}
	return d.NewInode(ctx, &fileNode{m: d.m}, gofs.StableAttr{Mode: syscall.S_IFREG})
}

func (d *dirNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	m := d.m
	dir := m.dirKey(&d.Inode)
	e, err := m.c.Lookup(m.ctx, dir, name)
	if err != nil {
		return nil, m.errno("lookup", dir+name, err)
	}
	m.fillAttr(e, &out.Attr)
	return d.child(ctx, name, e), 0
}

func (d *dirNode) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	m := d.m
	dir := m.dirKey(&d.Inode)
	ents, err := m.c.ReadDir(m.ctx, dir)
	if err != nil {
		return nil, m.errno("readdir", dir, err)
	}
	list := make([]fuse.DirEntry, 0, len(ents))
	for _, e := range ents {
		if e.Name == "." || e.Name == ".." {
			continue
		}
		mode := uint32(syscall.S_IFREG)
		if e.Dir {
			mode = syscall.S_IFDIR
		}
		list = append(list, fuse.DirEntry{Name: e.Name, Mode: mode})
	}
	return gofs.NewListDirStream(list), 0
}

// entry returns the folder's own attributes.
func (d *dirNode) entry() (cache.Entry, error) {
	m := d.m
	name, parent := d.Parent()
	if parent == nil {
		return cache.Entry{Dir: true}, nil
	}
	return m.c.Lookup(m.ctx, m.dirKey(parent), name)
}

func (d *dirNode) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	e, err := d.entry()
	if err != nil {
		return d.m.errno("getattr", d.m.dirKey(&d.Inode), err)
	}
	d.m.fillAttr(e, &out.Attr)
	return 0
}

// metaChange collects the metadata part of a setattr.
func metaChange(in *fuse.SetAttrIn) (cache.MetaChange, bool) {
	var ch cache.MetaChange
	any := false
	if mode, ok := in.GetMode(); ok {
		ch.Mode, any = &mode, true
	}
	if uid, ok := in.GetUID(); ok {
		ch.UID, any = &uid, true
	}
	if gid, ok := in.GetGID(); ok {
		ch.GID, any = &gid, true
	}
	if mt, ok := in.GetMTime(); ok {
		ch.Mtime, any = &mt, true
	}
	return ch, any
}

func (d *dirNode) Setattr(ctx context.Context, f gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	m := d.m
	if m.opt.ReadOnly {
		return syscall.EROFS
	}
	name, parent := d.Parent()
	if parent == nil {
		// The mount's root has no object of its own to hold metadata.
		if _, ok := metaChange(in); ok {
			return syscall.EPERM
		}
		m.fillAttr(cache.Entry{Dir: true}, &out.Attr)
		return 0
	}
	key := m.dirKey(parent) + name
	e, err := d.entry()
	if ch, ok := metaChange(in); ok {
		e, err = m.c.SetMeta(m.ctx, key, true, ch)
	}
	if err != nil {
		return m.errno("setattr", key, err)
	}
	m.fillAttr(e, &out.Attr)
	return 0
}

func (d *dirNode) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	m := d.m
	if m.opt.ReadOnly {
		return nil, syscall.EROFS
	}
	key := m.dirKey(&d.Inode) + name
	uid, gid := caller(ctx)
	e, err := m.c.Mkdir(m.ctx, key, cos.Meta{Mode: syscall.S_IFDIR | mode&0o7777, UID: uid, GID: gid, Mtime: time.Now()})
	if err != nil {
		return nil, m.errno("mkdir", key, err)
	}
	m.fillAttr(e, &out.Attr)
	return d.NewInode(ctx, &dirNode{m: m}, gofs.StableAttr{Mode: syscall.S_IFDIR}), 0
}

func (d *dirNode) Rmdir(ctx context.Context, name string) syscall.Errno {
	m := d.m
	if m.opt.ReadOnly {
		return syscall.EROFS
	}
	key := m.dirKey(&d.Inode) + name
	return m.errno("rmdir", key, m.c.Rmdir(m.ctx, key))
}

func (d *dirNode) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	m := d.m
	if m.opt.ReadOnly {
		return nil, nil, 0, syscall.EROFS
	}
	key := m.dirKey(&d.Inode) + name
	uid, gid := caller(ctx)
	s, err := m.c.Create(m.ctx, key, syscall.S_IFREG|mode&0o7777, uid, gid)
	if err != nil {
		return nil, nil, 0, m.errno("create", key, err)
	}
	m.fillAttr(s.Attr(), &out.Attr)
	node := d.NewInode(ctx, &fileNode{m: m}, gofs.StableAttr{Mode: syscall.S_IFREG})
	return node, &handle{m: m, s: s, write: true, append: flags&syscall.O_APPEND != 0}, 0, 0
}

func (d *dirNode) Unlink(ctx context.Context, name string) syscall.Errno {
	m := d.m
	if m.opt.ReadOnly {
		return syscall.EROFS
	}
	key := m.dirKey(&d.Inode) + name
	return m.errno("unlink", key, m.c.Remove(m.ctx, key))
}

func (d *dirNode) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	m := d.m
	if m.opt.ReadOnly {
		return syscall.EROFS
	}
	np, ok := newParent.(*dirNode)
	if !ok {
		return syscall.EXDEV
	}
	if flags&gofs.RENAME_EXCHANGE != 0 || flags&^uint32(gofs.RENAME_EXCHANGE|1) != 0 {
		return syscall.EINVAL
	}
	noReplace := flags&1 != 0 // RENAME_NOREPLACE
	srcDir, dstDir := m.dirKey(&d.Inode), m.dirKey(&np.Inode)
	src, dst := srcDir+name, dstDir+newName
	se, err := m.c.Lookup(m.ctx, srcDir, name)
	if err != nil {
		return m.errno("rename", src, err)
	}
	de, err := m.c.Lookup(m.ctx, dstDir, newName)
	exists := err == nil
	if err != nil && toErrno(err) != syscall.ENOENT {
		return m.errno("rename", dst, err)
	}
	switch {
	case exists && noReplace:
		return syscall.EEXIST
	case se.Dir && exists && !de.Dir:
		return syscall.ENOTDIR
	case !se.Dir && exists && de.Dir:
		return syscall.EISDIR
	case se.Dir && dst == src:
		return 0
	case se.Dir && len(dst) > len(src) && dst[:len(src)+1] == src+"/":
		return syscall.EINVAL // into itself
	case se.Dir:
		return m.errno("rename", src, m.c.RenameDir(m.ctx, src, dst))
	}
	return m.errno("rename", src, m.c.Rename(m.ctx, src, dst))
}

func (d *dirNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	statfs(out)
	return 0
}

func (f *fileNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	statfs(out)
	return 0
}

// statfs reports a bucket as a very large, empty disk: object stores have
// no fixed capacity.
func statfs(out *fuse.StatfsOut) {
	const bsize = 1 << 20
	const blocks = 1 << 30 // 1 PiB in 1 MiB blocks
	*out = fuse.StatfsOut{
		Blocks: blocks, Bfree: blocks, Bavail: blocks,
		Files: 1 << 40, Ffree: 1 << 40,
		Bsize: bsize, NameLen: 255, Frsize: bsize,
	}
}

func (d *dirNode) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EPERM
}

func (d *dirNode) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EPERM
}

func (d *dirNode) Mknod(ctx context.Context, name string, mode uint32, dev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EPERM
}

// fileEntry returns a file's attributes: its staged copy's, or the
// object's.
func (f *fileNode) fileEntry() (string, cache.Entry, error) {
	m := f.m
	name, parent := f.Parent()
	if parent == nil {
		return "", cache.Entry{}, syscall.ESTALE
	}
	key := m.dirKey(parent) + name
	e, err := m.c.Lookup(m.ctx, m.dirKey(parent), name)
	return key, e, err
}

func (f *fileNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if h, ok := fh.(*handle); ok {
		f.m.fillAttr(h.attr(), &out.Attr)
		if _, parent := f.Parent(); parent == nil {
			out.Nlink = 0 // unlinked or replaced while open
		}
		return 0
	}
	key, e, err := f.fileEntry()
	if err != nil {
		return f.m.errno("getattr", key, err)
	}
	f.m.fillAttr(e, &out.Attr)
	return 0
}

func (f *fileNode) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	m := f.m
	if m.opt.ReadOnly {
		return syscall.EROFS
	}
	name, parent := f.Parent()
	if parent == nil {
		return syscall.ESTALE
	}
	key := m.dirKey(parent) + name
	h, _ := fh.(*handle)
	var e cache.Entry
	var err error
	if size, ok := in.GetSize(); ok {
		if h != nil && h.s != nil && h.write {
			if err = h.s.Truncate(int64(size)); err == nil {
				e = h.s.Attr()
			}
		} else {
			e, err = m.c.Truncate(m.ctx, key, int64(size))
			f.keepCache("")
		}
		if err != nil {
			return m.errno("truncate", key, err)
		}
	}
	if ch, ok := metaChange(in); ok {
		if e, err = m.c.SetMeta(m.ctx, key, false, ch); err != nil {
			return m.errno("setattr", key, err)
		}
	}
	if e.Name == "" {
		if _, e, err = f.fileEntry(); err != nil {
			return m.errno("setattr", key, err)
		}
	}
	m.fillAttr(e, &out.Attr)
	return 0
}

func (f *fileNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	m := f.m
	name, parent := f.Parent()
	if parent == nil {
		return nil, 0, syscall.ESTALE
	}
	key := m.dirKey(parent) + name
	write := flags&syscall.O_ACCMODE != syscall.O_RDONLY
	if write {
		if m.opt.ReadOnly {
			return nil, 0, syscall.EROFS
		}
		s, err := m.c.OpenWrite(m.ctx, key, flags&syscall.O_TRUNC != 0)
		if err != nil {
			return nil, 0, m.errno("open", key, err)
		}
		f.keepCache("")
		return &handle{m: m, s: s, write: true, append: flags&syscall.O_APPEND != 0}, 0, 0
	}
	if s := m.c.OpenStaged(key); s != nil {
		f.keepCache("")
		return &handle{m: m, s: s}, 0, 0
	}
	e, err := m.c.Lookup(m.ctx, m.dirKey(parent), name)
	if err != nil {
		return nil, 0, m.errno("open", key, err)
	}
	if e.Dir {
		return nil, 0, syscall.EISDIR
	}
	r, err := m.c.OpenRead(m.ctx, key, e)
	if err != nil {
		return nil, 0, m.errno("open", key, err)
	}
	// The same object version as the last read open: the kernel's cached
	// pages are still right. Otherwise it drops them.
	var fuseFlags uint32
	if f.keepCache(e.ETag) {
		fuseFlags = fuse.FOPEN_KEEP_CACHE
	}
	return &handle{m: m, r: r, rkey: key, e: e}, fuseFlags, 0
}
