package udpio

import "syscall"

// System call numbers; the syscall package lacks sendmmsg on amd64.
const (
	sysRECVMMSG = syscall.SYS_RECVMMSG
	sysSENDMMSG = 307
	sysRECVMSG  = syscall.SYS_RECVMSG
	sysSENDMSG  = syscall.SYS_SENDMSG
)
