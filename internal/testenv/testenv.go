// Package testenv lets tests ask for the machine resources they need (root,
// /dev/fuse, a tool on PATH, the SeaweedFS binary) and say so loudly when one
// is missing.
//
// A missing resource skips the test with a message that names it and the way
// to provide it. When CHUTE_TEST_STRICT=1 (make test and CI set it) a missing
// resource fails the test instead: CI must not skip.
package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// Strict reports whether missing resources fail tests rather than skip them.
func Strict() bool { return os.Getenv("CHUTE_TEST_STRICT") == "1" }

// Missing skips (or, in strict mode, fails) t because a resource is absent.
func Missing(t testing.TB, what, howToFix string) {
	t.Helper()
	msg := "MISSING RESOURCE: " + what + " — " + howToFix
	if Strict() {
		t.Fatal(msg + " (CHUTE_TEST_STRICT=1 turns this skip into a failure)")
	}
	t.Log(msg)
	t.Skip(msg)
}

// RequireRoot needs the test to run as root (network namespaces, mounts).
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "root privileges", "run the tests as root (sudo make test)")
	}
}

// RequireFUSE needs /dev/fuse and fusermount3.
func RequireFUSE(t testing.TB) {
	t.Helper()
	if runtime.GOOS != "linux" {
		Missing(t, "Linux FUSE", "run on Linux")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		Missing(t, "/dev/fuse", "load the fuse module (modprobe fuse)")
	}
	RequireTool(t, "fusermount3", "apt-get install fuse3")
}

// RequireTool needs an executable on PATH and returns its path.
func RequireTool(t testing.TB, name, howToInstall string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, name+" on PATH", howToInstall)
	}
	return p
}

// RepoRoot returns the repository's top folder (the one holding go.mod).
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("testenv: go.mod not found above the working directory")
		}
		dir = parent
	}
}

// WeedBinary returns the SeaweedFS binary the tests start as their S3
// server: $CHUTE_WEED if set, else .cache/bin/weed in the repository (built
// by `make weed`, which make test runs first).
func WeedBinary(t testing.TB) string {
	t.Helper()
	p := os.Getenv("CHUTE_WEED")
	if p == "" {
		p = filepath.Join(RepoRoot(t), ".cache", "bin", "weed")
	}
	if _, err := os.Stat(p); err != nil {
		Missing(t, "the SeaweedFS binary at "+p, "run `make weed` (builds it once per machine, about 5 minutes)")
	}
	return p
}
