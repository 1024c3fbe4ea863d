package engine

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/chute/chute/cos"
)

// Policy is a rate policy, as in Aspera.
type Policy string

const (
	PolicyFair  Policy = "fair"  // adapt to the path's queueing delay, share with TCP (the default)
	PolicyFixed Policy = "fixed" // send at the target rate whatever the network does
	PolicyHigh  Policy = "high"  // adapt like fair, claiming about twice a fair share
	PolicyLow   Policy = "low"   // use only spare capacity, falling to the minimum under congestion
)

// ParsePolicy parses "fair", "fixed", "high" or "low"; "" is fair.
func ParsePolicy(s string) (Policy, error) {
	switch p := Policy(strings.ToLower(s)); p {
	case "":
		return PolicyFair, nil
	case PolicyFair, PolicyFixed, PolicyHigh, PolicyLow:
		return p, nil
	}
	return "", fmt.Errorf("unknown rate policy %q (want fixed, fair, high or low)", s)
}

// ResumePolicy says how a transfer decides what the far side already has,
// following Aspera's -k levels.
type ResumePolicy string

const (
	ResumeNone   ResumePolicy = "none"   // always send everything
	ResumeAttrs  ResumePolicy = "attrs"  // trust partial or existing data whose size and mtime match
	ResumeSparse ResumePolicy = "sparse" // attrs, plus checksums of samples spread over the data (the default)
	ResumeFull   ResumePolicy = "full"   // attrs, plus a checksum of all the data
)

// ParseResumePolicy parses "none", "attrs", "sparse", "full" (or Aspera's
// 0–3); "" is sparse.
func ParseResumePolicy(s string) (ResumePolicy, error) {
	switch strings.ToLower(s) {
	case "":
		return ResumeSparse, nil
	case "none", "0":
		return ResumeNone, nil
	case "attrs", "attributes", "1":
		return ResumeAttrs, nil
	case "sparse", "sparse_csum", "sparse_checksum", "2":
		return ResumeSparse, nil
	case "full", "full_csum", "full_checksum", "3":
		return ResumeFull, nil
	}
	return "", fmt.Errorf("unknown resume policy %q (want none, attrs, sparse or full)", s)
}

// Cipher names the per-packet encryption of the data channel.
type Cipher string

const (
	CipherAES256GCM Cipher = "aes-256-gcm" // the default
	CipherAES128GCM Cipher = "aes-128-gcm"
	CipherNone      Cipher = "none" // no encryption; packets are still authenticated by nothing: use on trusted paths only
)

// ParseCipher parses a cipher name; "" is aes-256-gcm.
func ParseCipher(s string) (Cipher, error) {
	switch c := Cipher(strings.ToLower(s)); c {
	case "":
		return CipherAES256GCM, nil
	case CipherAES256GCM, CipherAES128GCM, CipherNone:
		return c, nil
	}
	return "", fmt.Errorf("unknown cipher %q (want aes-256-gcm, aes-128-gcm or none)", s)
}

// Rate bounds how fast a transfer goes. Rates are in bits per second. The
// zero value means: the session's defaults.
type Rate struct {
	Target int64  // the most the transfer may use; 0 means the session's target
	Min    int64  // the least it keeps under congestion; 0 means the session's minimum
	Policy Policy // "" means the session's policy
}

