package cache

import (
	"context"

	"github.com/chute/chute/cos"
	"github.com/chute/chute/engine"
)

// Remote is the far side of a mount: a chute server in front of the bucket.
// *engine.Client implements it; tests use cachetest.Fake.
//
// Failures that are worth retrying (the server unreachable, the connection
// lost) wrap engine.ErrUnreachable; errors from the server's store wrap the
// cos sentinels (cos.ErrNotFound, cos.ErrPermission, ...).
type Remote interface {
	Stat(ctx context.Context, bucket, key string) (cos.ObjectInfo, error)
	List(ctx context.Context, bucket string, opt cos.ListOptions) (cos.ListPage, error)
	// Put stores a small object (folder markers "dir/", tiny files) over the
	// control channel.
	Put(ctx context.Context, bucket, key string, data []byte, meta cos.Meta) (cos.ObjectInfo, error)
	Delete(ctx context.Context, bucket, key string) error
	// Copy copies src to dst inside the bucket (server side); meta nil keeps
	// the source's metadata.
	Copy(ctx context.Context, bucket, src, dst string, meta *cos.Meta) (cos.ObjectInfo, error)
	// Upload and Download block until the transfer ends (cancel with ctx).
	Upload(ctx context.Context, req engine.UploadRequest) (engine.Result, error)
	Download(ctx context.Context, req engine.DownloadRequest) (engine.Result, error)
}
