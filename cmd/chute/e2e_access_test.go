package main

// Who may do what: unknown keys, changed host keys, authorized_keys
// options, and object keys that try to leave their bucket.

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chute/chute/cos"
	"github.com/chute/chute/engine"
)

// resumeHint is what cp says when running it again would help; it must not
// say so when the server refused the request itself.
const resumeHint = "run the same command again"

// refused runs a command that the server must refuse for lack of
// permission: non-zero exit, a message that says why, and no advice to
// run it again.
func (c *client) refused(why string, args ...string) {
	c.t.Helper()
	r := c.fails([]string{"permission denied", why}, args...)
	if strings.Contains(r.stderr, resumeHint) {
		c.t.Errorf("a refusal should not advise running the command again; %v", r)
	}
}

func absent(t testing.TB, path string) {
	t.Helper()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s exists (or cannot be checked: %v)", path, err)
	}
}

// TestUnknownKeyRefused: a key missing from authorized_keys gets nowhere,
// and the message says where the key must go.
func TestUnknownKeyRefused(t *testing.T) {
	n := startNode(t, "photos")
	owner := newClient(t)
	n.authorize("", owner.pub)
	stranger := newClient(t)
	f := filepath.Join(t.TempDir(), "f")
	makeFile(t, f, 1000, 1)

	want := []string{"authentication refused", "authorized_keys"}
	stranger.fails(want, "cp", f, n.url("photos/f"))
	stranger.fails(want, "ls", n.url("photos/"))
	absent(t, n.objectPath("photos", "f"))
	// The owner's key still works beside it.
	owner.ok("cp", "--quiet", f, n.url("photos/f"))
}

// knownHostsAdvice matches the changed-host-key message's instruction.
var knownHostsAdvice = regexp.MustCompile(`delete line (\d+) of (\S+) and connect again`)

// TestChangedHostKeyRefused: once a server's key is recorded, another key
// for the same [host]:port is refused with a message that names the line
// to delete; deleting it lets the client trust the new key.
func TestChangedHostKeyRefused(t *testing.T) {
	n := startNode(t, "photos")
	c := newClient(t)
	n.authorize("", c.pub)
	f := filepath.Join(t.TempDir(), "f")
	makeFile(t, f, 1000, 1)

	c.ok("ls", n.url("photos/")) // trust on first use
	kh := filepath.Join(c.home, "known_hosts")
	recorded, err := os.ReadFile(kh)
	if err != nil {
		t.Fatal(err)
	}
	hostPort := "[127.0.0.1]:" + strconv.Itoa(n.port)
	if !strings.HasPrefix(string(recorded), hostPort+" ssh-ed25519 ") {
		t.Fatalf("known_hosts after the first connection:\n%s\nwant a line for %s", recorded, hostPort)
	}

	t.Run("edited known_hosts", func(t *testing.T) {
		c := c.as(t)
		other := strings.Fields(newClient(t).pub)
		forged := "# an unrelated comment\n" + hostPort + " " + other[0] + " " + other[1] + "\n"
		if err := os.WriteFile(kh, []byte(forged), 0o600); err != nil {
			t.Fatal(err)
		}
		r := c.fails([]string{"host key changed", "delete line 2 of " + kh}, "cp", f, n.url("photos/f"))
		c.fails([]string{"host key changed", "delete line 2 of " + kh}, "ls", n.url("photos/"))
		if strings.Contains(r.stderr, resumeHint) {
			t.Errorf("a changed host key should not advise running the command again; %v", r)
		}
		absent(t, n.objectPath("photos", "f"))
		if err := os.WriteFile(kh, recorded, 0o600); err != nil {
			t.Fatal(err)
		}
		c.ok("ls", n.url("photos/"))
	})

	t.Run("server given a new key", func(t *testing.T) {
		c := c.as(t)
		// A new server, with its own data folder and so its own host key,
		// on the same port: as if the node were reinstalled.
		n.kill()
		n2 := startNodeOn(t, n.port, "photos")
		n2.authorize("", c.pub)
		r := c.fails([]string{"host key changed", "intercepting"}, "ls", n2.url("photos/"))
		m := knownHostsAdvice.FindStringSubmatch(r.stderr)
		if m == nil {
			t.Fatalf("the message does not say which line to delete; %v", r)
		}
		// Do what the message says.
		line, _ := strconv.Atoi(m[1])
		b, err := os.ReadFile(m[2])
		if err != nil {
			t.Fatalf("the message names %s: %v", m[2], err)
		}
		lines := strings.SplitAfter(string(b), "\n")
		if line < 1 || line > len(lines) {
			t.Fatalf("the message names line %d of a %d-line file", line, len(lines))
		}
		lines = append(lines[:line-1], lines[line:]...)
		if err := os.WriteFile(m[2], []byte(strings.Join(lines, "")), 0o600); err != nil {
			t.Fatal(err)
		}
		c.ok("cp", "--quiet", f, n2.url("photos/f"))
	})
}

