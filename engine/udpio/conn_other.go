//go:build !linux

package udpio

import "net"

// newPlatform has no batching implementation outside Linux: New falls back to
// the one-datagram-at-a-time Conn.
func newPlatform(net.PacketConn, Options) (Conn, error) { return nil, nil }
