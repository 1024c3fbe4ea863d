package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"
	"time"

	"github.com/chute/chute/cos"
	"github.com/chute/chute/engine/internal/ranges"
)

// A download reads the object's needed ranges from the store in order,
// keeping what it read in memory until the client acknowledges it, so lost
// packets are resent without reading the store again. When the whole
// object is read in order, it is hashed on the way.

type serverDownload struct {
	c      *serverConn
	stream uint32
	st     *sendStream
	src    *storeSource
	info   cos.ObjectInfo
	whole  bool // the download covers the whole object: hash it
}

// storeAhead bounds the bytes read from the store ahead of the client's
// acknowledgements.
const storeAhead = 64 << 20

// storeChunk is the size of one read from the store.
const storeChunk = 1 << 20

// storeSource feeds a send stream from a store object.
type storeSource struct {
	mu       sync.Mutex
	cond     *sync.Cond
	segs     []seg // loaded, ascending, not yet released
	loaded   int64 // bytes held in segs
	released int64 // everything below is acknowledged
	err      error
	closed   bool
	hash     hash.Hash // nil unless hashing
	sum      string
	hashDone chan struct{}
	wake     func()      // more bytes are ready
	onFail   func(error) // the store failed
}

type seg struct {
	off  int64
	data []byte
}

func (s *storeSource) ready(off int64) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range s.segs {
		if off >= g.off && off < g.off+int64(len(g.data)) {
			return g.off + int64(len(g.data)) - off
		}
	}
	return 0
}

// errReleased is ReadAt's answer for bytes the client has acknowledged
// since the sender chose to send them again: there is nothing to send.
var errReleased = errors.New("bytes already released")

// chunkPool recycles the store reads' buffers (storeChunk bytes each):
// fresh ones cost page faults and zeroing for every byte served.
var chunkPool = sync.Pool{New: func() any { b := make([]byte, storeChunk); return &b }}

func (s *storeSource) ReadAt(p []byte, off int64) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for n < len(p) {
		found := false
		pos := off + int64(n)
		for _, g := range s.segs {
			if pos >= g.off && pos < g.off+int64(len(g.data)) {
				n += copy(p[n:], g.data[pos-g.off:])
				found = true
				break
			}
		}
		if !found {
			return n, errReleased
		}
	}
	return n, nil
}

func (s *storeSource) release(off int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if off <= s.released {
		return
	}
	s.released = off
	keep := s.segs[:0]
	for _, g := range s.segs {
		if g.off+int64(len(g.data)) <= off {
			s.loaded -= int64(len(g.data))
			// ReadAt copies under mu and finds no segment for these
			// bytes from now on, so the buffer is free.
			if cap(g.data) == storeChunk {
				b := g.data[:storeChunk]
				chunkPool.Put(&b)
			}
			continue
		}
		keep = append(keep, g)
	}
	clear(s.segs[len(keep):])
	s.segs = keep
	s.cond.Broadcast()
}

func (s *storeSource) close() {
	s.mu.Lock()
	s.closed = true
	s.cond.Broadcast()
	s.mu.Unlock()
}

// load reads the needed ranges of the object info describes (as Stat
// returned it just before) from the store in order.
func (s *storeSource) load(ctx context.Context, store cos.Store, bucket, key string, info cos.ObjectInfo, need []ranges.Range) {
	defer func() {
		if s.hashDone != nil {
			close(s.hashDone)
		}
	}()
	fail := func(err error) {
		s.mu.Lock()
		s.err = err
		s.mu.Unlock()
		if s.onFail != nil {
			s.onFail(err)
		}
	}
	for _, r := range need {
		// Large ranges keep several ranged reads in flight, so the store is
		// not what limits a fast path; small ones (a mount's block) take one.
		var rc io.ReadCloser
		var err error
		if r.Len > 2*storeChunk {
			rc, err = cos.NewReader(ctx, store, bucket, key, r.Off, r.Len, cos.ReaderOptions{Info: &info})
		} else {
			rc, err = store.Read(ctx, bucket, key, cos.ReadOptions{Offset: r.Off, Length: r.Len})
		}
		if err != nil {
			fail(err)
			return
		}
		pos := r.Off
		for pos < r.End() {
			s.mu.Lock()
			for !s.closed && s.loaded >= storeAhead {
				s.cond.Wait()
			}
			closed := s.closed
			s.mu.Unlock()
			if closed {
				rc.Close()
				return
			}
			buf := (*chunkPool.Get().(*[]byte))[:min(int64(storeChunk), r.End()-pos)]
			n, err := io.ReadFull(rc, buf)
			if n > 0 {
				if s.hash != nil {
					s.hash.Write(buf[:n])
				}
				s.mu.Lock()
				s.segs = append(s.segs, seg{off: pos, data: buf[:n]})
				s.loaded += int64(n)
				s.mu.Unlock()
				pos += int64(n)
				s.wake()
			}
			if err != nil {
				rc.Close()
				if pos < r.End() {
					fail(&cos.Error{Op: "read", Bucket: bucket, Key: key, Err: fmt.Errorf("object changed or store failed at byte %d: %w", pos, err)})
					return
				}
			}
		}
		rc.Close()
	}
	if s.hash != nil {
		s.sum = hex.EncodeToString(s.hash.Sum(nil))
	}
}