// TestAuthorizedKeysOptions: buckets=, prefix= and read-only restrict a key
// on a server with two buckets.
func TestAuthorizedKeysOptions(t *testing.T) {
	n := startNode(t, "photos", "scans")
	owner := newClient(t)
	n.authorize("", owner.pub)
	dir := t.TempDir()
	f := filepath.Join(dir, "f")
	sum := makeFile(t, f, 5000, 1)
	owner.ok("cp", "--quiet", f, n.url("scans/secret"))
	owner.ok("cp", "--quiet", f, n.url("photos/other/x"))

	t.Run("buckets", func(t *testing.T) {
		c := newClient(t)
		n.authorize(`buckets="photos"`, c.pub)
		c.ok("cp", "--quiet", f, n.url("photos/mine"))
		c.ok("ls", n.url("photos/"))

		c.refused("photos", "cp", f, n.url("scans/mine"))
		absent(t, n.objectPath("scans", "mine"))
		c.refused("photos", "cp", n.url("scans/secret"), filepath.Join(dir, "stolen"))
		c.refused("photos", "cp", "-r", n.url("scans/"), filepath.Join(dir, "stolen-dir"))
		absent(t, filepath.Join(dir, "stolen"))
		absent(t, filepath.Join(dir, "stolen.chute-partial"))
		absent(t, filepath.Join(dir, "stolen-dir"))
		c.refused("photos", "ls", n.url("scans/"))
		c.refused("photos", "ls", "-r", n.url("scans/"))
	})

	t.Run("prefix", func(t *testing.T) {
		c := newClient(t)
		n.authorize(`prefix="run42/"`, c.pub)
		c.ok("cp", "--quiet", f, n.url("photos/run42/a"))
		c.ok("cp", "--quiet", n.url("photos/run42/a"), filepath.Join(dir, "a"))
		if got := sha256File(t, filepath.Join(dir, "a")); got != sum {
			t.Errorf("round trip under the prefix: SHA-256 %s, want %s", got, sum)
		}
		c.ok("cp", "--quiet", f, n.url("scans/run42/b")) // the prefix holds in every bucket

		c.refused("run42/", "cp", f, n.url("photos/run43/a"))
		absent(t, n.objectPath("photos", "run43/a"))
		c.refused("run42/", "cp", n.url("photos/other/x"), filepath.Join(dir, "x"))
		absent(t, filepath.Join(dir, "x"))
		c.refused("run42/", "ls", n.url("photos/other/"))
		// Listing above the prefix shows only what is under it.
		out := c.ok("ls", "-r", n.url("photos/")).stdout
		if !strings.Contains(out, "run42/a") || strings.Contains(out, "other/") {
			t.Errorf("ls -r of the bucket with a prefix-limited key:\n%s", out)
		}
	})

	t.Run("read-only", func(t *testing.T) {
		c := newClient(t)
		n.authorize(`read-only`, c.pub)
		c.ok("cp", "--quiet", n.url("photos/other/x"), filepath.Join(dir, "ro"))
		if got := sha256File(t, filepath.Join(dir, "ro")); got != sum {
			t.Errorf("read-only download: SHA-256 %s, want %s", got, sum)
		}
		c.ok("ls", n.url("scans/"))

		c.refused("read-only", "cp", f, n.url("photos/ro"))
		c.refused("read-only", "cp", f, n.url("photos/other/x")) // nor overwrite
		absent(t, n.objectPath("photos", "ro"))
		tree := filepath.Join(dir, "tree")
		makeFile(t, filepath.Join(tree, "one"), 10, 2)
		makeFile(t, filepath.Join(tree, "two"), 10, 3)
		c.refused("read-only", "cp", "-r", tree, n.url("photos/"))
		absent(t, n.objectPath("photos", "tree"))
	})

	if got := sha256File(t, n.objectPath("photos", "other/x")); got != sum {
		t.Errorf("photos/other/x changed: SHA-256 %s, want %s", got, sum)
	}
}

