package cos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
)

// The S3 store's upload IDs carry what S3 does not keep about an upload,
// so that any server can resume it from the ID alone:
//
//	chute1.<size>.<part size>.<S3's upload ID>
const s3UploadIDPrefix = "chute1."

func formatS3UploadID(size, partSize int64, s3ID string) string {
	return s3UploadIDPrefix + strconv.FormatInt(size, 10) + "." + strconv.FormatInt(partSize, 10) + "." + s3ID
}

func parseS3UploadID(id string) (size, partSize int64, s3ID string, ok bool) {
	rest, ok := strings.CutPrefix(id, s3UploadIDPrefix)
	if !ok {
		return 0, 0, "", false
	}
	f := strings.SplitN(rest, ".", 3)
	if len(f) != 3 || f[2] == "" {
		return 0, 0, "", false
	}
	size, err1 := strconv.ParseInt(f[0], 10, 64)
	partSize, err2 := strconv.ParseInt(f[1], 10, 64)
	if err1 != nil || err2 != nil || size < 0 || partSize <= 0 {
		return 0, 0, "", false
	}
	return size, partSize, f[2], true
}

// CreateUpload starts an S3 multipart upload. The metadata is sent now;
// S3 shows it with the object once Complete succeeds.
func (s *S3) CreateUpload(ctx context.Context, bucket, key string, opt UploadOptions) (Upload, error) {
	if err := s.check("create-upload", bucket, key); err != nil {
		return nil, err
	}
	if IsFolderKey(key) {
		return nil, opError("create-upload", bucket, key, fmt.Errorf("%w: a folder marker cannot be uploaded in parts", ErrUnsupported))
	}
	return s.createUpload(ctx, bucket, key, opt)
}

func (s *S3) createUpload(ctx context.Context, bucket, key string, opt UploadOptions) (*s3Upload, error) {
	ps := opt.PartSize
	if ps <= 0 {
		ps = s.cfg.PartSize
	}
	partSize, n, err := PlanParts(opt.Size, ps)
	if err != nil {
		return nil, opError("create-upload", bucket, key, err)
	}
	id, err := s.core.NewMultipartUpload(ctx, bucket, key, minio.PutObjectOptions{
		UserMetadata: opt.Meta.Encode(),
		ContentType:  "application/octet-stream",
	})
	if err != nil {
		return nil, s.err("create-upload", bucket, key, err)
	}
	s.log.Debug("upload created", "bucket", bucket, "key", key, "upload", id, "size", opt.Size, "part_size", partSize)
	return &s3Upload{s: s, bucket: bucket, key: key, s3ID: id, size: opt.Size, partSize: partSize, n: n, parts: map[int]Part{}}, nil
}

// ResumeUpload finds an upload by ID and lists the parts S3 holds.
func (s *S3) ResumeUpload(ctx context.Context, bucket, key, uploadID string) (Upload, error) {
	if err := s.check("resume-upload", bucket, key); err != nil {
		return nil, err
	}
	size, partSize, s3ID, ok := parseS3UploadID(uploadID)
	if !ok {
		return nil, opError("resume-upload", bucket, key, fmt.Errorf("%w: %q is not an upload ID of this store", ErrNotFound, uploadID))
	}
	_, n, err := PlanParts(size, partSize)
	if err != nil || n > MaxParts {
		return nil, opError("resume-upload", bucket, key, fmt.Errorf("%w: upload ID %q has an impossible size", ErrNotFound, uploadID))
	}
	u := &s3Upload{s: s, bucket: bucket, key: key, s3ID: s3ID, size: size, partSize: partSize, n: n}
	parts, err := u.listParts(ctx)
	if err != nil {
		return nil, s.err("resume-upload", bucket, key, err)
	}
	u.parts = parts
	return u, nil
}

// AbortStaleUploads aborts the bucket's multipart uploads initiated before
// olderThan, whoever started them.
func (s *S3) AbortStaleUploads(ctx context.Context, bucket string, olderThan time.Time) (int, error) {
	if err := ValidBucket(bucket); err != nil {
		return 0, opError("abort-stale-uploads", bucket, "", err)
	}
	count := 0
	keyMarker, idMarker := "", ""
	for {
		res, err := s.core.ListMultipartUploads(ctx, bucket, "", keyMarker, idMarker, "", 1000)
		if err != nil {
			return count, s.err("abort-stale-uploads", bucket, "", err)
		}
		for _, up := range res.Uploads {
			if up.Initiated.IsZero() || !up.Initiated.Before(olderThan) {
				continue
			}
			if err := s.core.AbortMultipartUpload(ctx, bucket, up.Key, up.UploadID); err != nil && !errors.Is(s3Sentinel(err), ErrNotFound) {
				return count, s.err("abort-stale-uploads", bucket, up.Key, err)
			}
			s.log.Info("aborted a stale upload", "bucket", bucket, "key", up.Key, "upload", up.UploadID, "initiated", up.Initiated)
			count++
		}
		if !res.IsTruncated || (res.NextKeyMarker == keyMarker && res.NextUploadIDMarker == idMarker) {
			return count, nil
		}
		keyMarker, idMarker = res.NextKeyMarker, res.NextUploadIDMarker
	}
}

// s3Upload is a multipart upload of the S3 store.
type s3Upload struct {
	s           *S3
	bucket, key string
	s3ID        string
	size        int64
	partSize    int64
	n           int

	mu    sync.Mutex
	parts map[int]Part
}

var _ Upload = (*s3Upload)(nil)

