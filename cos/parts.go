package cos

import "fmt"

// Part-size limits, as S3 sets them. Both stores apply them, so an upload
// has the same part layout whichever store is behind the server.
const (
	MinPartSize     = 5 << 20  // every part but the last is at least this big
	MaxPartSize     = 5 << 30  // no part is bigger
	DefaultPartSize = 16 << 20 // used when UploadOptions.PartSize is 0
	MaxObjectSize   = 5 << 40  // the largest object S3 stores
)

// PlanParts chooses the part size and the number of parts for an object of
// size bytes, starting from the requested part size (0: DefaultPartSize).
// The part size is raised to MinPartSize, and then, in whole MiB, until the
// object fits in MaxParts parts. An empty object has one empty part. It
// fails for a negative size, and with ErrTooLarge beyond MaxObjectSize.
func PlanParts(size, partSize int64) (int64, int, error) {
	if size < 0 {
		return 0, 0, fmt.Errorf("upload size %d: the size must be known", size)
	}
	if size > MaxObjectSize {
		return 0, 0, fmt.Errorf("%w: %d bytes, more than the %d bytes S3 allows", ErrTooLarge, size, int64(MaxObjectSize))
	}
	if partSize <= 0 {
		partSize = DefaultPartSize
	}
	partSize = max(partSize, MinPartSize)
	if need := (size + MaxParts - 1) / MaxParts; need > partSize {
		const mib = 1 << 20
		partSize = (need + mib - 1) / mib * mib
	}
	partSize = min(partSize, MaxPartSize)
	n := int((size + partSize - 1) / partSize)
	if n == 0 {
		n = 1
	}
	return partSize, n, nil
}

// PartRange returns the offset and size of part n (from 1) of an object of
// size bytes cut into parts of partSize.
func PartRange(size, partSize int64, n int) (off, length int64) {
	off = int64(n-1) * partSize
	return off, max(0, min(partSize, size-off))
}