// TestBadKeysRejected: object keys with "..", a leading "/" or NUL are
// refused with a message that says what is wrong, through the CLI and
// through the engine's client API, and nothing lands outside the bucket.
func TestBadKeysRejected(t *testing.T) {
	n := startNode(t, "photos")
	c := newClient(t)
	n.authorize("", c.pub)
	dir := t.TempDir()
	f := filepath.Join(dir, "f")
	makeFile(t, f, 3000, 1)

	cli := []struct{ path, why string }{
		{"photos/../x", `".." is not allowed`},
		{"photos/a/../../x", `".." is not allowed`},
		{"photos/%2e%2e/x", `".." is not allowed`},
		{"photos//abs", `leading "/" is not allowed`},
		{"photos//etc/passwd", `leading "/" is not allowed`},
		{"photos/a%00b", "NUL bytes are not allowed"},
	}
	for _, tc := range cli {
		want := []string{"invalid object key", tc.why}
		r := c.fails(want, "cp", f, n.url(tc.path))
		if strings.Contains(r.stderr, resumeHint) {
			t.Errorf("an invalid key should not advise running the command again; %v", r)
		}
		c.fails(want, "cp", n.url(tc.path), filepath.Join(dir, "out"))
		absent(t, filepath.Join(dir, "out"))
	}

	// The engine's client API: NUL cannot travel in argv, so the test
	// speaks to the server directly.
	signer, err := engine.LoadKey(c.key)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl, err := engine.Dial(ctx, "127.0.0.1:"+strconv.Itoa(n.port), engine.ClientConfig{
		Signer: signer, KnownHosts: filepath.Join(c.home, "known_hosts"),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	data := []byte("not for you")
	if _, err := cl.Upload(ctx, engine.UploadRequest{Bucket: "photos", Key: "good", Source: bytes.NewReader(data), Size: int64(len(data))}); err != nil {
		t.Fatalf("a good upload: %v", err)
	}
	api := []struct{ key, why string }{
		{"a\x00b", "NUL bytes are not allowed"},
		{"\x00", "NUL bytes are not allowed"},
		{"dir/\x00/x", "NUL bytes are not allowed"},
		{"../x", `".." is not allowed`},
		{"a/../../../x", `".." is not allowed`},
		{"/abs", `leading "/" is not allowed`},
		{"/etc/passwd", `leading "/" is not allowed`},
	}
	for _, tc := range api {
		check := func(op string, err error) {
			t.Helper()
			if !errors.Is(err, cos.ErrInvalidKey) || !strings.Contains(err.Error(), tc.why) {
				t.Errorf("%s %q: got %v, want an invalid-key error saying %s", op, tc.key, err, tc.why)
			}
		}
		_, err := cl.Upload(ctx, engine.UploadRequest{Bucket: "photos", Key: tc.key, Source: bytes.NewReader(data), Size: int64(len(data))})
		check("upload", err)
		_, err = cl.Put(ctx, "photos", tc.key, data, cos.Meta{})
		check("put", err)
		_, err = cl.Stat(ctx, "photos", tc.key)
		check("stat", err)
		out, err := os.Create(filepath.Join(dir, "api-out"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = cl.Download(ctx, engine.DownloadRequest{Bucket: "photos", Key: tc.key, Length: -1, Dest: out})
		out.Close()
		check("download", err)
		_, err = cl.Copy(ctx, "photos", "good", tc.key, nil)
		if !errors.Is(err, cos.ErrInvalidKey) {
			t.Errorf("copy to %q: got %v, want an invalid-key error", tc.key, err)
		}
		err = cl.Delete(ctx, "photos", tc.key)
		check("delete", err)
	}
	if _, err := cl.Put(ctx, "pho\x00tos", "x", data, cos.Meta{}); !errors.Is(err, cos.ErrInvalidBucket) {
		t.Errorf("put into bucket %q: got %v, want an invalid-bucket error", "pho\x00tos", err)
	}
	// The connection still serves good requests.
	if _, err := cl.Upload(ctx, engine.UploadRequest{Bucket: "photos", Key: "good2", Source: bytes.NewReader(data), Size: int64(len(data))}); err != nil {
		t.Fatalf("a good upload after the refusals: %v", err)
	}

	// Nothing was written anywhere but the one good object.
	var files []string
	filepath.WalkDir(n.data, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(n.data, p)
			files = append(files, rel)
		}
		return nil
	})
	for _, rel := range files {
		base := filepath.Base(rel)
		if base == "x" || base == "abs" || base == "passwd" || strings.ContainsRune(rel, 0) {
			t.Errorf("a file from a refused key is in the server's data folder: %s", rel)
		}
	}
	for _, p := range []string{filepath.Join(filepath.Dir(n.data), "x"), filepath.Join(n.data, "x"), filepath.Join(n.data, "objects", "x")} {
		absent(t, p)
	}
	if got, err := os.ReadFile(n.objectPath("photos", "good")); err != nil || string(got) != string(data) {
		t.Errorf("the good object: %q, %v", got, err)
	}
}
