//go:build !linux

package cos

import "os"

// copyRange reports false: only Linux copies inside the kernel.
func copyRange(dst *os.File, dstOff int64, src *os.File, srcOff, n int64) (bool, error) {
	return false, nil
}
