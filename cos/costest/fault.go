package costest

import (
	"context"
	"io"
	"sync"
	"time"

	"github.com/chute/chute/cos"
)

// Operation names FaultStore uses, one per Store and Upload method.
const (
	OpCreateBucket      = "create-bucket"
	OpBucketExists      = "bucket-exists"
	OpStat              = "stat"
	OpRead              = "read"
	OpReadBody          = "read-body" // a Read of the body a successful Read returned
	OpPut               = "put"
	OpList              = "list"
	OpDelete            = "delete"
	OpCopy              = "copy"
	OpCreateUpload      = "create-upload"
	OpResumeUpload      = "resume-upload"
	OpAbortStaleUploads = "abort-stale-uploads"
	OpWritePart         = "write-part"
	OpComplete          = "complete"
	OpAbort             = "abort"
)

// Fault decides the fate of one call: return an error to fail it, nil to
// let it through. It may also sleep, to slow the store down.
type Fault func(op, bucket, key string) error

// FaultStore wraps a Store and fails or delays the calls its rules pick:
// a decorator for testing how callers (the engine, the mount) cope with a
// store that goes away, refuses, or crawls. It is safe for concurrent use.
type FaultStore struct {
	cos.Store

	mu    sync.Mutex
	rules []*rule
	calls map[string]int
}

type rule struct {
	op     string // "" matches every operation
	remain int    // calls left to hit; -1 means forever
	fault  Fault
}

// NewFaultStore wraps s; with no rules it passes every call through.
func NewFaultStore(s cos.Store) *FaultStore {
	return &FaultStore{Store: s, calls: map[string]int{}}
}

// FailNext fails the next n calls of op ("" for any) with err, wrapped in a
// *cos.Error like the store's own errors.
func (f *FaultStore) FailNext(op string, n int, err error) {
	f.add(op, n, func(o, bucket, key string) error {
		return &cos.Error{Op: o, Bucket: bucket, Key: key, Err: err}
	})
}

// FailAlways fails every call of op ("" for any) with err until Reset.
func (f *FaultStore) FailAlways(op string, err error) { f.FailNext(op, -1, err) }

// Delay sleeps d before every call of op ("" for any) until Reset.
func (f *FaultStore) Delay(op string, d time.Duration) {
	f.add(op, -1, func(string, string, string) error { time.Sleep(d); return nil })
}

// Inject adds a rule for the next n calls of op (n -1: until Reset).
func (f *FaultStore) Inject(op string, n int, fault Fault) { f.add(op, n, fault) }

func (f *FaultStore) add(op string, n int, fault Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = append(f.rules, &rule{op: op, remain: n, fault: fault})
}

// Reset removes every rule and zeroes the call counts.
func (f *FaultStore) Reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = nil
	f.calls = map[string]int{}
}

