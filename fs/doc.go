// Package fs mounts a bucket (or a prefix of one) as a folder with go-fuse.
// It maps POSIX calls onto package cache, which holds the local state and
// reaches the server through cache.Remote; errors become errno values in
// one function, toErrno.
//
// # What the mount does
//
//   - Folders are key prefixes. mkdir stores a "dir/" marker object;
//     prefixes without a marker show as folders too. rmdir removes the
//     marker and fails with ENOTEMPTY while anything lies below.
//   - Files are written to a staged copy in the cache folder. close (FLUSH,
//     on every close of every descriptor, dup'd ones included) uploads the
//     file when it changed and returns once the object is committed, with
//     EIO if that failed (the upload stays queued and is retried in the
//     background). With Options.WriteBack close returns at once and the
//     upload runs in the background. fsync always uploads now.
//   - An existing file opened for writing without O_TRUNC is fetched first;
//     random writes, appends and truncation then work on the local copy.
//   - Uploads go through the engine's Upload, which sends small files
//     inline on the control channel and larger ones as resumable transfers.
//   - Reads fetch ranges into cached blocks, with growing read-ahead for
//     sequential readers. The kernel keeps its cached pages across opens
//     while the object's ETag is unchanged.
//   - chmod, chown and utimes are kept as object metadata (the names rclone
//     and s3fs use): recorded on a staged file, or applied by copying the
//     object onto itself with the new metadata.
//   - rename of a file copies it on the server and deletes the source (a
//     staged file not yet uploaded just takes the new name). rename of a
//     folder moves every object below it one by one: it is NOT atomic, and
//     a failure part way leaves objects under both names (renaming again
//     finishes the move).
//   - Listings and attributes are cached for Options.ListTTL; the mount's
//     own changes show at once.
//   - A server that does not answer makes calls retry until
//     Options.IOTimeout has passed without progress; then they fail with
//     EIO.
//
// # What it does not do
//
// Symbolic and hard links, device nodes and fifos (EPERM), extended
// attributes (EOPNOTSUPP, as the kernel answers for a file system without
// them), RENAME_EXCHANGE (EINVAL). File locks are not sent to the mount:
// the kernel keeps flock and fcntl locks local to this machine. Access
// times are not stored.
package fs
