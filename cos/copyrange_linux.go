package cos

import (
	"errors"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// copyRange copies n bytes from src at srcOff to dst at dstOff inside the
// kernel (copy_file_range), without passing them through user space. It
// reports false, having copied nothing, when the kernel or the file
// systems cannot do it; the caller then copies the ordinary way.
func copyRange(dst *os.File, dstOff int64, src *os.File, srcOff, n int64) (bool, error) {
	sfd, dfd := int(src.Fd()), int(dst.Fd())
	done := int64(0)
	for done < n {
		so, do := srcOff+done, dstOff+done
		k, err := unix.CopyFileRange(sfd, &so, dfd, &do, int(min(n-done, 1<<30)), 0)
		if err != nil {
			if done == 0 && (errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EINVAL) ||
				errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EBADF)) {
				return false, nil
			}
			return true, err
		}
		if k == 0 {
			return true, io.ErrUnexpectedEOF
		}
		done += int64(k)
	}
	return true, nil
}
