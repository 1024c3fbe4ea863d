package fs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"testing"
	"time"
)

// TestModel applies the same random sequence of file operations to a local
// folder (the model) and to the mount, checks that each operation succeeds
// or fails alike, compares the two trees as it goes, and at the end
// compares the model with a fresh mount over a cold cache: what the server
// holds.
func TestModel(t *testing.T) {
	for _, wb := range []bool{false, true} {
		t.Run(fmt.Sprintf("writeback=%v", wb), func(t *testing.T) {
			for seed := uint64(1); seed <= modelSeeds; seed++ {
				t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { runModel(t, seed, wb) })
			}
		})
	}
}

var modelNames = []string{"a", "b c", "ünï", "d1", "d2", "x.txt"}

func runModel(t *testing.T, seed uint64, writeBack bool) {
	tm := mountFake(t, func(o *Options) { o.WriteBack = writeBack })
	model := t.TempDir()
	r := rand.New(rand.NewPCG(seed, 99))

	// paths returns the existing files and folders of the model.
	paths := func() (files, dirs []string) {
		dirs = []string{""}
		filepath.WalkDir(model, func(p string, d fs.DirEntry, err error) error {
			rel, _ := filepath.Rel(model, p)
			if rel == "." {
				return nil
			}
			if d.IsDir() {
				dirs = append(dirs, rel)
			} else {
				files = append(files, rel)
			}
			return nil
		})
		return files, dirs
	}
	pick := func(list []string) string { return list[r.IntN(len(list))] }
	newPath := func(dirs []string) string { return filepath.Join(pick(dirs), pick(modelNames)) }

	type op struct {
		name string
		do   func(root string) error
	}
	succeeded := 0
	for step := 0; step < 150; step++ {
		files, dirs := paths()
		var o op
		data := randomBytes(r.IntN(200<<10), r.Uint64())
		switch k := r.IntN(13) - 2; {
		case k <= 0 || len(files) == 0:
			p := newPath(dirs)
			o = op{"create " + p, func(root string) error { return os.WriteFile(filepath.Join(root, p), data, 0o644) }}
		case k == 1:
			p := pick(files)
			o = op{"overwrite " + p, func(root string) error { return os.WriteFile(filepath.Join(root, p), data, 0o644) }}
		case k == 2:
			p := pick(files)
			o = op{"append " + p, func(root string) error {
				f, err := os.OpenFile(filepath.Join(root, p), os.O_WRONLY|os.O_APPEND, 0)
				if err != nil {
					return err
				}
				_, err = f.Write(data[:min(len(data), 5000)])
				return errors.Join(err, f.Close())
			}}
		case k == 3:
			p := pick(files)
			off := int64(r.IntN(300 << 10))
			o = op{fmt.Sprintf("pwrite %s at %d", p, off), func(root string) error {
				f, err := os.OpenFile(filepath.Join(root, p), os.O_RDWR, 0)
				if err != nil {
					return err
				}
				_, err = f.WriteAt(data[:min(len(data), 7000)], off)
				return errors.Join(err, f.Close())
			}}
		case k == 4:
			p := pick(files)
			size := int64(r.IntN(250 << 10))
			o = op{fmt.Sprintf("truncate %s to %d", p, size), func(root string) error { return os.Truncate(filepath.Join(root, p), size) }}
		case k == 5:
			src, dst := pick(files), newPath(dirs)
			o = op{"rename " + src + " to " + dst, func(root string) error {
				return syscall.Rename(filepath.Join(root, src), filepath.Join(root, dst))
			}}
		case k == 6:
			p := pick(files)
			o = op{"unlink " + p, func(root string) error { return os.Remove(filepath.Join(root, p)) }}
		case k == 7:
			p := newPath(dirs)
			o = op{"mkdir " + p, func(root string) error { return os.Mkdir(filepath.Join(root, p), 0o755) }}
		case k == 8 && len(dirs) > 1:
			p := pick(dirs[1:])
			o = op{"rmdir " + p, func(root string) error { return syscall.Rmdir(filepath.Join(root, p)) }}
		case k == 9 && len(dirs) > 1:
			src, dst := pick(dirs[1:]), newPath(dirs)
			o = op{"rename folder " + src + " to " + dst, func(root string) error {
				return syscall.Rename(filepath.Join(root, src), filepath.Join(root, dst))
			}}
		default:
			p := pick(files)
			mode := os.FileMode(0o600 + r.IntN(2)*0o044)
			o = op{fmt.Sprintf("chmod %s %o", p, mode), func(root string) error { return os.Chmod(filepath.Join(root, p), mode) }}
		}
		want := o.do(model)
		got := o.do(tm.dir)
		if want == nil {
			succeeded++
		}
		if errno(want) != errno(got) {
			t.Fatalf("step %d, %s: model %v, mount %v", step, o.name, want, got)
		}
		if step%25 == 24 {
			compareTrees(t, fmt.Sprintf("after step %d (%s)", step, o.name), model, tm.dir)
		}
	}
	files, dirs := paths()
	t.Logf("%d of 150 operations succeeded; %d files and %d folders at the end", succeeded, len(files), len(dirs)-1)
	if succeeded < 75 {
		t.Fatal("the operations did too little to prove anything")
	}
	compareTrees(t, "at the end", model, tm.dir)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := tm.m.Unmount(ctx); err != nil {
		t.Fatal(err)
	}
	cold := mountWith(t, tm.fake, t.TempDir(), nil)
	compareTrees(t, "on the server", model, cold.dir)
}

// errno reduces an error to its errno, for comparing outcomes.
func errno(err error) syscall.Errno {
	var e syscall.Errno
	if err == nil {
		return 0
	}
	if errors.As(err, &e) {
		return e
	}
	return syscall.EIO
}

type treeEntry struct {
	dir  bool
	perm os.FileMode
	data []byte
}

func readTree(t *testing.T, root string) map[string]treeEntry {
	t.Helper()
	out := map[string]treeEntry{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		e := treeEntry{dir: d.IsDir()}
		if !e.dir {
			e.perm = fi.Mode().Perm()
			if e.data, err = os.ReadFile(p); err != nil {
				return err
			}
			if int64(len(e.data)) != fi.Size() {
				return fmt.Errorf("%s: stat says %d bytes, read gives %d", rel, fi.Size(), len(e.data))
			}
		}
		out[rel] = e
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	return out
}

func compareTrees(t *testing.T, when, model, mount string) {
	t.Helper()
	want, got := readTree(t, model), readTree(t, mount)
	var names []string
	for n := range want {
		names = append(names, n)
	}
	for n := range got {
		if _, ok := want[n]; !ok {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		w, okw := want[n]
		g, okg := got[n]
		switch {
		case !okg:
			t.Fatalf("%s: %q missing from the mount", when, n)
		case !okw:
			t.Fatalf("%s: %q in the mount only", when, n)
		case w.dir != g.dir:
			t.Fatalf("%s: %q is a folder in one tree only", when, n)
		case !bytes.Equal(w.data, g.data):
			t.Fatalf("%s: %q holds %d bytes, want %d (or different bytes)", when, n, len(g.data), len(w.data))
		case w.perm != g.perm:
			t.Fatalf("%s: %q mode %v, want %v", when, n, g.perm, w.perm)
		}
	}
}

// modelSeeds is how many random sequences TestModel tries per mode;
// CHUTE_MODEL_SEEDS raises it for a longer hunt.
var modelSeeds = func() uint64 {
	var n uint64 = 4
	fmt.Sscan(os.Getenv("CHUTE_MODEL_SEEDS"), &n)
	return n
}()
