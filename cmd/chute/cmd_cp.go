package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"

	"github.com/chute/chute/cos"
	"github.com/chute/chute/engine"
)

type cpOptions struct {
	client    clientOptions
	recursive bool
	quiet     bool
	json      bool
	resume    string
	parallel  int
	retries   int
}

func init() {
	o := &cpOptions{}
	register(&command{
		Name:  "cp",
		Usage: "cp [flags] SOURCE... DEST   (one side local, the other chute://[user@]host[:port]/bucket[/key])",
		Summary: "copy files to or from a bucket over the fast UDP transfer protocol; " +
			"exit status 0 only when every object was committed and its SHA-256 verified",
		Flags: func(fs *pflag.FlagSet) {
			o.client.AddFlags(fs)
			fs.BoolVarP(&o.recursive, "recursive", "r", false, "copy folders and everything in them")
			fs.StringVarP(&o.resume, "resume", "k", "sparse", "what to trust of a partial or existing copy: none, attrs (size+mtime), sparse (plus sampled checksums), full (plus a whole checksum); Aspera's 0-3 work too")
			fs.IntVar(&o.parallel, "parallel", 4, "files in flight at once (they share one connection and one rate)")
			fs.IntVar(&o.retries, "retries", 3, "times to reconnect and resume after the connection drops")
			fs.BoolVarP(&o.quiet, "quiet", "q", false, "print nothing but errors")
			fs.BoolVar(&o.json, "json", false, "print one JSON object per line: progress, then a summary per object")
		},
		Run: func(ctx context.Context, env *Env, args []string) error { return runCp(ctx, env, o, args) },
	})
}

// job is one file to copy.
type job struct {
	up     bool
	local  string // file path
	bucket string
	key    string
	size   int64
	mtime  time.Time
	mode   os.FileMode
	marker bool // an empty folder: a "dir/" marker, or a local mkdir
	// info is the object as planning just found it (a download of one
	// named object): the first attempt uses it rather than ask again.
	info *cos.ObjectInfo
}

func (j job) name() string {
	if j.up {
		return j.bucket + "/" + j.key
	}
	return j.local
}

func runCp(ctx context.Context, env *Env, o *cpOptions, args []string) error {
	if len(args) < 2 {
		return usageError("cp needs a SOURCE and a DEST")
	}
	srcs, dst := args[:len(args)-1], args[len(args)-1]
	policy, err := engine.ParseResumePolicy(o.resume)
	if err != nil {
		return usageError("--resume: %v", err)
	}
	if o.parallel < 1 {
		return usageError("--parallel must be at least 1")
	}
	if _, err := o.client.rate(); err != nil {
		return err
	}
	var loc Location
	up := IsRemote(dst)
	for _, s := range srcs {
		if IsRemote(s) == up {
			if up {
				return usageError("both %s and %s are remote: copy between a local path and a chute:// location", s, dst)
			}
			return usageError("neither %s nor %s is a chute:// location", s, dst)
		}
	}
	if up {
		loc, err = ParseLocation(dst)
	} else {
		if len(srcs) > 1 {
			return usageError("download one chute:// location at a time")
		}
		loc, err = ParseLocation(srcs[0])
	}
	if err != nil {
		return usageError("%v", err)
	}
	// A download's first request is the stat (or list) that plans it: it
	// connects. An upload connects first, so that a server it cannot
	// reach fails the command before any file is tried.
	var c *engine.Client
	if up {
		c, err = o.client.dial(ctx, env, loc)
	} else {
		c, err = o.client.lazyClient(env, loc)
	}
	if err != nil {
		return err
	}
	defer c.Close()
	// Transfers start before the server has answered on its UDP port; if
	// it never does, stop the whole copy with that error rather than retry
	// every file into the same firewall.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		if err := c.DataReady(ctx); errors.Is(err, engine.ErrNoDataPath) {
			cancel(err)
		}
	}()

	var jobs []job
	if up {
		jobs, err = planUploads(env, o, srcs, loc)
	} else {
		jobs, err = planDownloads(ctx, c, o, loc, dst)
	}
	if err != nil {
		return err
	}
	home, err := chuteHome(env)
	if err != nil {
		return err
	}
	r := &cpRun{env: env, o: o, c: c, loc: loc, policy: policy, stateDir: filepath.Join(home, "transfers")}
	return r.run(ctx, jobs)
}

