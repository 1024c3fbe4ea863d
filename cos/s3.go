package cos

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3Config configures an S3 store. The zero value of each field is a
// documented default.
type S3Config struct {
	// Endpoint is the service's URL: "https://s3.us-south.cloud-object-storage.appdomain.cloud",
	// "http://127.0.0.1:8333". A URL without a scheme means https. Required.
	Endpoint string
	// Region signs requests; "" means "us-east-1", which S3-compatible
	// services other than AWS generally accept.
	Region string
	// Addressing is "auto" (the default: virtual-host style for AWS and
	// hosts known to support it, path style otherwise), "path" or
	// "virtual".
	Addressing string

	// AccessKey and SecretKey (and SessionToken, for temporary
	// credentials) give credentials explicitly. When AccessKey is empty
	// they come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
	// AWS_SESSION_TOKEN, else from the shared credentials file.
	AccessKey, SecretKey, SessionToken string
	// CredentialsFile is the shared credentials file; "" means
	// AWS_SHARED_CREDENTIALS_FILE, else ~/.aws/credentials.
	CredentialsFile string
	// Profile is the file's profile; "" means AWS_PROFILE, else "default".
	Profile string
	// Anonymous sends unsigned requests (public buckets) instead of
	// failing when no credentials are found.
	Anonymous bool

	// CAFile is a PEM bundle of extra certificate authorities to trust;
	// "" means AWS_CA_BUNDLE when set. The system's roots are always
	// trusted.
	CAFile string

	// PartSize is the part size of multipart uploads made by Put, and the
	// default for CreateUpload; 0 means DefaultPartSize. It is raised as
	// PlanParts says.
	PartSize int64
	// Concurrency is how many parts Put sends at once; 0 means 4.
	Concurrency int
	// MaxRetries is how many times a failed request is tried in all; 0
	// means 4. Network errors and 5xx answers are retried with backoff.
	MaxRetries int
	// SignPayload signs the SHA-256 of each body over plain http, which
	// costs a pass over the data. Over https the payload is never signed
	// (TLS protects it).
	SignPayload bool

	// Bucket, when set, is the bucket Check makes sure of; without it,
	// Check lists the account's buckets.
	Bucket string
	// Logger receives the store's logs; nil means slog.Default().
	Logger *slog.Logger
}

// S3 is a Store on any S3-compatible service, through minio-go.
type S3 struct {
	cfg      S3Config
	endpoint string // scheme://host, for messages
	client   *minio.Client
	core     minio.Core
	log      *slog.Logger
}

var _ Store = (*S3)(nil)

