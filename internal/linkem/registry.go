package linkem

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// RunDir holds one record per live emulator, <name>.json, locked with
// flock by its owner for as long as the emulator lives. Other files named
// <name>.* (a control socket, say) are removed with the record.
const RunDir = "/run/chute-linkem"

// ErrNameInUse reports that a live emulator already has the name.
var ErrNameInUse = errors.New("linkem: name in use by a live emulator")

// ErrNotFound reports that no emulator has the name.
var ErrNotFound = errors.New("linkem: no such emulator")

// Info describes an emulator for scripts: what `linkem up --json` prints
// and what the record in RunDir holds.
type Info struct {
	Name string `json:"name"`
	PID  int    `json:"pid"`
	MTU  int    `json:"mtu"`
	Near End    `json:"near"`
	Far  End    `json:"far"`
	// Alive is set by List: the owner still holds the record's lock.
	Alive bool `json:"alive,omitempty"`
}

// End describes one namespace of an emulator.
type End struct {
	Netns string     `json:"netns"` // name, for ip -n
	Path  string     `json:"path"`  // for nsenter --net=
	Addr  netip.Addr `json:"addr"`
	Dev   string     `json:"dev"`
}

// NetnsName returns the namespace name of an emulator's end: "near" or
// "far".
func NetnsName(name, end string) string { return "chute-" + name + "-" + end }

func recordPath(name string) string { return filepath.Join(RunDir, name+".json") }

// record is an open, locked record of a live emulator.
type record struct {
	f *os.File
}

// claim creates and locks the record for name, or fails with ErrNameInUse.
// A record left by a dead owner is reclaimed, its namespaces removed.
func claim(name string, log *slog.Logger) (*record, error) {
	if err := os.MkdirAll(RunDir, 0o755); err != nil {
		return nil, fmt.Errorf("linkem: %w", err)
	}
	for range 3 {
		f, err := os.OpenFile(recordPath(name), os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("linkem: %w", err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, fmt.Errorf("%w: %s", ErrNameInUse, name)
			}
			return nil, fmt.Errorf("linkem: lock record of %s: %w", name, err)
		}
		// The file may have been removed between open and lock by an
		// owner closing or a cleanup; then try again with a new one.
		var st1, st2 unix.Stat_t
		if unix.Fstat(int(f.Fd()), &st1) != nil || unix.Stat(recordPath(name), &st2) != nil || st1.Ino != st2.Ino {
			f.Close()
			continue
		}
		// A namespace left by a dead owner under this name goes first.
		for _, end := range []string{"near", "far"} {
			if _, err := os.Stat(filepath.Join(NetnsDir, NetnsName(name, end))); err == nil {
				log.Info("linkem: removing leftover namespace", "netns", NetnsName(name, end))
				if err := deleteNetns(NetnsName(name, end)); err != nil {
					f.Close()
					return nil, err
				}
			}
		}
		return &record{f: f}, nil
	}
	return nil, fmt.Errorf("linkem: record of %s keeps changing", name)
}

func (r *record) write(info Info) error {
	b, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return err
	}
	if err := r.f.Truncate(0); err != nil {
		return fmt.Errorf("linkem: %w", err)
	}
	if _, err := r.f.WriteAt(append(b, '\n'), 0); err != nil {
		return fmt.Errorf("linkem: %w", err)
	}
	return nil
}

// release removes the record and the other files of name, then unlocks.
func (r *record) release(name string) {
	removeRecordFiles(name)
	r.f.Close()
}

func removeRecordFiles(name string) {
	matches, _ := filepath.Glob(filepath.Join(RunDir, name+".*"))
	for _, m := range matches {
		// Only this name's files: "a.json" must not take "a.b.json".
		if rest := strings.TrimPrefix(filepath.Base(m), name+"."); !strings.Contains(rest, ".") {
			os.Remove(m)
		}
	}
}

