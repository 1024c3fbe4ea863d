package engine

import (
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/chute/chute/cos"
	"github.com/chute/chute/engine/internal/ranges"
)

// An upload arrives over UDP, out of order, into a staging file on the
// server's disk. A background loop makes received bytes durable (fsync,
// then a state record), hashes the contiguous prefix, and sends finished
// parts to the store as multipart parts. After each part it tells the
// client a checkpoint: the store's upload id and the hash state at the end
// of the parts finished so far. With that checkpoint, any server in front
// of the same store can continue the same multipart upload after a crash,
// asking the client only for the bytes after it. Objects no larger than
// one part skip multipart and go to the store in one Put at commit.

// resumeState is the checkpoint a client keeps for an upload.
type resumeState struct {
	Bucket   string `json:"bucket"`
	Key      string `json:"key"`
	Size     int64  `json:"size"`
	Mtime    int64  `json:"mtime_ns"`
	UploadID string `json:"upload_id"`
	PartSize int64  `json:"part_size"`
	Offset   int64  `json:"offset"` // bytes [0, Offset) are in finished parts
	Hash     []byte `json:"hash"`   // SHA-256 state after Offset bytes
}

// stagingState is an upload's record on the server's disk.
type stagingState struct {
	Bucket   string   `json:"bucket"`
	Key      string   `json:"key"`
	Size     int64    `json:"size"`
	Mtime    int64    `json:"mtime_ns"`
	Meta     metaJSON `json:"meta"`
	UploadID string   `json:"upload_id,omitempty"`
	PartSize int64    `json:"part_size,omitempty"`
	Durable  []Range  `json:"durable"` // bytes fsynced in the data file
	Created  int64    `json:"created_ns"`
	Updated  int64    `json:"updated_ns"`
	// Offset and Hash restore a hash chain begun on another server:
	// bytes below Offset are not in this data file.
	Offset int64  `json:"offset,omitempty"`
	Hash   []byte `json:"hash,omitempty"`
}

// testHookUploadRegister, if set, runs before an upload's stream is
// registered for its data.
var testHookUploadRegister func()

// smallUpload: objects up to this size are staged whole and Put at commit.
const smallUpload = cos.DefaultPartSize

type serverUpload struct {
	c      *serverConn
	log    *slog.Logger
	slot   string
	dir    string
	stream uint32
	bucket string
	key    string
	size   int64
	mtime  int64
	meta   cos.Meta
	file   *os.File
	recv   *recvStream
	up     cos.Upload      // nil for small uploads
	local  cos.LocalUpload // up, when the store takes bytes in place
	state  stagingState

	// An upload begun before the client knew its SHA-256 (uploadReq.
	// SHALater) takes it from "upload_sha" (or "commit"). S3 fixes an
	// object's metadata when its upload is created, so for such a store
	// the multipart upload is created only then, the bytes meanwhile
	// staged; a store with cos.LateMeta gets the checksum set instead.
	needSHA  bool // the store upload's metadata lacks the SHA-256
	deferred bool // the store upload is not created yet

	mu        sync.Mutex
	durable   *ranges.Set
	hashFrom  int64 // the chain starts here (0, or a checkpoint's offset)
	hashed    int64
	hasher    hash.Hash
	snapshots map[int64][]byte // hash states at part ends not yet checkpointed
	parts     map[int]bool     // parts durable in the store
	partBusy  map[int]bool
	streaming int          // the part being sent as it arrives (0: none)
	noStream  map[int]bool // parts whose streaming failed: sent whole
	checkpt   int64
	err       error
	sha       string
	gotSHA    string // the client's SHA-256, once it came

	stopOnce sync.Once
	stopCh   chan struct{}
	loopEnd  chan struct{} // closed when the loop stops starting parts
	done     chan struct{} // closed when the loop ends
	kick     chan struct{} // a part finished: run the loop now
	partWG   sync.WaitGroup
}

func stagingSlot(user, bucket, key string) string {
	h := sha256.Sum256([]byte(user + "\x00" + bucket + "\x00" + key))
	return hex.EncodeToString(h[:16])
}