func (u *s3Upload) ID() string      { return formatS3UploadID(u.size, u.partSize, u.s3ID) }
func (u *s3Upload) Bucket() string  { return u.bucket }
func (u *s3Upload) Key() string     { return u.key }
func (u *s3Upload) Size() int64     { return u.size }
func (u *s3Upload) PartSize() int64 { return u.partSize }
func (u *s3Upload) NumParts() int   { return u.n }

func (u *s3Upload) Parts() []Part {
	u.mu.Lock()
	defer u.mu.Unlock()
	return sortedParts(u.parts)
}

// listParts asks S3 for the parts it holds, keeping those of the right
// size for their number.
func (u *s3Upload) listParts(ctx context.Context) (map[int]Part, error) {
	parts := map[int]Part{}
	marker := 0
	for {
		res, err := u.s.core.ListObjectParts(ctx, u.bucket, u.key, u.s3ID, marker, 1000)
		if err != nil {
			return nil, err
		}
		for _, p := range res.ObjectParts {
			if p.PartNumber < 1 || p.PartNumber > u.n {
				continue
			}
			if _, want := PartRange(u.size, u.partSize, p.PartNumber); p.Size != want {
				continue
			}
			parts[p.PartNumber] = Part{Number: p.PartNumber, Size: p.Size, ETag: strings.Trim(p.ETag, `"`)}
		}
		if !res.IsTruncated || res.NextPartNumberMarker <= marker {
			return parts, nil
		}
		marker = res.NextPartNumberMarker
	}
}

// sizer is a reader that knows how much it holds (io.SectionReader,
// bytes.Reader, strings.Reader).
type sizer interface{ Size() int64 }
type lener interface{ Len() int }

// WritePart uploads part n. A reader that can seek (io.SectionReader) lets
// failed requests be retried.
func (u *s3Upload) WritePart(ctx context.Context, n int, r io.Reader) (Part, error) {
	if n < 1 || n > u.n {
		return Part{}, opError("write-part", u.bucket, u.key, fmt.Errorf("part %d is out of range: the upload has parts 1 to %d", n, u.n))
	}
	_, size := PartRange(u.size, u.partSize, n)
	var have int64 = -1
	switch v := r.(type) {
	case sizer:
		have = v.Size()
		if sk, ok := r.(io.Seeker); ok {
			if pos, err := sk.Seek(0, io.SeekCurrent); err == nil {
				have -= pos
			}
		}
	case lener:
		have = int64(v.Len())
	}
	if have >= 0 && have != size {
		return Part{}, opError("write-part", u.bucket, u.key, fmt.Errorf("part %d has %d bytes; it must have %d", n, have, size))
	}
	p, err := u.writePart(ctx, n, r, size)
	if err != nil {
		return Part{}, err
	}
	if have < 0 {
		if err := exhausted(r, n, size); err != nil {
			return Part{}, opError("write-part", u.bucket, u.key, err)
		}
	}
	return p, nil
}

func (u *s3Upload) writePart(ctx context.Context, n int, r io.Reader, size int64) (Part, error) {
	op, err := u.s.core.PutObjectPart(ctx, u.bucket, u.key, u.s3ID, n, r, size, minio.PutObjectPartOptions{
		DisableContentSha256: !u.s.cfg.SignPayload,
	})
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "unexpected EOF") {
			return Part{}, opError("write-part", u.bucket, u.key, fmt.Errorf("part %d: the reader ended before %d bytes: %w", n, size, err))
		}
		return Part{}, u.s.err("write-part", u.bucket, u.key, err)
	}
	p := Part{Number: n, Size: size, ETag: strings.Trim(op.ETag, `"`)}
	u.mu.Lock()
	u.parts[n] = p
	u.mu.Unlock()
	return p, nil
}

// Complete lists the parts S3 holds (written through any server), checks
// that none is missing, and completes the upload.
func (u *s3Upload) Complete(ctx context.Context) (ObjectInfo, error) {
	parts, err := u.listParts(ctx)
	if err != nil {
		return ObjectInfo{}, u.s.err("complete", u.bucket, u.key, err)
	}
	if missing := missingParts(parts, u.n); len(missing) > 0 {
		return ObjectInfo{}, opError("complete", u.bucket, u.key, fmt.Errorf("%w: upload lacks %s (of %d)", ErrConflict, missing, u.n))
	}
	// A part this Upload wrote itself is named by the ETag of its last
	// write: some services (SeaweedFS) keep every version of a rewritten
	// part and list the first, but complete with the one named.
	u.mu.Lock()
	list := make([]minio.CompletePart, 0, u.n)
	for i := 1; i <= u.n; i++ {
		etag := parts[i].ETag
		if mine, ok := u.parts[i]; ok && mine.ETag != "" {
			etag = mine.ETag
		}
		list = append(list, minio.CompletePart{PartNumber: i, ETag: etag})
	}
	u.mu.Unlock()
	if _, err := u.s.core.CompleteMultipartUpload(ctx, u.bucket, u.key, u.s3ID, list, minio.PutObjectOptions{}); err != nil {
		return ObjectInfo{}, u.s.err("complete", u.bucket, u.key, err)
	}
	u.mu.Lock()
	u.parts = map[int]Part{}
	u.mu.Unlock()
	return u.s.Stat(ctx, u.bucket, u.key)
}

// Abort discards the upload. An upload already gone is not an error.
func (u *s3Upload) Abort(ctx context.Context) error {
	err := u.s.core.AbortMultipartUpload(ctx, u.bucket, u.key, u.s3ID)
	if err != nil && !errors.Is(s3Sentinel(err), ErrNotFound) {
		return u.s.err("abort", u.bucket, u.key, err)
	}
	u.mu.Lock()
	u.parts = map[int]Part{}
	u.mu.Unlock()
	return nil
}
