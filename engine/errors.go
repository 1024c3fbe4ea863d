package engine

import "errors"

// Errors callers test with errors.Is. Errors from the server's store arrive
// wrapping the cos package's sentinels (cos.ErrNotFound, cos.ErrPermission,
// cos.ErrExists, cos.ErrInvalidKey, ...), so a file system can map them to
// errno values without knowing the engine.
var (
	// ErrUnreachable: the server could not be reached, or the connection to
	// it was lost. Retrying later may succeed; a transfer resumes from its
	// last checkpoint.
	ErrUnreachable = errors.New("server unreachable")
	// ErrNoDataPath: the server answered over SSH but never on its UDP
	// port, typically a firewall that lets TCP through and not UDP. It
	// wraps ErrUnreachable too; retrying at once meets the same wall.
	ErrNoDataPath = errors.New("no answer on the data path")
	// ErrHostKeyChanged: the server presented a host key different from the
	// one recorded in known_hosts. Never retried.
	ErrHostKeyChanged = errors.New("server host key changed")
	// ErrAuth: the server refused our key.
	ErrAuth = errors.New("authentication refused")
	// ErrCancelled: the transfer was cancelled.
	ErrCancelled = errors.New("transfer cancelled")
	// ErrChecksum: the object's SHA-256 did not match at the end.
	ErrChecksum = errors.New("checksum mismatch")
	// ErrProtocol: the peer broke the protocol (a bug or a version mismatch).
	ErrProtocol = errors.New("protocol error")
)