// startUpload answers "upload" (and "upload_reset", which discards what the
// server holds and starts over).
func (c *serverConn) startUpload(ctx context.Context, req uploadReq, reset bool) (any, error) {
	if err := c.check("upload", req.Bucket, req.Key, true); err != nil {
		return nil, err
	}
	if req.Size < 0 || req.Size > cos.MaxParts*cos.MaxPartSize {
		return nil, &cos.Error{Op: "upload", Bucket: req.Bucket, Key: req.Key, Err: fmt.Errorf("%w: size %d", cos.ErrTooLarge, req.Size)}
	}
	policy, err := ParseResumePolicy(req.Resume)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrProtocol, err)
	}
	sess, err := c.session()
	if err != nil {
		return nil, err
	}
	srv := c.srv
	slot := stagingSlot(c.user, req.Bucket, req.Key)

	// One live upload per user and key: a new one takes over.
	srv.mu.Lock()
	old := srv.uploads[slot]
	srv.mu.Unlock()
	if old != nil {
		old.stop(fmt.Errorf("%w: a newer upload of the same key took over (%w)", ErrCancelled, errTakenOver))
		<-old.done
	}

	// The object may already be there.
	if policy != ResumeNone && !reset {
		if o, err := srv.store.Stat(ctx, req.Bucket, req.Key); err == nil && o.Size == req.Size && sameMtime(o.Meta.Mtime, req.Meta.meta().Mtime) {
			resp := uploadResp{}
			oj := toObjectJSON(o)
			switch policy {
			case ResumeSparse:
				resp.Samples, err = storeSamples(ctx, srv.store, req.Bucket, req.Key, req.Size)
				if err != nil {
					return nil, err
				}
			case ResumeFull:
				if oj.Meta.SHA256 == "" {
					sum, err := hashStoreRange(ctx, srv.store, req.Bucket, req.Key, 0, req.Size)
					if err != nil {
						return nil, err
					}
					oj.Meta.SHA256 = hex.EncodeToString(sum)
				}
			}
			resp.Existing = &oj
			return resp, nil
		}
	}

	u := &serverUpload{
		c: c, slot: slot, dir: filepath.Join(srv.stagingDir, slot), stream: req.Stream,
		bucket: req.Bucket, key: req.Key, size: req.Size, mtime: req.Meta.Mtime, meta: req.Meta.meta(),
		durable: &ranges.Set{}, hasher: sha256.New(), snapshots: map[int64][]byte{},
		parts: map[int]bool{}, partBusy: map[int]bool{}, noStream: map[int]bool{},
		stopCh: make(chan struct{}), loopEnd: make(chan struct{}), done: make(chan struct{}), kick: make(chan struct{}, 1),
	}
	u.log = c.log.With("bucket", req.Bucket, "key", req.Key, "stream", req.Stream)
	if err := u.open(ctx, req, policy, reset); err != nil {
		return nil, &cos.Error{Op: "upload", Bucket: req.Bucket, Key: req.Key, Err: err}
	}
	have := u.durable.Ranges()
	resp := uploadResp{}
	for _, r := range have {
		resp.Have = append(resp.Have, Range{Off: r.Off, Len: r.Len})
	}
	if policy == ResumeSparse || policy == ResumeFull {
		resp.Samples, err = u.localSamples(policy)
		if err != nil {
			u.file.Close()
			return nil, err
		}
	}
	want := ranges.Of(ranges.Range{Off: 0, Len: req.Size})
	for _, r := range have {
		want.Remove(r.Off, r.Len)
	}
	u.recv = newRecvStream(req.Stream, u.file, want, nil, false)
	if testHookUploadRegister != nil {
		testHookUploadRegister()
	}
	sess.addRecv(u.recv)
	c.mu.Lock()
	c.uploads[req.Stream] = u
	c.mu.Unlock()
	srv.mu.Lock()
	srv.uploads[slot] = u
	srv.mu.Unlock()
	u.log.Info("upload started", "size", req.Size, "have", u.durable.Size(), "multipart", u.up != nil || u.deferred, "sha_later", u.needSHA)
	go u.loop()
	return resp, nil
}

// sameMtime compares modification times to the millisecond (what every
// store keeps).
func sameMtime(a, b time.Time) bool {
	if a.IsZero() || b.IsZero() {
		return false
	}
	return a.UnixMilli() == b.UnixMilli()
}

