package cos_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chute/chute/cos"
	"github.com/chute/chute/cos/s3test"
	"github.com/chute/chute/internal/testenv"
)

// The interop tests check, with the real tools, that a bucket looks the
// same through rclone, s3fs and chute: mtime and mode written by one are
// read back by the others.

// rclone runs rclone against the server as remote "chute:". rclone 1.60
// refuses S3 while AWS_CA_BUNDLE is set, so the variable is left out.
func rclone(t *testing.T, srv *s3test.Server, args ...string) []byte {
	t.Helper()
	bin := testenv.RequireTool(t, "rclone", "apt-get install rclone")
	cmd := exec.Command(bin, append([]string{"--config", filepath.Join(t.TempDir(), "rclone.conf")}, args...)...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") && !strings.HasPrefix(kv, "RCLONE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env,
		"RCLONE_CONFIG_CHUTE_TYPE=s3",
		"RCLONE_CONFIG_CHUTE_PROVIDER=Other",
		"RCLONE_CONFIG_CHUTE_ENDPOINT="+srv.Endpoint,
		"RCLONE_CONFIG_CHUTE_REGION="+srv.Region,
		"RCLONE_CONFIG_CHUTE_ACCESS_KEY_ID="+srv.AccessKey,
		"RCLONE_CONFIG_CHUTE_SECRET_ACCESS_KEY="+srv.SecretKey,
		"RCLONE_CONFIG_CHUTE_FORCE_PATH_STYLE=true",
	)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("rclone %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

func localFile(t *testing.T, body string, mode os.FileMode, mtime time.Time) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRcloneWritesChuteReads(t *testing.T) {
	srv := s3test.Shared(t)
	store := srv.Store(t)
	bucket := srv.NewBucket(t)
	ctx := context.Background()
	tests := []struct {
		name     string
		mtime    time.Time
		metadata bool // rclone -M: also the mode, in octal
	}{
		{"nanoseconds", time.Unix(1600000000, 123456789), false},
		{"trailing zeros trimmed by rclone", time.Unix(1600000000, 500000000), false},
		{"whole seconds", time.Unix(1500000000, 0), false},
		{"with --metadata", time.Unix(1650000000, 42), true},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := localFile(t, "from rclone", 0o640, tc.mtime)
			key := "rclone/" + strings.ReplaceAll(tc.name, " ", "-")
			args := []string{"copyto", src, "chute:" + bucket + "/" + key}
			if tc.metadata {
				args = append(args, "--metadata")
			}
			rclone(t, srv, args...)
			st, err := store.Stat(ctx, bucket, key)
			if err != nil {
				t.Fatal(err)
			}
			if !st.Meta.Mtime.Equal(tc.mtime) || !st.ModTime().Equal(tc.mtime) {
				t.Errorf("chute reads rclone's mtime as %v; want %v (test %d)", st.Meta.Mtime, tc.mtime, i)
			}
			if tc.metadata && st.Meta.Mode != syscall.S_IFREG|0o640 {
				t.Errorf("chute reads rclone's mode as %o; want 100640", st.Meta.Mode)
			}
		})
	}
}

func TestChuteWritesRcloneReads(t *testing.T) {
	srv := s3test.Shared(t)
	store := srv.Store(t)
	bucket := srv.NewBucket(t)
	ctx := context.Background()
	times := []time.Time{time.Unix(1600000000, 123456789), time.Unix(1600000000, 500000000), time.Unix(1500000000, 0)}
	for i, mtime := range times {
		key := "chute/" + string(rune('a'+i))
		if _, err := store.Put(ctx, bucket, key, strings.NewReader("from chute"), 10, cos.Meta{Mtime: mtime, Mode: 0o100604}); err != nil {
			t.Fatal(err)
		}
		var entries []struct {
			Path    string
			ModTime string
		}
		if err := json.Unmarshal(rclone(t, srv, "lsjson", "chute:"+bucket+"/"+key), &entries); err != nil {
			t.Fatal(err)
		}
		if len(entries) != 1 {
			t.Fatalf("rclone lsjson %s: %d entries", key, len(entries))
		}
		got, err := time.Parse(time.RFC3339Nano, entries[0].ModTime)
		if err != nil || !got.Equal(mtime) {
			t.Errorf("rclone lsjson shows %s's mtime as %q; want %v", key, entries[0].ModTime, mtime)
		}
	}
}

