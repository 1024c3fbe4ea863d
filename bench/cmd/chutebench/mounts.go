package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// mountTool is a FUSE file system that shows an S3 bucket as a folder:
// chute mount, rclone mount, s3fs.
type mountTool struct {
	name string
	// start mounts the bucket at mnt, with a fresh cache in cache, and
	// returns once the mount is up.
	start func(ctx context.Context, mnt, cache string) (*service, error)
	// unmount asks the file system to finish and unmount.
	unmount func(ctx context.Context, mnt string) error
	// beside, if set, measures the reference the mount is compared with
	// (chute cp of the same file, upload for a write, download for a
	// read), run right beside each big write and read so that both meet
	// the store in the same state.
	beside func(ctx context.Context, write bool, i int) measurement
}

// mountSetup is what the mount tools need to reach the bucket.
type mountSetup struct {
	place   place
	scratch string
	bucket  string
	s3      *s3Store
	chute   *chuteClient
	server  *chuteServer // the chute server in front of s3
}

// tools returns the mount tools to compare, chute's first when the chute
// binary has a mount command.
func (s mountSetup) tools(withChute bool) []mountTool {
	var ts []mountTool
	fuseUnmount := func(ctx context.Context, mnt string) error {
		r := run(ctx, host, time.Minute, toolEnv(), "fusermount3", "-u", mnt)
		return r.Err
	}
	if withChute && s.chute != nil && s.server != nil {
		ts = append(ts, mountTool{
			name: "chute mount",
			start: func(ctx context.Context, mnt, cache string) (*service, error) {
				return startService(ctx, s.place, s.chute.env(), cache+".log", mountedCheck(mnt), time.Minute,
					s.chute.bin, "mount", "--cache-dir", cache, s.server.url(s.bucket, ""), mnt)
			},
			unmount: func(ctx context.Context, mnt string) error {
				r := run(ctx, host, 10*time.Minute, s.chute.env(), s.chute.bin, "unmount", mnt)
				return r.Err
			},
		})
	}
	ts = append(ts, mountTool{
		name: "rclone mount",
		start: func(ctx context.Context, mnt, cache string) (*service, error) {
			os.WriteFile(filepath.Join(s.scratch, "rclone.conf"), nil, 0o600)
			return startService(ctx, s.place, s.s3.rcloneEnv(s.scratch), cache+".log", mountedCheck(mnt), time.Minute,
				"rclone", "mount", "weed:"+s.bucket, mnt, "--vfs-cache-mode", "writes", "--vfs-write-back", "0s", "--cache-dir", cache, "--s3-no-check-bucket")
		},
		unmount: fuseUnmount,
	})
	ts = append(ts, mountTool{
		name: "s3fs",
		start: func(ctx context.Context, mnt, cache string) (*service, error) {
			pw := filepath.Join(s.scratch, "s3fs.passwd")
			if err := os.WriteFile(pw, []byte(s.s3.AccessKey+":"+s.s3.SecretKey+"\n"), 0o600); err != nil {
				return nil, err
			}
			return startService(ctx, s.place, toolEnv(), cache+".log", mountedCheck(mnt), time.Minute,
				"s3fs", s.bucket, mnt, "-f", "-o", "url="+s.s3.Endpoint, "-o", "use_path_request_style",
				"-o", "passwd_file="+pw, "-o", "endpoint="+s.s3.Region)
		},
		unmount: fuseUnmount,
	})
	return ts
}

// mountedCheck reports whether a FUSE file system is mounted at mnt.
func mountedCheck(mnt string) func() error {
	return func() error {
		if isMounted(mnt) {
			return nil
		}
		return fmt.Errorf("%s is not mounted yet", mnt)
	}
}

func isMounted(mnt string) bool {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && unescapeMount(fields[4]) == mnt {
			return true
		}
	}
	return false
}

// unescapeMount undoes the octal escapes of /proc/self/mountinfo.
func unescapeMount(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}

// mounted is a live mount.
type mounted struct {
	tool mountTool
	mnt  string
	svc  *service
}

// mount mounts t at mnt with an empty cache folder.
func mount(ctx context.Context, t mountTool, mnt, cache string) (*mounted, error) {
	forceUnmount(mnt)
	os.RemoveAll(cache)
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return nil, err
	}
	svc, err := t.start(ctx, mnt, cache)
	if err != nil {
		forceUnmount(mnt)
		return nil, fmt.Errorf("%s: %w", t.name, err)
	}
	return &mounted{tool: t, mnt: mnt, svc: svc}, nil
}

// close unmounts and waits for the file system's process to end; it
// forces both when they take too long.
func (m *mounted) close(ctx context.Context) error {
	if m == nil {
		return nil
	}
	err := m.tool.unmount(context.WithoutCancel(ctx), m.mnt)
	select {
	case <-m.svc.done:
	case <-time.After(30 * time.Second):
	}
	m.svc.stop(10 * time.Second)
	if isMounted(m.mnt) {
		forceUnmount(m.mnt)
	}
	return err
}

// kill stops the file system's process at once and detaches the mount.
func (m *mounted) kill() {
	if m == nil {
		return
	}
	m.svc.stop(5 * time.Second)
	forceUnmount(m.mnt)
}

// forceUnmount detaches whatever is mounted at mnt (lazy unmount).
func forceUnmount(mnt string) {
	if !isMounted(mnt) {
		return
	}
	run(context.Background(), host, 30*time.Second, toolEnv(), "fusermount3", "-uz", mnt)
	if isMounted(mnt) {
		run(context.Background(), host, 30*time.Second, toolEnv(), "umount", "-l", mnt)
	}
}

// waitFor polls cond every 100 ms until it holds, ctx ends, or timeout
// passes; it reports whether cond held.
func waitFor(ctx context.Context, timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// mountsUnder lists the mount points inside dir.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 {
			if m := unescapeMount(fields[4]); strings.HasPrefix(m, dir+"/") {
				out = append(out, m)
			}
		}
	}
	return out
}

// newScratch empties (or makes) the scratch folder of one part of the
// benchmarks under CHUTE_BENCH_OUT and returns its path.
func newScratch(cfg config, name string) (string, error) {
	out := filepath.Join(cfg.path("CHUTE_BENCH_OUT"), name)
	if err := clearScratch(out, false); err != nil {
		return "", err
	}
	return out, os.MkdirAll(out, 0o755)
}

// clearScratch empties a scratch folder, or with keepLogs everything in
// it but its top-level *.log files. It first detaches any mount inside,
// so that removing files never reaches through a mount into a bucket.
func clearScratch(dir string, keepLogs bool) error {
	for _, m := range mountsUnder(dir) {
		forceUnmount(m)
	}
	if left := mountsUnder(dir); len(left) > 0 {
		return fmt.Errorf("%s is still mounted; not removing %s", left[0], dir)
	}
	if !keepLogs {
		return os.RemoveAll(dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".log") {
			continue
		}
		os.RemoveAll(filepath.Join(dir, e.Name()))
	}
	return nil
}
