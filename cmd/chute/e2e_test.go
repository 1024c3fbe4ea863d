package main

// End-to-end tests of issue 2: real `chute server` and `chute cp`/`ls`
// processes on 127.0.0.1, each test with its own ports, data folder and
// CHUTE_HOME. The helpers are in e2e_main_test.go.

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chute/chute/internal/testenv"
)

// checkDone checks a done line against the file it moved.
func checkDone(t testing.TB, d doneEvent, direction, key string, size int64, sum string) {
	t.Helper()
	if d.Direction != direction || d.Key != key {
		t.Errorf("done line for %s %s, want %s %s", d.Direction, d.Key, direction, key)
	}
	if *d.Bytes != size {
		t.Errorf("done line says %d bytes, want %d", *d.Bytes, size)
	}
	if d.SHA256 != sum {
		t.Errorf("done line says SHA-256 %s, the file's is %s", d.SHA256, sum)
	}
	// An upload's sender is the client: what it sent, less what it sent
	// twice, is exactly what the server lacked.
	if direction == "upload" && *d.Sent-*d.Retrans != size-*d.Skipped {
		t.Errorf("upload sent %d bytes with %d retransmitted, but %d were needed (%d bytes, %d skipped)",
			*d.Sent, *d.Retrans, size-*d.Skipped, size, *d.Skipped)
	}
}

// TestCopyRoundTrip uploads and downloads files of awkward sizes, and one of
// at least 256 MiB, and checks the bytes and the --json summaries.
func TestCopyRoundTrip(t *testing.T) {
	n := startNode(t, "photos")
	c := newClient(t)
	n.authorize("", c.pub)
	dir := t.TempDir()

	cases := []struct {
		name   string
		size   int64
		cipher string
	}{
		{"empty", 0, ""},
		{"one-byte", 1, ""},
		{"three-packets-and-7", 1400*3 + 7, ""},
		{"256KiB+1", 262145, "aes-128-gcm"},
		{"16MiB+1", 16<<20 + 1, "none"},
		{"large", bigSize(), ""},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := c.as(t)
			local, sum := filepath.Join(dir, tc.name), ""
			if tc.name == "large" {
				local, sum = bigFile(t)
			} else {
				sum = makeFile(t, local, tc.size, uint64(i))
			}
			key := "sizes/" + tc.name
			var cipher []string
			if tc.cipher != "" {
				cipher = []string{"--cipher", tc.cipher}
			}

			args := append([]string{"cp", "--json"}, cipher...)
			up := c.ok(append(args, local, n.url("photos/"+key))...)
			d := oneDone(t, up)
			checkDone(t, d, "upload", key, tc.size, sum)
			if *d.Skipped != 0 {
				t.Errorf("first upload skipped %d bytes", *d.Skipped)
			}
			if got := sha256File(t, n.objectPath("photos", key)); got != sum {
				t.Errorf("the server's object has SHA-256 %s, the file %s", got, sum)
			}

			back := filepath.Join(dir, tc.name+".back")
			down := c.ok(append(args, n.url("photos/"+key), back)...)
			checkDone(t, oneDone(t, down), "download", key, tc.size, sum)
			fi, err := os.Stat(back)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Size() != tc.size {
				t.Errorf("downloaded %d bytes, want %d", fi.Size(), tc.size)
			}
			if got := sha256File(t, back); got != sum {
				t.Errorf("downloaded file has SHA-256 %s, want %s", got, sum)
			}
			if left, _ := filepath.Glob(back + ".chute-partial*"); len(left) > 0 {
				t.Errorf("partial files left behind: %v", left)
			}
			if tc.name == "large" {
				os.Remove(back)
			}
		})
	}
}

// fileSize returns the size of the tree file uploaded as key.
func fileSize(t testing.TB, files []treeFile, key string) int64 {
	t.Helper()
	for _, f := range files {
		if "run/tree/"+f.rel == key {
			return f.size
		}
	}
	t.Fatalf("no file for key %q", key)
	return 0
}