// ParseBitRate parses a rate in bits per second with an optional k, m or g
// suffix (powers of 1000), and an optional "bps"/"bit" tail: "300m",
// "1.5g", "800kbps", "100000".
func ParseBitRate(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	for _, tail := range []string{"bit/s", "bps", "bit", "b"} {
		if strings.HasSuffix(t, tail) && len(t) > len(tail) {
			t = strings.TrimSuffix(t, tail)
			break
		}
	}
	mult := 1.0
	switch {
	case strings.HasSuffix(t, "k"):
		mult, t = 1e3, strings.TrimSuffix(t, "k")
	case strings.HasSuffix(t, "m"):
		mult, t = 1e6, strings.TrimSuffix(t, "m")
	case strings.HasSuffix(t, "g"):
		mult, t = 1e9, strings.TrimSuffix(t, "g")
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v < 0 || v*mult > 1e12 {
		return 0, fmt.Errorf("bad rate %q (want bits per second, e.g. 500m or 1.5g)", s)
	}
	return int64(v * mult), nil
}

// FormatBitRate formats bits per second for people: "312.5 Mbit/s".
func FormatBitRate(bps float64) string {
	switch {
	case bps >= 1e9:
		return strconv.FormatFloat(bps/1e9, 'f', 2, 64) + " Gbit/s"
	case bps >= 1e6:
		return strconv.FormatFloat(bps/1e6, 'f', 1, 64) + " Mbit/s"
	case bps >= 1e3:
		return strconv.FormatFloat(bps/1e3, 'f', 1, 64) + " kbit/s"
	}
	return strconv.FormatFloat(bps, 'f', 0, 64) + " bit/s"
}

// Range is a span of bytes of an object.
type Range struct {
	Off int64
	Len int64
}

// End is the offset just past the range.
func (r Range) End() int64 { return r.Off + r.Len }

// UploadRequest asks to store Source as an object.
type UploadRequest struct {
	Bucket string
	Key    string
	Source io.ReaderAt // read concurrently at any offset; must not change during the transfer
	Size   int64
	// Meta is the object's metadata (mtime, mode, uid, gid). The engine fills
	// in Meta.SHA256 by reading Source, unless the caller sets it (to the
	// hex SHA-256 of Source, computed as the bytes were written, say): the
	// server then checks what it received against that, and a wrong value
	// fails the upload with ErrChecksum rather than storing anything.
	Meta cos.Meta
	// Resume is how to decide what the server already has; "" is sparse.
	Resume ResumePolicy
	// State is the checkpoint an earlier attempt of the same upload reported
	// through OnCheckpoint, or nil. With it, a resumed upload finds the
	// server's partial data even through a different server in front of the
	// same store.
	State []byte
	// OnCheckpoint, if set, is called (from the engine's goroutines, one call
	// at a time) whenever the server has made more of the upload durable.
	// Keep the latest state to resume after a crash. It runs on the control
	// channel's reader, which takes the next message from the server (the
	// commit's answer among them) only once it returns: keep it quick.
	OnCheckpoint func(state []byte)
	Rate         Rate
}

// DownloadRequest asks for an object's bytes.
type DownloadRequest struct {
	Bucket string
	Key    string
	// Offset and Length select a range; Length -1 means to the end.
	Offset int64
	Length int64
	// Dest receives the bytes at their object offsets (not relative to
	// Offset). It is written concurrently at any offset.
	Dest io.WriterAt
	// Have lists ranges (object offsets) Dest already holds; they are not
	// sent again, and count as skipped.
	Have []Range
	// Resume, for a whole-object download into a file that already holds
	// data: how to decide Have is still good. "" is sparse.
	Resume ResumePolicy
	// OnData, if set, is called after bytes [off, off+n) have been written to
	// Dest. Calls come one at a time.
	OnData func(off, n int64)
	// Volatile says Dest is a cache whose bytes need not reach the disk
	// early: an *os.File Dest otherwise has each received range pushed to
	// disk at once, so that the final fsync of a download the user keeps
	// has little left to do.
	Volatile bool
	Rate     Rate
}

// State is where a transfer is in its life.
type State string

const (
	StateQueued    State = "queued"
	StateRunning   State = "running"
	StatePaused    State = "paused"
	StateCompleted State = "completed"
	StateFailed    State = "failed"
	StateCancelled State = "cancelled"
)

// Direction says which way the bytes go.
type Direction string

const (
	DirUpload   Direction = "upload"
	DirDownload Direction = "download"
)

// Stats is a snapshot of one transfer.
type Stats struct {
	ID        string
	Direction Direction
	Bucket    string
	Key       string
	State     State
	Size      int64   // bytes the transfer covers
	Done      int64   // bytes the receiver holds, including skipped ones
	Skipped   int64   // bytes not sent because the far side already had them
	Sent      int64   // payload bytes put on the wire, retransmissions included
	Retrans   int64   // payload bytes sent more than once
	Rate      float64 // current goodput, bits per second
	Target    int64   // the current target rate, bits per second
	Policy    Policy
	RTT       time.Duration // smoothed round-trip time of the data path
	Started   time.Time
	Elapsed   time.Duration
	Err       string // set when State is failed
}

// ETA estimates the time left at the current rate; 0 when unknown.
func (s Stats) ETA() time.Duration {
	if s.Rate <= 0 || s.Done >= s.Size {
		return 0
	}
	return time.Duration(float64(s.Size-s.Done) * 8 / s.Rate * float64(time.Second))
}

// Result is what a finished transfer reports.
type Result struct {
	Stats
	Object cos.ObjectInfo // the object as committed (uploads) or as read (downloads)
	SHA256 string         // hex digest of the whole object; "" when unknown (partial downloads, skipped objects that record none)
	// Verified says how the result was checked: VerifiedSHA256 when both
	// ends agreed on the whole object's SHA-256; for an upload skipped
	// because the object was already there, the resume policy that judged
	// it the same ("attrs" or "sparse") when the object records no SHA-256.
	Verified Verified
}

// Verified names how a transfer's result was checked.
type Verified string

// VerifiedSHA256: the whole object's SHA-256 matched at both ends.
const VerifiedSHA256 Verified = "sha256"

// Goodput is the object bytes moved per second of the transfer, in bits
// per second (skipped bytes do not count).
func (r Result) Goodput() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Size-r.Skipped) * 8 / r.Elapsed.Seconds()
}
