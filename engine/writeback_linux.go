package engine

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback asks the kernel to begin writing a freshly written range
// of f to disk now, without waiting for it. The periodic fdatasync that
// makes received bytes durable then finds little left to do, instead of
// flushing seconds of data at once and stalling the receiver behind it.
func startWriteback(f *os.File, off, n int64) {
	unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}

// datasync makes f's data durable (fdatasync: the size was set up front,
// so no metadata needs writing).
func datasync(f *os.File) error {
	return unix.Fdatasync(int(f.Fd()))
}
