package engine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chute/chute/cos"
	"github.com/chute/chute/engine/internal/ranges"
)

// testHookBeforeCommit, when set by a test, runs between the last
// acknowledgement of an upload's data and its commit.
var testHookBeforeCommit func()

// testHookDownloadSummary, when set by a test, is told as a download
// ends whether its summary came with the data ("download_sent") rather
// than from download_finish's answer.
var testHookDownloadSummary func(withData bool)

// testHookCommitSent, when set by a test, is told as an upload's commit
// goes out whether every byte had been acknowledged by then.
var testHookCommitSent func(acked bool)

// testHookHashing, when set by a test, runs before an upload's source is
// hashed; testHookUploadSHA changes the checksum sent ahead in
// "upload_sha" ("" sends none).
var (
	testHookHashing   func()
	testHookUploadSHA func(sum string) string
	// testDropHelloAcks makes clients ignore the node's answers to their
	// data hellos, as if a firewall dropped them.
	testDropHelloAcks atomic.Bool
	// testNoEarlyData makes clients start an upload's stream only after
	// the server's answer, as with a server that holds no early data.
	testNoEarlyData bool
)

// transfer is the client's record of one upload or download, for Stats and
// for pausing, cancelling and re-rating it.
type transfer struct {
	mu      sync.Mutex
	stats   Stats
	cc      *clientConn
	send    *sendStream // uploads
	recv    *recvStream // downloads
	cancel  context.CancelFunc
	discard atomic.Bool // Cancel: drop what the server staged
	skipped int64

	rateAt   time.Time // goodput sampling
	rateDone int64
	rate     float64
}

func (c *Client) register(dir Direction, bucket, key string, size int64, cancel context.CancelFunc) *transfer {
	t := &transfer{cancel: cancel, stats: Stats{
		ID: newTransferID(), Direction: dir, Bucket: bucket, Key: key, State: StateRunning,
		Size: size, Started: time.Now(),
	}}
	c.xmu.Lock()
	c.transfers[t.stats.ID] = t
	c.xmu.Unlock()
	return t
}

func (c *Client) unregister(t *transfer) {
	c.xmu.Lock()
	delete(c.transfers, t.stats.ID)
	c.xmu.Unlock()
}

// snapshot reads the transfer's counters.
func (t *transfer) snapshot() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.stats
	now := time.Now()
	s.Elapsed = now.Sub(s.Started)
	s.Skipped = t.skipped
	if t.cc != nil && t.cc.sess != nil {
		ps := t.cc.sess.pathStats()
		s.RTT, s.Target, s.Policy = ps.rtt, int64(ps.limits.Target*8), Policy(ps.limits.Policy)
		switch {
		case t.send != nil:
			t.cc.sess.mu.Lock()
			s.Done = t.skipped + t.send.ackedB
			s.Sent, s.Retrans = t.send.sent, t.send.retrans
			t.cc.sess.mu.Unlock()
		case t.recv != nil:
			s.Done = t.skipped + t.recv.received()
		}
	}
	if s.State == StateCompleted {
		s.Done = s.Size
	}
	if t.rateAt.IsZero() {
		t.rateAt, t.rateDone = now, s.Done
	} else if dt := now.Sub(t.rateAt); dt >= 500*time.Millisecond {
		t.rate = float64(s.Done-t.rateDone) * 8 / dt.Seconds()
		t.rateAt, t.rateDone = now, s.Done
	}
	s.Rate = t.rate
	return s
}

// Transfers returns a snapshot of every transfer running on the client.
func (c *Client) Transfers() []Stats {
	c.xmu.Lock()
	ts := make([]*transfer, 0, len(c.transfers))
	for _, t := range c.transfers {
		ts = append(ts, t)
	}
	c.xmu.Unlock()
	out := make([]Stats, 0, len(ts))
	for _, t := range ts {
		out = append(out, t.snapshot())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Started.Before(out[j].Started) })
	return out
}

func (c *Client) lookup(id string) (*transfer, error) {
	c.xmu.Lock()
	t := c.transfers[id]
	c.xmu.Unlock()
	if t == nil {
		return nil, fmt.Errorf("no transfer %s", id)
	}
	return t, nil
}