// NewS3 connects to an S3-compatible service and checks, with one request,
// that it answers and accepts the credentials (see Check). A problem comes
// back as a one-line error that says what to fix.
func NewS3(ctx context.Context, cfg S3Config) (*S3, error) {
	s, err := newS3(cfg)
	if err != nil {
		return nil, err
	}
	if err := s.Check(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// NewS3Unchecked is NewS3 without the start-up request, for callers that
// run Check themselves later.
func NewS3Unchecked(cfg S3Config) (*S3, error) { return newS3(cfg) }

func newS3(cfg S3Config) (*S3, error) {
	fail := func(format string, args ...any) (*S3, error) {
		return nil, fmt.Errorf("cos: S3 configuration: "+format, args...)
	}
	if cfg.Endpoint == "" {
		return fail("no endpoint URL given (for example https://s3.example.com or http://127.0.0.1:8333)")
	}
	raw := cfg.Endpoint
	if !strings.Contains(raw, "://") {
		raw = "https://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fail("endpoint %q is not a URL like https://s3.example.com", cfg.Endpoint)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fail("endpoint %q: the scheme must be http or https", cfg.Endpoint)
	}
	if u.Path != "" && u.Path != "/" {
		return fail("endpoint %q has a path; give the service's base URL and the bucket separately", cfg.Endpoint)
	}
	secure := u.Scheme == "https"
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	lookup := minio.BucketLookupAuto
	switch strings.ToLower(cfg.Addressing) {
	case "", "auto":
	case "path":
		lookup = minio.BucketLookupPath
	case "virtual", "virtual-host", "dns":
		lookup = minio.BucketLookupDNS
	default:
		return fail("addressing %q: use auto, path or virtual", cfg.Addressing)
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 4
	}
	if cfg.MaxRetries <= 0 {
		cfg.MaxRetries = 4
	}
	if cfg.PartSize <= 0 {
		cfg.PartSize = DefaultPartSize
	}
	creds, err := resolveCredentials(cfg)
	if err != nil {
		return nil, fmt.Errorf("cos: S3 configuration: %w", err)
	}
	tr, err := minio.DefaultTransport(secure)
	if err != nil {
		return nil, fmt.Errorf("cos: S3 configuration: %w", err)
	}
	tr.MaxIdleConnsPerHost = 64
	if secure {
		ca := cfg.CAFile
		if ca == "" {
			ca = os.Getenv("AWS_CA_BUNDLE")
		}
		if ca != "" {
			pool, err := x509.SystemCertPool()
			if err != nil || pool == nil {
				pool = x509.NewCertPool()
			}
			pem, err := os.ReadFile(ca)
			if err != nil {
				return fail("CA bundle: %v", err)
			}
			if !pool.AppendCertsFromPEM(pem) {
				return fail("CA bundle %s holds no PEM certificates", ca)
			}
			if tr.TLSClientConfig == nil {
				tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
			}
			tr.TLSClientConfig.RootCAs = pool
		}
	}
	client, err := minio.New(u.Host, &minio.Options{
		Creds:        creds,
		Secure:       secure,
		Transport:    tr,
		Region:       cfg.Region,
		BucketLookup: lookup,
		MaxRetries:   cfg.MaxRetries,
	})
	if err != nil {
		return fail("%v", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &S3{
		cfg:      cfg,
		endpoint: u.Scheme + "://" + u.Host,
		client:   client,
		core:     minio.Core{Client: client},
		log:      log.With("store", "s3", "endpoint", u.Scheme+"://"+u.Host),
	}, nil
}

// resolveCredentials picks the first source that has credentials: the
// explicit fields, the environment, the shared credentials file.
func resolveCredentials(cfg S3Config) (*credentials.Credentials, error) {
	if cfg.AccessKey != "" || cfg.SecretKey != "" {
		if cfg.AccessKey == "" || cfg.SecretKey == "" {
			return nil, errors.New("an access key needs its secret key, and the other way round")
		}
		return credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, cfg.SessionToken), nil
	}
	env := credentials.NewEnvAWS()
	if v, err := env.Get(); err == nil && v.AccessKeyID != "" && v.SecretAccessKey != "" {
		return credentials.NewStaticV4(v.AccessKeyID, v.SecretAccessKey, v.SessionToken), nil
	}
	file := &credentials.FileAWSCredentials{Filename: cfg.CredentialsFile, Profile: cfg.Profile}
	fileCreds := credentials.New(file)
	v, ferr := fileCreds.Get()
	if ferr == nil && v.AccessKeyID != "" && v.SecretAccessKey != "" {
		return fileCreds, nil
	}
	if cfg.Anonymous {
		return credentials.NewStatic("", "", "", credentials.SignatureAnonymous), nil
	}
	where := "~/.aws/credentials"
	if f := cmp(cfg.CredentialsFile, os.Getenv("AWS_SHARED_CREDENTIALS_FILE")); f != "" {
		where = f
	}
	profile := cmp(cfg.Profile, os.Getenv("AWS_PROFILE"), "default")
	msg := fmt.Sprintf("no S3 credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or add profile [%s] to %s", profile, where)
	if ferr != nil && !errors.Is(ferr, os.ErrNotExist) {
		msg += " (" + oneLine(ferr.Error()) + ")"
	}
	return nil, errors.New(msg)
}

// cmp returns the first non-empty string.
func cmp(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// Check makes one request (HEAD of cfg.Bucket, or a bucket listing) and
// turns what can go wrong at start-up into one line saying what to fix:
// an unreachable endpoint, TLS trouble, refused credentials, a missing
// bucket. The error wraps ErrUnavailable, ErrPermission or ErrNotFound.
func (s *S3) Check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// One attempt: a start-up check should not spend a minute in backoff.
	probe, err := minio.New(s.client.EndpointURL().Host, &minio.Options{
		Creds:        s.credentials(),
		Secure:       s.client.EndpointURL().Scheme == "https",
		Transport:    s.transport(),
		Region:       s.cfg.Region,
		BucketLookup: s.lookup(),
		MaxRetries:   1,
	})
	if err != nil {
		return fmt.Errorf("cos: S3 configuration: %v", err)
	}
	if b := s.cfg.Bucket; b != "" {
		if err := ValidBucket(b); err != nil {
			return &Error{Op: "check", Bucket: b, Err: err}
		}
		// A GET rather than a HEAD: its error body tells a wrong access key
		// from a wrong secret and from a missing bucket.
		if _, err := (minio.Core{Client: probe}).ListObjectsV2(b, "", "", "", "", 1); err != nil {
			return s.explain("check", b, err)
		}
		return nil
	}
	if _, err := probe.ListBuckets(ctx); err != nil {
		return s.explain("check", "", err)
	}
	return nil
}

// The client's settings, for the probe client of Check.
func (s *S3) credentials() *credentials.Credentials {
	c, _ := resolveCredentials(s.cfg)
	return c
}

func (s *S3) transport() http.RoundTripper {
	tr, _ := minio.DefaultTransport(s.client.EndpointURL().Scheme == "https")
	if s.client.EndpointURL().Scheme == "https" {
		if ca := cmp(s.cfg.CAFile, os.Getenv("AWS_CA_BUNDLE")); ca != "" {
			if pem, err := os.ReadFile(ca); err == nil {
				pool, perr := x509.SystemCertPool()
				if perr != nil || pool == nil {
					pool = x509.NewCertPool()
				}
				pool.AppendCertsFromPEM(pem)
				tr.TLSClientConfig.RootCAs = pool
			}
		}
	}
	return tr
}

func (s *S3) lookup() minio.BucketLookupType {
	switch strings.ToLower(s.cfg.Addressing) {
	case "path":
		return minio.BucketLookupPath
	case "virtual", "virtual-host", "dns":
		return minio.BucketLookupDNS
	}
	return minio.BucketLookupAuto
}

// Endpoint returns the service's scheme://host.
func (s *S3) Endpoint() string { return s.endpoint }

// ---- buckets ----------------------------------------------------------------

// CreateBucket makes a bucket in the configured region.
func (s *S3) CreateBucket(ctx context.Context, bucket string) error {
	if err := ValidBucket(bucket); err != nil {
		return opError("create-bucket", bucket, "", err)
	}
	err := s.client.MakeBucket(ctx, bucket, minio.MakeBucketOptions{Region: s.cfg.Region})
	if err != nil {
		return s.err("create-bucket", bucket, "", err)
	}
	return nil
}

// BucketExists reports whether the bucket exists and the credentials reach
// it.
func (s *S3) BucketExists(ctx context.Context, bucket string) (bool, error) {
	if err := ValidBucket(bucket); err != nil {
		return false, opError("bucket-exists", bucket, "", err)
	}
	ok, err := s.client.BucketExists(ctx, bucket)
	if err != nil {
		return false, s.err("bucket-exists", bucket, "", err)
	}
	return ok, nil
}

func (s *S3) check(op, bucket, key string) error {
	if err := ValidBucket(bucket); err != nil {
		return opError(op, bucket, key, err)
	}
	if err := ValidKey(key); err != nil {
		return opError(op, bucket, key, err)
	}
	return nil
}

// ---- objects ------------------------------------------------------------------

// Stat returns the object's info and metadata (a HEAD request).
func (s *S3) Stat(ctx context.Context, bucket, key string) (ObjectInfo, error) {
	if err := s.check("stat", bucket, key); err != nil {
		return ObjectInfo{}, err
	}
	oi, err := s.client.StatObject(ctx, bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return ObjectInfo{}, s.err("stat", bucket, key, err)
	}
	return objectInfo(oi), nil
}

func objectInfo(oi minio.ObjectInfo) ObjectInfo {
	user := map[string]string{}
	for k, v := range oi.UserMetadata {
		user[k] = v
	}
	// Some services leave the user metadata in the headers only.
	for k, v := range oi.Metadata {
		if lk := strings.ToLower(k); strings.HasPrefix(lk, userMetaPrefix) && len(v) > 0 {
			user[lk[len(userMetaPrefix):]] = v[0]
		}
	}
	meta := DecodeMeta(user)
	if len(meta.Other) == 0 {
		meta.Other = nil
	}
	return ObjectInfo{Key: oi.Key, Size: oi.Size, LastModified: oi.LastModified, ETag: strings.Trim(oi.ETag, `"`), Meta: meta}
}

// Read returns a ranged GET of the object.
func (s *S3) Read(ctx context.Context, bucket, key string, opt ReadOptions) (io.ReadCloser, error) {
	if err := s.check("read", bucket, key); err != nil {
		return nil, err
	}
	if opt.Offset < 0 || opt.Length < -1 {
		return nil, opError("read", bucket, key, fmt.Errorf("invalid range: offset %d, length %d", opt.Offset, opt.Length))
	}
	var o minio.GetObjectOptions
	if opt.IfMatch != "" {
		o.SetMatchETag(opt.IfMatch)
	}
	if opt.Length == 0 {
		// No byte range can ask for nothing: check the object is there.
		if _, err := s.client.StatObject(ctx, bucket, key, o); err != nil {
			return nil, s.err("read", bucket, key, err)
		}
		return io.NopCloser(strings.NewReader("")), nil
	}
	if opt.Offset > 0 || opt.Length > 0 {
		end := int64(0)
		if opt.Length > 0 {
			end = opt.Offset + opt.Length - 1
		}
		if err := o.SetRange(opt.Offset, end); err != nil {
			return nil, opError("read", bucket, key, err)
		}
	}
	body, _, _, err := s.core.GetObject(ctx, bucket, key, o)
	if err != nil {
		var er minio.ErrorResponse
		if errors.As(err, &er) && (er.Code == "InvalidRange" || er.StatusCode == http.StatusRequestedRangeNotSatisfiable) {
			return io.NopCloser(strings.NewReader("")), nil // the object exists; the range starts past its end
		}
		return nil, s.err("read", bucket, key, err)
	}
	return &s3Body{ReadCloser: body, s: s, bucket: bucket, key: key}, nil
}

// s3Body maps errors met while reading a GET's body.
type s3Body struct {
	io.ReadCloser
	s           *S3
	bucket, key string
}

func (b *s3Body) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		err = b.s.err("read", b.bucket, b.key, err)
	}
	return n, err
}

// Put stores the object: in one request when it fits in a part, else in a
// multipart upload that is aborted if anything fails.
func (s *S3) Put(ctx context.Context, bucket, key string, r io.Reader, size int64, meta Meta) (ObjectInfo, error) {
	if err := s.check("put", bucket, key); err != nil {
		return ObjectInfo{}, err
	}
	if IsFolderKey(key) {
		if err := expectEmpty(r, size); err != nil {
			return ObjectInfo{}, opError("put", bucket, key, err)
		}
		return s.putSmall(ctx, bucket, key, nil, meta)
	}
	partSize := s.cfg.PartSize
	if size >= 0 {
		ps, _, err := PlanParts(size, partSize)
		if err != nil {
			return ObjectInfo{}, opError("put", bucket, key, err)
		}
		partSize = ps
	}
	partSize = max(partSize, MinPartSize)
	// Read the first part; if that is all there is, send it in one request.
	bufLen := partSize
	if size >= 0 {
		bufLen = min(size, partSize)
	}
	first := make([]byte, bufLen)
	n, err := io.ReadFull(ctxReader{ctx, r}, first)
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		if size >= 0 && int64(n) < size {
			return ObjectInfo{}, opError("put", bucket, key, fmt.Errorf("read %d of %d bytes: %w", n, size, io.ErrUnexpectedEOF))
		}
		return s.putSmall(ctx, bucket, key, first[:n], meta)
	case err != nil:
		return ObjectInfo{}, opError("put", bucket, key, err)
	case size >= 0 && int64(n) == size:
		return s.putSmall(ctx, bucket, key, first, meta)
	}
	return s.putMultipart(ctx, bucket, key, io.MultiReader(bytes.NewReader(first), r), size, partSize, meta)
}