// open finds or makes the staging area and the store upload.
func (u *serverUpload) open(ctx context.Context, req uploadReq, policy ResumePolicy, reset bool) error {
	store := u.c.srv.store
	st, err := readStagingState(u.dir)
	usable := err == nil && !reset && policy != ResumeNone &&
		st.Bucket == req.Bucket && st.Key == req.Key && st.Size == req.Size && st.Mtime == req.Meta.Mtime
	if err == nil && !usable {
		discardStaging(ctx, store, u.dir, st)
	}
	multipart := req.Size > smallUpload
	if usable {
		u.state = st
		for _, r := range st.Durable {
			u.durable.Add(r.Off, r.Len)
		}
		if st.Offset > 0 {
			if err := u.restoreHash(st.Offset, st.Hash); err != nil {
				discardStaging(ctx, store, u.dir, st)
				usable = false
				u.durable = &ranges.Set{}
			}
		}
		if usable && st.UploadID != "" {
			up, err := store.ResumeUpload(ctx, req.Bucket, req.Key, st.UploadID)
			if err != nil {
				u.log.Info("staged upload's multipart upload is gone; starting over", "err", err)
				discardStaging(ctx, store, u.dir, st)
				usable = false
				u.durable = &ranges.Set{}
				u.hashFrom, u.hashed, u.hasher = 0, 0, sha256.New()
			} else {
				u.up = up
			}
		}
	}
	if !usable && len(req.State) > 0 && policy != ResumeNone && !reset && multipart {
		// Another server began this upload: continue its multipart upload
		// from the client's checkpoint.
		var rs resumeState
		if json.Unmarshal(req.State, &rs) == nil && rs.Bucket == req.Bucket && rs.Key == req.Key &&
			rs.Size == req.Size && rs.Mtime == req.Meta.Mtime && rs.UploadID != "" && rs.Offset > 0 && rs.Offset <= rs.Size {
			up, err := store.ResumeUpload(ctx, req.Bucket, req.Key, rs.UploadID)
			if err == nil && up.PartSize() == rs.PartSize && rs.Offset%rs.PartSize == 0 || err == nil && rs.Offset == rs.Size {
				if herr := u.restoreHash(rs.Offset, rs.Hash); herr == nil {
					u.up = up
					u.durable.Add(0, rs.Offset)
					u.state.Offset, u.state.Hash = rs.Offset, rs.Hash
					u.log.Info("continuing a multipart upload begun elsewhere", "upload_id", rs.UploadID, "offset", rs.Offset)
				}
			} else if err != nil {
				u.log.Info("checkpointed multipart upload is gone; starting over", "upload_id", rs.UploadID, "err", err)
			}
		}
	}
	if err := os.MkdirAll(u.dir, 0o700); err != nil {
		return err
	}
	if multipart && u.up == nil {
		u.needSHA = req.SHALater && u.meta.SHA256 == ""
		if _, late := store.(cos.LateMeta); u.needSHA && !late {
			u.deferred = true
		} else if u.up, err = store.CreateUpload(ctx, req.Bucket, req.Key, cos.UploadOptions{Size: req.Size, Meta: u.meta}); err != nil {
			return err
		}
	}
	// A store whose upload is a local file takes the bytes directly; any
	// other gets a staging file of our own, copied part by part.
	if lu, ok := u.up.(cos.LocalUpload); ok {
		u.local = lu
		u.file, err = lu.DataFile()
	} else {
		u.file, err = os.OpenFile(filepath.Join(u.dir, "data"), os.O_RDWR|os.O_CREATE, 0o600)
	}
	if err != nil {
		return err
	}
	if fi, err := u.file.Stat(); err == nil && fi.Size() != req.Size {
		if err := u.file.Truncate(req.Size); err != nil {
			u.file.Close()
			return err
		}
	}
	if u.up != nil {
		ps := u.up.PartSize()
		for _, p := range u.up.Parts() {
			off := int64(p.Number-1) * ps
			// Only parts whose bytes we also hold (or that lie below the
			// checkpoint) count: the others are sent again.
			if u.durable.Contains(off, p.Size) {
				u.parts[p.Number] = true
			}
		}
	}
	now := time.Now().UnixNano()
	u.state.Bucket, u.state.Key, u.state.Size, u.state.Mtime = req.Bucket, req.Key, req.Size, req.Meta.Mtime
	u.state.Meta = req.Meta
	if u.state.Created == 0 {
		u.state.Created = now
	}
	if u.up != nil {
		u.state.UploadID, u.state.PartSize = u.up.ID(), u.up.PartSize()
	}
	return u.saveState()
}

