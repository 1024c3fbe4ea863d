package linkem

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// NetnsDir is where named network namespaces are bound, as with
// `ip netns add`.
const NetnsDir = "/run/netns"

// Namespace is one end of an emulated link: a named network namespace
// holding a TUN device with one address.
type Namespace struct {
	name string
	addr netip.Addr
	peer netip.Addr
}

// Name returns the namespace's name, as `ip netns list` shows it.
func (n *Namespace) Name() string { return n.name }

// Path returns the namespace's bind mount, for nsenter --net=PATH.
func (n *Namespace) Path() string { return filepath.Join(NetnsDir, n.name) }

// Addr returns this end's IPv4 address on the emulated link.
func (n *Namespace) Addr() netip.Addr { return n.addr }

// Peer returns the other end's IPv4 address.
func (n *Namespace) Peer() netip.Addr { return n.peer }

// Do runs f on an OS thread that has entered the namespace's network (and
// nothing else). Sockets f creates belong to the namespace for their whole
// life and may be used from any goroutine afterwards; goroutines f starts
// do not run in the namespace.
func (n *Namespace) Do(f func() error) error { return Do(n.Path(), f) }

// Command returns a command that runs name with args in the namespace's
// network, through nsenter --net; it keeps the host's mounts.
func (n *Namespace) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return Command(ctx, n.Path(), name, args...)
}

// Listen announces on the namespace's network, like net.Listen.
func (n *Namespace) Listen(ctx context.Context, network, address string) (net.Listener, error) {
	var l net.Listener
	err := n.Do(func() error {
		var err error
		var lc net.ListenConfig
		l, err = lc.Listen(ctx, network, address)
		return err
	})
	return l, err
}

// ListenPacket opens a packet socket in the namespace, like
// net.ListenPacket.
func (n *Namespace) ListenPacket(ctx context.Context, network, address string) (net.PacketConn, error) {
	var c net.PacketConn
	err := n.Do(func() error {
		var err error
		var lc net.ListenConfig
		c, err = lc.ListenPacket(ctx, network, address)
		return err
	})
	return c, err
}

// Dial connects from the namespace, like net.Dialer.DialContext. Give
// addresses as IP literals: names are not resolved inside the namespace.
func (n *Namespace) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() error {
		var err error
		var d net.Dialer
		c, err = d.DialContext(ctx, network, address)
		return err
	})
	return c, err
}

// Command returns a command that runs name with args in the network
// namespace bound at nsPath (for example /run/netns/chute-x-near), through
// nsenter --net. Only the network namespace changes: the process sees the
// host's mounts, so a FUSE mount it makes is visible everywhere (unlike
// `ip netns exec`, which also unshares the mount namespace).
func Command(ctx context.Context, nsPath, name string, args ...string) *exec.Cmd {
	a := append([]string{"--net=" + nsPath, "--", name}, args...)
	return exec.CommandContext(ctx, "nsenter", a...)
}

// Do runs f on an OS thread that has entered the network namespace bound
// at nsPath, then returns the thread to the caller's namespace. Sockets f
// creates stay in nsPath's namespace. Other namespaces (mounts, PIDs) are
// not touched. If the thread cannot be returned, it is retired rather
// than reused.
func Do(nsPath string, f func() error) error {
	target, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("linkem: open namespace %s: %w", nsPath, err)
	}
	defer unix.Close(target)
	return onThread(func() error {
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("linkem: enter namespace %s: %w", nsPath, err)
		}
		return f()
	})
}

// onThread runs f on a fresh goroutine locked to its OS thread, saving the
// thread's network namespace before and restoring it after. f may switch
// the thread's network namespace.
func onThread(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("linkem: open own namespace: %w", err)
			return
		}
		defer unix.Close(orig)
		ferr := f()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: it exits with this goroutine.
			errc <- errors.Join(ferr, fmt.Errorf("linkem: return to own namespace: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// createNetns creates a network namespace bound at NetnsDir/name, the way
// `ip netns add` does, and runs setup inside it. It fails if the name is
// taken.
func createNetns(name string, setup func() error) error {
	if err := prepareNetnsDir(); err != nil {
		return err
	}
	path := filepath.Join(NetnsDir, name)
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("linkem: create namespace file %s: %w", path, err)
	}
	unix.Close(fd)
	err = onThread(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("linkem: unshare network namespace: %w", err)
		}
		if err := unix.Mount("/proc/thread-self/ns/net", path, "none", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("linkem: bind namespace to %s: %w", path, err)
		}
		return setup()
	})
	if err != nil {
		deleteNetns(name)
		return err
	}
	return nil
}

// prepareNetnsDir makes NetnsDir a shared mount point, so that namespace
// bind mounts propagate to other mount namespaces (as iproute2 does).
func prepareNetnsDir() error {
	if err := os.MkdirAll(NetnsDir, 0o755); err != nil {
		return fmt.Errorf("linkem: %w", err)
	}
	err := unix.Mount("", NetnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if errors.Is(err, unix.EINVAL) {
		// Not a mount point yet: bind it onto itself, then share it.
		if err := unix.Mount(NetnsDir, NetnsDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("linkem: bind %s: %w", NetnsDir, err)
		}
		err = unix.Mount("", NetnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	}
	if err != nil {
		return fmt.Errorf("linkem: make %s shared: %w", NetnsDir, err)
	}
	return nil
}

// deleteNetns unbinds and removes a named namespace. The namespace itself
// disappears once no process, socket or device holds it. A missing
// namespace is not an error.
func deleteNetns(name string) error {
	path := filepath.Join(NetnsDir, name)
	err := unix.Unmount(path, unix.MNT_DETACH)
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("linkem: unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("linkem: %w", err)
	}
	return nil
}

// writeSysctl writes a per-namespace sysctl of the calling thread's
// network namespace, named with dots: "net.ipv4.tcp_congestion_control".
func writeSysctl(name, value string) error {
	path := "/proc/sys/" + strings.ReplaceAll(name, ".", "/")
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
		return fmt.Errorf("linkem: sysctl %s=%s: %w", name, value, err)
	}
	return nil
}
