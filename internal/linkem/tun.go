package linkem

import (
	"errors"
	"fmt"
	"net/netip"
	"os"

	"golang.org/x/sys/unix"
)

// TUNName is the name of the TUN device in each namespace.
const TUNName = "linkem0"

// linkUp brings an interface of the calling thread's network namespace up.
func linkUp(sock int, name string) error {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(sock, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("linkem: get flags of %s: %w", name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(sock, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("linkem: bring %s up: %w", name, err)
	}
	return nil
}

// setupEnd configures the calling thread's (fresh) network namespace as
// one end of the link: lo up, a TUN device with addr and peer
// point-to-point, the given MTU and sysctls, and with offload virtio-net
// headers, partial checksums and TCP segmentation offload. It returns the TUN device,
// non-blocking, so reads and writes go through the runtime poller.
func setupEnd(addr, peer netip.Addr, mtu int, offload bool, sysctls map[string]string) (_ *os.File, err error) {
	sock, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("linkem: control socket: %w", err)
	}
	defer unix.Close(sock)
	if err := linkUp(sock, "lo"); err != nil {
		return nil, err
	}

	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("linkem: open /dev/net/tun: %w", err)
	}
	defer func() {
		if err != nil {
			unix.Close(fd)
		}
	}()
	ifr, err := unix.NewIfreq(TUNName)
	if err != nil {
		return nil, err
	}
	flags := uint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if offload {
		flags |= unix.IFF_VNET_HDR
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		return nil, fmt.Errorf("linkem: create TUN device: %w", err)
	}
	if offload {
		if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, tunFCsum|tunFTSO4); err != nil {
			return nil, fmt.Errorf("linkem: enable TUN offloads: %w", err)
		}
	}

	// No IPv6 on the link: it would only add router solicitations to the
	// traffic being measured. Kernels without IPv6 lack the file.
	if err := writeSysctl("net.ipv6.conf."+TUNName+".disable_ipv6", "1"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}

	set := func(req uint, what string, fill func(*unix.Ifreq) error) error {
		r, err := unix.NewIfreq(TUNName)
		if err != nil {
			return err
		}
		if err := fill(r); err != nil {
			return err
		}
		if err := unix.IoctlIfreq(sock, req, r); err != nil {
			return fmt.Errorf("linkem: set %s of %s: %w", what, TUNName, err)
		}
		return nil
	}
	a4, p4 := addr.As4(), peer.As4()
	steps := []struct {
		req  uint
		what string
		fill func(*unix.Ifreq) error
	}{
		{unix.SIOCSIFMTU, "MTU", func(r *unix.Ifreq) error { r.SetUint32(uint32(mtu)); return nil }},
		{unix.SIOCSIFTXQLEN, "queue length", func(r *unix.Ifreq) error { r.SetUint32(txQueueLen); return nil }},
		{unix.SIOCSIFADDR, "address", func(r *unix.Ifreq) error { return r.SetInet4Addr(a4[:]) }},
		{unix.SIOCSIFNETMASK, "netmask", func(r *unix.Ifreq) error { return r.SetInet4Addr([]byte{255, 255, 255, 255}) }},
		{unix.SIOCSIFDSTADDR, "peer address", func(r *unix.Ifreq) error { return r.SetInet4Addr(p4[:]) }},
	}
	for _, s := range steps {
		if err := set(s.req, s.what, s.fill); err != nil {
			return nil, err
		}
	}
	if err := linkUp(sock, TUNName); err != nil {
		return nil, err
	}
	for k, v := range sysctls {
		if err := writeSysctl(k, v); err != nil {
			return nil, err
		}
	}
	return os.NewFile(uintptr(fd), TUNName), nil
}

// txQueueLen is the TUN devices' transmit queue, in packets: long enough
// that bursts wait for the forwarder instead of being dropped by the
// kernel before the emulated queue sees them.
const txQueueLen = 1000
