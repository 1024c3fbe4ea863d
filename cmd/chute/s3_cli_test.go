package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chute/chute/cos/s3test"
	"github.com/chute/chute/engine"
)

// runChuteS3 runs the chute binary with extra environment and returns its
// combined output and error.
func runChuteS3(t *testing.T, env []string, timeout time.Duration, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, chuteBin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("chute %s did not finish within %v:\n%s", strings.Join(args, " "), timeout, out.String())
	}
	return out.String(), err
}

// TestServerS3StartupErrors: a server in front of S3 that cannot work says
// so at start-up, in one clear line, instead of failing the first transfer.
func TestServerS3StartupErrors(t *testing.T) {
	weed := s3test.Start(t)
	data := t.TempDir()
	pub, err := engine.GenerateKey(filepath.Join(t.TempDir(), "id"), "")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(data, "authorized_keys"), []byte(pub+"\n"), 0o600)
	good := []string{"AWS_ACCESS_KEY_ID=" + weed.AccessKey, "AWS_SECRET_ACCESS_KEY=" + weed.SecretKey, "AWS_CA_BUNDLE="}
	for _, tc := range []struct {
		name     string
		env      []string
		endpoint string
		want     []string // all of these, case-insensitive
	}{
		{"wrong secret", []string{"AWS_ACCESS_KEY_ID=" + weed.AccessKey, "AWS_SECRET_ACCESS_KEY=not-the-secret", "AWS_CA_BUNDLE="}, weed.Endpoint, []string{"secret"}},
		{"unknown access key", []string{"AWS_ACCESS_KEY_ID=nobody", "AWS_SECRET_ACCESS_KEY=x", "AWS_CA_BUNDLE="}, weed.Endpoint, []string{"access key"}},
		{"nothing listening", good, "http://127.0.0.1:9", []string{"127.0.0.1:9"}},
		{"no credentials", []string{"AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY=", "AWS_SHARED_CREDENTIALS_FILE=/nonexistent", "AWS_CA_BUNDLE="}, weed.Endpoint, []string{"credentials"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runChuteS3(t, tc.env, 2*time.Minute, "server", "--data", data, "--listen", "127.0.0.1:0",
				"--store", "s3", "--s3-endpoint", tc.endpoint, "--bucket", "startup-check")
			if err == nil {
				t.Fatalf("server started:\n%s", out)
			}
			low := strings.ToLower(out)
			for _, w := range tc.want {
				if !strings.Contains(low, strings.ToLower(w)) {
					t.Errorf("message does not mention %q:\n%s", w, out)
				}
			}
			if strings.Contains(out, "goroutine ") || strings.Count(strings.TrimSpace(out), "\n") > 3 {
				t.Errorf("not a short, clear message:\n%s", out)
			}
		})
	}
}
