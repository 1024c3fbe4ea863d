package cos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"syscall"
	"testing"

	"github.com/minio/minio-go/v7"
)

func TestS3Sentinel(t *testing.T) {
	resp := func(code string, status int) error {
		return minio.ErrorResponse{Code: code, StatusCode: status, Message: "m"}
	}
	tests := []struct {
		err  error
		want error
	}{
		{resp("NoSuchKey", 404), ErrNotFound},
		{resp("NoSuchBucket", 404), ErrNotFound},
		{resp("NoSuchUpload", 404), ErrNotFound},
		{resp("", 404), ErrNotFound},
		{resp("AccessDenied", 403), ErrPermission},
		{resp("InvalidAccessKeyId", 403), ErrPermission},
		{resp("SignatureDoesNotMatch", 403), ErrPermission},
		{resp("ExpiredToken", 400), ErrPermission},
		{resp("BucketAlreadyOwnedByYou", 409), ErrExists},
		{resp("BucketAlreadyExists", 409), ErrExists},
		{resp("InvalidBucketName", 400), ErrInvalidBucket},
		{resp("KeyTooLongError", 400), ErrInvalidKey},
		{resp("PreconditionFailed", 412), ErrConflict},
		{resp("InvalidPart", 400), ErrConflict},
		{resp("EntityTooLarge", 400), ErrTooLarge},
		{resp("BadDigest", 400), ErrChecksum},
		{resp("NotImplemented", 501), ErrUnsupported},
		{resp("SlowDown", 503), ErrUnavailable},
		{resp("InternalError", 500), ErrUnavailable},
		{resp("", 502), ErrUnavailable},
		{resp("SomethingElse", 400), nil},
		{fmt.Errorf("wrapped: %w", resp("NoSuchKey", 404)), ErrNotFound},
		{&url.Error{Op: "Get", URL: "http://x", Err: &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}}, ErrUnavailable},
		{io.ErrUnexpectedEOF, ErrUnavailable},
		{syscall.ECONNRESET, ErrUnavailable},
		{context.Canceled, nil},
		{&url.Error{Op: "Get", URL: "http://x", Err: context.DeadlineExceeded}, nil},
		{errors.New("plain"), nil},
	}
	for _, tc := range tests {
		if got := s3Sentinel(tc.err); got != tc.want {
			t.Errorf("s3Sentinel(%v) = %v; want %v", tc.err, got, tc.want)
		}
	}
	// The store's error keeps both the sentinel and the cause.
	err := (&S3{}).err("stat", "b", "k", resp("NoSuchKey", 404))
	var er minio.ErrorResponse
	if !errors.Is(err, ErrNotFound) || !errors.As(err, &er) || er.Code != "NoSuchKey" {
		t.Errorf("err() = %v; want ErrNotFound and the minio.ErrorResponse both reachable", err)
	}
}

func TestS3UploadID(t *testing.T) {
	tests := []struct {
		size, part int64
		s3ID       string
	}{
		{0, 5 << 20, "abc"},
		{123456789, 16 << 20, "2~ZpqJ.b-x_y.z"},
		{MaxObjectSize, 550502400, "VXBsb2FkSUQ="},
	}
	for _, tc := range tests {
		id := formatS3UploadID(tc.size, tc.part, tc.s3ID)
		size, part, s3ID, ok := parseS3UploadID(id)
		if !ok || size != tc.size || part != tc.part || s3ID != tc.s3ID {
			t.Errorf("parse(format(%d, %d, %q)) = %d, %d, %q, %v", tc.size, tc.part, tc.s3ID, size, part, s3ID, ok)
		}
	}
	for _, bad := range []string{"", "abc", "chute1.", "chute1.1.2", "chute1.1.2.", "chute1.-1.5.x", "chute1.1.0.x", "chute1.a.5.x"} {
		if _, _, _, ok := parseS3UploadID(bad); ok {
			t.Errorf("parseS3UploadID(%q) accepted it", bad)
		}
	}
}
