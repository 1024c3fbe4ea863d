//go:build !linux

package cos

import "syscall"

// fdatasync makes a file's data durable (fsync where fdatasync is missing).
func fdatasync(fd int) error { return syscall.Fsync(fd) }
