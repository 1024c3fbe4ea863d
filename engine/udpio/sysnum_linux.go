//go:build linux && !amd64 && !386

package udpio

import "syscall"

// System call numbers.
const (
	sysRECVMMSG = syscall.SYS_RECVMMSG
	sysSENDMMSG = syscall.SYS_SENDMMSG
	sysRECVMSG  = syscall.SYS_RECVMSG
	sysSENDMSG  = syscall.SYS_SENDMSG
)
