package fs

import (
	"context"
	"errors"
	"io"
	"sync"
	"syscall"

	"github.com/chute/chute/cache"
	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// handle is an open file: a staged copy (writers, and readers of a file
// that has one) or a block-cache reader.
type handle struct {
	m      *mountFS
	s      *cache.Staged
	r      *cache.Reader
	rkey   string      // the key a reader opened
	e      cache.Entry // the object as opened, for readers
	write  bool
	append bool

	once sync.Once
}

var (
	_ gofs.FileReader    = (*handle)(nil)
	_ gofs.FileWriter    = (*handle)(nil)
	_ gofs.FileFlusher   = (*handle)(nil)
	_ gofs.FileFsyncer   = (*handle)(nil)
	_ gofs.FileReleaser  = (*handle)(nil)
	_ gofs.FileGetattrer = (*handle)(nil)
	_ gofs.FileAllocater = (*handle)(nil)
)

func (h *handle) key() string {
	if h.s != nil {
		return h.s.Key()
	}
	return h.rkey
}

func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if h.s == nil {
		// The cached bytes go to the kernel spliced from the cache file
		// (go-fuse reads them into dest only where it cannot splice): a
		// copy into this process and another out of it saved. The file
		// stays open while the handle is, and the kernel sends no release
		// before the reply is written.
		f, n, err := h.r.ReadFile(h.m.ctx, off, len(dest))
		if errors.Is(err, io.EOF) {
			return fuse.ReadResultData(nil), 0
		}
		if err != nil {
			return nil, h.m.errno("read", h.key(), err)
		}
		return fuse.ReadResultFd(f.Fd(), off, n), 0
	}
	n, err := h.s.ReadAt(dest, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, h.m.errno("read", h.key(), err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

func (h *handle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if !h.write || h.s == nil {
		return 0, syscall.EBADF
	}
	if h.append {
		off = h.s.Attr().Size
	}
	n, err := h.s.WriteAt(data, off)
	if err != nil {
		return 0, h.m.errno("write", h.key(), err)
	}
	return uint32(n), 0
}

// Flush runs on every close of a descriptor: it uploads the file if it
// changed (or queues it, with write-back).
func (h *handle) Flush(ctx context.Context) syscall.Errno {
	if !h.write || h.s == nil {
		return 0
	}
	return h.m.errno("flush", h.key(), h.s.Flush(h.m.ctx))
}

func (h *handle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	if !h.write || h.s == nil {
		return 0
	}
	return h.m.errno("fsync", h.key(), h.s.Sync(h.m.ctx))
}

func (h *handle) Release(ctx context.Context) syscall.Errno {
	h.once.Do(func() {
		if h.s != nil {
			h.s.Release()
		}
		if h.r != nil {
			h.r.Close()
		}
	})
	return 0
}

// attr returns the open file's attributes.
func (h *handle) attr() cache.Entry {
	if h.s != nil {
		return h.s.Attr()
	}
	return h.e
}

func (h *handle) Getattr(ctx context.Context, out *fuse.AttrOut) syscall.Errno {
	h.m.fillAttr(h.attr(), &out.Attr)
	return 0
}

// Allocate reserves space in the staged copy (fallocate(2) modes 0 and
// FALLOC_FL_KEEP_SIZE); other modes are not supported.
func (h *handle) Allocate(ctx context.Context, off uint64, size uint64, mode uint32) syscall.Errno {
	if !h.write || h.s == nil {
		return syscall.EBADF
	}
	return h.m.errno("fallocate", h.key(), h.s.Allocate(int64(off), int64(size), mode))
}
