// Package costest is the conformance suite of cos.Store: every store runs
// it (Run), and so every store behaves the same to the engine. It also has
// a fault-injecting Store for other packages' tests (FaultStore).
package costest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chute/chute/cos"
)

// NewStore returns a new Store instance on the suite's backing storage.
// Called twice in one test it must return two instances over the same
// data (two servers in front of one bucket, or one server restarted), as
// resuming an upload from another instance needs.
type NewStore func(t *testing.T) cos.Store

// Quirks are departures from S3 that a real service is known to have. The
// suite skips the checks a quirk names, and logs that it did.
type Quirks struct {
	// MarkerMetaLost: folder markers ("dir/") come back without their user
	// metadata (SeaweedFS keeps a marker as a bare directory).
	MarkerMetaLost bool
	// FileHidesMarker: after Put("m/") and Put("m"), listings show "m"
	// but not "m/" (SeaweedFS).
	FileHidesMarker bool
	// PrefixesLinger: a prefix stays in listings for a while after its last
	// object is deleted (SeaweedFS removes empty folders every 30s or so).
	PrefixesLinger bool
	// ImplicitMarkers: Stat("p/") finds a folder marker where there is
	// only a prefix, keys under "p/" (SeaweedFS).
	ImplicitMarkers bool
}

type env struct {
	newStore NewStore
	quirks   Quirks
}

// skip logs that a quirk stops a check.
func (e env) skip(t *testing.T, quirk bool, what string) bool {
	t.Helper()
	if quirk {
		t.Logf("not checked, a known quirk of this store: %s", what)
	}
	return quirk
}

// Run runs the whole suite. Each test makes its own bucket.
func Run(t *testing.T, newStore NewStore) { RunWithQuirks(t, newStore, Quirks{}) }

// RunWithQuirks runs the suite on a store with known departures from S3.
func RunWithQuirks(t *testing.T, newStore NewStore, quirks Quirks) {
	e := env{newStore: newStore, quirks: quirks}
	tests := []struct {
		name string
		fn   func(t *testing.T, e env)
	}{
		{"Buckets", testBuckets},
		{"MissingBucket", testMissingBucket},
		{"InvalidKeys", testInvalidKeys},
		{"PutStatRead", testPutStatRead},
		{"ReadRanges", testReadRanges},
		{"EmptyObject", testEmptyObject},
		{"Missing", testMissing},
		{"Overwrite", testOverwrite},
		{"PutFailureKeepsOld", testPutFailureKeepsOld},
		{"PutAtomic", testPutAtomic},
		{"PutUnknownSize", testPutUnknownSize},
		{"ReadIfMatch", testReadIfMatch},
		{"MetaRoundTrip", testMetaRoundTrip},
		{"Delete", testDelete},
		{"Copy", testCopy},
		{"FolderMarkers", testFolderMarkers},
		{"FileAndFolder", testFileAndFolder},
		{"ListOrder", testListOrder},
		{"ListDelimiter", testListDelimiter},
		{"ListPagination", testListPagination},
		{"ListPrefixGone", testListPrefixGone},
		{"ConcurrentPutDelete", testConcurrentPutDelete},
		{"UploadOutOfOrder", testUploadOutOfOrder},
		{"UploadRewritePart", testUploadRewritePart},
		{"UploadResumeNewInstance", testUploadResume},
		{"UploadMissingPart", testUploadMissingPart},
		{"UploadCompleteIsAtomic", testUploadAtomic},
		{"UploadAbort", testUploadAbort},
		{"UploadAbortStale", testUploadAbortStale},
		{"UploadEmpty", testUploadEmpty},
		{"UploadBadParts", testUploadBadParts},
		{"UploadWrongID", testUploadWrongID},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, e) })
	}
}

// ---- helpers ------------------------------------------------------------------

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func randomName() string {
	b := make([]byte, 6)
	rand.Read(b)
	return "ct-" + hex.EncodeToString(b)
}