// Cancel stops a transfer; it fails with ErrCancelled, and an upload's
// staged bytes on the server are discarded.
func (c *Client) Cancel(id string) error {
	t, err := c.lookup(id)
	if err != nil {
		return err
	}
	t.discard.Store(true)
	t.cancel()
	return nil
}

// Pause stops sending a transfer's bytes, or starts again; the transfer
// keeps its place.
func (c *Client) Pause(ctx context.Context, id string, pause bool) error {
	t, err := c.lookup(id)
	if err != nil {
		return err
	}
	t.mu.Lock()
	cc, send, stream := t.cc, t.send, uint32(0)
	if t.recv != nil {
		stream = t.recv.id
	}
	if pause {
		t.stats.State = StatePaused
	} else {
		t.stats.State = StateRunning
	}
	t.mu.Unlock()
	if cc == nil {
		return nil
	}
	if send != nil {
		cc.sess.mu.Lock()
		send.setPaused(pause)
		cc.sess.mu.Unlock()
		cc.sess.signal()
		return nil
	}
	return cc.call(ctx, "rate", rateReq{Stream: stream, Pause: &pause}, nil)
}

// SetTransferRate caps one transfer's rate (Target, bits per second); the
// minimum and policy belong to the session (see SetRate).
func (c *Client) SetTransferRate(ctx context.Context, id string, target int64) error {
	t, err := c.lookup(id)
	if err != nil {
		return err
	}
	t.mu.Lock()
	cc, send := t.cc, t.send
	stream := uint32(0)
	if t.recv != nil {
		stream = t.recv.id
	}
	t.mu.Unlock()
	if cc == nil {
		return nil
	}
	if send != nil {
		cc.sess.mu.Lock()
		send.setCap(float64(target)/8, time.Now())
		cc.sess.mu.Unlock()
		cc.sess.signal()
		return nil
	}
	return cc.call(ctx, "rate", rateReq{Stream: stream, Target: target}, nil)
}

func (t *transfer) end(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case err == nil:
		t.stats.State = StateCompleted
	case errors.Is(err, ErrCancelled), errors.Is(err, context.Canceled):
		t.stats.State = StateCancelled
		t.stats.Err = err.Error()
	default:
		t.stats.State = StateFailed
		t.stats.Err = err.Error()
	}
}