func (u *serverUpload) restoreHash(off int64, state []byte) error {
	h := sha256.New()
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(state); err != nil {
		return fmt.Errorf("bad hash state in checkpoint: %w", err)
	}
	u.hasher, u.hashFrom, u.hashed = h, off, off
	return nil
}

func readStagingState(dir string) (stagingState, error) {
	var st stagingState
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		return st, err
	}
	err = json.Unmarshal(b, &st)
	return st, err
}

func (u *serverUpload) saveState() error {
	u.state.Durable = u.state.Durable[:0]
	for _, r := range u.durable.Ranges() {
		u.state.Durable = append(u.state.Durable, Range{Off: r.Off, Len: r.Len})
	}
	u.state.Updated = time.Now().UnixNano()
	b, err := json.Marshal(u.state)
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(u.dir, "state.json"), b, 0o600)
}

// discardStaging removes a staging area and aborts its store upload.
func discardStaging(ctx context.Context, store cos.Store, dir string, st stagingState) {
	if st.UploadID != "" {
		if up, err := store.ResumeUpload(ctx, st.Bucket, st.Key, st.UploadID); err == nil {
			up.Abort(ctx)
		}
	}
	os.RemoveAll(dir)
}

// removeStagingLater removes a finished upload's staging area without
// making the client wait while a large file's blocks are freed: the area
// is renamed aside at once (so a new upload of the same key starts
// afresh) and removed in the background.
func (s *Server) removeStagingLater(dir string) {
	gone := fmt.Sprintf("%s.done-%d", dir, time.Now().UnixNano())
	if err := os.Rename(dir, gone); err != nil {
		os.RemoveAll(dir)
		return
	}
	s.removing.Add(1)
	go func() {
		defer s.removing.Done()
		os.RemoveAll(gone)
	}()
}