func (s *S3) putSmall(ctx context.Context, bucket, key string, data []byte, meta Meta) (ObjectInfo, error) {
	sum := sha256.Sum256(data)
	sumHex := hex.EncodeToString(sum[:])
	if meta.SHA256 != "" && !strings.EqualFold(meta.SHA256, sumHex) {
		return ObjectInfo{}, opError("put", bucket, key, fmt.Errorf("%w: the data's SHA-256 is %s, the metadata says %s", ErrChecksum, sumHex, meta.SHA256))
	}
	opts := minio.PutObjectOptions{UserMetadata: meta.Encode(), ContentType: "application/octet-stream", DisableContentSha256: true}
	if _, err := s.core.PutObject(ctx, bucket, key, bytes.NewReader(data), int64(len(data)), "", sumHex, opts); err != nil {
		return ObjectInfo{}, s.err("put", bucket, key, err)
	}
	return s.Stat(ctx, bucket, key)
}

// putMultipart sends r in parts, cfg.Concurrency at a time, checking the
// SHA-256 in meta (when set) before completing.
func (s *S3) putMultipart(ctx context.Context, bucket, key string, r io.Reader, size, partSize int64, meta Meta) (ObjectInfo, error) {
	opts := UploadOptions{Size: size, PartSize: partSize, Meta: meta}
	if size < 0 {
		// Unknown: plan the most parts of this size; Complete takes what came.
		opts.Size = partSize * MaxParts
	}
	up, err := s.createUpload(ctx, bucket, key, opts)
	if err != nil {
		return ObjectInfo{}, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	hash := sha256.New()
	type job struct {
		n    int
		data []byte
	}
	jobs := make(chan job)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	setErr := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
			cancel()
		}
		mu.Unlock()
	}
	bufs := make(chan []byte, s.cfg.Concurrency+1)
	for range s.cfg.Concurrency + 1 {
		bufs <- make([]byte, up.partSize)
	}
	for range s.cfg.Concurrency {
		wg.Go(func() {
			for j := range jobs {
				if _, err := up.writePart(ctx, j.n, bytes.NewReader(j.data), int64(len(j.data))); err != nil {
					setErr(err)
				}
				bufs <- j.data[:cap(j.data)]
			}
		})
	}
	var total int64
	n := 0
	for {
		var buf []byte
		select {
		case buf = <-bufs:
		case <-ctx.Done():
		}
		if buf == nil {
			break
		}
		k, rerr := io.ReadFull(ctxReader{ctx, r}, buf)
		if k > 0 {
			n++
			if n > MaxParts {
				setErr(opError("put", bucket, key, fmt.Errorf("%w: more than %d parts of %d bytes", ErrTooLarge, MaxParts, up.partSize)))
				break
			}
			hash.Write(buf[:k])
			total += int64(k)
			select {
			case jobs <- job{n, buf[:k]}:
			case <-ctx.Done():
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			setErr(opError("put", bucket, key, rerr))
			break
		}
	}
	close(jobs)
	wg.Wait()
	if firstErr == nil && size >= 0 && total != size {
		firstErr = opError("put", bucket, key, fmt.Errorf("read %d of %d bytes: %w", total, size, io.ErrUnexpectedEOF))
	}
	if firstErr == nil && meta.SHA256 != "" {
		if got := hex.EncodeToString(hash.Sum(nil)); !strings.EqualFold(got, meta.SHA256) {
			firstErr = opError("put", bucket, key, fmt.Errorf("%w: the data's SHA-256 is %s, the metadata says %s", ErrChecksum, got, meta.SHA256))
		}
	}
	if firstErr == nil {
		up.size = total
		up.n = max(1, n)
		var oi ObjectInfo
		if oi, firstErr = up.Complete(ctx); firstErr == nil {
			return oi, nil
		}
	}
	actx, acancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer acancel()
	if err := up.Abort(actx); err != nil {
		s.log.Warn("aborting a failed upload", "bucket", bucket, "key", key, "upload", up.s3ID, "err", err)
	}
	if ctxErr := context.Cause(ctx); firstErr == nil && ctxErr != nil {
		firstErr = opError("put", bucket, key, ctxErr)
	}
	return ObjectInfo{}, firstErr
}

