package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/chute/chute/cache"
	"github.com/chute/chute/engine"
	chutefs "github.com/chute/chute/fs"
)

type mountOptions struct {
	client     clientOptions
	daemon     bool
	cacheDir   string
	cacheSize  string
	writeBack  bool
	readOnly   bool
	allowOther bool
	uid, gid   int
	fileMode   string
	dirMode    string
	listTTL    time.Duration
	ioTimeout  time.Duration
	drain      time.Duration
}

func init() {
	o := &mountOptions{}
	register(&command{
		Name:    "mount",
		Usage:   "mount [flags] chute://[user@]host[:port]/bucket[/prefix] MOUNTPOINT",
		Summary: "mount a bucket (or a prefix of one) as a folder",
		Flags: func(fs *pflag.FlagSet) {
			o.client.AddFlags(fs)
			fs.BoolVar(&o.daemon, "daemon", false, "run in the background; return once the mount is ready (or failed)")
			fs.StringVar(&o.cacheDir, "cache-dir", "", "cache folder (default $XDG_CACHE_HOME/chute or ~/.cache/chute, one folder per server and bucket below it)")
			fs.StringVar(&o.cacheSize, "cache-size", "10G", "cap of cached data; read blocks are evicted beyond it (staged writes never are)")
			fs.BoolVar(&o.writeBack, "write-back", false, "close returns at once; uploads run in the background")
			fs.BoolVar(&o.readOnly, "read-only", false, "mount read-only")
			fs.BoolVar(&o.allowOther, "allow-other", false, "let other users use the mount (needs user_allow_other in /etc/fuse.conf unless root)")
			fs.IntVar(&o.uid, "uid", -1, "owner of objects that record none (default: you)")
			fs.IntVar(&o.gid, "gid", -1, "group of objects that record none (default: yours)")
			fs.StringVar(&o.fileMode, "file-mode", "0644", "permissions of files that record none (octal)")
			fs.StringVar(&o.dirMode, "dir-mode", "0755", "permissions of folders that record none (octal)")
			fs.DurationVar(&o.listTTL, "list-ttl", 10*time.Second, "how long listings and attributes are trusted (0: not at all)")
			fs.DurationVar(&o.ioTimeout, "io-timeout", time.Minute, "a server silent this long makes calls fail with EIO")
			fs.DurationVar(&o.drain, "drain-timeout", 0, "on unmount, how long to wait for pending uploads before leaving them for the next mount (default: until done after a signal, 1m after fusermount3 -u; a second SIGINT/SIGTERM stops waiting)")
		},
		Run: func(ctx context.Context, env *Env, args []string) error { return runMount(ctx, env, o, args) },
	})
}

// envReadyFD names the descriptor on which a --daemon child reports.
const envReadyFD = "CHUTE_MOUNT_READY_FD"

func runMount(ctx context.Context, env *Env, o *mountOptions, args []string) error {
	if len(args) != 2 || !IsRemote(args[0]) {
		return usageError("mount takes a chute:// location and a mount point")
	}
	loc, err := ParseLocation(args[0])
	if err != nil {
		return usageError("%v", err)
	}
	mp, err := filepath.Abs(args[1])
	if err != nil {
		return err
	}
	if st, err := os.Stat(mp); err != nil || !st.IsDir() {
		return usageError("mount point %s is not a folder", mp)
	}
	if o.daemon && env.Getenv(envReadyFD) == "" {
		return daemonize(ctx, env, mp)
	}
	ready := readyReporter(env)
	err = serveMount(ctx, env, o, loc, args[0], mp, ready)
	if err != nil {
		ready(err)
	}
	return err
}

