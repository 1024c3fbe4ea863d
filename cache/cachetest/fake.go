// Package cachetest provides Fake, an in-memory chute server for tests of
// the cache and the mount, with fault injection: an unreachable server,
// latency, a transfer rate, transfers that fail after some bytes, uploads
// held at a gate, downloads held at an offset, and counters of the bytes
// sent each way.
package cachetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chute/chute/cos"
	"github.com/chute/chute/engine"
)

type object struct {
	data []byte
	info cos.ObjectInfo
}

type partial struct {
	id   string
	key  string
	size int64
	data []byte // the durable prefix
}

// resumeState is what Fake hands out as an upload checkpoint.
type resumeState struct {
	ID   string `json:"id"`
	Done int64  `json:"done"`
}

// Fake is an in-memory server implementing the methods of cache.Remote
// (and so of *engine.Client). The zero value is not usable: call NewFake.
// It is safe for concurrent use.
type Fake struct {
	// Chunk is the size of the pieces transfers move (default 64 KiB), and
	// CheckpointEvery how often an upload reports a checkpoint (default
	// 1 MiB). Set them before use.
	Chunk           int64
	CheckpointEvery int64

	mu      sync.Mutex
	buckets map[string]map[string]*object
	uploads map[string]*partial
	seq     int
	calls   map[string]int
	latency time.Duration
	rate    int64 // bytes per second for transfers; 0 means unlimited
	// failAfter: the next transfer fails with ErrUnreachable once it has
	// moved this many bytes; -1 means off.
	failAfter int64
	gate      chan struct{} // non-nil: uploads wait until it is closed
	// holdAt >= 0: downloads wait before writing bytes at or past it,
	// until dlGate is closed.
	holdAt int64
	dlGate chan struct{}
	dlNow  int // downloads running
	dlPeak int // most downloads running at once

	down     atomic.Bool
	upBytes  atomic.Int64
	dlBytes  atomic.Int64
	commits  atomic.Int64
	resumes  atomic.Int64
	inflight atomic.Int64
}

// NewFake returns an empty server.
func NewFake() *Fake {
	return &Fake{
		Chunk: 64 << 10, CheckpointEvery: 1 << 20,
		buckets: map[string]map[string]*object{}, uploads: map[string]*partial{},
		calls: map[string]int{}, failAfter: -1, holdAt: -1,
	}
}

// SetDown makes every call fail with engine.ErrUnreachable (true) or work
// again (false). Transfers running stop at their next chunk.
func (f *Fake) SetDown(down bool) { f.down.Store(down) }

// SetLatency adds d to every call.
func (f *Fake) SetLatency(d time.Duration) { f.mu.Lock(); f.latency = d; f.mu.Unlock() }

// SetRate limits transfers to bytesPerSec each; 0 lifts the limit.
func (f *Fake) SetRate(bytesPerSec int64) { f.mu.Lock(); f.rate = bytesPerSec; f.mu.Unlock() }

// FailAfter makes the next transfer fail with engine.ErrUnreachable after
// it has moved n bytes.
func (f *Fake) FailAfter(n int64) { f.mu.Lock(); f.failAfter = n; f.mu.Unlock() }

// HoldUploads makes uploads (and Puts of files) wait before each chunk
// until ReleaseUploads.
func (f *Fake) HoldUploads() {
	f.mu.Lock()
	if f.gate == nil {
		f.gate = make(chan struct{})
	}
	f.mu.Unlock()
}

// ReleaseUploads lets held uploads go on.
func (f *Fake) ReleaseUploads() {
	f.mu.Lock()
	if f.gate != nil {
		close(f.gate)
		f.gate = nil
	}
	f.mu.Unlock()
}

// HoldDownloadsAt makes downloads wait before writing any byte at or past
// offset off, until ReleaseDownloads or another HoldDownloadsAt moves the
// line.
func (f *Fake) HoldDownloadsAt(off int64) {
	f.mu.Lock()
	f.holdAt = off
	if f.dlGate != nil {
		close(f.dlGate) // the held look again
	}
	f.dlGate = make(chan struct{})
	f.mu.Unlock()
}

// ReleaseDownloads lets held downloads go on.
func (f *Fake) ReleaseDownloads() {
	f.mu.Lock()
	f.holdAt = -1
	if f.dlGate != nil {
		close(f.dlGate)
		f.dlGate = nil
	}
	f.mu.Unlock()
}

// PeakDownloads returns the most downloads that ran at once.
func (f *Fake) PeakDownloads() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dlPeak
}