// sweepStaging removes staging areas untouched since cutoff.
func (s *Server) sweepStaging(cutoff time.Time) int {
	entries, err := os.ReadDir(s.stagingDir)
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range entries {
		dir := filepath.Join(s.stagingDir, e.Name())
		st, err := readStagingState(dir)
		if err == nil && time.Unix(0, st.Updated).After(cutoff) {
			continue
		}
		if err != nil {
			if fi, serr := os.Stat(dir); serr == nil && fi.ModTime().After(cutoff) {
				continue
			}
		}
		s.mu.Lock()
		live := s.uploads[e.Name()] != nil
		s.mu.Unlock()
		if live {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		discardStaging(ctx, s.store, dir, st)
		cancel()
		n++
	}
	return n
}

// Sample checks for resume: sparse compares sampleCount spans of
// sampleLen spread over the data, full compares everything.
const (
	sampleCount = 16
	sampleLen   = 64 << 10
)

// sampleRanges picks spans spread evenly over the given ranges.
func sampleRanges(have []ranges.Range) []Range {
	var total int64
	for _, r := range have {
		total += r.Len
	}
	if total == 0 {
		return nil
	}
	var out []Range
	step := max(total/sampleCount, 1)
	var pos int64 // position within the concatenation of have
	for _, r := range have {
		for p := max(pos, 0); p < pos+r.Len; {
			off := r.Off + (p - pos)
			n := min(int64(sampleLen), r.End()-off)
			out = append(out, Range{Off: off, Len: n})
			p += max(step, n)
			if len(out) >= sampleCount+len(have) {
				return out
			}
		}
		pos += r.Len
	}
	return out
}

// localSamples hashes samples (sparse) or all (full) of the staged bytes
// this server holds in its data file.
func (u *serverUpload) localSamples(policy ResumePolicy) ([]sampleSum, error) {
	local := u.durable.Clone()
	local.Remove(0, u.hashFrom) // below a checkpoint the bytes are only in the store
	rs := local.Ranges()
	var pick []Range
	if policy == ResumeFull {
		for _, r := range rs {
			pick = append(pick, Range{Off: r.Off, Len: r.Len})
		}
	} else {
		pick = sampleRanges(rs)
	}
	var out []sampleSum
	for _, r := range pick {
		h := sha256.New()
		if _, err := io.Copy(h, io.NewSectionReader(u.file, r.Off, r.Len)); err != nil {
			return nil, err
		}
		out = append(out, sampleSum{Off: r.Off, Len: r.Len, SHA256: h.Sum(nil)})
	}
	return out, nil
}

// storeSamples hashes samples of a stored object.
func storeSamples(ctx context.Context, store cos.Store, bucket, key string, size int64) ([]sampleSum, error) {
	var out []sampleSum
	for _, r := range sampleRanges([]ranges.Range{{Off: 0, Len: size}}) {
		sum, err := hashStoreRange(ctx, store, bucket, key, r.Off, r.Len)
		if err != nil {
			return nil, err
		}
		out = append(out, sampleSum{Off: r.Off, Len: r.Len, SHA256: sum})
	}
	return out, nil
}

// hashStoreRange returns the SHA-256 of bytes [off, off+n) of an object.
func hashStoreRange(ctx context.Context, store cos.Store, bucket, key string, off, n int64) ([]byte, error) {
	rc, err := store.Read(ctx, bucket, key, cos.ReadOptions{Offset: off, Length: n})
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	h := sha256.New()
	got, err := io.Copy(h, rc)
	if err != nil {
		return nil, err
	}
	if got != n {
		return nil, &cos.Error{Op: "read", Bucket: bucket, Key: key, Err: fmt.Errorf("%w: object shorter than expected", cos.ErrConflict)}
	}
	return h.Sum(nil), nil
}

// stop ends the upload's loop; the staged bytes stay for a later resume
// unless err is a cancellation by the client.
func (u *serverUpload) stop(err error) {
	u.stopOnce.Do(func() {
		u.mu.Lock()
		if u.err == nil {
			u.err = err
		}
		u.mu.Unlock()
		close(u.stopCh)
	})
}

// loop makes received bytes durable, hashes them, and sends parts to the
// store, until everything is in or the upload stops.
func (u *serverUpload) loop() {
	defer func() {
		close(u.loopEnd) // a part still streaming gives up
		u.partWG.Wait()
		u.recv.close()
		u.recv.wait() // no write into u.file after it is closed below
		if sess, err := u.c.session(); err == nil {
			sess.removeRecv(u.stream)
		}
		// The upload stays in the connection's table for "commit" to find
		// (its outcome, success or error); commit and cancel remove it.
		u.mu.Lock()
		err := u.err
		u.mu.Unlock()
		if errors.Is(err, ErrCancelled) && !errors.Is(err, errTakenOver) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			discardStaging(ctx, u.c.srv.store, u.dir, u.state)
			cancel()
		}
		u.file.Close()
		u.c.srv.mu.Lock()
		if u.c.srv.uploads[u.slot] == u {
			delete(u.c.srv.uploads, u.slot)
		}
		u.c.srv.mu.Unlock()
		close(u.done)
	}()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	recvDone := u.recv.done()
	for {
		finished := false
		select {
		case <-u.stopCh:
			u.step(context.Background(), false)
			return
		case <-tick.C:
		case <-u.kick:
		case <-recvDone:
			recvDone = nil
			finished = true
			u.log.Debug("every byte received")
		}
		if recvDone == nil {
			finished = true
		}
		complete, err := u.step(context.Background(), finished)
		if err != nil {
			u.mu.Lock()
			if u.err == nil {
				u.err = err
			}
			u.mu.Unlock()
			u.c.event("failed", failedEvent{Stream: u.stream, Err: toWireErr(err)})
			u.log.Warn("upload failed", "err", err)
			return
		}
		if complete {
			return
		}
	}
}

var errTakenOver = errors.New("taken over")