// serveMount mounts, reports readiness, and serves until a signal or an
// outside unmount.
func serveMount(ctx context.Context, env *Env, o *mountOptions, loc Location, url, mp string, ready func(error)) error {
	mopt, err := o.fsOptions(env, loc, mp)
	if err != nil {
		return err
	}
	remote, closeRemote, err := dialRemote(ctx, env, loc, &o.client)
	if err != nil {
		return err
	}
	defer closeRemote()
	mopt.Remote = remote
	m, err := chutefs.Mount(ctx, mopt)
	if err != nil {
		return err
	}
	rec, err := writeMountRecord(env, mountRecord{PID: os.Getpid(), MountPoint: mp, URL: url, CacheDir: mopt.CacheDir})
	if err != nil {
		env.Logger.Warn("cannot record the mount for chute unmount", "err", err)
	}
	defer os.Remove(rec)
	// `chute transfers` reaches the mount's transfers through this socket.
	if c, ok := remote.(*engine.Client); ok {
		if stop, err := serveControl(controlPath(env, mp), c, env.Logger); err != nil {
			env.Logger.Warn("no control socket for chute transfers", "err", err)
		} else {
			defer stop()
		}
	}
	ready(nil)
	fmt.Fprintf(env.Stderr, "chute: mounted %s on %s (cache %s)\n", url, mp, mopt.CacheDir)

	outside := make(chan struct{})
	go func() { m.Wait(); close(outside) }()
	select {
	case <-outside:
		fmt.Fprintf(env.Stderr, "chute: %s was unmounted; %d uploads left for the next mount\n", mp, m.Pending())
		return nil
	case <-ctx.Done():
	}

	// A second signal stops waiting for uploads: they stay recorded.
	again := make(chan os.Signal, 1)
	signal.Notify(again, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(again)
	dctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if o.drain > 0 {
		dctx, cancel = context.WithTimeout(dctx, o.drain)
		defer cancel()
	}
	go func() {
		select {
		case <-again:
			fmt.Fprintln(env.Stderr, "chute: not waiting for uploads; they stay recorded for the next mount")
			cancel()
		case <-dctx.Done():
		}
	}()
	if n := m.Pending(); n > 0 {
		fmt.Fprintf(env.Stderr, "chute: unmounting %s; waiting for %d uploads (signal again to leave them for the next mount)\n", mp, n)
	}
	left, err := unmountBusy(dctx, m, mp, env)
	if err != nil {
		return err
	}
	writeMountResult(rec, left)
	if left > 0 {
		fmt.Fprintf(env.Stderr, "chute: unmounted %s; %d uploads left recorded in %s for the next mount\n", mp, left, mopt.CacheDir)
	} else {
		fmt.Fprintf(env.Stderr, "chute: unmounted %s; all uploads done\n", mp)
	}
	return nil
}

// unmountBusy unmounts; while the mount is busy it retries, and after a few
// seconds detaches it lazily (the kernel finishes once it is no longer in
// use).
func unmountBusy(ctx context.Context, m *chutefs.Mounted, mp string, env *Env) (int, error) {
	var err error
	for i := 0; i < 20; i++ {
		var left int
		if left, err = m.Unmount(ctx); err == nil {
			return left, nil
		}
		time.Sleep(250 * time.Millisecond)
	}
	env.Logger.Warn("mount busy; detaching it lazily", "mountpoint", mp, "err", err)
	lazy := exec.Command("fusermount3", "-u", "-z", mp)
	lazy.Dir = "/"
	if out, lerr := lazy.CombinedOutput(); lerr != nil {
		return 0, fmt.Errorf("unmount %s: %v; fusermount3 -u -z: %v %s", mp, err, lerr, out)
	}
	return m.Unmount(ctx)
}

// fsOptions turns the flags into mount options.
func (o *mountOptions) fsOptions(env *Env, loc Location, mp string) (chutefs.Options, error) {
	size, err := parseSize(o.cacheSize)
	if err != nil {
		return chutefs.Options{}, usageError("--cache-size: %v", err)
	}
	fm, err := strconv.ParseUint(o.fileMode, 8, 32)
	if err != nil || fm > 0o7777 {
		return chutefs.Options{}, usageError("--file-mode: want octal permissions like 0644")
	}
	dm, err := strconv.ParseUint(o.dirMode, 8, 32)
	if err != nil || dm > 0o7777 {
		return chutefs.Options{}, usageError("--dir-mode: want octal permissions like 0755")
	}
	rate, err := o.client.rate()
	if err != nil {
		return chutefs.Options{}, err
	}
	cacheDir, err := mountCacheDir(env, o.cacheDir, loc)
	if err != nil {
		return chutefs.Options{}, err
	}
	uid, gid := os.Getuid(), os.Getgid()
	if o.uid >= 0 {
		uid = o.uid
	}
	if o.gid >= 0 {
		gid = o.gid
	}
	ttl := o.listTTL
	if ttl == 0 {
		ttl = -1 // the flag's 0 means no caching; the library's 0 means its default
	}
	return chutefs.Options{
		Bucket: loc.Bucket, Prefix: loc.Key, MountPoint: mp, CacheDir: cacheDir, CacheSize: size,
		WriteBack: o.writeBack, ReadOnly: o.readOnly, AllowOther: o.allowOther,
		UID: uint32(uid), GID: uint32(gid), FileMode: os.FileMode(fm), DirMode: os.FileMode(dm),
		ListTTL: ttl, IOTimeout: o.ioTimeout, DrainTimeout: o.drain, Rate: rate, Logger: env.Logger,
	}, nil
}

// mountCacheDir is the cache folder for a server and bucket: under
// --cache-dir, $XDG_CACHE_HOME/chute or ~/.cache/chute.
func mountCacheDir(env *Env, base string, loc Location) (string, error) {
	if base == "" {
		if x := env.Getenv("XDG_CACHE_HOME"); x != "" {
			base = filepath.Join(x, "chute")
		} else {
			home, err := os.UserHomeDir()
			if err != nil {
				return "", errors.New("no home folder for the cache: pass --cache-dir")
			}
			base = filepath.Join(home, ".cache", "chute")
		}
	}
	clean := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r == '/' || r == '\\' || r == 0 || r == ':' {
				return '_'
			}
			return r
		}, s)
	}
	return filepath.Join(base, clean(loc.Host)+"_"+strconv.Itoa(loc.Port), clean(loc.Bucket)), nil
}

