package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"
)

type unmountOptions struct {
	timeout time.Duration
}

func init() {
	o := &unmountOptions{}
	register(&command{
		Name:    "unmount",
		Usage:   "unmount [flags] MOUNTPOINT",
		Summary: "unmount a chute mount once its pending uploads are done (or recorded)",
		Flags: func(fs *pflag.FlagSet) {
			fs.DurationVar(&o.timeout, "timeout", 0, "give up waiting after this long (default: wait until the mount has gone)")
		},
		Run: func(ctx context.Context, env *Env, args []string) error { return runUnmount(ctx, env, o, args) },
	})
}

func runUnmount(ctx context.Context, env *Env, o *unmountOptions, args []string) error {
	if len(args) != 1 {
		return usageError("unmount takes a mount point")
	}
	mp, err := filepath.Abs(args[0])
	if err != nil {
		return err
	}
	if o.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.timeout)
		defer cancel()
	}
	recPath := mountRecordPath(env, mp)
	b, err := os.ReadFile(recPath)
	var rec mountRecord
	if err == nil {
		err = json.Unmarshal(b, &rec)
	}
	if err != nil || rec.PID <= 0 || syscall.Kill(rec.PID, 0) != nil {
		// No live chute process on record: let fusermount3 unmount it; a
		// chute process serving it then drains on its own.
		if !isFuseMount(mp) {
			return fmt.Errorf("%s is not a mounted chute folder", mp)
		}
		cmd := exec.Command("fusermount3", "-u", mp)
		cmd.Dir = "/"
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("fusermount3 -u %s: %v: %s", mp, err, strings.TrimSpace(string(out)))
		}
		fmt.Fprintf(env.Stdout, "unmounted %s\n", mp)
		return nil
	}
	if err := syscall.Kill(rec.PID, syscall.SIGTERM); err != nil {
		return fmt.Errorf("signal the mount process %d: %w", rec.PID, err)
	}
	fmt.Fprintf(env.Stderr, "asked the mount process (pid %d) to unmount %s; waiting for its uploads\n", rec.PID, mp)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for syscall.Kill(rec.PID, 0) == nil {
		select {
		case <-ctx.Done():
			return fmt.Errorf("the mount process %d has not finished: %w (it goes on draining; run chute unmount again to wait)", rec.PID, ctx.Err())
		case <-tick.C:
		}
	}
	defer os.Remove(recPath + ".result")
	if b, err := os.ReadFile(recPath + ".result"); err == nil {
		var res mountRecord
		if json.Unmarshal(b, &res) == nil && res.Left != nil {
			if *res.Left > 0 {
				fmt.Fprintf(env.Stdout, "unmounted %s; %d uploads left recorded for the next mount\n", mp, *res.Left)
			} else {
				fmt.Fprintf(env.Stdout, "unmounted %s; all uploads done\n", mp)
			}
			return nil
		}
	}
	if isFuseMount(mp) {
		return errors.New("the mount process exited but " + mp + " is still mounted")
	}
	fmt.Fprintf(env.Stdout, "unmounted %s\n", mp)
	return nil
}

// isFuseMount reports whether mp is a FUSE mount point.
func isFuseMount(mp string) bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 10 || unescapeMountPath(f[4]) != mp {
			continue
		}
		for i, x := range f {
			if x == "-" && i+1 < len(f) && strings.HasPrefix(f[i+1], "fuse") {
				return true
			}
		}
	}
	return false
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			ok := true
			for _, c := range s[i+1 : i+4] {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + byte(c-'0')
			}
			if ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
