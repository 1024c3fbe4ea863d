package engine

import (
	"errors"
	"io"
	"os"
	"sync"
	"time"

	"github.com/chute/chute/engine/congestion"
	"github.com/chute/chute/engine/internal/ranges"
)

// sendSource supplies a sending stream's bytes.
type sendSource interface {
	// ready is how many bytes from off can be read now without blocking.
	ready(off int64) int64
	// ReadAt reads bytes that ready said were there, or that were read
	// before and not yet released.
	ReadAt(p []byte, off int64) (int, error)
	// release says bytes below off are acknowledged and will not be read
	// again.
	release(off int64)
	// close stops any background reading.
	close()
}

// readerAtSource sends from an io.ReaderAt that has every byte at hand
// (a local file).
type readerAtSource struct {
	r    io.ReaderAt
	size int64
}

func (s readerAtSource) ready(off int64) int64 { return s.size - off }
func (s readerAtSource) ReadAt(p []byte, off int64) (int, error) {
	n, err := s.r.ReadAt(p, off)
	if n == len(p) {
		err = nil
	}
	return n, err
}
func (readerAtSource) release(int64) {}
func (readerAtSource) close()        {}

// sendStream is one transfer's sending side.
//
// Its state is guarded by the session's mu (the stream is only touched by
// the session's send loop and its ack processing), except done/err, which
// finish guards with its own once.
type sendStream struct {
	id   uint32
	sess *session
	src  sendSource

	unsent  *ranges.Set // never sent
	retx    *ranges.Set // declared lost, to send again
	pending *ranges.Set // not yet acknowledged
	active  bool        // in the session's round-robin order
	paused  bool
	cap     *congestion.Pacer // this transfer's own target rate, or nil

	// Counters in bytes.
	total, sent, retrans, ackedB int64

	finishOnce sync.Once
	done       chan struct{}
	err        error
	allSent    chan struct{} // closed once every byte has been sent at least once
}

func newSendStream(id uint32, src sendSource, need *ranges.Set) *sendStream {
	st := &sendStream{
		id:      id,
		src:     src,
		unsent:  need.Clone(),
		retx:    &ranges.Set{},
		pending: need.Clone(),
		total:   need.Size(),
		done:    make(chan struct{}),
		allSent: make(chan struct{}),
	}
	if need.Count() == 0 {
		close(st.allSent)
	}
	return st
}

// activate puts the stream in the session's order if it has work. Call
// with the session's mu held.
func (st *sendStream) activate() {
	if st.active || st.paused || st.sess == nil {
		return
	}
	if st.unsent.Count() == 0 && st.retx.Count() == 0 {
		if st.pending.Count() == 0 {
			st.finish(nil)
		}
		return
	}
	st.active = true
	st.sess.order = append(st.sess.order, st)
}

func (st *sendStream) deactivate() {
	if st.active {
		st.active = false
		st.sess.deactivate(st)
	}
}

// next picks the stream's next packet: lost bytes first, then new ones. It
// returns n == 0 when there is nothing to send now, with wait > 0 if the
// stream's own rate cap or its source will allow more after wait. Call
// with the session's mu held.
func (st *sendStream) next(now time.Time, max int) (off int64, n int, retrans bool, wait time.Duration) {
	if st.cap != nil {
		if w := st.cap.Wait(now, float64(max)); w > 0 {
			return 0, 0, false, w
		}
	}
	if r, ok := st.retx.First(); ok {
		n = int(min(r.Len, int64(max)))
		st.retx.Remove(r.Off, int64(n))
		st.retrans += int64(n)
		st.sent += int64(n)
		st.spend(now, n)
		return r.Off, n, true, 0
	}
	r, ok := st.unsent.First()
	if !ok {
		st.deactivate()
		return 0, 0, false, 0
	}
	if r.Len <= int64(max) && st.unsent.Count() == 1 && st.sess != nil {
		st.sess.log.Debug("last new bytes sent", "stream", st.id, "unacked", st.pending.Size())
	}
	ready := st.src.ready(r.Off)
	if ready <= 0 {
		if st.sess != nil {
			st.sess.counters.starved.Add(1)
		}
		return 0, 0, false, 5 * time.Millisecond
	}
	n = int(min(r.Len, int64(max), ready))
	st.unsent.Remove(r.Off, int64(n))
	if st.unsent.Count() == 0 {
		close(st.allSent)
	}
	st.sent += int64(n)
	st.spend(now, n)
	return r.Off, n, false, 0
}

func (st *sendStream) spend(now time.Time, n int) {
	if st.cap != nil {
		st.cap.Spend(now, float64(n))
	}
}

func (st *sendStream) read(p []byte, off int64) error {
	_, err := st.src.ReadAt(p, off)
	if err != nil {
		return err
	}
	return nil
}

// acked records bytes the receiver holds. Call with the session's mu held.
func (st *sendStream) acked(off, n int64) {
	before := st.pending.Size()
	st.pending.Remove(off, n)
	st.retx.Remove(off, n)
	st.ackedB += before - st.pending.Size()
	if first, ok := st.pending.First(); ok {
		st.src.release(first.Off)
	} else {
		st.src.release(1 << 62)
		st.deactivate()
		st.finish(nil)
		if st.sess != nil {
			st.sess.log.Debug("every byte acknowledged", "stream", st.id)
		}
	}
}