// planUploads expands local sources into upload jobs.
func planUploads(env *Env, o *cpOptions, srcs []string, loc Location) ([]job, error) {
	var jobs []job
	if len(srcs) > 1 && !loc.IsFolder() {
		return nil, usageError("copying several sources needs a folder destination ending in /")
	}
	for _, src := range srcs {
		fi, err := os.Stat(src)
		if err != nil {
			return nil, err
		}
		base := filepath.Base(filepath.Clean(src))
		if !fi.IsDir() {
			key := loc.Key
			if loc.IsFolder() {
				key += base
			}
			jobs = append(jobs, job{up: true, local: src, bucket: loc.Bucket, key: key, size: fi.Size(), mtime: fi.ModTime(), mode: fi.Mode()})
			continue
		}
		if !o.recursive {
			return nil, usageError("%s is a folder: add -r to copy it", src)
		}
		prefix := loc.Key
		if loc.IsFolder() {
			prefix += base + "/"
		} else {
			prefix += "/"
		}
		err = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(src, p)
			key := prefix + filepath.ToSlash(rel)
			if rel == "." {
				key = prefix
			}
			fi, err := os.Stat(p) // follow symbolic links
			if err != nil {
				fmt.Fprintf(env.Stderr, "chute cp: skipping %s: %v\n", p, err)
				return nil
			}
			switch {
			case fi.IsDir():
				if p != src && d.Type()&fs.ModeSymlink != 0 {
					fmt.Fprintf(env.Stderr, "chute cp: skipping %s: a link to a folder\n", p)
					return nil
				}
				entries, _ := os.ReadDir(p)
				if len(entries) == 0 {
					k := strings.TrimSuffix(key, "/") + "/"
					jobs = append(jobs, job{up: true, local: p, bucket: loc.Bucket, key: k, marker: true, mtime: fi.ModTime(), mode: fi.Mode()})
				}
			case fi.Mode().IsRegular():
				jobs = append(jobs, job{up: true, local: p, bucket: loc.Bucket, key: key, size: fi.Size(), mtime: fi.ModTime(), mode: fi.Mode()})
			default:
				fmt.Fprintf(env.Stderr, "chute cp: skipping %s: not a regular file\n", p)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return jobs, nil
}

// planDownloads expands a remote source into download jobs.
func planDownloads(ctx context.Context, c *engine.Client, o *cpOptions, loc Location, dst string) ([]job, error) {
	dstInfo, statErr := os.Stat(dst)
	dstIsDir := statErr == nil && dstInfo.IsDir()
	if !loc.IsFolder() {
		info, err := c.Stat(ctx, loc.Bucket, loc.Key)
		if err == nil {
			local := dst
			if dstIsDir || strings.HasSuffix(dst, "/") {
				local = filepath.Join(dst, path.Base(loc.Key))
			}
			return []job{{local: local, bucket: loc.Bucket, key: loc.Key, size: info.Size, mtime: info.ModTime(), mode: os.FileMode(info.Meta.Mode & 0o777), info: &info}}, nil
		}
		if !errors.Is(err, cos.ErrNotFound) {
			return nil, err
		}
		if !o.recursive {
			page, lerr := c.List(ctx, loc.Bucket, cos.ListOptions{Prefix: loc.Key + "/", MaxKeys: 1})
			if lerr == nil && len(page.Objects)+len(page.CommonPrefixes) > 0 {
				return nil, usageError("%s is a folder: add -r to copy it", loc)
			}
			return nil, fmt.Errorf("%s: no such object (%w)", loc, err)
		}
		loc.Key += "/" // a folder named without its slash
	}
	if !o.recursive {
		return nil, usageError("%s is a folder: add -r to copy it", loc)
	}
	root := dst
	if dstIsDir {
		name := path.Base(strings.TrimSuffix(loc.Key, "/"))
		if loc.Key == "" {
			name = loc.Bucket
		}
		root = filepath.Join(dst, name)
	}
	var jobs []job
	opt := cos.ListOptions{Prefix: loc.Key}
	for {
		page, err := c.List(ctx, loc.Bucket, opt)
		if err != nil {
			return nil, err
		}
		for _, obj := range page.Objects {
			rel := strings.TrimPrefix(obj.Key, loc.Key)
			if strings.Contains("/"+rel+"/", "/../") || strings.HasPrefix(rel, "/") {
				return nil, fmt.Errorf("refusing object key %q: it would land outside %s", obj.Key, root)
			}
			local := filepath.Join(root, filepath.FromSlash(rel))
			if strings.HasSuffix(obj.Key, "/") || rel == "" {
				jobs = append(jobs, job{local: local, bucket: loc.Bucket, key: obj.Key, marker: true})
				continue
			}
			jobs = append(jobs, job{local: local, bucket: loc.Bucket, key: obj.Key, size: obj.Size, mtime: obj.ModTime()})
		}
		if page.NextStartAfter == "" {
			break
		}
		opt.StartAfter = page.NextStartAfter
	}
	if len(jobs) == 0 {
		return nil, fmt.Errorf("nothing under %s", loc)
	}
	return jobs, nil
}

// cpRun carries one cp invocation.
type cpRun struct {
	env      *Env
	o        *cpOptions
	c        *engine.Client
	loc      Location
	policy   engine.ResumePolicy
	stateDir string

	mu        sync.Mutex
	doneBytes int64 // bytes of finished jobs
	doneFiles int
	failed    int
	permanent int // failures that running the command again cannot fix
	out       *json.Encoder
}

func (r *cpRun) run(ctx context.Context, jobs []job) error {
	var total int64
	for _, j := range jobs {
		total += j.size
	}
	r.out = json.NewEncoder(r.env.Stdout)
	start := time.Now()
	prog := newProgress(r, total, len(jobs))
	stopProg := prog.start(ctx)

	work := make(chan job)
	var wg sync.WaitGroup
	for i := 0; i < min(r.o.parallel, len(jobs)); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range work {
				res, err := r.retry(ctx, j)
				r.finish(j, res, err)
			}
		}()
	}
	for _, j := range jobs {
		if ctx.Err() != nil {
			break
		}
		work <- j
	}
	close(work)
	wg.Wait()
	stopProg()

	elapsed := time.Since(start)
	r.mu.Lock()
	failed, permanent, done, doneBytes := r.failed, r.permanent, r.doneFiles, r.doneBytes
	r.mu.Unlock()
	if r.o.json {
		r.emit(map[string]any{"type": "summary", "files": len(jobs), "completed": done, "failed": failed,
			"bytes": total, "bytes_done": doneBytes, "seconds": elapsed.Seconds()})
	} else if !r.o.quiet {
		if done == len(jobs) {
			fmt.Fprintf(r.env.Stderr, "%d of %d files copied, %s in %.1fs (%s)\n", done, len(jobs), humanBytes(total), elapsed.Seconds(),
				engine.FormatBitRate(float64(total)*8/max(elapsed.Seconds(), 1e-3)))
		} else {
			fmt.Fprintf(r.env.Stderr, "%d of %d files copied (%s of %s) in %.1fs\n", done, len(jobs), humanBytes(doneBytes), humanBytes(total), elapsed.Seconds())
		}
	}
	if cause := context.Cause(ctx); errors.Is(cause, engine.ErrNoDataPath) {
		return cause
	}
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted: %d of %d files copied; run the same command again to resume", done, len(jobs))
	}
	switch {
	case failed == 0:
		return nil
	case failed == permanent:
		return fmt.Errorf("%d of %d files failed (see the errors above)", failed, len(jobs))
	case permanent > 0:
		return fmt.Errorf("%d of %d files failed; run the same command again to resume the %d that were interrupted", failed, len(jobs), failed-permanent)
	}
	return fmt.Errorf("%d of %d files failed; run the same command again to resume", failed, len(jobs))
}

