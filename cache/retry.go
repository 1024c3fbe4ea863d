package cache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/chute/chute/cos"
	"github.com/chute/chute/engine"
)

// retrying wraps a Remote so that calls failing with engine.ErrUnreachable
// (or cos.ErrUnavailable) are tried again, with backoff, until ioTimeout has
// passed without progress. Then the last error is returned, still wrapping
// engine.ErrUnreachable, so that the file system answers EIO. No call waits
// longer than ioTimeout for an answer: each metadata attempt has that
// deadline, and a download whose data stops flowing for ioTimeout is
// cancelled. Uploads report progress through checkpoints only, so an upload
// attempt has no deadline of its own; the engine reports a lost connection.
//
// A retried upload continues from the latest checkpoint it saw; a retried
// download skips the ranges already delivered.
type retrying struct {
	r          Remote
	timeout    time.Duration
	log        *slog.Logger
	minBackoff time.Duration
	maxBackoff time.Duration
}

var _ Remote = (*retrying)(nil)

func newRetrying(r Remote, timeout time.Duration, log *slog.Logger) *retrying {
	return &retrying{r: r, timeout: timeout, log: log, minBackoff: 20 * time.Millisecond, maxBackoff: 2 * time.Second}
}

// retryable reports whether err is worth another try.
func retryable(err error) bool {
	return errors.Is(err, engine.ErrUnreachable) || errors.Is(err, cos.ErrUnavailable)
}

// progress is the time of the last sign of life of a call, shared between
// its attempts.
type progress struct {
	mu   sync.Mutex
	last time.Time
}

func (p *progress) mark() {
	p.mu.Lock()
	p.last = time.Now()
	p.mu.Unlock()
}

func (p *progress) since() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return time.Since(p.last)
}

// do runs attempt until it succeeds, fails for good, or ioTimeout passes
// without progress. attempt gets a context that it must honour.
func (rt *retrying) do(ctx context.Context, op, key string, p *progress, attempt func(ctx context.Context) error) error {
	backoff := rt.minBackoff
	for n := 1; ; n++ {
		err := attempt(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		if !retryable(err) {
			return err
		}
		if p.since()+backoff > rt.timeout {
			return fmt.Errorf("%s %q: gave up after %d attempts and %v without progress: %w", op, key, n, rt.timeout, err)
		}
		rt.log.Debug("retrying", "op", op, "key", key, "attempt", n, "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		backoff = min(backoff*2, rt.maxBackoff)
	}
}

// small runs a metadata call, each attempt bounded by ioTimeout.
func (rt *retrying) small(ctx context.Context, op, key string, call func(ctx context.Context) error) error {
	p := &progress{last: time.Now()}
	return rt.do(ctx, op, key, p, func(ctx context.Context) error {
		actx, cancel := context.WithTimeout(ctx, rt.timeout)
		defer cancel()
		err := call(actx)
		if err != nil && ctx.Err() == nil && actx.Err() != nil {
			return fmt.Errorf("%s %q: no answer within %v: %w", op, key, rt.timeout, engine.ErrUnreachable)
		}
		return err
	})
}

func (rt *retrying) Stat(ctx context.Context, bucket, key string) (info cos.ObjectInfo, err error) {
	err = rt.small(ctx, "stat", key, func(ctx context.Context) error {
		info, err = rt.r.Stat(ctx, bucket, key)
		return err
	})
	return info, err
}

func (rt *retrying) List(ctx context.Context, bucket string, opt cos.ListOptions) (page cos.ListPage, err error) {
	err = rt.small(ctx, "list", opt.Prefix, func(ctx context.Context) error {
		page, err = rt.r.List(ctx, bucket, opt)
		return err
	})
	return page, err
}

func (rt *retrying) Put(ctx context.Context, bucket, key string, data []byte, meta cos.Meta) (info cos.ObjectInfo, err error) {
	err = rt.small(ctx, "put", key, func(ctx context.Context) error {
		info, err = rt.r.Put(ctx, bucket, key, data, meta)
		return err
	})
	return info, err
}

func (rt *retrying) Delete(ctx context.Context, bucket, key string) error {
	return rt.small(ctx, "delete", key, func(ctx context.Context) error {
		return rt.r.Delete(ctx, bucket, key)
	})
}

func (rt *retrying) Copy(ctx context.Context, bucket, src, dst string, meta *cos.Meta) (info cos.ObjectInfo, err error) {
	err = rt.small(ctx, "copy", src, func(ctx context.Context) error {
		info, err = rt.r.Copy(ctx, bucket, src, dst, meta)
		return err
	})
	return info, err
}

func (rt *retrying) Upload(ctx context.Context, req engine.UploadRequest) (res engine.Result, err error) {
	p := &progress{last: time.Now()}
	var mu sync.Mutex
	state := req.State
	user := req.OnCheckpoint
	req.OnCheckpoint = func(s []byte) {
		p.mark()
		mu.Lock()
		state = append([]byte(nil), s...)
		mu.Unlock()
		if user != nil {
			user(s)
		}
	}
	err = rt.do(ctx, "upload", req.Key, p, func(ctx context.Context) error {
		mu.Lock()
		req.State = state
		mu.Unlock()
		res, err = rt.r.Upload(ctx, req)
		return err
	})
	return res, err
}

func (rt *retrying) Download(ctx context.Context, req engine.DownloadRequest) (res engine.Result, err error) {
	p := &progress{last: time.Now()}
	var mu sync.Mutex
	var got ranges
	for _, h := range req.Have {
		got = got.add(h.Off, h.Len)
	}
	user := req.OnData
	var reset func()
	req.OnData = func(off, n int64) {
		p.mark()
		mu.Lock()
		got = got.add(off, n)
		r := reset
		mu.Unlock()
		if r != nil {
			r()
		}
		if user != nil {
			user(off, n)
		}
	}
	err = rt.do(ctx, "download", req.Key, p, func(ctx context.Context) error {
		actx, cancel := context.WithCancel(ctx)
		defer cancel()
		// The watchdog cancels an attempt whose data stops flowing.
		var stalled bool
		var smu sync.Mutex
		timer := time.AfterFunc(rt.timeout, func() {
			smu.Lock()
			stalled = true
			smu.Unlock()
			cancel()
		})
		defer timer.Stop()
		mu.Lock()
		reset = func() { timer.Reset(rt.timeout) }
		req.Have = append([]engine.Range(nil), got...)
		mu.Unlock()
		res, err = rt.r.Download(actx, req)
		smu.Lock()
		defer smu.Unlock()
		if err != nil && stalled && ctx.Err() == nil {
			return fmt.Errorf("download %q: no data for %v: %w", req.Key, rt.timeout, engine.ErrUnreachable)
		}
		return err
	})
	return res, err
}
