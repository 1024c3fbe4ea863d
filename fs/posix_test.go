package fs

import (
	"testing"

	"github.com/hanwen/go-fuse/v2/posixtest"
)

// posixSkipped names the go-fuse posixtest cases that do not apply to a
// bucket mount, and why.
var posixSkipped = map[string]string{
	"Link":             "hard links are not supported (EPERM)",
	"LinkUnlinkRename": "hard links are not supported (EPERM)",
	"SymlinkReadlink":  "symbolic links are not supported (EPERM)",
	"SetattrSymlink":   "symbolic links are not supported (EPERM)",
	"OpenSymlinkRace":  "symbolic links are not supported (EPERM)",
	"XAttr":            "extended attributes are not supported (EOPNOTSUPP)",
	"XAttrLarge":       "extended attributes are not supported (EOPNOTSUPP)",
	// The mount leaves locks to the kernel, which keeps POSIX locks per
	// process: two descriptors of one process do not conflict.
	"FcntlFlockLocksFile": "locks are local to this machine and per process (no FUSE lock support)",
}

func TestPosix(t *testing.T) {
	for name, fn := range posixtest.All {
		t.Run(name, func(t *testing.T) {
			if why, ok := posixSkipped[name]; ok {
				t.Skip(why)
			}
			tm := mountFake(t, nil)
			fn(t, tm.dir)
		})
	}
}