// treeFile is a file of the tree TestCopyTree copies.
type treeFile struct {
	rel   string
	size  int64
	mtime time.Time
}

// lsLine is one line of chute ls.
type lsLine struct{ size, mtime, name string }

// parseLs reads chute ls output: size (or - for a folder), modification
// time, name.
func parseLs(t testing.TB, out string) map[string]lsLine {
	t.Helper()
	m := map[string]lsLine{}
	for line := range strings.SplitSeq(strings.TrimRight(out, "\n"), "\n") {
		if line == "" {
			continue
		}
		if len(line) < 36 {
			t.Fatalf("short ls line %q", line)
		}
		l := lsLine{size: strings.TrimSpace(line[:12]), mtime: strings.TrimSpace(line[14:33]), name: line[35:]}
		m[l.name] = l
	}
	return m
}

// TestCopyTree copies a folder tree with spaces, non-ASCII names and an
// empty folder up with cp -r and back down, and lists it.
func TestCopyTree(t *testing.T) {
	diff := testenv.RequireTool(t, "diff", "apt-get install diffutils")
	n := startNode(t, "photos")
	c := newClient(t)
	n.authorize("", c.pub)

	src := filepath.Join(t.TempDir(), "tree")
	files := []treeFile{
		{"a file.txt", 3, time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)},
		{"sub dir/ünïcødé 日本/データ.bin", 1400*2 + 1, time.Date(2019, 12, 31, 23, 59, 58, 0, time.UTC)},
		{"sub dir/zero", 0, time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)},
		{"Ωmega  two  spaces/ö.txt", 100, time.Date(2022, 6, 7, 8, 9, 10, 0, time.UTC)},
	}
	sums := map[string]string{}
	for i, f := range files {
		p := filepath.Join(src, filepath.FromSlash(f.rel))
		sums["run/tree/"+f.rel] = makeFile(t, p, f.size, uint64(100+i))
		if err := os.Chtimes(p, f.mtime, f.mtime); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(src, "empty dir"), 0o755); err != nil {
		t.Fatal(err)
	}

	up := c.ok("cp", "-r", "--json", src, n.url("photos/run/"))
	seen := map[string]bool{}
	for _, d := range doneEvents(t, up) {
		seen[d.Key] = true
		if sum, ok := sums[d.Key]; ok && d.SHA256 != sum {
			t.Errorf("%s: done line says SHA-256 %s, want %s", d.Key, d.SHA256, sum)
		}
	}
	for k := range sums {
		if !seen[k] {
			t.Errorf("no done line for %s\n%s", k, up.stdout)
		}
	}
	if !seen["run/tree/empty dir/"] {
		t.Errorf("no done line for the empty folder's marker\n%s", up.stdout)
	}

	// One level: the folders as prefixes, the file with its size and mtime.
	ls := parseLs(t, c.ok("ls", n.url("photos/run/tree/")).stdout)
	want := map[string]lsLine{
		"run/tree/a file.txt":          {"3", "2021-03-04 05:06:07", "run/tree/a file.txt"},
		"run/tree/empty dir/":          {"-", "", "run/tree/empty dir/"},
		"run/tree/sub dir/":            {"-", "", "run/tree/sub dir/"},
		"run/tree/Ωmega  two  spaces/": {"-", "", "run/tree/Ωmega  two  spaces/"},
	}
	if fmt.Sprint(ls) != fmt.Sprint(want) {
		t.Errorf("chute ls:\n got %v\nwant %v", ls, want)
	}

	// An empty folder lists as empty; a missing one is an error.
	if out := c.ok("ls", n.url("photos/run/tree/empty dir/")).stdout; out != "" {
		t.Errorf("ls of the empty folder printed %q", out)
	}
	c.fails([]string{"no such object or folder"}, "ls", n.url("photos/run/tree/no such dir/"))

	// Recursive: every file, with its size and modification time.
	lsr := parseLs(t, c.ok("ls", "-r", n.url("photos/run/")).stdout)
	for _, f := range files {
		name := "run/tree/" + f.rel
		l, ok := lsr[name]
		if !ok {
			t.Errorf("ls -r does not show %s:\n%v", name, lsr)
			continue
		}
		if l.size != fmt.Sprint(f.size) || l.mtime != f.mtime.Format("2006-01-02 15:04:05") {
			t.Errorf("ls -r shows %s as %s bytes, %s; want %d bytes, %s", name, l.size, l.mtime, f.size, f.mtime.Format("2006-01-02 15:04:05"))
		}
	}
	if _, ok := lsr["run/tree/empty dir/"]; !ok {
		t.Errorf("ls -r does not show the empty folder:\n%v", lsr)
	}
	if len(lsr) != len(files)+1 {
		t.Errorf("ls -r shows %d entries, want %d:\n%v", len(lsr), len(files)+1, lsr)
	}
	for _, line := range strings.Split(strings.TrimSpace(c.ok("ls", "-r", "--json", n.url("photos/run/")).stdout), "\n") {
		var e struct {
			Name  string
			Size  int64
			Mtime time.Time
		}
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("ls --json line %q: %v", line, err)
		}
		for _, f := range files {
			if e.Name == "run/tree/"+f.rel && (e.Size != f.size || !e.Mtime.Equal(f.mtime)) {
				t.Errorf("ls --json: %s is %d bytes, %v; want %d, %v", e.Name, e.Size, e.Mtime, f.size, f.mtime)
			}
		}
	}

	// Down into an existing folder: the tree lands under its own name.
	dst := t.TempDir()
	down := c.ok("cp", "-r", "--json", n.url("photos/run/tree/"), dst)
	for _, d := range doneEvents(t, down) {
		if sum, ok := sums[d.Key]; ok && d.SHA256 != sum {
			t.Errorf("%s: download's done line says SHA-256 %s, want %s", d.Key, d.SHA256, sum)
		}
	}
	if out, err := exec.Command(diff, "-r", src, filepath.Join(dst, "tree")).CombinedOutput(); err != nil {
		t.Errorf("diff -r of the tree and its round trip: %v\n%s", err, out)
	}
	if fi, err := os.Stat(filepath.Join(dst, "tree", "empty dir")); err != nil || !fi.IsDir() {
		t.Errorf("the empty folder did not come back: %v", err)
	}
	for _, f := range files {
		fi, err := os.Stat(filepath.Join(dst, "tree", filepath.FromSlash(f.rel)))
		if err != nil {
			t.Error(err)
			continue
		}
		if !fi.ModTime().Equal(f.mtime) {
			t.Errorf("%s came back with mtime %v, want %v", f.rel, fi.ModTime(), f.mtime)
		}
	}

	// Running the download again skips what is already there, but not a
	// file whose content changed; --resume none fetches everything.
	skipped := func(r result) map[string]int64 {
		m := map[string]int64{}
		for _, d := range doneEvents(t, r) {
			if !strings.HasSuffix(d.Key, "/") {
				m[d.Key] = *d.Skipped
			}
		}
		return m
	}
	for k, v := range skipped(c.ok("cp", "-r", "--json", n.url("photos/run/tree/"), dst)) {
		if v != fileSize(t, files, k) {
			t.Errorf("second download of %s skipped %d bytes, want all %d", k, v, fileSize(t, files, k))
		}
	}
	changed := filepath.Join(dst, "tree", "sub dir", "ünïcødé 日本", "データ.bin")
	b, err := os.ReadFile(changed)
	if err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if err := os.WriteFile(changed, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(changed, files[1].mtime, files[1].mtime); err != nil {
		t.Fatal(err)
	}
	for k, v := range skipped(c.ok("cp", "-r", "--json", n.url("photos/run/tree/"), dst)) {
		want := fileSize(t, files, k)
		if k == "run/tree/sub dir/ünïcødé 日本/データ.bin" {
			want = 0
		}
		if v != want {
			t.Errorf("download after changing one file: %s skipped %d bytes, want %d", k, v, want)
		}
	}
	if out, err := exec.Command(diff, "-r", src, filepath.Join(dst, "tree")).CombinedOutput(); err != nil {
		t.Errorf("the changed file was not fetched again: %v\n%s", err, out)
	}
	for k, v := range skipped(c.ok("cp", "-r", "--json", "--resume", "none", n.url("photos/run/tree/"), dst)) {
		if v != 0 {
			t.Errorf("download with --resume none skipped %d bytes of %s", v, k)
		}
	}

	// A folder without -r, and a missing object, are clear errors.
	c.fails([]string{"run/tree is a folder: add -r"}, "cp", n.url("photos/run/tree"), filepath.Join(t.TempDir(), "x"))
	c.fails([]string{"run/tree/nope: no such object"}, "cp", n.url("photos/run/tree/nope"), filepath.Join(t.TempDir(), "x"))

	// Down to a new name, the folder named without its slash.
	dst2 := filepath.Join(t.TempDir(), "copy")
	c.ok("cp", "-r", "--quiet", n.url("photos/run/tree"), dst2)
	if out, err := exec.Command(diff, "-r", src, dst2).CombinedOutput(); err != nil {
		t.Errorf("diff -r of the tree and its copy under a new name: %v\n%s", err, out)
	}
}