// permanentError reports whether running the same command again cannot
// help: the server refused the request itself, rather than the transfer
// being cut short.
func permanentError(err error) bool {
	for _, e := range []error{cos.ErrPermission, cos.ErrInvalidKey, cos.ErrInvalidBucket, cos.ErrNotFound,
		cos.ErrTooLarge, cos.ErrUnsupported, engine.ErrAuth, engine.ErrHostKeyChanged} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func (r *cpRun) emit(v any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.out.Encode(v)
}

// retry runs a job, reconnecting and resuming when the connection drops.
func (r *cpRun) retry(ctx context.Context, j job) (engine.Result, error) {
	var res engine.Result
	var err error
	for attempt := 0; ; attempt++ {
		if j.up {
			res, err = r.upload(ctx, j)
		} else {
			res, err = r.download(ctx, j)
		}
		if err == nil || !errors.Is(err, engine.ErrUnreachable) || errors.Is(err, engine.ErrNoDataPath) || attempt >= r.o.retries || ctx.Err() != nil {
			return res, err
		}
		j.info = nil // the object may have changed meanwhile: ask again
		wait := time.Duration(1<<attempt) * time.Second
		r.env.Logger.Warn("connection lost; resuming", "file", j.name(), "in", wait, "err", err)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return res, err
		}
	}
}

