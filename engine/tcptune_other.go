//go:build !linux

package engine

import "net"

func tuneControl(c net.Conn) error { return nil }

func threadInProcessNetns() bool { return true }