// step runs one round of the loop; complete reports that every byte is
// durable, hashed and (for multipart) in the store.
func (u *serverUpload) step(ctx context.Context, received bool) (complete bool, err error) {
	if err := u.recv.failed(); err != nil {
		return false, fmt.Errorf("writing staged data: %w", err)
	}
	// Durability first: fsync, then record.
	w := u.recv.writtenSet()
	grew := false
	for _, r := range w.Ranges() {
		if !u.durable.Contains(r.Off, r.Len) {
			grew = true
			break
		}
	}
	if grew {
		if err := datasync(u.file); err != nil {
			return false, fmt.Errorf("syncing staged data: %w", err)
		}
		u.mu.Lock()
		for _, r := range w.Ranges() {
			u.durable.Add(r.Off, r.Len)
		}
		u.mu.Unlock()
		if err := u.saveState(); err != nil {
			return false, fmt.Errorf("recording staged data: %w", err)
		}
	}
	if u.needSHA {
		if err := u.applySHA(ctx); err != nil {
			return false, err
		}
		if u.deferred {
			// No store upload to send parts to yet; hashing waits too,
			// since it snapshots at part ends.
			return false, nil
		}
	}
	// Hash the contiguous prefix, stopping at part ends to snapshot.
	partSize := int64(0)
	if u.up != nil {
		partSize = u.up.PartSize()
	}
	buf := make([]byte, 1<<20)
	for {
		avail := u.durable.Prefix(u.hashed)
		if avail <= 0 {
			break
		}
		n := min(avail, int64(len(buf)))
		if partSize > 0 {
			n = min(n, partSize-u.hashed%partSize)
		}
		if _, err := u.file.ReadAt(buf[:n], u.hashed); err != nil {
			return false, fmt.Errorf("reading staged data: %w", err)
		}
		u.hasher.Write(buf[:n])
		u.hashed += n
		if partSize > 0 && (u.hashed%partSize == 0 || u.hashed == u.size) {
			st, _ := u.hasher.(encoding.BinaryMarshaler).MarshalBinary()
			u.mu.Lock()
			u.snapshots[u.hashed] = st
			u.mu.Unlock()
		}
	}
	if u.up != nil {
		u.startParts(ctx)
		u.checkpoint()
	}
	u.mu.Lock()
	perr := u.err
	done := received && u.hashed == u.size && !u.needSHA && (u.up == nil || len(u.parts) == u.up.NumParts())
	u.mu.Unlock()
	if perr != nil && !errors.Is(perr, ErrCancelled) && !errors.Is(perr, ErrUnreachable) {
		return false, perr
	}
	if done {
		u.sha = hex.EncodeToString(u.hasher.Sum(nil))
	}
	return done, nil
}

// applySHA puts the client's SHA-256, once it came, into the store
// upload's metadata: by creating the upload, or by setting it.
func (u *serverUpload) applySHA(ctx context.Context) error {
	u.mu.Lock()
	sum := u.gotSHA
	u.mu.Unlock()
	if sum == "" {
		return nil
	}
	meta := u.meta
	meta.SHA256 = sum
	store := u.c.srv.store
	if u.deferred {
		up, err := store.CreateUpload(ctx, u.bucket, u.key, cos.UploadOptions{Size: u.size, Meta: meta})
		if err != nil {
			return err
		}
		u.up, u.deferred = up, false
		u.state.UploadID, u.state.PartSize = up.ID(), up.PartSize()
	} else if err := store.(cos.LateMeta).SetUploadMeta(ctx, u.up, meta); err != nil {
		return err
	}
	u.meta, u.needSHA = meta, false
	u.state.Meta.SHA256 = sum
	return u.saveState()
}

// offerSHA hands the upload the client's SHA-256 (the first one counts;
// commit checks it against the bytes).
func (u *serverUpload) offerSHA(sum string) {
	u.mu.Lock()
	if u.gotSHA == "" {
		u.gotSHA = sum
	}
	u.mu.Unlock()
	select {
	case u.kick <- struct{}{}:
	default:
	}
}

// uploadSHA answers "upload_sha". An upload that has finished or gone has
// no use for the checksum (commit carries it too).
func (c *serverConn) uploadSHA(stream uint32, sum string) error {
	if !validSHA256(sum) {
		return fmt.Errorf("%w: upload_sha: %q is not a SHA-256 in hex", ErrProtocol, cos.Printable(sum))
	}
	c.mu.Lock()
	u := c.uploads[stream]
	c.mu.Unlock()
	if u != nil {
		u.offerSHA(sum)
	}
	return nil
}

func validSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && s == strings.ToLower(s)
}