// lost records bytes of a lost packet for resending. Call with the
// session's mu held.
func (st *sendStream) lost(off, n int64) {
	for _, r := range st.pending.Intersect(off, n) {
		st.retx.Add(r.Off, r.Len)
	}
	if st.retx.Count() > 0 {
		st.activate()
	}
}

// finish ends the stream with err (nil: every byte acknowledged).
func (st *sendStream) finish(err error) {
	st.finishOnce.Do(func() {
		st.err = err
		st.src.close()
		close(st.done)
	})
}

// setPaused stops or restarts sending. Call with the session's mu held.
func (st *sendStream) setPaused(p bool) {
	st.paused = p
	if p {
		st.deactivate()
	} else {
		st.activate()
	}
}

// setCap sets the stream's own target rate in bytes per second (0: none).
// Call with the session's mu held.
func (st *sendStream) setCap(rate float64, now time.Time) {
	if rate <= 0 {
		st.cap = nil
		return
	}
	if st.cap == nil {
		st.cap = congestion.NewPacer(rate, now)
	} else {
		st.cap.SetRate(rate)
	}
}

// recvStream is one transfer's receiving side: it gathers payloads into
// blocks and writes each block to the destination in one call, from its
// own goroutine, so the read loop never waits on a disk.
type recvStream struct {
	id     uint32
	dest   io.WriterAt
	onData func(off, n int64)
	// volatile: dest needs no early writeback (DownloadRequest.Volatile).
	volatile bool

	mu       sync.Mutex
	want     *ranges.Set // bytes to receive
	got      *ranges.Set // received: in a block or written
	written  *ranges.Set // written to dest
	blocks   map[int64]*wblock
	queued   int // blocks handed to the writer and not yet written
	err      error
	closed   bool
	doneCh   chan struct{}
	doneOnce sync.Once
	changed  chan struct{} // closed and replaced whenever written grows

	qmu     sync.Mutex // guards sending on and closing writeq
	qclosed bool
	writeq  chan *wblock
	wdone   chan struct{} // closed when the writer returns

	pieceBuf, missBuf []ranges.Range // scratch for deliver (under mu)
}

// recvBlockSize is the unit in which received bytes are written.
const recvBlockSize = 1 << 20

// maxOpenBlocks bounds memory held in partly filled blocks; beyond it the
// oldest partial block is written as it stands.
const maxOpenBlocks = 96

type wblock struct {
	off    int64 // block start (a multiple of recvBlockSize)
	buf    []byte
	have   ranges.Set // offsets relative to off
	want   int64      // bytes of this block the stream wants
	filled int64
}

var blockPool = sync.Pool{New: func() any { b := make([]byte, recvBlockSize); return &b }}

// newRecvStream receives want into dest; volatile says dest needs no
// early writeback (see DownloadRequest.Volatile).
func newRecvStream(id uint32, dest io.WriterAt, want *ranges.Set, onData func(off, n int64), volatile bool) *recvStream {
	r := &recvStream{
		id:       id,
		dest:     dest,
		onData:   onData,
		volatile: volatile,
		want:     want.Clone(),
		got:      &ranges.Set{},
		written:  &ranges.Set{},
		blocks:   map[int64]*wblock{},
		doneCh:   make(chan struct{}),
		changed:  make(chan struct{}),
		writeq:   make(chan *wblock, 64),
		wdone:    make(chan struct{}),
	}
	if want.Count() == 0 {
		r.markDone()
	}
	go r.writer()
	return r
}

// deliver stores a payload; it returns the bytes that were duplicates (or
// outside what the stream wants).
func (r *recvStream) deliver(off int64, p []byte) (dup int64) {
	n := int64(len(p))
	r.mu.Lock()
	if r.closed || r.err != nil {
		r.mu.Unlock()
		return 0
	}
	var full []*wblock
	var added int64
	// The common case, a new packet wholly wanted, costs no allocation.
	var pieces []ranges.Range
	if r.want.Contains(off, n) {
		r.pieceBuf = append(r.pieceBuf[:0], ranges.Range{Off: off, Len: n})
		pieces = r.pieceBuf
	} else {
		pieces = r.want.Intersect(off, n)
	}
	for _, piece := range pieces {
		var missing []ranges.Range
		if !r.got.Overlaps(piece.Off, piece.Len) {
			r.missBuf = append(r.missBuf[:0], piece)
			missing = r.missBuf
		} else {
			missing = r.got.Missing(piece.Off, piece.Len)
		}
		for _, m := range missing {
			for pos := m.Off; pos < m.End(); {
				boff := pos - pos%recvBlockSize
				end := min(m.End(), boff+recvBlockSize)
				b := r.blocks[boff]
				if b == nil {
					buf := blockPool.Get().(*[]byte)
					b = &wblock{off: boff, buf: *buf}
					// The block waits for the wanted bytes not yet received
					// (an earlier block here may have been written partly).
					for _, w := range r.want.Intersect(boff, recvBlockSize) {
						b.want += w.Len
					}
					for _, g := range r.got.Intersect(boff, recvBlockSize) {
						b.want -= g.Len
					}
					r.blocks[boff] = b
				}
				copy(b.buf[pos-boff:end-boff], p[pos-off:end-off])
				b.have.Add(pos-boff, end-pos)
				b.filled += end - pos
				if b.filled == b.want {
					delete(r.blocks, boff)
					full = append(full, b)
				}
				pos = end
			}
			r.got.Add(m.Off, m.Len)
			added += m.Len
		}
	}
	var evict *wblock
	if len(r.blocks) > maxOpenBlocks {
		for _, b := range r.blocks {
			if evict == nil || b.off < evict.off {
				evict = b
			}
		}
		delete(r.blocks, evict.off)
		full = append(full, evict)
	}
	r.queued += len(full)
	r.mu.Unlock()
	for _, b := range full {
		r.enqueue(b)
	}
	return n - added
}