func (r *cpRun) finish(j job, res engine.Result, err error) {
	r.mu.Lock()
	if err != nil {
		r.failed++
		if permanentError(err) {
			r.permanent++
		}
	} else {
		r.doneFiles++
		r.doneBytes += j.size
	}
	r.mu.Unlock()
	if err != nil {
		if r.o.json {
			r.emit(map[string]any{"type": "error", "file": j.name(), "error": err.Error()})
		}
		fmt.Fprintf(r.env.Stderr, "chute cp: %v\n", err)
		return
	}
	if r.o.json {
		secs := res.Elapsed.Seconds()
		ev := map[string]any{
			"type": "done", "direction": map[bool]string{true: "upload", false: "download"}[j.up],
			"bucket": j.bucket, "key": j.key, "local": j.local, "bytes": j.size, "seconds": secs,
			"goodput_bps": res.Goodput(), "bytes_sent": res.Sent, "bytes_retransmitted": res.Retrans,
			"bytes_skipped": res.Skipped, "sha256": res.SHA256, "verified": res.Verified,
		}
		r.emit(ev)
	}
}

// stateFile is where an upload's latest checkpoint is kept between runs.
func (r *cpRun) stateFile(j job) string {
	h := sha256.Sum256([]byte(fmt.Sprintf("%s\x00%s\x00%s\x00%d\x00%d", r.loc.Addr(), j.bucket, j.key, j.size, j.mtime.UnixNano())))
	return filepath.Join(r.stateDir, hex.EncodeToString(h[:12])+".json")
}

