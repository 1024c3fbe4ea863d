// Package cos is chute's object storage layer: one small Store interface,
// an embedded folder store (the default) and an S3 store for any
// S3-compatible service (IBM Cloud Object Storage, AWS S3, Ceph RGW,
// SeaweedFS, MinIO).
//
// The package knows nothing of UDP or FUSE. The transfer engine on the
// server side is its only caller.
//
// # Stores and helpers
//
//   - NewFolder: objects as plain files under <root>/<bucket>; see Folder
//     for its layout, guarantees and limits.
//   - NewS3: any S3-compatible service through minio-go; NewS3 checks the
//     endpoint, TLS, credentials and bucket at once and says what to fix.
//   - NewReader: sequential reads with ranged reads in flight ahead, for
//     senders faster than one request.
//   - PlanParts and PartRange: the part layout every store uses.
//   - Package costest: the conformance suite every Store passes, and
//     FaultStore for tests of callers; package s3test: SeaweedFS as a real
//     S3 server for tests and benchmarks.
//
// # Keys and folders
//
// A key is a slash-separated path without a leading slash, without empty,
// "." or ".." elements and without NUL bytes; ValidKey checks one. A key
// ending in "/" names a folder marker object ("dir/"). Prefixes without a
// marker are folders too: List with Delimiter "/" reports them as
// CommonPrefixes.
//
// # Metadata
//
// Object metadata uses the user-metadata names rclone and s3fs already use,
// so a bucket looks the same through every tool: "mtime", "mode", "uid",
// "gid" (see Meta). chute also records "sha256" (hex) when it knows the
// object's whole checksum. The value forms are the ones both tools read
// back correctly (FormatMtime, ParseMtime, ParseMode), checked against
// rclone 1.60 and s3fs 1.90 in this package's tests.
package cos

import (
	"context"
	"errors"
	"io"
	"os"
	"strconv"
	"time"
	"unicode/utf8"
)

// Errors callers test with errors.Is. Implementations wrap them in an
// *Error that records the operation, bucket and key.
var (
	ErrNotFound      = errors.New("not found")               // no such object, bucket or upload
	ErrExists        = errors.New("already exists")          // e.g. CreateBucket on an existing bucket
	ErrPermission    = errors.New("permission denied")       // the store refused the credentials or the action
	ErrInvalidKey    = errors.New("invalid object key")      // see ValidKey
	ErrInvalidBucket = errors.New("invalid bucket name")     // see ValidBucket
	ErrUnavailable   = errors.New("store unavailable")       // network error, timeout, 5xx after retries
	ErrConflict      = errors.New("conflicting change")      // precondition failed, upload changed under us
	ErrNotEmpty      = errors.New("folder not empty")        // reserved for callers that remove folders
	ErrTooLarge      = errors.New("object too large")        // beyond the store's limits (e.g. 10,000 parts)
	ErrChecksum      = errors.New("checksum mismatch")       // data does not match the expected digest
	ErrUnsupported   = errors.New("operation not supported") // the store cannot do this at all
)

// Error records a failed store operation. Err is one of the sentinel errors
// above, or wraps one, or is the underlying cause when none applies.
type Error struct {
	Op     string // "stat", "read", "put", "list", "delete", "copy", "upload", ...
	Bucket string
	Key    string
	Err    error
}

func (e *Error) Error() string {
	s := "cos: " + e.Op
	if e.Bucket != "" {
		s += " " + Printable(e.Bucket)
		if e.Key != "" {
			s += "/" + Printable(e.Key)
		}
	}
	return s + ": " + e.Err.Error()
}

