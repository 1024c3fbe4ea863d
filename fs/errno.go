package fs

import (
	"context"
	"errors"
	"syscall"

	"github.com/chute/chute/cos"
	"github.com/chute/chute/engine"
)

// toErrno is the one place where errors become errno values.
func toErrno(err error) syscall.Errno {
	var en syscall.Errno
	switch {
	case err == nil:
		return 0
	case errors.Is(err, cos.ErrNotFound):
		return syscall.ENOENT
	case errors.Is(err, cos.ErrExists):
		return syscall.EEXIST
	case errors.Is(err, cos.ErrNotEmpty):
		return syscall.ENOTEMPTY
	case errors.Is(err, cos.ErrPermission), errors.Is(err, engine.ErrAuth):
		return syscall.EACCES
	case errors.Is(err, cos.ErrInvalidKey):
		return syscall.EINVAL
	case errors.Is(err, cos.ErrTooLarge):
		return syscall.EFBIG
	case errors.Is(err, cos.ErrUnsupported):
		return syscall.ENOTSUP
	case errors.Is(err, cos.ErrConflict):
		return syscall.ESTALE
	case errors.Is(err, context.Canceled):
		return syscall.EINTR
	case errors.As(err, &en):
		return en
	}
	// Unreachable servers, timeouts, checksum and protocol failures, and
	// anything unforeseen.
	return syscall.EIO
}
