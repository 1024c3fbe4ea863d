package udpio

import "syscall"

// System call numbers; the syscall package reaches the socket calls through
// socketcall on 386, and Linux 4.3+ also has them as direct calls.
const (
	sysRECVMMSG = syscall.SYS_RECVMMSG
	sysSENDMMSG = 345
	sysRECVMSG  = 372
	sysSENDMSG  = 370
)