// startParts sends finished parts to the store, a few at a time, and
// one part that is still arriving: its request reads the bytes as the
// receiver writes them, so the last part is in the store moments after
// its last byte instead of one part's store time later.
func (u *serverUpload) startParts(ctx context.Context) {
	ps := u.up.PartSize()
	limit := u.c.srv.cfg.PartConcurrency
	u.mu.Lock()
	defer u.mu.Unlock()
	for n := 1; n <= u.up.NumParts() && len(u.partBusy) < limit; n++ {
		if u.parts[n] || u.partBusy[n] {
			continue
		}
		off := int64(n-1) * ps
		size := min(ps, u.size-off)
		if off < u.hashFrom {
			continue
		}
		if u.durable.Contains(off, size) {
			u.sendPart(ctx, n, off, size, false)
			continue
		}
		if u.streaming != 0 || u.local != nil || u.noStream[n] {
			continue
		}
		if arrived, _, _ := u.recv.writtenRun(off); arrived > 0 {
			u.streaming = n
			u.sendPart(ctx, n, off, size, true)
		}
	}
}

// sendPart stores part n in the background (u.mu held): whole from the
// staged file, with retries, or streamed as it arrives. A streamed part
// that fails is sent whole once all its bytes are durable.
func (u *serverUpload) sendPart(ctx context.Context, n int, off, size int64, stream bool) {
	u.partBusy[n] = true
	u.partWG.Add(1)
	go func() {
		defer u.partWG.Done()
		start := time.Now()
		var err error
		if stream {
			_, err = u.up.WritePart(ctx, n, &partStream{u: u, off: off, end: off + size, size: size})
		} else {
			err = u.writePart(ctx, n, off, size)
		}
		u.log.Debug("part stored", "part", n, "size", size, "streamed", stream, "took", time.Since(start), "err", err)
		u.mu.Lock()
		delete(u.partBusy, n)
		switch {
		case stream:
			u.streaming = 0
			if err == nil {
				u.parts[n] = true
			} else {
				u.noStream[n] = true
			}
		case err == nil:
			u.parts[n] = true
		case u.err == nil:
			u.err = fmt.Errorf("storing part %d: %w", n, err)
		}
		u.mu.Unlock()
		if stream && err != nil && !errors.Is(err, ErrCancelled) {
			u.log.Info("streaming a part to the store failed; it goes whole once received", "part", n, "err", err)
		}
		select {
		case u.kick <- struct{}{}:
		default:
		}
	}()
}

// writePart stores part n from the staged file, retrying what may pass.
func (u *serverUpload) writePart(ctx context.Context, n int, off, size int64) error {
	var err error
	for attempt := 0; attempt < 4; attempt++ {
		if attempt > 0 {
			select {
			case <-time.After(time.Duration(1<<attempt) * 500 * time.Millisecond):
			case <-u.stopCh:
				return ErrCancelled
			}
		}
		if u.local != nil {
			_, err = u.local.CommitPart(ctx, n)
		} else {
			_, err = u.up.WritePart(ctx, n, io.NewSectionReader(u.file, off, size))
		}
		if err == nil || errors.Is(err, cos.ErrPermission) || errors.Is(err, cos.ErrNotFound) {
			return err
		}
		u.log.Info("part upload failed; retrying", "part", n, "err", err)
	}
	return err
}

// partStallTimeout: a streamed part whose next bytes take longer than
// this to arrive gives up (and is sent whole later), so that no store
// request hangs on a client that went away.
var partStallTimeout = 10 * time.Second

// errPartStalled ends a streamed part that waited partStallTimeout.
var errPartStalled = errors.New("no bytes arrived for the part in time")

// partStream reads [off, end) of the staged file as the receiver writes
// it, waiting for bytes not yet there.
type partStream struct {
	u         *serverUpload
	off, end  int64
	size      int64
	stallWait *time.Timer
}

// Size tells the store the part's length before it is all here.
func (p *partStream) Size() int64 { return p.size }

func (p *partStream) Read(b []byte) (int, error) {
	if p.off >= p.end {
		return 0, io.EOF
	}
	waiting := false
	for {
		avail, changed, err := p.u.recv.writtenRun(p.off)
		if err != nil {
			return 0, fmt.Errorf("writing staged data: %w", err)
		}
		if avail > 0 {
			n := int(min(avail, int64(len(b)), p.end-p.off))
			k, err := p.u.file.ReadAt(b[:n], p.off)
			p.off += int64(k)
			if err == io.EOF && k == n {
				err = nil
			}
			return k, err
		}
		if !waiting { // the stall clock runs from the first wait at p.off
			waiting = true
			if p.stallWait == nil {
				p.stallWait = time.NewTimer(partStallTimeout)
			} else {
				p.stallWait.Reset(partStallTimeout)
			}
			defer p.stallWait.Stop()
		}
		select {
		case <-changed:
		case <-p.u.loopEnd:
			return 0, ErrCancelled
		case <-p.u.stopCh:
			return 0, ErrCancelled
		case <-p.stallWait.C:
			return 0, errPartStalled
		}
	}
}

