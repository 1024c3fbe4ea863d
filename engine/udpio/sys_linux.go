//go:build linux

package udpio

import (
	"syscall"
	"unsafe"
)

// The kernel's socket structures, declared here with size_t fields as
// uintptr so that one definition has the kernel's layout on every Linux
// architecture (the syscall package's Msghdr differs between 32- and 64-bit
// systems and it has no mmsghdr).

// iovec is struct iovec.
type iovec struct {
	base *byte
	len  uintptr
}

// msghdr is struct user_msghdr.
type msghdr struct {
	name       *byte
	namelen    uint32
	iov        *iovec
	iovlen     uintptr
	control    *byte
	controllen uintptr
	flags      int32
}

// mmsghdr is struct mmsghdr.
type mmsghdr struct {
	hdr msghdr
	len uint32
}

// cmsghdr is struct cmsghdr.
type cmsghdr struct {
	len   uintptr
	level int32
	typ   int32
}

// UDP socket options and control message types (linux/udp.h).
const (
	solUDP     = syscall.IPPROTO_UDP
	udpSegment = 103 // UDP_SEGMENT: GSO segment size, a uint16
	udpGRO     = 104 // UDP_GRO: enable GRO; on receive, the segment size, an int
)

// cmsgAlign rounds n up to the alignment of control messages.
func cmsgAlign(n int) int {
	const a = int(unsafe.Sizeof(uintptr(0)))
	return (n + a - 1) &^ (a - 1)
}

var (
	// cmsgData is the offset of a control message's data from its header.
	cmsgData = cmsgAlign(int(unsafe.Sizeof(cmsghdr{})))
	// gsoOOB is the control buffer for one UDP_SEGMENT message (a uint16).
	gsoOOB = cmsgData + cmsgAlign(2)
)

// Compile-time checks that the declarations above match the syscall
// package's, field for field, on the architecture being built (an array
// length that underflows does not compile).
var (
	_ [unsafe.Sizeof(msghdr{}) - unsafe.Sizeof(syscall.Msghdr{})]byte
	_ [unsafe.Sizeof(syscall.Msghdr{}) - unsafe.Sizeof(msghdr{})]byte
	_ [unsafe.Offsetof(msghdr{}.iovlen) - unsafe.Offsetof(syscall.Msghdr{}.Iovlen)]byte
	_ [unsafe.Offsetof(syscall.Msghdr{}.Iovlen) - unsafe.Offsetof(msghdr{}.iovlen)]byte
	_ [unsafe.Offsetof(msghdr{}.controllen) - unsafe.Offsetof(syscall.Msghdr{}.Controllen)]byte
	_ [unsafe.Offsetof(syscall.Msghdr{}.Controllen) - unsafe.Offsetof(msghdr{}.controllen)]byte
	_ [unsafe.Offsetof(msghdr{}.flags) - unsafe.Offsetof(syscall.Msghdr{}.Flags)]byte
	_ [unsafe.Offsetof(syscall.Msghdr{}.Flags) - unsafe.Offsetof(msghdr{}.flags)]byte
	_ [unsafe.Sizeof(iovec{}) - unsafe.Sizeof(syscall.Iovec{})]byte
	_ [unsafe.Sizeof(syscall.Iovec{}) - unsafe.Sizeof(iovec{})]byte
	_ [unsafe.Sizeof(cmsghdr{}) - unsafe.Sizeof(syscall.Cmsghdr{})]byte
	_ [unsafe.Sizeof(syscall.Cmsghdr{}) - unsafe.Sizeof(cmsghdr{})]byte
	// struct mmsghdr: a msghdr, an unsigned int, padded to pointer alignment.
	_ [unsafe.Sizeof(mmsghdr{}) - (unsafe.Sizeof(msghdr{})+4+unsafe.Sizeof(uintptr(0))-1)&^(unsafe.Sizeof(uintptr(0))-1)]byte
	_ [(unsafe.Sizeof(msghdr{})+4+unsafe.Sizeof(uintptr(0))-1)&^(unsafe.Sizeof(uintptr(0))-1) - unsafe.Sizeof(mmsghdr{})]byte
)