// mountS3fs mounts the bucket with s3fs until the test ends.
func mountS3fs(t *testing.T, srv *s3test.Server, bucket string) string {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireFUSE(t)
	bin := testenv.RequireTool(t, "s3fs", "apt-get install s3fs")
	dir := t.TempDir()
	pw := filepath.Join(dir, "passwd")
	if err := os.WriteFile(pw, []byte(srv.AccessKey+":"+srv.SecretKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	cmd := exec.Command(bin, bucket, mnt, "-f",
		"-o", "url="+srv.Endpoint+",use_path_request_style,passwd_file="+pw+",endpoint="+srv.Region+",stat_cache_expire=1")
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	unmount := func() {
		exec.Command("fusermount3", "-u", mnt).Run()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for !mounted(mnt) {
		select {
		case <-done:
			t.Fatalf("s3fs exited before mounting:\n%s", log.String())
		default:
		}
		if time.Now().After(deadline) {
			unmount()
			t.Fatalf("s3fs did not mount %s in 20s:\n%s", mnt, log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Cleanup(func() {
		unmount()
		if t.Failed() {
			t.Logf("s3fs output:\n%s", log.String())
		}
	})
	return mnt
}

func mounted(dir string) bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	return err == nil && bytes.Contains(b, []byte(" "+dir+" "))
}

func TestS3fsWritesChuteReads(t *testing.T) {
	srv := s3test.Shared(t)
	store := srv.Store(t)
	bucket := srv.NewBucket(t)
	mnt := mountS3fs(t, srv, bucket)
	tests := []struct {
		name  string
		mode  os.FileMode
		mtime time.Time
	}{
		{"nanoseconds", 0o640, time.Unix(1600000000, 123456789)},
		{"whole seconds", 0o604, time.Unix(1500000000, 0)},
	}
	for _, tc := range tests {
		path := filepath.Join(mnt, strings.ReplaceAll(tc.name, " ", "-"))
		if err := os.WriteFile(path, []byte("from s3fs"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, tc.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, tc.mtime, tc.mtime); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, err := store.Stat(ctx, bucket, strings.ReplaceAll(tc.name, " ", "-"))
			if err != nil {
				t.Fatal(err)
			}
			if !st.Meta.Mtime.Equal(tc.mtime) {
				t.Errorf("chute reads s3fs's mtime as %v; want %v", st.Meta.Mtime, tc.mtime)
			}
			if want := uint32(syscall.S_IFREG) | uint32(tc.mode); st.Meta.Mode != want {
				t.Errorf("chute reads s3fs's mode as %o; want %o", st.Meta.Mode, want)
			}
			if st.Meta.UID == nil || *st.Meta.UID != uint32(os.Geteuid()) {
				t.Errorf("chute reads s3fs's uid as %v; want %d", st.Meta.UID, os.Geteuid())
			}
		})
	}
}

func TestChuteWritesS3fsReads(t *testing.T) {
	srv := s3test.Shared(t)
	store := srv.Store(t)
	bucket := srv.NewBucket(t)
	ctx := context.Background()
	uid, gid := uint32(1234), uint32(567)
	tests := []struct {
		key  string
		meta cos.Meta
	}{
		{"nanoseconds", cos.Meta{Mtime: time.Unix(1600000000, 123456789), Mode: 0o100640, UID: &uid, GID: &gid}},
		{"half-second", cos.Meta{Mtime: time.Unix(1600000000, 500000000), Mode: 0o100604}},
		{"whole-seconds", cos.Meta{Mtime: time.Unix(1500000000, 0), Mode: 0o100755}},
		{"dir/", cos.Meta{Mtime: time.Unix(1400000000, 0), Mode: 0o40750}},
	}
	for _, tc := range tests {
		if _, err := store.Put(ctx, bucket, tc.key, strings.NewReader(""), 0, tc.meta); err != nil {
			t.Fatal(err)
		}
	}
	mnt := mountS3fs(t, srv, bucket)
	for _, tc := range tests {
		t.Run(tc.key, func(t *testing.T) {
			fi, err := os.Stat(filepath.Join(mnt, tc.key))
			if err != nil {
				t.Fatal(err)
			}
			st := fi.Sys().(*syscall.Stat_t)
			if cos.IsFolderKey(tc.key) {
				// SeaweedFS drops a marker's metadata (s3test.Quirks), so
				// s3fs can only show a folder here.
				if !fi.IsDir() {
					t.Errorf("s3fs shows %s as mode %o; want a folder", tc.key, st.Mode)
				}
				return
			}
			if !fi.ModTime().Equal(tc.meta.Mtime) {
				t.Errorf("stat on s3fs shows mtime %v; want %v", fi.ModTime(), tc.meta.Mtime)
			}
			if st.Mode != tc.meta.Mode {
				t.Errorf("stat on s3fs shows mode %o; want %o", st.Mode, tc.meta.Mode)
			}
			if tc.meta.UID != nil && (st.Uid != *tc.meta.UID || st.Gid != *tc.meta.GID) {
				t.Errorf("stat on s3fs shows uid %d gid %d; want %d %d", st.Uid, st.Gid, *tc.meta.UID, *tc.meta.GID)
			}
		})
	}
}

// TestRcloneFormS3fsMisreads shows why chute writes nine fraction digits:
// rclone trims trailing zeros ("1600000000.5"), and s3fs reads the digits
// after the point as nanoseconds, so it shows 5 ns instead of half a
// second. chute's own form reads back right in both (the tests above).
func TestRcloneFormS3fsMisreads(t *testing.T) {
	srv := s3test.Shared(t)
	bucket := srv.NewBucket(t)
	mtime := time.Unix(1600000000, 500000000)
	rclone(t, srv, "copyto", localFile(t, "x", 0o644, mtime), "chute:"+bucket+"/half")
	mnt := mountS3fs(t, srv, bucket)
	fi, err := os.Stat(filepath.Join(mnt, "half"))
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Unix(1600000000, 5); !fi.ModTime().Equal(want) {
		t.Errorf("s3fs shows rclone's %v as %v; this test expects the misreading %v (has s3fs changed?)", mtime, fi.ModTime(), want)
	}
}