// Calls returns how many calls of op were made (faulted or not).
func (f *FaultStore) Calls(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

// check counts a call and runs the first rule that matches it.
func (f *FaultStore) check(op, bucket, key string) error {
	f.mu.Lock()
	f.calls[op]++
	var fault Fault
	for i, r := range f.rules {
		if r.op != "" && r.op != op {
			continue
		}
		fault = r.fault
		if r.remain > 0 {
			r.remain--
			if r.remain == 0 {
				f.rules = append(f.rules[:i:i], f.rules[i+1:]...)
			}
		}
		break
	}
	f.mu.Unlock()
	if fault == nil {
		return nil
	}
	return fault(op, bucket, key)
}

func (f *FaultStore) CreateBucket(ctx context.Context, bucket string) error {
	if err := f.check(OpCreateBucket, bucket, ""); err != nil {
		return err
	}
	return f.Store.CreateBucket(ctx, bucket)
}

func (f *FaultStore) BucketExists(ctx context.Context, bucket string) (bool, error) {
	if err := f.check(OpBucketExists, bucket, ""); err != nil {
		return false, err
	}
	return f.Store.BucketExists(ctx, bucket)
}

func (f *FaultStore) Stat(ctx context.Context, bucket, key string) (cos.ObjectInfo, error) {
	if err := f.check(OpStat, bucket, key); err != nil {
		return cos.ObjectInfo{}, err
	}
	return f.Store.Stat(ctx, bucket, key)
}

func (f *FaultStore) Read(ctx context.Context, bucket, key string, opt cos.ReadOptions) (io.ReadCloser, error) {
	if err := f.check(OpRead, bucket, key); err != nil {
		return nil, err
	}
	rc, err := f.Store.Read(ctx, bucket, key, opt)
	if err != nil {
		return nil, err
	}
	return &faultBody{ReadCloser: rc, f: f, bucket: bucket, key: key}, nil
}

// faultBody lets rules on OpReadBody cut a body mid-way.
type faultBody struct {
	io.ReadCloser
	f           *FaultStore
	bucket, key string
}

func (b *faultBody) Read(p []byte) (int, error) {
	if err := b.f.check(OpReadBody, b.bucket, b.key); err != nil {
		return 0, err
	}
	return b.ReadCloser.Read(p)
}

func (f *FaultStore) Put(ctx context.Context, bucket, key string, r io.Reader, size int64, meta cos.Meta) (cos.ObjectInfo, error) {
	if err := f.check(OpPut, bucket, key); err != nil {
		return cos.ObjectInfo{}, err
	}
	return f.Store.Put(ctx, bucket, key, r, size, meta)
}

func (f *FaultStore) List(ctx context.Context, bucket string, opt cos.ListOptions) (cos.ListPage, error) {
	if err := f.check(OpList, bucket, opt.Prefix); err != nil {
		return cos.ListPage{}, err
	}
	return f.Store.List(ctx, bucket, opt)
}

func (f *FaultStore) Delete(ctx context.Context, bucket, key string) error {
	if err := f.check(OpDelete, bucket, key); err != nil {
		return err
	}
	return f.Store.Delete(ctx, bucket, key)
}

func (f *FaultStore) Copy(ctx context.Context, bucket, src, dst string, meta *cos.Meta) (cos.ObjectInfo, error) {
	if err := f.check(OpCopy, bucket, dst); err != nil {
		return cos.ObjectInfo{}, err
	}
	return f.Store.Copy(ctx, bucket, src, dst, meta)
}

func (f *FaultStore) CreateUpload(ctx context.Context, bucket, key string, opt cos.UploadOptions) (cos.Upload, error) {
	if err := f.check(OpCreateUpload, bucket, key); err != nil {
		return nil, err
	}
	u, err := f.Store.CreateUpload(ctx, bucket, key, opt)
	if err != nil {
		return nil, err
	}
	return &faultUpload{Upload: u, f: f}, nil
}

func (f *FaultStore) ResumeUpload(ctx context.Context, bucket, key, uploadID string) (cos.Upload, error) {
	if err := f.check(OpResumeUpload, bucket, key); err != nil {
		return nil, err
	}
	u, err := f.Store.ResumeUpload(ctx, bucket, key, uploadID)
	if err != nil {
		return nil, err
	}
	return &faultUpload{Upload: u, f: f}, nil
}

func (f *FaultStore) AbortStaleUploads(ctx context.Context, bucket string, olderThan time.Time) (int, error) {
	if err := f.check(OpAbortStaleUploads, bucket, ""); err != nil {
		return 0, err
	}
	return f.Store.AbortStaleUploads(ctx, bucket, olderThan)
}

// faultUpload applies the store's rules to an upload's calls.
type faultUpload struct {
	cos.Upload
	f *FaultStore
}

func (u *faultUpload) WritePart(ctx context.Context, n int, r io.Reader) (cos.Part, error) {
	if err := u.f.check(OpWritePart, u.Bucket(), u.Key()); err != nil {
		return cos.Part{}, err
	}
	return u.Upload.WritePart(ctx, n, r)
}

func (u *faultUpload) Complete(ctx context.Context) (cos.ObjectInfo, error) {
	if err := u.f.check(OpComplete, u.Bucket(), u.Key()); err != nil {
		return cos.ObjectInfo{}, err
	}
	return u.Upload.Complete(ctx)
}

func (u *faultUpload) Abort(ctx context.Context) error {
	if err := u.f.check(OpAbort, u.Bucket(), u.Key()); err != nil {
		return err
	}
	return u.Upload.Abort(ctx)
}

var (
	_ cos.Store  = (*FaultStore)(nil)
	_ cos.Upload = (*faultUpload)(nil)
)
