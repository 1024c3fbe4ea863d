package s3test_test

import (
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chute/chute/cos"
	"github.com/chute/chute/cos/s3test"
)

// TestKillRestartKeepsData checks the harness promises: a signed write
// works once Start returns, Kill leaves no stale sockets behind and makes
// the endpoint fail with ErrUnavailable, and Restart brings the same data
// back on the same endpoint.
func TestKillRestartKeepsData(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	store := srv.Store(t)
	bucket := srv.NewBucket(t)
	if _, err := store.Put(ctx, bucket, "kept", strings.NewReader("survives"), 8, cos.Meta{}); err != nil {
		t.Fatalf("put: %v", err)
	}
	endpoint := srv.Endpoint
	if err := srv.Kill(); err != nil {
		t.Fatalf("kill: %v", err)
	}
	for _, sock := range srv.Sockets() {
		if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket %s still exists after Kill (stat: %v)", sock, err)
		}
	}
	cfg := srv.Config()
	cfg.MaxRetries = 1
	down, err := cos.NewS3Unchecked(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := down.Stat(ctx, bucket, "kept"); !errors.Is(err, cos.ErrUnavailable) {
		t.Errorf("stat on a killed server: got %v, want an error wrapping ErrUnavailable", err)
	}
	if err := srv.Restart(ctx); err != nil {
		t.Fatalf("restart: %v", err)
	}
	if srv.Endpoint != endpoint {
		t.Errorf("endpoint changed across Restart: %s, then %s", endpoint, srv.Endpoint)
	}
	rc, err := store.Read(ctx, bucket, "kept", cos.ReadOptions{Length: -1})
	if err != nil {
		t.Fatalf("read after restart: %v", err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil || string(b) != "survives" {
		t.Errorf("read after restart: %q, %v; want %q", b, err, "survives")
	}
}

// TestTwoInstancesCoexist checks that two servers started side by side get
// distinct ports and sockets and serve independently.
func TestTwoInstancesCoexist(t *testing.T) {
	t.Parallel()
	a, b := s3test.Start(t), s3test.Start(t)
	if a.Endpoint == b.Endpoint {
		t.Fatalf("both servers on %s", a.Endpoint)
	}
	seen := map[string]bool{}
	for _, s := range append(a.Sockets(), b.Sockets()...) {
		if seen[s] {
			t.Errorf("socket %s shared by both servers", s)
		}
		seen[s] = true
	}
	ctx := context.Background()
	bucket := a.NewBucket(t)
	if ok, err := b.Store(t).BucketExists(ctx, bucket); err != nil || ok {
		t.Errorf("bucket %s made on server A: exists on server B = %v, %v; want false, nil", bucket, ok, err)
	}
}
