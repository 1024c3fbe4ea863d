package linkem

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// SetNice sets the scheduling niceness (-20 highest .. 19 lowest) of
// every thread of this process; threads the Go runtime starts later
// inherit it from the thread that starts them. An emulator competes for
// the CPU with the programs it carries: with a negative niceness its
// packets leave on time even when those programs (or anything else on
// the machine) keep every core busy. Lowering niceness needs root
// (CAP_SYS_NICE).
func SetNice(nice int) error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return fmt.Errorf("linkem: %w", err)
	}
	var errs []error
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.Setpriority(unix.PRIO_PROCESS, tid, nice); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("linkem: set niceness of thread %d: %w", tid, err))
		}
	}
	return errors.Join(errs...)
}
