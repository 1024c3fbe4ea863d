// Package cache is the workstation's local state for a chute mount: one
// cache folder per host and bucket holding
//
//   - a Badger index (format version in the index; see index.go),
//   - staged write files (staged/), one per file being written, each with a
//     record: key, size, mtime, mode, owner, state (dirty, uploading,
//     uploaded), transfer id, and the engine's resume state, i.e. what the
//     server has acknowledged,
//   - cached read blocks (blocks/): one sparse file per object version
//     (key + size + ETag), with the ranges present recorded in the index and
//     evicted least recently used under Options.Size; staged data is never
//     evicted,
//   - the upload queue (queue.go), which re-queues every unfinished staged
//     upload at start-up without delaying Open, and which Close drains or
//     leaves recorded for the next Open: it never drops an upload,
//   - the listing cache (dirs.go): folder listings and object attributes
//     kept for Options.ListTTL and updated at once by the mount's own
//     changes.
//
// Staged files and records survive the mount process dying: staged bytes
// are ordinary file pages, index records sit in Badger's memory-mapped log.
// Neither is fsynced at close (as with any local file, a power loss before
// the kernel writes them back can lose them); fsync(2) uploads at once.
//
// The package is platform neutral: it returns Go errors (wrapping the cos
// sentinels, engine.ErrUnreachable and syscall.ENOSPC) and knows nothing of
// FUSE. It reaches the server only through Remote, which *engine.Client
// satisfies.
package cache