func (r *cpRun) upload(ctx context.Context, j job) (engine.Result, error) {
	meta := cos.Meta{Mtime: j.mtime, Mode: uint32(j.mode.Perm()) | fileTypeBits(j.mode)}
	if j.marker {
		o, err := r.c.Put(ctx, j.bucket, j.key, nil, meta)
		return engine.Result{Object: o}, err
	}
	f, err := os.Open(j.local)
	if err != nil {
		return engine.Result{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return engine.Result{}, err
	}
	if fi.Size() != j.size || !fi.ModTime().Equal(j.mtime) {
		j.size, j.mtime = fi.Size(), fi.ModTime()
		meta.Mtime = j.mtime
	}
	sf := r.stateFile(j)
	var state []byte
	if b, err := os.ReadFile(sf); err == nil {
		state = b
	}
	var smu sync.Mutex
	res, err := r.c.Upload(ctx, engine.UploadRequest{
		Bucket: j.bucket, Key: j.key, Source: f, Size: j.size, Meta: meta, Resume: r.policy, State: state,
		// Not synced to disk: the engine reads the control channel's
		// next message (the commit's answer, say) only once this returns,
		// and an fsync on a busy disk takes 100 ms and more. A checkpoint
		// the machine lost on a crash costs a fresh upload, never data.
		OnCheckpoint: func(s []byte) {
			smu.Lock()
			defer smu.Unlock()
			os.MkdirAll(r.stateDir, 0o700)
			writeFileAtomic(sf, s, false)
		},
	})
	if err != nil {
		return res, err
	}
	smu.Lock()
	os.Remove(sf)
	smu.Unlock()
	return res, nil
}

// fileTypeBits returns st_mode's file-type bits for a regular file or a
// folder, as s3fs stores them.
func fileTypeBits(m os.FileMode) uint32 {
	if m.IsDir() {
		return 0o040000
	}
	return 0o100000
}

// writeFileAtomic replaces path with data through a temporary file and a
// rename, so a reader sees the old contents or the new, never a part;
// durable also syncs the data to disk before the rename.
func writeFileAtomic(path string, data []byte, durable bool) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if durable {
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// partialState records a download in progress beside its data, so a rerun
// fetches only what is missing.
type partialState struct {
	Bucket string         `json:"bucket"`
	Key    string         `json:"key"`
	Size   int64          `json:"size"`
	ETag   string         `json:"etag"`
	Mtime  int64          `json:"mtime_ns"`
	Have   []engine.Range `json:"have"`
}

func (r *cpRun) download(ctx context.Context, j job) (engine.Result, error) {
	if j.marker {
		return engine.Result{}, os.MkdirAll(j.local, 0o755)
	}
	if err := os.MkdirAll(filepath.Dir(j.local), 0o755); err != nil {
		return engine.Result{}, err
	}
	var info cos.ObjectInfo
	if j.info != nil {
		info = *j.info
	} else {
		var err error
		if info, err = r.c.Stat(ctx, j.bucket, j.key); err != nil {
			return engine.Result{}, err
		}
	}
	if res, ok := r.haveCopy(ctx, j, info); ok {
		return res, nil
	}
	partial := j.local + ".chute-partial"
	statePath := partial + ".json"
	have := r.resumePartial(ctx, j, info, partial, statePath)
	f, err := os.OpenFile(partial, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return engine.Result{}, err
	}
	defer f.Close()
	if len(have) == 0 {
		if err := f.Truncate(0); err != nil {
			return engine.Result{}, err
		}
	}
	if err := f.Truncate(info.Size); err != nil {
		return engine.Result{}, fmt.Errorf("making room for %s (%s): %w", j.local, humanBytes(info.Size), err)
	}
	tracker := newPartialTracker(f, partialState{Bucket: j.bucket, Key: j.key, Size: info.Size, ETag: info.ETag, Mtime: info.ModTime().UnixNano(), Have: have}, statePath)
	stop := tracker.run()
	res, err := r.c.Download(ctx, engine.DownloadRequest{
		Bucket: j.bucket, Key: j.key, Offset: 0, Length: -1, Dest: f, Have: have, Resume: r.policy,
		OnData: tracker.add,
	})
	sum, herr := stop(err == nil)
	if err != nil {
		return res, err
	}
	if herr != nil {
		return res, herr
	}
	want := res.SHA256
	if want == "" {
		sums, err := r.c.Sums(ctx, j.bucket, j.key, []engine.Range{{Off: 0, Len: info.Size}})
		if err != nil {
			return res, fmt.Errorf("asking the server for %s's checksum: %w", j.key, err)
		}
		want = hex.EncodeToString(sums[0])
	}
	if sum != want {
		os.Remove(partial)
		os.Remove(statePath)
		return res, fmt.Errorf("download %s: %w: the file holds SHA-256 %s, the server's object %s; the partial copy was removed, run the command again",
			j.key, engine.ErrChecksum, sum, want)
	}
	res.SHA256, res.Verified = sum, engine.VerifiedSHA256
	if err := f.Sync(); err != nil {
		return res, err
	}
	if m := info.Meta.Mode & 0o777; m != 0 {
		f.Chmod(os.FileMode(m))
	}
	f.Close()
	os.Chtimes(partial, time.Now(), info.ModTime())
	if err := os.Rename(partial, j.local); err != nil {
		return res, err
	}
	os.Remove(statePath)
	return res, nil
}

// haveCopy reports whether the destination already holds the object, as
// far as the resume policy trusts it: same size and modification time (a
// finished download is given the object's), plus sampled checksums
// (sparse) or the whole checksum (full). A rerun of an interrupted cp -r
// then skips the files it finished.
func (r *cpRun) haveCopy(ctx context.Context, j job, info cos.ObjectInfo) (engine.Result, bool) {
	if r.policy == engine.ResumeNone {
		return engine.Result{}, false
	}
	fi, err := os.Stat(j.local)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() != info.Size || !fi.ModTime().Equal(info.ModTime()) {
		return engine.Result{}, false
	}
	res := engine.Result{Object: info}
	res.Direction, res.Bucket, res.Key, res.State = engine.DirDownload, j.bucket, j.key, engine.StateCompleted
	res.Size, res.Done, res.Skipped = info.Size, info.Size, info.Size
	var check []engine.Range
	switch r.policy {
	case engine.ResumeSparse:
		// Both ends and a few places between.
		const n, sample = 8, 64 << 10
		for i := int64(0); i < n && info.Size > 0; i++ {
			off := (info.Size - min(sample, info.Size)) * i / (n - 1)
			if len(check) > 0 && off < check[len(check)-1].End() {
				continue
			}
			check = append(check, engine.Range{Off: off, Len: min(sample, info.Size-off)})
		}
	case engine.ResumeFull:
		check = []engine.Range{{Off: 0, Len: info.Size}}
	}
	if len(check) == 0 {
		return res, true
	}
	f, err := os.Open(j.local)
	if err != nil {
		return engine.Result{}, false
	}
	defer f.Close()
	sums, err := r.c.Sums(ctx, j.bucket, j.key, check)
	if err != nil {
		return engine.Result{}, false
	}
	for i, rg := range check {
		h := sha256.New()
		if _, err := io.Copy(h, io.NewSectionReader(f, rg.Off, rg.Len)); err != nil || !bytes.Equal(h.Sum(nil), sums[i]) {
			r.env.Logger.Info("existing file differs from the object; downloading it again", "file", j.local)
			return engine.Result{}, false
		}
		if r.policy == engine.ResumeFull {
			res.SHA256 = hex.EncodeToString(sums[i])
		}
	}
	return res, true
}

// resumePartial returns the ranges of an earlier partial download that can
// be trusted under the resume policy; nil to start over.
func (r *cpRun) resumePartial(ctx context.Context, j job, info cos.ObjectInfo, partial, statePath string) []engine.Range {
	if r.policy == engine.ResumeNone {
		return nil
	}
	b, err := os.ReadFile(statePath)
	if err != nil {
		return nil
	}
	var st partialState
	if json.Unmarshal(b, &st) != nil || st.Bucket != j.bucket || st.Key != j.key || st.Size != info.Size ||
		st.ETag != info.ETag || st.Mtime != info.ModTime().UnixNano() {
		return nil
	}
	f, err := os.Open(partial)
	if err != nil {
		return nil
	}
	defer f.Close()
	var check []engine.Range
	switch r.policy {
	case engine.ResumeFull:
		check = st.Have
	case engine.ResumeSparse:
		for _, h := range st.Have {
			n := min(h.Len, 64<<10)
			check = append(check, engine.Range{Off: h.Off, Len: n})
			if h.Len > 2*n {
				check = append(check, engine.Range{Off: h.End() - n, Len: n})
			}
			if len(check) >= 32 {
				break
			}
		}
	}
	if len(check) > 0 {
		sums, err := r.c.Sums(ctx, j.bucket, j.key, check)
		if err != nil {
			return nil
		}
		for i, rg := range check {
			h := sha256.New()
			if _, err := io.Copy(h, io.NewSectionReader(f, rg.Off, rg.Len)); err != nil || hex.EncodeToString(h.Sum(nil)) != hex.EncodeToString(sums[i]) {
				r.env.Logger.Info("partial download differs from the object; starting over", "file", j.local)
				return nil
			}
		}
	}
	return st.Have
}

// partialTracker records which bytes of a download are on disk, persists
// that every second, and hashes the file's contiguous prefix as it grows.
type partialTracker struct {
	f     *os.File
	path  string
	mu    sync.Mutex
	st    partialState
	have  []engine.Range // sorted, merged
	grew  chan struct{}
	dirty bool
}

func newPartialTracker(f *os.File, st partialState, path string) *partialTracker {
	t := &partialTracker{f: f, path: path, st: st, grew: make(chan struct{}, 1)}
	for _, h := range st.Have {
		t.addLocked(h.Off, h.Len)
	}
	return t
}

func (t *partialTracker) add(off, n int64) {
	t.mu.Lock()
	t.addLocked(off, n)
	t.dirty = true
	t.mu.Unlock()
	select {
	case t.grew <- struct{}{}:
	default:
	}
}

func (t *partialTracker) addLocked(off, n int64) {
	t.have = append(t.have, engine.Range{Off: off, Len: n})
	sort.Slice(t.have, func(i, k int) bool { return t.have[i].Off < t.have[k].Off })
	merged := t.have[:1]
	for _, r := range t.have[1:] {
		last := &merged[len(merged)-1]
		if r.Off <= last.End() {
			if r.End() > last.End() {
				last.Len = r.End() - last.Off
			}
			continue
		}
		merged = append(merged, r)
	}
	t.have = merged
}

func (t *partialTracker) prefix() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.have) == 0 || t.have[0].Off != 0 {
		return 0
	}
	return t.have[0].Len
}