// Printable returns s as it can be shown to a person: unchanged when it
// holds only printable characters, else quoted with Go escapes, so that a
// key cannot forge lines or drive a terminal.
func Printable(s string) string {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == utf8.RuneError {
			return strconv.Quote(s)
		}
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Meta is an object's user metadata, stored under the names rclone and s3fs
// use. The zero value of a field means "not recorded".
type Meta struct {
	Mtime  time.Time // "mtime": decimal seconds, a nine-digit fraction when not whole (see FormatMtime); read in any decimal form (ParseMtime)
	Mode   uint32    // "mode": st_mode, written in decimal as s3fs does (33188 for a 0644 file); rclone's octal is read too (ParseMode)
	UID    *uint32   // "uid": decimal; nil when absent
	GID    *uint32   // "gid": decimal; nil when absent
	SHA256 string    // "sha256": lower-case hex of the whole object, when known
	// Other holds any further user metadata, keys in lower case without the
	// "x-amz-meta-" prefix. Implementations preserve it on Put and Copy.
	Other map[string]string
}

// ObjectInfo describes one object.
type ObjectInfo struct {
	Key          string
	Size         int64
	LastModified time.Time // when the store wrote it; Meta.Mtime is the file's own time
	ETag         string
	Meta         Meta
	// HasMeta is set when Meta is the object's metadata as Stat reports it;
	// listings of most stores leave Meta out (see ListOptions.WithMeta).
	HasMeta bool
}

// ModTime is the time a file system should show: Meta.Mtime when recorded,
// else LastModified.
func (o ObjectInfo) ModTime() time.Time {
	if !o.Meta.Mtime.IsZero() {
		return o.Meta.Mtime
	}
	return o.LastModified
}

// ListOptions selects part of a bucket.
type ListOptions struct {
	Prefix    string // only keys starting with Prefix
	Delimiter string // "" for a flat listing, "/" to roll up folders into CommonPrefixes
	// StartAfter continues a listing: only keys and common prefixes sorting
	// after it are returned (so a prefix StartAfter falls inside is not
	// returned again). Pass the previous page's NextStartAfter.
	StartAfter string
	MaxKeys    int // at most this many Objects+CommonPrefixes per page; 0 (or more than 1000) means 1000
	// WithMeta asks for each object's metadata, and for the marker objects
	// of CommonPrefixes (ListPage.Markers). Stores do not act on it
	// themselves; callers that can afford a Stat per object (a transfer
	// node, next to the store) fill pages with FillMeta.
	WithMeta bool
}

// ListPage is one page of a listing, in lexical key order. Objects do not
// carry Meta unless the store returns it for free (the S3 store does not).
type ListPage struct {
	Objects        []ObjectInfo
	CommonPrefixes []string // each ends with the delimiter
	// NextStartAfter is set when more remain; pass it as StartAfter.
	NextStartAfter string
	// Markers holds, for a page filled by FillMeta, the marker objects
	// ("p/") of those CommonPrefixes that have one.
	Markers []ObjectInfo
}

// ReadOptions bounds a read.
type ReadOptions struct {
	Offset int64
	Length int64 // -1 means to the end of the object
	// IfMatch, when set, is the ETag the object must still have (from an
	// earlier Stat); if it has changed, Read fails with ErrConflict. Reads
	// of one object in several ranges use it so as not to mix versions.
	IfMatch string
}

// Store is an object store holding buckets of objects.
//
// All methods are safe for concurrent use. A failed call returns an *Error
// wrapping one of the package's sentinel errors where one applies: callers
// test with errors.Is(err, cos.ErrNotFound) and the like. Keys are checked
// with ValidKey before the store is touched.
type Store interface {
	// CreateBucket makes a bucket. It returns ErrExists (wrapped) if the
	// bucket is already there.
	CreateBucket(ctx context.Context, bucket string) error
	// BucketExists reports whether the bucket exists and is reachable with
	// the store's credentials (ErrPermission if not).
	BucketExists(ctx context.Context, bucket string) (bool, error)

	// Stat returns the object's info and metadata, or ErrNotFound.
	Stat(ctx context.Context, bucket, key string) (ObjectInfo, error)
	// Read returns the object's bytes in [Offset, Offset+Length). Reading
	// past the end returns what there is; an Offset beyond the size is an
	// empty read. The caller closes the reader.
	Read(ctx context.Context, bucket, key string, opt ReadOptions) (io.ReadCloser, error)
	// Put stores r's size bytes (size -1: until EOF) as the object,
	// atomically: readers see the old object or the new one, never a part.
	// Large objects go up in multipart uploads underneath. When
	// meta.SHA256 is set, Put fails with ErrChecksum, leaving the key as it
	// was, if the data does not match it. A folder marker ("dir/") must be
	// empty.
	Put(ctx context.Context, bucket, key string, r io.Reader, size int64, meta Meta) (ObjectInfo, error)
	// List returns one page of the bucket's keys in lexical order.
	List(ctx context.Context, bucket string, opt ListOptions) (ListPage, error)
	// Delete removes an object. Deleting a missing object is not an error.
	Delete(ctx context.Context, bucket, key string) error
	// Copy copies src to dst within the bucket. With meta nil, the source's
	// metadata is kept; otherwise meta replaces it.
	Copy(ctx context.Context, bucket, src, dst string, meta *Meta) (ObjectInfo, error)

	// CreateUpload starts a resumable multipart upload of one object.
	CreateUpload(ctx context.Context, bucket, key string, opt UploadOptions) (Upload, error)
	// ResumeUpload finds an upload again by the ID an earlier Upload
	// reported, on this process or another one in front of the same store.
	// It returns ErrNotFound when the upload is gone (completed, aborted, or
	// expired), and the parts the store holds otherwise.
	ResumeUpload(ctx context.Context, bucket, key, uploadID string) (Upload, error)
	// AbortStaleUploads aborts unfinished uploads in the bucket started
	// before olderThan, and returns how many it aborted.
	AbortStaleUploads(ctx context.Context, bucket string, olderThan time.Time) (int, error)
}

// UploadOptions describes an upload.
type UploadOptions struct {
	Size     int64 // the object's final size; must be known
	PartSize int64 // 0 means the store's default; raised as needed to stay within MaxParts
	Meta     Meta  // the object's metadata, applied at Complete
}

// MaxParts is the most parts an upload may have (the S3 limit).
const MaxParts = 10000

// Part is one finished part of an upload. Parts are numbered from 1; part n
// holds bytes [(n-1)*PartSize, n*PartSize) of the object (the last may be
// shorter).
type Part struct {
	Number int
	Size   int64
	ETag   string
}

// LocalUpload is implemented by uploads whose parts live in one local file
// the caller may write directly (the folder store's): a transfer node then
// receives bytes straight into the object's future file instead of staging
// them and copying each part, which halves the disk writes.
type LocalUpload interface {
	Upload
	// DataFile opens the upload's data file for reading and writing at
	// object offsets; it is already Size() bytes long. The caller closes it.
	DataFile() (*os.File, error)
	// CommitPart records part n as written: the caller has written its
	// bytes into the data file. CommitPart makes them durable first.
	CommitPart(ctx context.Context, n int) (Part, error)
}

// LateMeta is implemented by stores whose multipart uploads take their
// metadata when they complete (the folder store): SetUploadMeta replaces
// what CreateUpload was given, until Complete. S3 fixes an object's
// metadata when its upload is created, so an S3 store has no such method,
// and a caller that learns the metadata late creates the upload late.
type LateMeta interface {
	SetUploadMeta(ctx context.Context, up Upload, m Meta) error
}

// Upload is a multipart upload in progress. Its parts may be written in any
// order and concurrently; a part written again replaces the earlier one. Its
// ID is enough for ResumeUpload to find it again after a crash.
type Upload interface {
	ID() string
	Bucket() string
	Key() string
	Size() int64
	PartSize() int64
	// NumParts is how many parts the object needs: ceil(Size/PartSize), and 1
	// for an empty object.
	NumParts() int
	// Parts returns the parts the store holds durably, in order of number.
	Parts() []Part
	// WritePart stores part n from r, which must yield exactly the part's
	// size. It is durable when WritePart returns.
	WritePart(ctx context.Context, n int, r io.Reader) (Part, error)
	// Complete assembles the parts into the object, atomically: the key shows
	// the previous object (or none) until Complete returns. It fails with
	// ErrConflict if a part is missing (the upload stays, to be finished),
	// and with ErrNotFound once the upload is gone. It does not check
	// Meta.SHA256: the caller verifies the data before completing.
	Complete(ctx context.Context) (ObjectInfo, error)
	// Abort discards the upload and its parts. Aborting an upload that is
	// already gone is not an error.
	Abort(ctx context.Context) error
}