// dialRemote connects to the location's server; the returned function
// closes the connection.
func dialRemote(ctx context.Context, env *Env, loc Location, o *clientOptions) (cache.Remote, func(), error) {
	c, err := o.dial(ctx, env, loc)
	if err != nil {
		return nil, nil, err
	}
	// A mount lives long: find out now, not at the first read, whether
	// the data path (UDP) gets through.
	if err := c.DataReady(ctx); err != nil {
		c.Close()
		return nil, nil, err
	}
	return c, func() { c.Close() }, nil
}

// readyReporter returns how a --daemon child tells its parent that the
// mount is ready (nil) or failed; outside a daemon it does nothing.
func readyReporter(env *Env) func(error) {
	fdStr := env.Getenv(envReadyFD)
	if fdStr == "" {
		return func(error) {}
	}
	fd, err := strconv.Atoi(fdStr)
	if err != nil {
		return func(error) {}
	}
	f := os.NewFile(uintptr(fd), "ready")
	done := false
	return func(err error) {
		if done || f == nil {
			return
		}
		done = true
		if err == nil {
			fmt.Fprintln(f, "ready")
		} else {
			fmt.Fprintln(f, "error: "+strings.ReplaceAll(err.Error(), "\n", " "))
		}
		f.Close()
	}
}

// daemonize starts this command again in the background, detached, and
// returns once it reports the mount ready or failed.
func daemonize(ctx context.Context, env *Env, mp string) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	var args []string
	for _, a := range os.Args[1:] {
		if a != "--daemon" && a != "--daemon=true" {
			args = append(args, a)
		}
	}
	logPath := filepath.Join(os.TempDir(), "chute-mount-"+mountID(mp)+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		w.Close()
		return err
	}
	defer logf.Close()
	cmd := exec.Command(exe, args...)
	cmd.Dir = "/"
	cmd.Env = append(os.Environ(), envReadyFD+"=3")
	cmd.ExtraFiles = []*os.File{w}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("start the mount in the background: %w", err)
	}
	w.Close()
	pid := cmd.Process.Pid
	cmd.Process.Release()
	line, err := bufio.NewReader(r).ReadString('\n')
	line = strings.TrimSpace(line)
	switch {
	case line == "ready":
		fmt.Fprintf(env.Stdout, "mounted on %s (pid %d, log %s)\n", mp, pid, logPath)
		return nil
	case strings.HasPrefix(line, "error: "):
		return errors.New(strings.TrimPrefix(line, "error: "))
	case err == io.EOF || err == nil:
		return fmt.Errorf("the background mount exited before it was ready; see %s", logPath)
	}
	return err
}

// mountRecord tells `chute unmount` which process serves a mount point.
type mountRecord struct {
	PID        int    `json:"pid"`
	MountPoint string `json:"mountpoint"`
	URL        string `json:"url"`
	CacheDir   string `json:"cache_dir"`
	// Left is set when the process has unmounted: uploads left recorded
	// for the next mount.
	Left *int `json:"left,omitempty"`
}

func mountID(mp string) string {
	h := sha256.Sum256([]byte(mp))
	return hex.EncodeToString(h[:8])
}

// mountRecordDir is where mount records live: $XDG_RUNTIME_DIR/chute, or
// a per-user folder in the temporary folder.
func mountRecordDir(env *Env) string {
	if x := env.Getenv("XDG_RUNTIME_DIR"); x != "" {
		return filepath.Join(x, "chute", "mounts")
	}
	return filepath.Join(os.TempDir(), "chute-"+strconv.Itoa(os.Getuid()), "mounts")
}

func mountRecordPath(env *Env, mp string) string {
	return filepath.Join(mountRecordDir(env), mountID(mp)+".json")
}

func writeMountRecord(env *Env, r mountRecord) (string, error) {
	p := mountRecordPath(env, r.MountPoint)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return p, err
	}
	b, _ := json.Marshal(r)
	return p, os.WriteFile(p, b, 0o600)
}

// writeMountResult records, for a waiting `chute unmount`, what the
// unmount left; the record goes away when the process exits.
func writeMountResult(path string, left int) {
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	var r mountRecord
	if json.Unmarshal(b, &r) != nil {
		return
	}
	r.Left = &left
	b, _ = json.Marshal(r)
	os.WriteFile(path+".result", b, 0o600)
}
