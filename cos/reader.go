package cos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
)

// ReaderOptions tunes a Reader. The zero value is a sensible default.
type ReaderOptions struct {
	// ChunkSize is the size of each ranged read; 0 means 8 MiB.
	ChunkSize int64
	// Concurrency is how many ranged reads are in flight ahead of the
	// caller; 0 means 4. Memory use is about ChunkSize × (Concurrency+1).
	Concurrency int
	// Retries is how many times a failed chunk is read again when the
	// failure wraps ErrUnavailable (a connection cut mid-body, say); 0
	// means 2.
	Retries int
	// Info, if set, is the object's info from a Stat the caller just
	// made: NewReader then makes none of its own (a round trip to the
	// store), and Info's ETag is the version read.
	Info *ObjectInfo
}

// Reader reads a range of one object sequentially, keeping several ranged
// reads in flight ahead of the caller, so that a fast consumer (the
// transfer engine's sender) is not held to one request's throughput.
//
// It reads one version of the object: NewReader records the ETag, and every
// ranged read asks for it, so an object replaced mid-way fails with
// ErrConflict instead of mixing versions. Read is not safe for concurrent
// use; Close may be called from any goroutine.
type Reader struct {
	store       Store
	bucket, key string
	info        ObjectInfo
	start, end  int64 // the byte range [start, end) of the object
	chunk       int64
	depth       int
	retries     int

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	queue   []*fetch // launched, in order
	nextOff int64    // offset of the next chunk to launch
	cur     *fetch
	curPos  int
	free    [][]byte
	closed  bool
}

type fetch struct {
	off  int64
	buf  []byte
	err  error
	done chan struct{}
}

// firstChunk is the size of a Reader's first ranged read.
const firstChunk = 1 << 20

// NewReader returns a Reader of bytes [off, off+length) of the object
// (length -1: to the end; a range past the end is cut, as in Store.Read).
// It stats the object first (unless opt.Info says what a Stat just
// returned), so a missing object fails here.
func NewReader(ctx context.Context, s Store, bucket, key string, off, length int64, opt ReaderOptions) (*Reader, error) {
	if off < 0 || length < -1 {
		return nil, &Error{Op: "read", Bucket: bucket, Key: key, Err: fmt.Errorf("invalid range: offset %d, length %d", off, length)}
	}
	var info ObjectInfo
	if opt.Info != nil {
		info = *opt.Info
	} else {
		var err error
		if info, err = s.Stat(ctx, bucket, key); err != nil {
			return nil, err
		}
	}
	if opt.ChunkSize <= 0 {
		opt.ChunkSize = 8 << 20
	}
	if opt.Concurrency <= 0 {
		opt.Concurrency = 4
	}
	if opt.Retries <= 0 {
		opt.Retries = 2
	}
	start := min(off, info.Size)
	end := info.Size
	if length >= 0 && start+length < end {
		end = start + length
	}
	ctx, cancel := context.WithCancel(ctx)
	r := &Reader{
		store: s, bucket: bucket, key: key, info: info,
		start: start, end: end, chunk: opt.ChunkSize, depth: opt.Concurrency, retries: opt.Retries,
		ctx: ctx, cancel: cancel, nextOff: start,
	}
	r.fill()
	return r, nil
}

// Info returns the object's info from the Stat NewReader made.
func (r *Reader) Info() ObjectInfo { return r.info }

// Size returns how many bytes the Reader yields in all.
func (r *Reader) Size() int64 { return r.end - r.start }

// fill launches chunk reads until depth are in flight or none remain.
func (r *Reader) fill() {
	for len(r.queue) < r.depth && r.nextOff < r.end {
		// The first reads are small and each doubles, up to the chunk size:
		// the first bytes come as soon as one small read returns, not when
		// the first of several large ones in flight does.
		n := min(r.chunk, r.end-r.nextOff, max(firstChunk, r.nextOff-r.start))
		var buf []byte
		if k := len(r.free); k > 0 {
			buf, r.free = r.free[k-1][:n], r.free[:k-1]
		} else {
			buf = getBuf(n, r.chunk)
		}
		f := &fetch{off: r.nextOff, buf: buf, done: make(chan struct{})}
		r.queue = append(r.queue, f)
		r.nextOff += n
		r.wg.Go(func() {
			defer close(f.done)
			f.err = r.get(f)
		})
	}
}

// get reads one chunk, again if it fails in a way worth retrying.
func (r *Reader) get(f *fetch) error {
	var err error
	for attempt := 0; attempt <= r.retries; attempt++ {
		if err = r.ctx.Err(); err != nil {
			return err
		}
		var rc io.ReadCloser
		rc, err = r.store.Read(r.ctx, r.bucket, r.key, ReadOptions{Offset: f.off, Length: int64(len(f.buf)), IfMatch: r.info.ETag})
		if err == nil {
			var n int
			n, err = io.ReadFull(rc, f.buf)
			rc.Close()
			if err == io.ErrUnexpectedEOF || err == io.EOF {
				err = &Error{Op: "read", Bucket: r.bucket, Key: r.key, Err: fmt.Errorf("%w: got %d of %d bytes at offset %d; the object is shorter than it was", ErrConflict, n, len(f.buf), f.off)}
			}
		}
		if err == nil || !errors.Is(err, ErrUnavailable) {
			return err
		}
	}
	return err
}

// Read reads the next bytes of the range.
func (r *Reader) Read(p []byte) (int, error) {
	if len(p) == 0 && !r.closed {
		return 0, nil
	}
	for r.closed || r.cur == nil || r.curPos == len(r.cur.buf) {
		if err := r.advance(); err != nil {
			return 0, err
		}
	}
	n := copy(p, r.cur.buf[r.curPos:])
	r.curPos += n
	return n, nil
}

// WriteTo copies the rest of the range to w straight from the chunk
// buffers.
func (r *Reader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		if !r.closed && r.cur != nil && r.curPos < len(r.cur.buf) {
			n, err := w.Write(r.cur.buf[r.curPos:])
			r.curPos += n
			total += int64(n)
			if err != nil {
				return total, err
			}
			continue
		}
		if err := r.advance(); err == io.EOF {
			return total, nil
		} else if err != nil {
			return total, err
		}
	}
}

// advance moves to the next chunk, waiting for its read.
func (r *Reader) advance() error {
	if r.closed {
		return &Error{Op: "read", Bucket: r.bucket, Key: r.key, Err: errors.New("read after Close")}
	}
	if r.cur != nil {
		r.free = append(r.free, r.cur.buf)
		r.cur = nil
	}
	if len(r.queue) == 0 {
		return io.EOF
	}
	f := r.queue[0]
	select {
	case <-f.done:
	case <-r.ctx.Done():
		return r.ctx.Err()
	}
	if f.err != nil {
		return f.err
	}
	r.queue = r.queue[1:]
	r.cur, r.curPos = f, 0
	r.fill()
	return nil
}

// Close stops the reads in flight and waits for them.
func (r *Reader) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	r.cancel()
	r.wg.Wait()
	// No read is in flight, Read copies out and WriteTo's writer may not
	// keep what it is given: every buffer can serve another Reader.
	for _, f := range r.queue {
		putBuf(f.buf)
	}
	if r.cur != nil {
		putBuf(r.cur.buf)
	}
	for _, b := range r.free {
		putBuf(b)
	}
	r.queue, r.cur, r.free = nil, nil, nil
	return nil
}