func (s *storeSource) failed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// startDownload answers "download": it checks the object and starts
// sending the bytes the client lacks.
func (c *serverConn) startDownload(ctx context.Context, req downloadReq) (any, error) {
	if err := c.check("download", req.Bucket, req.Key, false); err != nil {
		return nil, err
	}
	sess, err := c.session()
	if err != nil {
		return nil, err
	}
	info, err := c.srv.store.Stat(ctx, req.Bucket, req.Key)
	if err != nil {
		return nil, err
	}
	if info.Size > MaxObjectSize {
		return nil, fmt.Errorf("%w: %s is %d bytes, more than the %d chute carries", cos.ErrTooLarge, req.Key, info.Size, int64(MaxObjectSize))
	}
	off := min(max(req.Offset, 0), info.Size)
	n := info.Size - off
	if req.Length >= 0 && req.Length < n {
		n = req.Length
	}
	need := needOf(off, n, req.Have)
	d := &serverDownload{c: c, stream: req.Stream, info: info}
	d.src = &storeSource{}
	d.src.cond = sync.NewCond(&d.src.mu)
	d.src.wake = sess.signal
	d.whole = off == 0 && n == info.Size && len(req.Have) == 0 && info.Meta.SHA256 == ""
	if d.whole {
		d.src.hash = sha256.New()
		d.src.hashDone = make(chan struct{})
	}
	d.st = newSendStream(req.Stream, d.src, need)
	lctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-d.st.done
		cancel()
	}()
	d.src.onFail = func(err error) {
		sess.failStream(d.st, err)
		c.event("failed", failedEvent{Stream: d.stream, Err: toWireErr(err)})
	}
	go d.src.load(lctx, c.srv.store, req.Bucket, req.Key, info, need.Ranges())
	go func() {
		<-d.st.done
		sess.removeStream(d.st)
	}()
	c.mu.Lock()
	c.downloads[req.Stream] = d
	c.mu.Unlock()
	sess.mu.Lock()
	if req.Target > 0 {
		d.st.setCap(float64(req.Target)/8, time.Now())
	}
	sess.mu.Unlock()
	sess.addStream(d.st)
	go d.announceSent(sess)
	return downloadResp{Object: toObjectJSON(info)}, nil
}

// announceSent sends "download_sent" once every byte has gone out once
// (and, for a whole object hashed here, the hash is done).
func (d *serverDownload) announceSent(sess *session) {
	select {
	case <-d.st.allSent:
	case <-d.st.done:
		select {
		case <-d.st.allSent:
		default:
			return // stopped before the end
		}
	}
	fin, err := d.summary(sess, d.st.done)
	if err != nil {
		return
	}
	d.c.event("download_sent", sentEvent{Stream: d.stream, finishResp: fin})
}

// summary is what the download's end reports: the sender's counters and
// the object's SHA-256, the stored one or, for a whole object hashed here,
// the hash once it is done (or an error when stop closes first).
func (d *serverDownload) summary(sess *session, stop <-chan struct{}) (finishResp, error) {
	var fin finishResp
	if sess != nil {
		sess.mu.Lock()
		fin.Sent, fin.Retrans = d.st.sent, d.st.retrans
		sess.mu.Unlock()
	}
	if !d.whole { // ranged, or the store keeps the checksum
		fin.SHA256 = d.info.Meta.SHA256
		return fin, nil
	}
	select {
	case <-d.src.hashDone:
	case <-stop:
		return fin, ErrCancelled
	}
	if err := d.src.failed(); err != nil {
		return fin, err
	}
	fin.SHA256 = d.src.sum
	return fin, nil
}

func (d *serverDownload) stop() {
	d.st.finish(ErrCancelled)
	if sess, err := d.c.session(); err == nil {
		sess.removeStream(d.st)
	}
}

// finishDownload answers "download_finish": the client holds every byte;
// the server reports the object's SHA-256 when it knows it.
func (c *serverConn) finishDownload(ctx context.Context, req streamReq) (any, error) {
	c.mu.Lock()
	d := c.downloads[req.Stream]
	delete(c.downloads, req.Stream)
	c.mu.Unlock()
	if d == nil {
		return nil, fmt.Errorf("%w: no download on stream %d", ErrProtocol, req.Stream)
	}
	d.stop()
	sess, _ := c.session()
	fin, err := d.summary(sess, ctx.Done())
	if errors.Is(err, ErrCancelled) && ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if err != nil {
		return nil, err
	}
	return fin, nil
}
