package cos

import (
	"context"
	"errors"
	"io/fs"
	"syscall"
)

// causeError carries a sentinel and the error that caused it, so that
// errors.Is finds both (cos.ErrNotFound and fs.ErrNotExist, say).
type causeError struct {
	sentinel error
	cause    error
}

func (e *causeError) Error() string {
	// "not found" says it all; the system call that found nothing is
	// detail for logs, not for people.
	if e.sentinel == ErrNotFound && errors.Is(e.cause, fs.ErrNotExist) {
		return e.sentinel.Error()
	}
	return e.sentinel.Error() + ": " + e.cause.Error()
}
func (e *causeError) Unwrap() []error { return []error{e.sentinel, e.cause} }

// withCause wraps cause so that it also matches sentinel. A nil sentinel,
// or a cause that already matches it, returns cause unchanged.
func withCause(sentinel, cause error) error {
	if sentinel == nil || errors.Is(cause, sentinel) {
		return cause
	}
	return &causeError{sentinel: sentinel, cause: cause}
}

// opError builds the *Error a Store returns.
func opError(op, bucket, key string, err error) error {
	var ce *Error
	if errors.As(err, &ce) && ce.Op == op && ce.Bucket == bucket && ce.Key == key {
		return err
	}
	return &Error{Op: op, Bucket: bucket, Key: key, Err: err}
}

// osSentinel maps an error from the local file system to the sentinel a
// caller should see, or nil when none applies.
func osSentinel(err error) error {
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return nil
	case errors.Is(err, fs.ErrNotExist):
		return ErrNotFound
	case errors.Is(err, fs.ErrPermission):
		return ErrPermission
	case errors.Is(err, syscall.ENOTDIR), errors.Is(err, syscall.EISDIR),
		errors.Is(err, syscall.ENOTEMPTY), errors.Is(err, fs.ErrExist):
		return ErrConflict
	case errors.Is(err, syscall.ENAMETOOLONG):
		return ErrInvalidKey
	case errors.Is(err, syscall.EFBIG):
		return ErrTooLarge
	}
	return nil
}

// fsError wraps a local file-system error for a Store result.
func fsError(op, bucket, key string, err error) error {
	return opError(op, bucket, key, withCause(osSentinel(err), err))
}