// List returns one page of keys (ListObjectsV2). Objects carry no Meta.
func (s *S3) List(ctx context.Context, bucket string, opt ListOptions) (ListPage, error) {
	if err := ValidBucket(bucket); err != nil {
		return ListPage{}, opError("list", bucket, "", err)
	}
	max := pageSize(opt.MaxKeys)
	type item struct {
		key string
		obj *ObjectInfo
	}
	var items []item
	token := ""
	more := false
	for {
		res, err := s.core.ListObjectsV2(bucket, opt.Prefix, opt.StartAfter, token, opt.Delimiter, max+1)
		if err != nil {
			return ListPage{}, s.err("list", bucket, "", err)
		}
		var got []item
		for _, c := range res.Contents {
			if c.Key <= opt.StartAfter || !strings.HasPrefix(c.Key, opt.Prefix) {
				continue
			}
			oi := ObjectInfo{Key: c.Key, Size: c.Size, LastModified: c.LastModified, ETag: strings.Trim(c.ETag, `"`)}
			got = append(got, item{key: c.Key, obj: &oi})
		}
		for _, p := range res.CommonPrefixes {
			if p.Prefix <= opt.StartAfter {
				continue // a prefix StartAfter falls inside was returned on an earlier page
			}
			got = append(got, item{key: p.Prefix})
		}
		items = mergeItems(items, got, func(a, b item) int { return strings.Compare(a.key, b.key) })
		if len(items) > max {
			more = true
			break
		}
		if !res.IsTruncated || res.NextContinuationToken == "" || res.NextContinuationToken == token {
			break
		}
		token = res.NextContinuationToken
	}
	var page ListPage
	if len(items) > max {
		items = items[:max]
	}
	for _, it := range items {
		if it.obj != nil {
			page.Objects = append(page.Objects, *it.obj)
		} else {
			page.CommonPrefixes = append(page.CommonPrefixes, it.key)
		}
	}
	if more {
		page.NextStartAfter = items[len(items)-1].key
	}
	return page, nil
}