// setup returns a store and a new bucket on it.
func setup(t *testing.T, newStore NewStore) (context.Context, cos.Store, string) {
	t.Helper()
	ctx := ctxFor(t)
	s := newStore(t)
	bucket := randomName()
	if err := s.CreateBucket(ctx, bucket); err != nil {
		t.Fatalf("CreateBucket(%s): %v", bucket, err)
	}
	return ctx, s, bucket
}

func data(seed uint64, n int) []byte {
	r := mrand.New(mrand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func put(t *testing.T, ctx context.Context, s cos.Store, bucket, key string, b []byte, meta cos.Meta) cos.ObjectInfo {
	t.Helper()
	oi, err := s.Put(ctx, bucket, key, bytes.NewReader(b), int64(len(b)), meta)
	if err != nil {
		t.Fatalf("Put(%s, %d bytes): %v", key, len(b), err)
	}
	return oi
}

func read(t *testing.T, ctx context.Context, s cos.Store, bucket, key string, off, n int64) []byte {
	t.Helper()
	rc, err := s.Read(ctx, bucket, key, cos.ReadOptions{Offset: off, Length: n})
	if err != nil {
		t.Fatalf("Read(%s, %d, %d): %v", key, off, n, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("Read(%s, %d, %d): reading the body: %v", key, off, n, err)
	}
	return b
}

// wantErr checks that err wraps want and is a *cos.Error naming op's key.
func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: got error %v; want one wrapping %q", what, err, want)
		return
	}
	var ce *cos.Error
	if !errors.As(err, &ce) {
		t.Errorf("%s: error %v is not a *cos.Error", what, err)
	}
}

func u32(v uint32) *uint32 { return &v }

// listAll pages through a listing and returns the keys and prefixes in
// the order of the pages.
func listAll(t *testing.T, ctx context.Context, s cos.Store, bucket string, opt cos.ListOptions) (keys, prefixes []string, pages int) {
	t.Helper()
	for {
		page, err := s.List(ctx, bucket, opt)
		if err != nil {
			t.Fatalf("List(%+v): %v", opt, err)
		}
		pages++
		if n := len(page.Objects) + len(page.CommonPrefixes); opt.MaxKeys > 0 && n > opt.MaxKeys {
			t.Errorf("List(%+v): %d items on a page of at most %d", opt, n, opt.MaxKeys)
		}
		for _, o := range page.Objects {
			keys = append(keys, o.Key)
		}
		prefixes = append(prefixes, page.CommonPrefixes...)
		if page.NextStartAfter == "" {
			return keys, prefixes, pages
		}
		if page.NextStartAfter <= opt.StartAfter {
			t.Fatalf("List(%+v): NextStartAfter %q does not advance", opt, page.NextStartAfter)
		}
		if pages > 1000 {
			t.Fatalf("List(%+v): more than 1000 pages", opt)
		}
		opt.StartAfter = page.NextStartAfter
	}
}

// expectList computes what S3 returns for keys: a sorted selection, with
// keys holding the delimiter after the prefix rolled up.
func expectList(keys []string, opt cos.ListOptions) (objs, prefixes []string) {
	sorted := slices.Clone(keys)
	slices.Sort(sorted)
	for _, k := range sorted {
		if !strings.HasPrefix(k, opt.Prefix) {
			continue
		}
		if opt.Delimiter != "" {
			if i := strings.Index(k[len(opt.Prefix):], opt.Delimiter); i >= 0 {
				cp := k[:len(opt.Prefix)+i+len(opt.Delimiter)]
				if cp > opt.StartAfter && (len(prefixes) == 0 || prefixes[len(prefixes)-1] != cp) {
					prefixes = append(prefixes, cp)
				}
				continue
			}
		}
		if k > opt.StartAfter {
			objs = append(objs, k)
		}
	}
	return objs, prefixes
}

func sameStrings(a, b []string) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	return slices.Equal(a, b)
}

// errReader fails after giving some bytes.
type errReader struct {
	b   []byte
	err error
}

func (r *errReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, r.err
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

var errInjected = errors.New("injected reader failure")

func describe(b []byte) string {
	if len(b) <= 16 {
		return fmt.Sprintf("%q", b)
	}
	return fmt.Sprintf("%d bytes starting %q", len(b), b[:16])
}