// TestLsQuotesControlCharacters: a key holding a newline and an escape
// sequence (valid in S3, and so possibly in a shared bucket) is listed as
// one quoted line, not as raw bytes for the terminal.
func TestLsQuotesControlCharacters(t *testing.T) {
	n := startNode(t, "photos")
	c := newClient(t)
	n.authorize("", c.pub)
	f := filepath.Join(t.TempDir(), "f")
	makeFile(t, f, 10, 1)
	c.ok("cp", "--quiet", f, n.url("photos/evil%0Afake%1B%5B31m"))
	c.ok("cp", "--quiet", f, n.url("photos/plain é"))

	out := c.ok("ls", n.url("photos/")).stdout
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 2 || strings.ContainsAny(out, "\x1b\r") {
		t.Fatalf("ls printed %q, want two lines and no control characters", out)
	}
	if !strings.HasSuffix(lines[0], `  "evil\nfake\x1b[31m"`) || !strings.HasSuffix(lines[1], "  plain é") {
		t.Errorf("ls lines:\n%s\nwant the first name quoted with escapes, the second as it is", out)
	}
	// --json carries the name as it is.
	var e struct{ Name string }
	if err := json.Unmarshal([]byte(strings.Split(c.ok("ls", "--json", n.url("photos/")).stdout, "\n")[0]), &e); err != nil || e.Name != "evil\nfake\x1b[31m" {
		t.Errorf("ls --json: name %q, %v", e.Name, err)
	}
}

// A download of one named object asks the server about it once: the
// plan's stat serves the copy too (each request is a round trip, 0.1 s
// on a long path). A retry asks again.
func TestDownloadOfOneObjectAsksOnce(t *testing.T) {
	n := newNode(t, 0, []string{"photos"}, "--debug")
	c := newClient(t)
	n.authorize("", c.pub)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	sum := makeFile(t, src, 100<<10, 7)
	c.ok("cp", "--quiet", src, n.url("photos/one"))

	stats := func() int { return strings.Count(n.output(), "op=stat ") }
	before := stats()
	dst := filepath.Join(dir, "back")
	c.ok("cp", "--quiet", n.url("photos/one"), dst)
	if got := sha256File(t, dst); got != sum {
		t.Fatalf("downloaded SHA-256 %s, want %s", got, sum)
	}
	if n := stats() - before; n != 1 {
		t.Errorf("the download sent %d stat requests, want 1", n)
	}
}