func (t *partialTracker) persist() {
	t.mu.Lock()
	if !t.dirty {
		t.mu.Unlock()
		return
	}
	t.dirty = false
	st := t.st
	st.Have = append([]engine.Range(nil), t.have...)
	t.mu.Unlock()
	if t.f.Sync() != nil {
		return
	}
	b, _ := json.Marshal(st)
	writeFileAtomic(t.path, b, true)
}

// run starts the background work; stop ends it and returns the SHA-256 of
// the whole file when complete is set.
func (t *partialTracker) run() (stop func(complete bool) (string, error)) {
	quit := make(chan struct{})
	var wg sync.WaitGroup
	h := sha256.New()
	var hashed int64
	var herr error
	hashUpTo := func(end int64) {
		for hashed < end && herr == nil {
			n, err := io.Copy(h, io.NewSectionReader(t.f, hashed, end-hashed))
			hashed += n
			if err != nil {
				herr = err
			}
			if n == 0 {
				break
			}
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case <-tick.C:
				t.persist()
			case <-t.grew:
				hashUpTo(t.prefix())
			}
		}
	}()
	return func(complete bool) (string, error) {
		close(quit)
		wg.Wait()
		t.persist()
		if !complete {
			return "", nil
		}
		hashUpTo(t.st.Size)
		if herr != nil {
			return "", herr
		}
		return hex.EncodeToString(h.Sum(nil)), nil
	}
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