// UploadedBytes is the payload uploads have sent, DownloadedBytes what
// downloads have sent; Commits counts objects stored by Upload or Put
// (folder markers aside), Resumes the uploads that continued from a
// checkpoint.
func (f *Fake) UploadedBytes() int64   { return f.upBytes.Load() }
func (f *Fake) DownloadedBytes() int64 { return f.dlBytes.Load() }
func (f *Fake) Commits() int64         { return f.commits.Load() }
func (f *Fake) Resumes() int64         { return f.resumes.Load() }

// Calls returns how many times op ("stat", "list", "put", "delete", "copy",
// "upload", "download") was called.
func (f *Fake) Calls(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

// PartialBytes reports the bytes held for unfinished uploads of key.
func (f *Fake) PartialBytes(key string) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var n int64
	for _, p := range f.uploads {
		if p.key == key {
			n += int64(len(p.data))
		}
	}
	return n
}

// Object returns a stored object's bytes and info.
func (f *Fake) Object(bucket, key string) ([]byte, cos.ObjectInfo, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	o, ok := f.buckets[bucket][key]
	if !ok {
		return nil, cos.ObjectInfo{}, false
	}
	return bytes.Clone(o.data), o.info, true
}

// Keys lists a bucket's keys in order.
func (f *Fake) Keys(bucket string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ks []string
	for k := range f.buckets[bucket] {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// Store puts an object directly, as another client would.
func (f *Fake) Store(bucket, key string, data []byte, meta cos.Meta) cos.ObjectInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.storeLocked(bucket, key, bytes.Clone(data), meta)
}

func (f *Fake) storeLocked(bucket, key string, data []byte, meta cos.Meta) cos.ObjectInfo {
	b := f.buckets[bucket]
	if b == nil {
		b = map[string]*object{}
		f.buckets[bucket] = b
	}
	f.seq++
	info := cos.ObjectInfo{Key: key, Size: int64(len(data)), LastModified: time.Now(), ETag: fmt.Sprintf("e%d", f.seq), Meta: cloneMeta(meta)}
	b[key] = &object{data: data, info: info}
	return withMeta(info)
}

func cloneMeta(m cos.Meta) cos.Meta {
	if m.UID != nil {
		u := *m.UID
		m.UID = &u
	}
	if m.GID != nil {
		g := *m.GID
		m.GID = &g
	}
	if m.Other != nil {
		o := make(map[string]string, len(m.Other))
		for k, v := range m.Other {
			o[k] = v
		}
		m.Other = o
	}
	return m
}

func withMeta(info cos.ObjectInfo) cos.ObjectInfo {
	info.Meta = cloneMeta(info.Meta)
	return info
}

// enter counts a call and applies latency and the down switch.
func (f *Fake) enter(ctx context.Context, op, bucket, key string) error {
	f.mu.Lock()
	f.calls[op]++
	lat := f.latency
	f.mu.Unlock()
	if lat > 0 {
		t := time.NewTimer(lat)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	if f.down.Load() {
		return &cos.Error{Op: op, Bucket: bucket, Key: key, Err: engine.ErrUnreachable}
	}
	return ctx.Err()
}

func notFound(op, bucket, key string) error {
	return &cos.Error{Op: op, Bucket: bucket, Key: key, Err: cos.ErrNotFound}
}

func (f *Fake) Stat(ctx context.Context, bucket, key string) (cos.ObjectInfo, error) {
	if err := f.enter(ctx, "stat", bucket, key); err != nil {
		return cos.ObjectInfo{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	o, ok := f.buckets[bucket][key]
	if !ok {
		return cos.ObjectInfo{}, notFound("stat", bucket, key)
	}
	return withMeta(o.info), nil
}

func (f *Fake) List(ctx context.Context, bucket string, opt cos.ListOptions) (cos.ListPage, error) {
	if err := f.enter(ctx, "list", bucket, opt.Prefix); err != nil {
		return cos.ListPage{}, err
	}
	max := opt.MaxKeys
	if max <= 0 {
		max = 1000
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var keys []string
	for k := range f.buckets[bucket] {
		if strings.HasPrefix(k, opt.Prefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var page cos.ListPage
	seen := map[string]bool{}
	n := 0
	for _, k := range keys {
		name, rolled := k, false
		if opt.Delimiter != "" {
			if i := strings.Index(k[len(opt.Prefix):], opt.Delimiter); i >= 0 {
				name, rolled = k[:len(opt.Prefix)+i+len(opt.Delimiter)], true
			}
		}
		if name <= opt.StartAfter || seen[name] {
			continue
		}
		if n == max {
			page.NextStartAfter = lastOf(page)
			break
		}
		seen[name] = true
		n++
		if rolled {
			page.CommonPrefixes = append(page.CommonPrefixes, name)
		} else {
			page.Objects = append(page.Objects, withMeta(f.buckets[bucket][k].info))
		}
	}
	return page, nil
}

func lastOf(p cos.ListPage) string {
	last := ""
	if n := len(p.Objects); n > 0 {
		last = p.Objects[n-1].Key
	}
	if n := len(p.CommonPrefixes); n > 0 && p.CommonPrefixes[n-1] > last {
		last = p.CommonPrefixes[n-1]
	}
	return last
}

func (f *Fake) Put(ctx context.Context, bucket, key string, data []byte, meta cos.Meta) (cos.ObjectInfo, error) {
	if err := f.enter(ctx, "put", bucket, key); err != nil {
		return cos.ObjectInfo{}, err
	}
	if key == "" || strings.HasPrefix(key, "/") || strings.Contains(key, "//") {
		return cos.ObjectInfo{}, &cos.Error{Op: "put", Bucket: bucket, Key: key, Err: cos.ErrInvalidKey}
	}
	if !strings.HasSuffix(key, "/") {
		// A small file's upload: held like the others.
		if err := f.pace(ctx, "put", bucket, key, 0, 0, time.Now(), true); err != nil {
			return cos.ObjectInfo{}, err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !strings.HasSuffix(key, "/") {
		f.commits.Add(1)
	}
	return f.storeLocked(bucket, key, bytes.Clone(data), meta), nil
}

func (f *Fake) Delete(ctx context.Context, bucket, key string) error {
	if err := f.enter(ctx, "delete", bucket, key); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.buckets[bucket], key)
	return nil
}

func (f *Fake) Copy(ctx context.Context, bucket, src, dst string, meta *cos.Meta) (cos.ObjectInfo, error) {
	if err := f.enter(ctx, "copy", bucket, src); err != nil {
		return cos.ObjectInfo{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	o, ok := f.buckets[bucket][src]
	if !ok {
		return cos.ObjectInfo{}, notFound("copy", bucket, src)
	}
	m := o.info.Meta
	if meta != nil {
		m = *meta
	}
	return f.storeLocked(bucket, dst, o.data, m), nil
}

// pace waits as the rate asks for n more bytes, and checks the faults.
func (f *Fake) pace(ctx context.Context, op, bucket, key string, moved, n int64, start time.Time, upload bool) error {
	f.mu.Lock()
	rate, gate := f.rate, f.gate
	fail := false
	if f.failAfter >= 0 && moved+n > f.failAfter {
		f.failAfter = -1
		fail = true
	}
	f.mu.Unlock()
	if upload && gate != nil {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-gate:
		}
	}
	if fail || f.down.Load() {
		return &cos.Error{Op: op, Bucket: bucket, Key: key, Err: engine.ErrUnreachable}
	}
	if rate > 0 {
		due := start.Add(time.Duration(float64(moved+n) / float64(rate) * float64(time.Second)))
		if d := time.Until(due); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
	}
	return ctx.Err()
}

func (f *Fake) Upload(ctx context.Context, req engine.UploadRequest) (engine.Result, error) {
	if err := f.enter(ctx, "upload", req.Bucket, req.Key); err != nil {
		return engine.Result{}, err
	}
	f.inflight.Add(1)
	defer f.inflight.Add(-1)
	start := time.Now()
	f.mu.Lock()
	var p *partial
	if req.State != nil {
		var st resumeState
		if json.Unmarshal(req.State, &st) == nil {
			if q := f.uploads[st.ID]; q != nil && q.key == req.Key && q.size == req.Size && int64(len(q.data)) >= st.Done {
				q.data = q.data[:st.Done]
				p = q
				f.resumes.Add(1)
			}
		}
	}
	if p == nil {
		f.seq++
		p = &partial{id: fmt.Sprintf("u%d", f.seq), key: req.Key, size: req.Size, data: make([]byte, 0, req.Size)}
		f.uploads[p.id] = p
	}
	f.mu.Unlock()
	skipped := int64(len(p.data))
	var sent, sinceCk int64
	buf := make([]byte, f.Chunk)
	for off := skipped; off < req.Size; {
		n := min(int64(len(buf)), req.Size-off)
		if err := f.pace(ctx, "upload", req.Bucket, req.Key, sent, n, start, true); err != nil {
			return engine.Result{}, err
		}
		if _, err := req.Source.ReadAt(buf[:n], off); err != nil && err != io.EOF {
			return engine.Result{}, fmt.Errorf("upload %s: read source: %w", req.Key, err)
		}
		f.mu.Lock()
		p.data = append(p.data[:off], buf[:n]...)
		f.mu.Unlock()
		f.upBytes.Add(n)
		sent += n
		off += n
		sinceCk += n
		if req.OnCheckpoint != nil && (sinceCk >= f.CheckpointEvery || off == req.Size) {
			sinceCk = 0
			st, _ := json.Marshal(resumeState{ID: p.id, Done: off})
			req.OnCheckpoint(st)
		}
	}
	if err := ctx.Err(); err != nil {
		return engine.Result{}, err
	}
	// As the server does: the bytes must match the checksum the caller
	// claims, if it claims one; the stored object records it.
	sum := sha256.Sum256(p.data)
	meta := req.Meta
	if meta.SHA256 != "" && meta.SHA256 != hex.EncodeToString(sum[:]) {
		return engine.Result{}, fmt.Errorf("upload %s: %w: the bytes received hash to %x, the client says %s", req.Key, engine.ErrChecksum, sum, meta.SHA256)
	}
	f.mu.Lock()
	delete(f.uploads, p.id)
	info := f.storeLocked(req.Bucket, req.Key, p.data, meta)
	f.mu.Unlock()
	f.commits.Add(1)
	return engine.Result{
		Stats: engine.Stats{
			Direction: engine.DirUpload, Bucket: req.Bucket, Key: req.Key, State: engine.StateCompleted,
			Size: req.Size, Done: req.Size, Skipped: skipped, Sent: sent, Started: start, Elapsed: time.Since(start),
		},
		Object: info,
	}, nil
}

func (f *Fake) Download(ctx context.Context, req engine.DownloadRequest) (engine.Result, error) {
	if err := f.enter(ctx, "download", req.Bucket, req.Key); err != nil {
		return engine.Result{}, err
	}
	start := time.Now()
	f.mu.Lock()
	o, ok := f.buckets[req.Bucket][req.Key]
	f.mu.Unlock()
	if !ok {
		return engine.Result{}, notFound("download", req.Bucket, req.Key)
	}
	size := int64(len(o.data))
	end := size
	if req.Length >= 0 && req.Offset+req.Length < size {
		end = req.Offset + req.Length
	}
	var want []engine.Range
	pos := min(req.Offset, size)
	have := append([]engine.Range(nil), req.Have...)
	sort.Slice(have, func(i, j int) bool { return have[i].Off < have[j].Off })
	for _, h := range have {
		if h.End() <= pos {
			continue
		}
		if h.Off >= end {
			break
		}
		if h.Off > pos {
			want = append(want, engine.Range{Off: pos, Len: h.Off - pos})
		}
		pos = max(pos, h.End())
	}
	if pos < end {
		want = append(want, engine.Range{Off: pos, Len: end - pos})
	}
	var sent, total int64
	for _, w := range want {
		total += w.Len
	}
	f.mu.Lock()
	f.dlNow++
	f.dlPeak = max(f.dlPeak, f.dlNow)
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.dlNow--
		f.mu.Unlock()
	}()
	for _, w := range want {
		for off := w.Off; off < w.End(); {
			n := min(f.Chunk, w.End()-off)
			for {
				f.mu.Lock()
				hold := f.dlGate
				if f.holdAt < 0 || off+n <= f.holdAt {
					hold = nil
				}
				f.mu.Unlock()
				if hold == nil {
					break
				}
				select {
				case <-hold:
				case <-ctx.Done():
					return engine.Result{}, ctx.Err()
				}
			}
			if err := f.pace(ctx, "download", req.Bucket, req.Key, sent, n, start, false); err != nil {
				return engine.Result{}, err
			}
			if _, err := req.Dest.WriteAt(o.data[off:off+n], off); err != nil {
				return engine.Result{}, fmt.Errorf("download %s: write: %w", req.Key, err)
			}
			f.dlBytes.Add(n)
			sent += n
			if req.OnData != nil {
				req.OnData(off, n)
			}
			off += n
		}
	}
	covered := max(end-min(req.Offset, size), 0)
	return engine.Result{
		Stats: engine.Stats{
			Direction: engine.DirDownload, Bucket: req.Bucket, Key: req.Key, State: engine.StateCompleted,
			Size: covered, Done: covered, Skipped: covered - total, Sent: sent, Started: start, Elapsed: time.Since(start),
		},
		Object: withMeta(o.info),
	}, nil
}
