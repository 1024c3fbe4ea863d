package linkem

import (
	"encoding/binary"
	"fmt"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// tunTxDropped returns how many packets the calling thread's network
// namespace dropped because its TUN device's queue was full: packets the
// kernel could not hand to the forwarder in time.
func tunTxDropped() (uint64, error) {
	b, err := syscall.NetlinkRIB(unix.RTM_GETLINK, unix.AF_UNSPEC)
	if err != nil {
		return 0, fmt.Errorf("linkem: netlink: %w", err)
	}
	msgs, err := syscall.ParseNetlinkMessage(b)
	if err != nil {
		return 0, fmt.Errorf("linkem: netlink: %w", err)
	}
	for i := range msgs {
		if msgs[i].Header.Type != unix.RTM_NEWLINK {
			continue
		}
		attrs, err := syscall.ParseNetlinkRouteAttr(&msgs[i])
		if err != nil {
			continue
		}
		var name string
		var stats []byte
		for _, a := range attrs {
			switch a.Attr.Type {
			case unix.IFLA_IFNAME:
				name = strings.TrimRight(string(a.Value), "\x00")
			case unix.IFLA_STATS64:
				stats = a.Value
			}
		}
		// struct rtnl_link_stats64: rx_packets, tx_packets, rx_bytes,
		// tx_bytes, rx_errors, tx_errors, rx_dropped, tx_dropped, ...
		if name == TUNName && len(stats) >= 8*8 {
			return binary.NativeEndian.Uint64(stats[7*8:]), nil
		}
	}
	return 0, fmt.Errorf("linkem: no %s in namespace", TUNName)
}