// mergeItems merges b into sorted a, dropping duplicates.
func mergeItems[T any](a, b []T, cmp func(x, y T) int) []T {
	out := append(a, b...)
	sortStable(out, cmp)
	dedup := out[:0]
	for i, v := range out {
		if i > 0 && cmp(out[i-1], v) == 0 {
			continue
		}
		dedup = append(dedup, v)
	}
	return dedup
}

// Delete removes the object. A missing object is not an error.
func (s *S3) Delete(ctx context.Context, bucket, key string) error {
	if err := s.check("delete", bucket, key); err != nil {
		return err
	}
	err := s.client.RemoveObject(ctx, bucket, key, minio.RemoveObjectOptions{})
	if err != nil {
		if e := s.err("delete", bucket, key, err); errors.Is(e, ErrNotFound) && !isNoSuchBucket(err) {
			return nil
		} else {
			return e
		}
	}
	return nil
}

func isNoSuchBucket(err error) bool {
	var er minio.ErrorResponse
	return errors.As(err, &er) && er.Code == "NoSuchBucket"
}

// Copy copies src to dst on the server side.
func (s *S3) Copy(ctx context.Context, bucket, src, dst string, meta *Meta) (ObjectInfo, error) {
	if err := s.check("copy", bucket, src); err != nil {
		return ObjectInfo{}, err
	}
	if err := ValidKey(dst); err != nil {
		return ObjectInfo{}, opError("copy", bucket, dst, err)
	}
	if src == dst && meta == nil {
		return s.Stat(ctx, bucket, src)
	}
	info, err := s.Stat(ctx, bucket, src)
	if err != nil {
		return ObjectInfo{}, opError("copy", bucket, src, errors.Unwrap(err))
	}
	if IsFolderKey(dst) && info.Size > 0 {
		return ObjectInfo{}, opError("copy", bucket, dst, fmt.Errorf("%w: a folder marker cannot hold data (%d bytes)", ErrUnsupported, info.Size))
	}
	if info.Size > MaxPartSize {
		// One CopyObject request copies at most 5 GiB; compose larger ones.
		d := minio.CopyDestOptions{Bucket: bucket, Object: dst}
		if meta != nil {
			d.UserMetadata, d.ReplaceMetadata = meta.Encode(), true
		}
		if _, err := s.client.ComposeObject(ctx, d, minio.CopySrcOptions{Bucket: bucket, Object: src, MatchETag: info.ETag}); err != nil {
			return ObjectInfo{}, s.err("copy", bucket, dst, err)
		}
		return s.Stat(ctx, bucket, dst)
	}
	headers := map[string]string{"x-amz-copy-source-if-match": info.ETag}
	if meta != nil {
		headers["x-amz-metadata-directive"] = "REPLACE"
		headers["Content-Type"] = "application/octet-stream"
		for k, v := range meta.Encode() {
			headers[userMetaPrefix+k] = v
		}
	}
	if _, err := s.core.CopyObject(ctx, bucket, src, bucket, dst, headers, minio.CopySrcOptions{}, minio.PutObjectOptions{}); err != nil {
		return ObjectInfo{}, s.err("copy", bucket, dst, err)
	}
	return s.Stat(ctx, bucket, dst)
}