// checkpoint tells the client how far the store holds the upload.
func (u *serverUpload) checkpoint() {
	ps := u.up.PartSize()
	u.mu.Lock()
	end := u.hashFrom
	for n := int(u.hashFrom/ps) + 1; n <= u.up.NumParts() && u.parts[n]; n++ {
		end = min(int64(n)*ps, u.size)
	}
	if end <= u.checkpt {
		u.mu.Unlock()
		return
	}
	snap := u.snapshots[end]
	if snap == nil {
		u.mu.Unlock()
		return
	}
	for k := range u.snapshots {
		if k < end {
			delete(u.snapshots, k)
		}
	}
	u.checkpt = end
	u.mu.Unlock()
	b, _ := json.Marshal(resumeState{
		Bucket: u.bucket, Key: u.key, Size: u.size, Mtime: u.mtime,
		UploadID: u.up.ID(), PartSize: ps, Offset: end, Hash: snap,
	})
	u.c.event("checkpoint", checkpointEvent{Stream: u.stream, State: b})
}

// commit answers "commit": it waits for the upload to be complete,
// checks the client's SHA-256, and makes the object appear.
func (c *serverConn) commit(ctx context.Context, req commitReq) (any, error) {
	c.mu.Lock()
	u := c.uploads[req.Stream]
	c.mu.Unlock()
	if u == nil {
		return nil, fmt.Errorf("%w: no upload on stream %d", ErrProtocol, req.Stream)
	}
	if validSHA256(req.SHA256) {
		u.offerSHA(req.SHA256) // if upload_sha has not come (or was lost)
	}
	select {
	case <-u.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	c.mu.Lock()
	if c.uploads[req.Stream] == u {
		delete(c.uploads, req.Stream)
	}
	c.mu.Unlock()
	u.mu.Lock()
	err := u.err
	u.mu.Unlock()
	if err != nil {
		return nil, &cos.Error{Op: "upload", Bucket: u.bucket, Key: u.key, Err: err}
	}
	store := c.srv.store
	if req.SHA256 != u.sha {
		discardStaging(ctx, store, u.dir, u.state)
		return nil, &cos.Error{Op: "upload", Bucket: u.bucket, Key: u.key, Err: fmt.Errorf(
			"%w: the server received bytes with SHA-256 %s, the client sent %s; the staged copy was discarded, send it again",
			ErrChecksum, u.sha, req.SHA256)}
	}
	if u.up != nil && u.meta.SHA256 != "" && u.meta.SHA256 != u.sha {
		discardStaging(ctx, store, u.dir, u.state)
		return nil, &cos.Error{Op: "upload", Bucket: u.bucket, Key: u.key, Err: fmt.Errorf(
			"%w: the client announced SHA-256 %s before sending, but the bytes have %s; the staged copy was discarded, send it again",
			ErrChecksum, u.meta.SHA256, u.sha)}
	}
	var o cos.ObjectInfo
	if u.up == nil {
		f, err := os.Open(filepath.Join(u.dir, "data"))
		if err != nil {
			return nil, err
		}
		meta := u.meta
		meta.SHA256 = u.sha
		o, err = store.Put(ctx, u.bucket, u.key, f, u.size, meta)
		f.Close()
		if err != nil {
			return nil, err
		}
	} else {
		start := time.Now()
		o, err = u.up.Complete(ctx)
		if err != nil {
			return nil, err
		}
		u.log.Debug("store upload completed", "took", time.Since(start))
	}
	c.srv.removeStagingLater(u.dir)
	u.log.Info("upload committed", "size", u.size, "sha256", u.sha)
	return toObjectJSON(o), nil
}

// sortedRanges returns rs sorted by offset.
func sortedRanges(rs []Range) []Range {
	out := append([]Range(nil), rs...)
	sort.Slice(out, func(i, j int) bool { return out[i].Off < out[j].Off })
	return out
}