// Upload stores req.Source as an object and returns when the server has
// committed it with a matching SHA-256, or the transfer failed. Objects
// of at most MaxInline bytes travel on the control channel.
func (c *Client) Upload(ctx context.Context, req UploadRequest) (Result, error) {
	if req.Size < 0 {
		return Result{}, fmt.Errorf("upload %s: negative size", req.Key)
	}
	if req.Size > MaxObjectSize {
		return Result{}, fmt.Errorf("upload %s: %w: %d bytes, more than the %d chute carries", req.Key, cos.ErrTooLarge, req.Size, int64(MaxObjectSize))
	}
	policy, err := ParseResumePolicy(string(req.Resume))
	if err != nil {
		return Result{}, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	t := c.register(DirUpload, req.Bucket, req.Key, req.Size, cancel)
	defer c.unregister(t)
	res, err := c.upload(ctx, t, req, policy)
	if err != nil && ctx.Err() != nil && !errors.Is(err, ErrCancelled) {
		err = fmt.Errorf("%w: %w", ErrCancelled, err)
	}
	t.end(err)
	res.Stats = t.snapshot()
	if err != nil {
		return res, wrapTransferErr("upload", req.Bucket, req.Key, err)
	}
	c.rememberPath(res)
	return res, nil
}

// rememberPath records a finished transfer's rate in the path memory, when
// it moved enough data to say something about the path.
func (c *Client) rememberPath(res Result) {
	if c.cfg.PathMemory == "" || res.Size-res.Skipped < pathMemoryMinBytes {
		return
	}
	if err := rememberPathRate(c.cfg.PathMemory, c.addr, int64(res.Goodput()), time.Now()); err != nil {
		c.log.Warn("could not record the path's rate; the next transfer starts slower", "err", err)
	}
}

// wrapTransferErr names the operation and object, unless the server's
// message already does.
func wrapTransferErr(op, bucket, key string, err error) error {
	var re *RemoteError
	if errors.As(err, &re) && strings.Contains(re.Msg, cos.Printable(key)) {
		return err
	}
	return fmt.Errorf("%s %s/%s: %w", op, cos.Printable(bucket), cos.Printable(key), err)
}

func (c *Client) upload(ctx context.Context, t *transfer, req UploadRequest, policy ResumePolicy) (Result, error) {
	cc, err := c.conn(ctx)
	if err != nil {
		return Result{}, err
	}
	t.mu.Lock()
	t.cc = cc
	t.mu.Unlock()

	if req.Size <= MaxInline {
		data := make([]byte, req.Size)
		if _, err := req.Source.ReadAt(data, 0); err != nil && !(errors.Is(err, io.EOF) && req.Size == 0) {
			return Result{}, fmt.Errorf("reading source: %w", err)
		}
		sum := sha256.Sum256(data)
		meta := req.Meta
		meta.SHA256 = hex.EncodeToString(sum[:])
		var o objectJSON
		if err := cc.call(ctx, "put", putReq{Bucket: req.Bucket, Key: req.Key, Data: data, Meta: toMetaJSON(meta)}, &o); err != nil {
			return Result{}, err
		}
		t.mu.Lock()
		t.stats.Sent = req.Size
		t.mu.Unlock()
		return Result{Object: o.info(), SHA256: meta.SHA256, Verified: VerifiedSHA256}, nil
	}

	// Hash the source while the bytes go out, unless the caller knows its
	// checksum (the server checks the bytes it got against it either way).
	var shaOnce sync.Once
	shaCh := make(chan struct{})
	var sha string
	var shaErr error
	if req.Meta.SHA256 != "" {
		sha = req.Meta.SHA256
		shaOnce.Do(func() { close(shaCh) })
	}
	hashSource := func() {
		shaOnce.Do(func() {
			go func() {
				defer close(shaCh)
				if testHookHashing != nil {
					testHookHashing()
				}
				h := sha256.New()
				_, err := io.Copy(h, io.NewSectionReader(req.Source, 0, req.Size))
				if err != nil {
					shaErr = fmt.Errorf("reading source: %w", err)
					return
				}
				sha = hex.EncodeToString(h.Sum(nil))
			}()
		})
	}
	waitSHA := func() (string, error) {
		hashSource()
		select {
		case <-shaCh:
			return sha, shaErr
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	hashSource()

	stream := c.stream.Add(1)
	var failed error
	var failMu sync.Mutex
	failedCh := make(chan struct{})
	stopEvents := cc.onEvents(stream, func(op string, body json.RawMessage) {
		switch op {
		case "checkpoint":
			var ev checkpointEvent
			if json.Unmarshal(body, &ev) == nil && req.OnCheckpoint != nil {
				req.OnCheckpoint(ev.State)
			}
		case "failed":
			var ev failedEvent
			if json.Unmarshal(body, &ev) == nil && ev.Err != nil {
				failMu.Lock()
				if failed == nil {
					failed = &RemoteError{Code: ev.Err.Code, Msg: ev.Err.Msg}
					close(failedCh)
				}
				failMu.Unlock()
			}
		}
	})
	defer stopEvents()

	// A large object goes to the store in parts; the store records its
	// SHA-256 in the object's metadata (later resume checks and downloads
	// verify against it without reading the object again). The request
	// does not wait for the hash: the bytes start at once and the
	// checksum follows in "upload_sha" (the node creates the store's
	// upload when it comes, before the first part is in).
	shaLater := req.Size > smallUpload && req.Meta.SHA256 == ""
	ureq := uploadReq{
		Stream: stream, Bucket: req.Bucket, Key: req.Key, Size: req.Size, Meta: toMetaJSON(req.Meta),
		Resume: string(policy), State: req.State, SHALater: shaLater,
	}
	// When nothing can be skipped (resume "none": the server neither
	// checks for the object nor keeps a partial copy) and the server holds
	// data that comes before its upload is set up, the stream starts with
	// the request: the first round trip's bytes are not lost to it. With
	// the other policies the answer may say the bytes are there already,
	// so they wait for it. Should the server start over, the stream
	// starts again below, from what the new answer says.
	all := ranges.Of(ranges.Range{Off: 0, Len: req.Size})
	var sending *sendStream
	startSending := func(need *ranges.Set) {
		sending = newSendStream(stream, readerAtSource{r: req.Source, size: req.Size}, need)
		if req.Rate.Target > 0 {
			sending.setCap(float64(req.Rate.Target)/8, time.Now())
		}
		t.mu.Lock()
		t.send = sending
		t.mu.Unlock()
		cc.sess.addStream(sending)
	}
	stopSending := func() {
		if sending != nil {
			cc.sess.removeStream(sending)
			sending.finish(ErrCancelled)
			sending = nil
		}
	}
	defer stopSending()
	if cc.early && policy == ResumeNone {
		startSending(all)
	}
	var resp uploadResp
	if err := cc.call(ctx, "upload", ureq, &resp); err != nil {
		return Result{}, err
	}
	reset := func() error {
		// The server starts over: what it acknowledged is gone.
		stopSending()
		resp = uploadResp{}
		return cc.call(ctx, "upload_reset", ureq, &resp)
	}
	if resp.Existing != nil {
		ok, err := c.existingMatches(ctx, req, policy, resp, waitSHA)
		if err != nil {
			return Result{}, err
		}
		info := resp.Existing.info()
		// An object that records its SHA-256 is checked against the
		// source's whole checksum, whatever the policy.
		verified := Verified(policy)
		if ok && info.Meta.SHA256 != "" {
			sum, err := waitSHA()
			if err != nil {
				return Result{}, err
			}
			ok = sum == info.Meta.SHA256
			verified = VerifiedSHA256
		}
		if ok {
			t.mu.Lock()
			t.skipped = req.Size
			t.mu.Unlock()
			return Result{Object: info, SHA256: info.Meta.SHA256, Verified: verified}, nil
		}
		if err := reset(); err != nil {
			return Result{}, err
		}
	}
	if len(resp.Have) > 0 && (policy == ResumeSparse || policy == ResumeFull) {
		ok, err := samplesMatch(req.Source, resp.Samples)
		if err != nil {
			return Result{}, err
		}
		if !ok {
			c.log.Info("the server's partial copy differs from the source; sending everything", "key", req.Key)
			if err := reset(); err != nil {
				return Result{}, err
			}
		}
	}
	need := all.Clone()
	for _, h := range resp.Have {
		h.Off, h.Len = max(h.Off, 0), min(h.Len, req.Size-max(h.Off, 0))
		if h.Len > 0 {
			need.Remove(h.Off, h.Len)
		}
	}
	skipped := req.Size - need.Size()
	if sending != nil && skipped > 0 {
		stopSending() // sent early, but the server has some: send the rest
	}
	if sending == nil {
		startSending(need)
	}
	t.mu.Lock()
	t.skipped = skipped
	t.mu.Unlock()
	st := sending // settled: the goroutines below keep this one
	if shaLater {
		go func() {
			sum, err := waitSHA()
			if err != nil {
				return // the send loop reads the same source and fails too
			}
			// commit carries the checksum as well: a lost call only
			// delays the store's upload until then.
			if testHookUploadSHA != nil {
				if sum = testHookUploadSHA(sum); sum == "" {
					return
				}
			}
			if err := cc.call(ctx, "upload_sha", uploadSHAReq{Stream: stream, SHA256: sum}, nil); err != nil && ctx.Err() == nil {
				c.log.Debug("sending the checksum ahead failed", "key", req.Key, "err", err)
			}
		}()
	}
	// The commit goes out as soon as every byte has been sent once (and the
	// checksum is known), not after the last acknowledgement: the server
	// answers it when it holds every byte and the store the object, which
	// saves the round trip between the two.
	type commitResult struct {
		o   objectJSON
		sum string
		err error
	}
	commitCh := make(chan commitResult, 1)
	go func() {
		select {
		case <-st.allSent:
		case <-ctx.Done():
			return
		case <-cc.dead:
			return
		}
		if testHookBeforeCommit != nil {
			select {
			case <-st.done:
			case <-ctx.Done():
				return
			}
			testHookBeforeCommit()
		}
		var r commitResult
		if r.sum, r.err = waitSHA(); r.err == nil {
			if testHookCommitSent != nil {
				select {
				case <-st.done:
					testHookCommitSent(true)
				default:
					testHookCommitSent(false)
				}
			}
			r.err = cc.call(ctx, "commit", commitReq{Stream: stream, SHA256: r.sum}, &r.o)
		}
		commitCh <- r
	}()
	// Stopped, not abandoned: the server keeps what it staged for a rerun,
	// unless Cancel asked to discard the transfer.
	stopUpload := func() error {
		st.finish(ErrCancelled)
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		cc.call(cctx, "cancel", streamReq{Stream: stream, Discard: t.discard.Load()}, nil)
		cancel()
		return ctx.Err()
	}
	dataDone := st.done
	for {
		select {
		case <-dataDone:
			if st.err != nil {
				return Result{}, st.err
			}
			dataDone = nil
			c.log.Debug("upload data acknowledged", "key", req.Key, "elapsed", time.Since(t.stats.Started))
			continue
		case r := <-commitCh:
			if r.err != nil && ctx.Err() != nil {
				return Result{}, stopUpload()
			}
			if r.err != nil {
				return Result{}, r.err
			}
			c.log.Debug("upload committed", "key", req.Key, "elapsed", time.Since(t.stats.Started))
			return Result{Object: r.o.info(), SHA256: r.sum, Verified: VerifiedSHA256}, nil
		case <-failedCh:
			return Result{}, failed
		case <-ctx.Done():
			return Result{}, stopUpload()
		case <-cc.dead:
			return Result{}, cc.deadErr
		}
	}
}

// existingMatches decides whether an object already stored with the same
// size and mtime is the source, by the resume policy.
func (c *Client) existingMatches(ctx context.Context, req UploadRequest, policy ResumePolicy, resp uploadResp, waitSHA func() (string, error)) (bool, error) {
	switch policy {
	case ResumeAttrs:
		return true, nil
	case ResumeSparse:
		return samplesMatch(req.Source, resp.Samples)
	case ResumeFull:
		sum, err := waitSHA()
		if err != nil {
			return false, err
		}
		return sum == resp.Existing.Meta.SHA256, nil
	}
	return false, nil
}

// samplesMatch compares the server's checksums of ranges with the source's.
func samplesMatch(src io.ReaderAt, samples []sampleSum) (bool, error) {
	for _, s := range samples {
		h := sha256.New()
		if _, err := io.Copy(h, io.NewSectionReader(src, s.Off, s.Len)); err != nil {
			return false, fmt.Errorf("reading source: %w", err)
		}
		if !bytes.Equal(h.Sum(nil), s.SHA256) {
			return false, nil
		}
	}
	return true, nil
}

// Download fetches an object's bytes (or a range of them) into req.Dest
// and returns when all are written. For a whole object, Result.SHA256 is
// the server's checksum of it; the caller compares it with what it wrote.
func (c *Client) Download(ctx context.Context, req DownloadRequest) (Result, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	size := req.Length
	t := c.register(DirDownload, req.Bucket, req.Key, size, cancel)
	defer c.unregister(t)
	res, err := c.download(ctx, t, req)
	if err != nil && ctx.Err() != nil && !errors.Is(err, ErrCancelled) {
		err = fmt.Errorf("%w: %w", ErrCancelled, err)
	}
	t.end(err)
	res.Stats = t.snapshot()
	if err != nil {
		return res, wrapTransferErr("download", req.Bucket, req.Key, err)
	}
	c.rememberPath(res)
	return res, nil
}

// unbounded stands for "to the end" until the size is known.
const unbounded = 1 << 60

func (c *Client) download(ctx context.Context, t *transfer, req DownloadRequest) (Result, error) {
	if req.Offset < 0 {
		return Result{}, fmt.Errorf("negative offset")
	}
	cc, err := c.conn(ctx)
	if err != nil {
		return Result{}, err
	}
	t.mu.Lock()
	t.cc = cc
	t.mu.Unlock()
	end := int64(unbounded)
	if req.Length >= 0 {
		end = req.Offset + req.Length
	}
	want := needOf(req.Offset, end-req.Offset, req.Have)
	stream := c.stream.Add(1)
	r := newRecvStream(stream, req.Dest, want, req.OnData, req.Volatile)
	cc.sess.addRecv(r)
	defer func() {
		cc.sess.removeRecv(stream)
		r.close()
		r.wait() // the caller owns Dest again once Download returns
	}()
	var failed error
	failedCh := make(chan struct{})
	var failOnce sync.Once
	var sent sentEvent
	sentCh := make(chan struct{})
	var sentOnce sync.Once
	stopEvents := cc.onEvents(stream, func(op string, body json.RawMessage) {
		if op == "download_sent" {
			sentOnce.Do(func() {
				if json.Unmarshal(body, &sent) == nil {
					close(sentCh)
				}
			})
			return
		}
		if op != "failed" {
			return
		}
		var ev failedEvent
		if json.Unmarshal(body, &ev) == nil && ev.Err != nil {
			failOnce.Do(func() {
				failed = &RemoteError{Code: ev.Err.Code, Msg: ev.Err.Msg}
				close(failedCh)
			})
		}
	})
	defer stopEvents()
	var resp downloadResp
	dreq := downloadReq{Stream: stream, Bucket: req.Bucket, Key: req.Key, Offset: req.Offset, Length: req.Length, Have: req.Have, Target: req.Rate.Target}
	if err := cc.call(ctx, "download", dreq, &resp); err != nil {
		return Result{}, err
	}
	info := resp.Object.info()
	// Now the size is known: stop waiting for bytes past the end.
	last := min(end, info.Size)
	r.limit(last)
	first := min(req.Offset, info.Size)
	total := last - first
	held := int64(0)
	for _, h := range req.Have {
		lo, hi := max(h.Off, first), min(h.End(), last)
		if hi > lo {
			held += hi - lo
		}
	}
	t.mu.Lock()
	t.recv, t.skipped = r, held
	t.stats.Size = total
	t.mu.Unlock()
	select {
	case <-r.done():
	case <-failedCh:
		return Result{}, failed
	case <-ctx.Done():
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		cc.call(cctx, "cancel", streamReq{Stream: stream}, nil)
		cancel()
		return Result{}, ctx.Err()
	case <-cc.dead:
		return Result{}, cc.deadErr
	}
	if err := r.failed(); err != nil {
		return Result{}, fmt.Errorf("writing: %w", err)
	}
	// download_finish releases the server's side; its answer is needed
	// only if "download_sent" has not come (it usually came before the
	// last bytes did).
	type finishResult struct {
		fin finishResp
		err error
	}
	finCh := make(chan finishResult, 1)
	go func() {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		var r finishResult
		r.err = cc.call(fctx, "download_finish", streamReq{Stream: stream}, &r.fin)
		finCh <- r
	}()
	var fin finishResp
	select {
	case <-sentCh:
		fin = sent.finishResp
		if testHookDownloadSummary != nil {
			testHookDownloadSummary(true)
		}
	case fr := <-finCh:
		if fr.err != nil {
			return Result{}, fr.err
		}
		fin = fr.fin
		if testHookDownloadSummary != nil {
			testHookDownloadSummary(false)
		}
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
	t.mu.Lock()
	t.stats.Sent, t.stats.Retrans = fin.Sent, fin.Retrans
	t.mu.Unlock()
	return Result{Object: info, SHA256: fin.SHA256}, nil
}

// limit stops the stream wanting bytes at or past end.
func (r *recvStream) limit(end int64) {
	r.mu.Lock()
	r.want.Remove(end, unbounded)
	complete := r.written.Size() >= r.want.Size() && r.err == nil
	var full []*wblock
	for k, b := range r.blocks {
		// A block waiting for bytes past the end is complete now.
		b.want = b.filled
		for _, w := range r.want.Intersect(b.off, recvBlockSize) {
			b.want += w.Len
		}
		for _, g := range r.got.Intersect(b.off, recvBlockSize) {
			b.want -= g.Len
		}
		if b.filled >= b.want {
			delete(r.blocks, k)
			full = append(full, b)
		}
	}
	r.queued += len(full)
	r.mu.Unlock()
	for _, b := range full {
		r.enqueue(b)
	}
	if complete && len(full) == 0 {
		r.markDone()
	}
}