// ---- errors -------------------------------------------------------------------

// err wraps an S3 or network error for a Store result.
func (s *S3) err(op, bucket, key string, err error) error {
	return opError(op, bucket, key, withCause(s3Sentinel(err), s3Cause(err)))
}

// s3Cause gives a minio error response a shorter text that keeps its code.
func s3Cause(err error) error {
	var er minio.ErrorResponse
	if errors.As(err, &er) && er.Code != "" {
		msg := er.Message
		if msg == "" {
			msg = http.StatusText(er.StatusCode)
		}
		return &s3Error{code: er.Code, status: er.StatusCode, msg: oneLine(msg), err: err}
	}
	return err
}

// s3Error is an S3 error answer.
type s3Error struct {
	code   string
	status int
	msg    string
	err    error
}

func (e *s3Error) Error() string {
	return fmt.Sprintf("%s (HTTP %d): %s", e.code, e.status, e.msg)
}
func (e *s3Error) Unwrap() error { return e.err }

// s3Sentinel maps an S3 error code, HTTP status or network error to a
// sentinel.
func s3Sentinel(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	var er minio.ErrorResponse
	if errors.As(err, &er) && (er.Code != "" || er.StatusCode != 0) {
		switch er.Code {
		case "NoSuchKey", "NoSuchBucket", "NoSuchUpload", "NotFound", "NoSuchVersion":
			return ErrNotFound
		case "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken",
			"ExpiredToken", "AllAccessDisabled", "AccountProblem", "InvalidSecurity",
			"AuthorizationHeaderMalformed", "RequestTimeTooSkewed", "MissingSecurityHeader":
			return ErrPermission
		case "BucketAlreadyOwnedByYou", "BucketAlreadyExists":
			return ErrExists
		case "InvalidBucketName":
			return ErrInvalidBucket
		case "KeyTooLongError", "InvalidObjectName", "XMinioInvalidObjectName":
			return ErrInvalidKey
		case "PreconditionFailed", "InvalidPart", "InvalidPartOrder", "OperationAborted", "ConditionalRequestConflict":
			return ErrConflict
		case "EntityTooLarge", "MaxMessageLengthExceeded":
			return ErrTooLarge
		case "BadDigest", "XAmzContentSHA256Mismatch", "InvalidDigest", "XAmzContentChecksumMismatch":
			return ErrChecksum
		case "NotImplemented":
			return ErrUnsupported
		case "BucketNotEmpty":
			return ErrNotEmpty
		case "InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout":
			return ErrUnavailable
		}
		switch {
		case er.StatusCode == http.StatusNotFound:
			return ErrNotFound
		case er.StatusCode == http.StatusForbidden || er.StatusCode == http.StatusUnauthorized:
			return ErrPermission
		case er.StatusCode == http.StatusPreconditionFailed || er.StatusCode == http.StatusConflict:
			return ErrConflict
		case er.StatusCode >= 500:
			return ErrUnavailable
		}
		return nil
	}
	// Not an S3 answer: the request did not get through.
	var ue *url.Error
	if errors.As(err, &ue) || isNetError(err) {
		return ErrUnavailable
	}
	return nil
}

// Explain turns an error from the S3 store into one line that says what
// to fix, for a person reading a terminal: endpoint, TLS, credentials,
// bucket. The result still wraps err.
func (s *S3) Explain(err error) error {
	var ce *Error
	if errors.As(err, &ce) {
		return s.explain(ce.Op, ce.Bucket, err)
	}
	return s.explain("check", "", err)
}

func (s *S3) explain(op, bucket string, err error) error {
	hint := explainS3(err, s.endpoint, bucket, s.accessKey())
	sentinel := s3Sentinel(err)
	if sentinel == nil {
		sentinel = ErrUnavailable
	}
	return &Error{Op: op, Bucket: bucket, Err: &hintError{sentinel: sentinel, hint: hint, cause: err}}
}

func (s *S3) accessKey() string {
	if c := s.credentials(); c != nil {
		if v, err := c.Get(); err == nil {
			return v.AccessKeyID
		}
	}
	return ""
}

// hintError is a clear one-line message in front of the error it explains.
type hintError struct {
	sentinel error
	hint     string
	cause    error
}

func (e *hintError) Error() string   { return e.hint }
func (e *hintError) Unwrap() []error { return []error{e.sentinel, e.cause} }