// enqueue hands a block to the writer (r.queued already counts it).
func (r *recvStream) enqueue(b *wblock) {
	r.qmu.Lock()
	defer r.qmu.Unlock()
	if r.qclosed {
		buf := b.buf
		blockPool.Put(&buf)
		r.mu.Lock()
		r.queued--
		r.mu.Unlock()
		return
	}
	r.writeq <- b
}

// writer writes full (or evicted) blocks to the destination.
func (r *recvStream) writer() {
	defer close(r.wdone)
	for b := range r.writeq {
		var err error
		for _, h := range b.have.Ranges() {
			if _, werr := r.dest.WriteAt(b.buf[h.Off:h.End()], b.off+h.Off); werr != nil {
				err = werr
				break
			}
			if f, ok := r.dest.(*os.File); ok && !r.volatile {
				startWriteback(f, b.off+h.Off, h.Len)
			}
		}
		buf := b.buf
		blockPool.Put(&buf)
		r.mu.Lock()
		r.queued--
		if err != nil {
			if r.err == nil {
				r.err = err
				close(r.changed)
				r.changed = make(chan struct{})
			}
			r.mu.Unlock()
			continue
		}
		for _, h := range b.have.Ranges() {
			r.written.Add(b.off+h.Off, h.Len)
		}
		complete := r.written.Size() == r.want.Size() && r.err == nil
		close(r.changed)
		r.changed = make(chan struct{})
		r.mu.Unlock()
		if r.onData != nil {
			for _, h := range b.have.Ranges() {
				r.onData(b.off+h.Off, h.Len)
			}
		}
		if complete {
			r.markDone()
		}
	}
}

func (r *recvStream) markDone() { r.doneOnce.Do(func() { close(r.doneCh) }) }

// flushPartial writes every partly filled block now (for a checkpoint or
// before giving up), so that written reflects all that was received.
func (r *recvStream) flushPartial() {
	r.mu.Lock()
	var bs []*wblock
	for k, b := range r.blocks {
		bs = append(bs, b)
		delete(r.blocks, k)
	}
	r.queued += len(bs)
	r.mu.Unlock()
	for _, b := range bs {
		r.enqueue(b)
	}
}

// waitIdle waits until every queued block is written (or ctx-like stop).
func (r *recvStream) waitIdle(stop <-chan struct{}) {
	for {
		r.mu.Lock()
		q := r.queued
		ch := r.changed
		r.mu.Unlock()
		if q == 0 {
			return
		}
		select {
		case <-ch:
		case <-stop:
			return
		}
	}
}

// writtenRun reports how many bytes from off are on the destination
// without a gap, a channel closed when that may change, and the writer's
// error.
func (r *recvStream) writtenRun(off int64) (int64, <-chan struct{}, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.written.Prefix(off), r.changed, r.err
}

// written returns a copy of what is on the destination.
func (r *recvStream) writtenSet() *ranges.Set {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.written.Clone()
}

func (r *recvStream) received() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got.Size()
}

// done is closed when every wanted byte is written.
func (r *recvStream) done() <-chan struct{} { return r.doneCh }

func (r *recvStream) failed() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

func (r *recvStream) fail(err error) {
	if err == nil {
		err = errors.New("stream closed")
	}
	r.mu.Lock()
	if r.err == nil {
		r.err = err
		close(r.changed)
		r.changed = make(chan struct{})
	}
	r.mu.Unlock()
	r.close()
}

// wait returns when the writer has stopped (after close): from then on
// the destination is not touched, and its owner may close it.
func (r *recvStream) wait() { <-r.wdone }

// close stops the writer once queued blocks are written; blocks still
// open are dropped. It does not wait for the writer (see wait).
func (r *recvStream) close() {
	r.mu.Lock()
	r.closed = true
	for k, b := range r.blocks {
		buf := b.buf
		blockPool.Put(&buf)
		delete(r.blocks, k)
	}
	r.mu.Unlock()
	r.qmu.Lock()
	if !r.qclosed {
		r.qclosed = true
		close(r.writeq)
	}
	r.qmu.Unlock()
}
