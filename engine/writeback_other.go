//go:build !linux

package engine

import "os"

func startWriteback(f *os.File, off, n int64) {}

func datasync(f *os.File) error { return f.Sync() }