// readRecord reads name's record and reports whether its owner is alive.
func readRecord(name string) (Info, error) {
	f, err := os.Open(recordPath(name))
	if errors.Is(err, os.ErrNotExist) {
		return Info{}, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	if err != nil {
		return Info{}, fmt.Errorf("linkem: %w", err)
	}
	defer f.Close()
	var info Info
	if err := json.NewDecoder(f).Decode(&info); err != nil {
		// A record being written by a starting owner may be empty.
		info = Info{Name: name}
	}
	info.Name = name
	info.Alive = false // the lock says, not the file
	switch err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); {
	case err == nil:
		unix.Flock(int(f.Fd()), unix.LOCK_UN)
	case errors.Is(err, unix.EWOULDBLOCK):
		info.Alive = true
	default:
		return Info{}, fmt.Errorf("linkem: lock record of %s: %w", name, err)
	}
	return info, nil
}

// List returns the emulators recorded on this machine, alive or left by
// a dead owner.
func List() ([]Info, error) {
	matches, err := filepath.Glob(filepath.Join(RunDir, "*.json"))
	if err != nil {
		return nil, err
	}
	var out []Info
	for _, m := range matches {
		name := strings.TrimSuffix(filepath.Base(m), ".json")
		if !ValidName(name) {
			continue
		}
		info, err := readRecord(name)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}

// Cleanup removes what emulators whose owner died left behind (their
// namespaces and records) and returns their names. Live emulators are
// not touched.
func Cleanup(log *slog.Logger) ([]string, error) {
	if log == nil {
		log = slog.Default()
	}
	infos, err := List()
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, info := range infos {
		if info.Alive {
			continue
		}
		ok, err := removeStale(info.Name, log)
		if err != nil {
			errs = append(errs, err)
		}
		if ok {
			removed = append(removed, info.Name)
		}
	}
	return removed, errors.Join(errs...)
}

// removeStale takes the lock of a dead owner's record, then removes its
// namespaces and files, and reports whether it did. It does nothing if
// the record is gone or locked again.
func removeStale(name string, log *slog.Logger) (bool, error) {
	f, err := os.OpenFile(recordPath(name), os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("linkem: %w", err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return false, nil // alive again, or being cleaned by someone else
	}
	var errs []error
	for _, end := range []string{"near", "far"} {
		ns := NetnsName(name, end)
		if _, err := os.Stat(filepath.Join(NetnsDir, ns)); err == nil {
			log.Info("linkem: removing leftover namespace", "netns", ns)
			errs = append(errs, deleteNetns(ns))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return false, err
	}
	removeRecordFiles(name)
	return true, nil
}

// Down stops the emulator called name: a live owner in another process is
// sent SIGTERM and given until ctx ends to remove its namespaces; what a
// dead owner left is removed at once. An emulator owned by this process
// must be stopped with Close instead.
func Down(ctx context.Context, name string, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	if !ValidName(name) {
		return fmt.Errorf("linkem: bad name %q", name)
	}
	info, err := readRecord(name)
	if err != nil {
		return err
	}
	if info.Alive {
		if info.PID == os.Getpid() {
			return fmt.Errorf("linkem: %s belongs to this process: Close it", name)
		}
		if info.PID <= 0 {
			return fmt.Errorf("linkem: record of %s names no owner process", name)
		}
		log.Info("linkem: stopping emulator", "name", name, "pid", info.PID)
		if err := syscall.Kill(info.PID, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("linkem: signal owner %d of %s: %w", info.PID, name, err)
		}
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			info, err = readRecord(name)
			if errors.Is(err, ErrNotFound) {
				return nil
			}
			if err != nil {
				return err
			}
			if !info.Alive {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("linkem: %s still running after SIGTERM to %d: %w", name, info.PID, ctx.Err())
			case <-t.C:
			}
		}
	}
	_, err = removeStale(name, log)
	return err
}

// pickSubnet returns the third octet X of 10.201.X.0/24 for a new
// emulator: one no live emulator uses, starting from a hash of name so
// that a name tends to keep its addresses.
func pickSubnet(name string) byte {
	used := map[byte]bool{}
	if infos, err := List(); err == nil {
		for _, in := range infos {
			if in.Alive && in.Near.Addr.Is4() {
				a := in.Near.Addr.As4()
				if a[0] == 10 && a[1] == 201 {
					used[a[2]] = true
				}
			}
		}
	}
	var h byte = 17
	for i := 0; i < len(name); i++ {
		h = h*31 + name[i]
	}
	for i := range 256 {
		x := h + byte(i)
		if !used[x] {
			return x
		}
	}
	return h
}
