package cos

import "syscall"

// fdatasync makes a file's data durable.
func fdatasync(fd int) error { return syscall.Fdatasync(fd) }
