package engine

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/chute/chute/cos"
)

// The control channel is an SSH channel of its own type (ChannelType)
// carrying frames: a 4-byte big-endian length, then a JSON object. Requests
// carry an id and an op; the answer carries the same id and either a body
// or an error. Frames without an id are events. Many requests may be
// outstanding at once. The client's first request, hello, rides in the
// channel-open message itself, so the channel and the data session are
// agreed in one round trip; so does the request that made the client
// connect, behind the hello, when it needs no data session and is small
// (a stat, a list, a small put). (Servers also take the control channel as a
// "chute" subsystem of a session channel, as earlier clients asked for
// it: two round trips.)

// ProtocolVersion is the control protocol's version, checked in hello.
const ProtocolVersion = 3

// ChannelType is the SSH channel type of the control channel; the open
// message's extra data is the hello request's frame.
const ChannelType = "control@chute"

// SubsystemName is the SSH subsystem that carried the control channel
// before ChannelType; servers still accept it.
const SubsystemName = "chute"

// maxFrame bounds one control frame.
const maxFrame = 16 << 20

// MaxInline is the largest object sent over the control channel instead of
// a UDP transfer: one round trip instead of three.
const MaxInline = 256 << 10

type frame struct {
	ID   uint64          `json:"id,omitempty"`
	Op   string          `json:"op,omitempty"`
	Err  *wireErr        `json:"err,omitempty"`
	Body json.RawMessage `json:"body,omitempty"`
}

// wireErr is an error as it crosses the control channel: a code naming a
// sentinel, and the message.
type wireErr struct {
	Code string `json:"code"`
	Msg  string `json:"msg"`
}

var errCodes = []struct {
	code string
	err  error
}{
	{"not_found", cos.ErrNotFound},
	{"exists", cos.ErrExists},
	{"permission", cos.ErrPermission},
	{"invalid_key", cos.ErrInvalidKey},
	{"invalid_bucket", cos.ErrInvalidBucket},
	{"unavailable", cos.ErrUnavailable},
	{"conflict", cos.ErrConflict},
	{"not_empty", cos.ErrNotEmpty},
	{"too_large", cos.ErrTooLarge},
	{"checksum", ErrChecksum},
	{"unsupported", cos.ErrUnsupported},
	{"cancelled", ErrCancelled},
	{"protocol", ErrProtocol},
}

func toWireErr(err error) *wireErr {
	if err == nil {
		return nil
	}
	for _, c := range errCodes {
		if errors.Is(err, c.err) {
			return &wireErr{Code: c.code, Msg: err.Error()}
		}
	}
	return &wireErr{Code: "internal", Msg: err.Error()}
}

// RemoteError is an error the server reported. It unwraps to the matching
// sentinel (cos.ErrNotFound and the like) when there is one.
type RemoteError struct {
	Code string
	Msg  string
}

func (e *RemoteError) Error() string { return e.Msg }

func (e *RemoteError) Unwrap() error {
	for _, c := range errCodes {
		if c.code == e.Code {
			return c.err
		}
	}
	return nil
}

// framer reads and writes frames on one stream.
type framer struct {
	r   io.Reader
	wmu sync.Mutex
	w   io.Writer
	hdr [4]byte
}

func (f *framer) read() (frame, error) {
	var fr frame
	if _, err := io.ReadFull(f.r, f.hdr[:]); err != nil {
		return fr, err
	}
	n := binary.BigEndian.Uint32(f.hdr[:])
	if n > maxFrame {
		return fr, fmt.Errorf("%w: control frame of %d bytes", ErrProtocol, n)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(f.r, buf); err != nil {
		return fr, err
	}
	if err := json.Unmarshal(buf, &fr); err != nil {
		return fr, fmt.Errorf("%w: bad control frame: %v", ErrProtocol, err)
	}
	return fr, nil
}

// encodeFrame returns fr as it goes on the wire: length, then JSON.
func encodeFrame(fr frame) ([]byte, error) {
	b, err := json.Marshal(fr)
	if err != nil {
		return nil, err
	}
	if len(b) > maxFrame {
		return nil, fmt.Errorf("%w: control frame of %d bytes", ErrProtocol, len(b))
	}
	out := make([]byte, 4+len(b))
	binary.BigEndian.PutUint32(out, uint32(len(b)))
	copy(out[4:], b)
	return out, nil
}

func (f *framer) write(fr frame) error {
	b, err := encodeFrame(fr)
	if err != nil {
		return err
	}
	return f.writeEncoded(b)
}

// writeEncoded writes a frame encodeFrame made.
func (f *framer) writeEncoded(b []byte) error {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	_, err := f.w.Write(b)
	return err
}

// ---- message bodies ---------------------------------------------------

type helloReq struct {
	Version    int    `json:"version"`
	Cipher     string `json:"cipher"`
	PacketSize int    `json:"packet_size,omitempty"`
	Target     int64  `json:"target_bps,omitempty"`
	Min        int64  `json:"min_bps,omitempty"`
	Policy     string `json:"policy,omitempty"`
	// Start is the rate the server's sender begins at, from the client's
	// memory of the path (0: the controller's default).
	Start int64 `json:"start_bps,omitempty"`
}

type helloResp struct {
	Version int    `json:"version"`
	Session uint32 `json:"session"`
	UDPPort int    `json:"udp_port"`
	C2S     []byte `json:"c2s"`
	S2C     []byte `json:"s2c"`
	Server  string `json:"server"`
	// EarlyData: the server holds data for an upload stream that comes
	// before the upload request (an older one acknowledges and drops it),
	// so the client may send an upload's first bytes with its request.
	EarlyData bool `json:"early_data,omitempty"`
}

// metaJSON is cos.Meta on the wire.
type metaJSON struct {
	Mtime  int64             `json:"mtime_ns,omitempty"`
	Mode   uint32            `json:"mode,omitempty"`
	UID    *uint32           `json:"uid,omitempty"`
	GID    *uint32           `json:"gid,omitempty"`
	SHA256 string            `json:"sha256,omitempty"`
	Other  map[string]string `json:"other,omitempty"`
}

func toMetaJSON(m cos.Meta) metaJSON {
	j := metaJSON{Mode: m.Mode, UID: m.UID, GID: m.GID, SHA256: m.SHA256, Other: m.Other}
	if !m.Mtime.IsZero() {
		j.Mtime = m.Mtime.UnixNano()
	}
	return j
}

func (j metaJSON) meta() cos.Meta {
	m := cos.Meta{Mode: j.Mode, UID: j.UID, GID: j.GID, SHA256: j.SHA256, Other: j.Other}
	if j.Mtime != 0 {
		m.Mtime = time.Unix(0, j.Mtime)
	}
	return m
}

type objectJSON struct {
	Key          string   `json:"key"`
	Size         int64    `json:"size"`
	LastModified int64    `json:"last_modified_ns,omitempty"`
	ETag         string   `json:"etag,omitempty"`
	Meta         metaJSON `json:"meta"`
	Full         bool     `json:"full,omitempty"` // Meta is complete (cos.ObjectInfo.HasMeta)
}

func toObjectJSON(o cos.ObjectInfo) objectJSON {
	j := objectJSON{Key: o.Key, Size: o.Size, ETag: o.ETag, Meta: toMetaJSON(o.Meta), Full: o.HasMeta}
	if !o.LastModified.IsZero() {
		j.LastModified = o.LastModified.UnixNano()
	}
	return j
}

func (j objectJSON) info() cos.ObjectInfo {
	o := cos.ObjectInfo{Key: j.Key, Size: j.Size, ETag: j.ETag, Meta: j.Meta.meta(), HasMeta: j.Full}
	if j.LastModified != 0 {
		o.LastModified = time.Unix(0, j.LastModified)
	}
	return o
}

type objReq struct {
	Bucket string `json:"bucket"`
	Key    string `json:"key"`
}

type listReq struct {
	Bucket     string `json:"bucket"`
	Prefix     string `json:"prefix,omitempty"`
	Delimiter  string `json:"delimiter,omitempty"`
	StartAfter string `json:"start_after,omitempty"`
	MaxKeys    int    `json:"max_keys,omitempty"`
	Meta       bool   `json:"meta,omitempty"` // fill in metadata (cos.ListOptions.WithMeta)
}

type listResp struct {
	Objects        []objectJSON `json:"objects"`
	CommonPrefixes []string     `json:"prefixes"`
	NextStartAfter string       `json:"next,omitempty"`
	Markers        []objectJSON `json:"markers,omitempty"`
}

type putReq struct {
	Bucket string   `json:"bucket"`
	Key    string   `json:"key"`
	Data   []byte   `json:"data"`
	Meta   metaJSON `json:"meta"`
}

type copyReq struct {
	Bucket string    `json:"bucket"`
	Src    string    `json:"src"`
	Dst    string    `json:"dst"`
	Meta   *metaJSON `json:"meta,omitempty"`
}

type bucketsResp struct {
	Buckets []string `json:"buckets"`
}

// sampleSum is the SHA-256 of one range of bytes, for resume checks.
type sampleSum struct {
	Off    int64  `json:"off"`
	Len    int64  `json:"len"`
	SHA256 []byte `json:"sha256"`
}

type uploadReq struct {
	Stream uint32   `json:"stream"`
	Bucket string   `json:"bucket"`
	Key    string   `json:"key"`
	Size   int64    `json:"size"`
	Meta   metaJSON `json:"meta"`
	Resume string   `json:"resume"`
	State  []byte   `json:"state,omitempty"`
	Target int64    `json:"target_bps,omitempty"`
	// SHALater says the client is still hashing the source: Meta lacks
	// its SHA-256, which follows in "upload_sha" (and in "commit").
	SHALater bool `json:"sha_later,omitempty"`
}

// uploadSHAReq gives an upload begun with SHALater its SHA-256.
type uploadSHAReq struct {
	Stream uint32 `json:"stream"`
	SHA256 string `json:"sha256"`
}

type uploadResp struct {
	// Have lists bytes the server already holds for this upload; the
	// client sends the rest.
	Have []Range `json:"have,omitempty"`
	// Samples (sparse) or Sums (full) let the client check what Have
	// claims against its own bytes before trusting it.
	Samples []sampleSum `json:"samples,omitempty"`
	// Existing is set when the object is already stored with the same size
	// and modification time; with its Samples (sparse) or its SHA-256
	// (full) matching, the client skips the upload.
	Existing *objectJSON `json:"existing,omitempty"`
}

type streamReq struct {
	Stream uint32 `json:"stream"`
	// Discard (in "cancel"): the user abandons the upload, so the server
	// drops what it staged. Without it the staged bytes stay for a rerun.
	Discard bool `json:"discard,omitempty"`
}

type commitReq struct {
	Stream uint32 `json:"stream"`
	SHA256 string `json:"sha256"`
}

type downloadReq struct {
	Stream uint32  `json:"stream"`
	Bucket string  `json:"bucket"`
	Key    string  `json:"key"`
	Offset int64   `json:"offset"`
	Length int64   `json:"length"`
	Have   []Range `json:"have,omitempty"`
	Target int64   `json:"target_bps,omitempty"`
}

type downloadResp struct {
	Object objectJSON `json:"object"`
}

type finishResp struct {
	SHA256 string `json:"sha256,omitempty"`
	// What the server's sender did: payload bytes sent, and of those sent
	// more than once.
	Sent    int64 `json:"sent"`
	Retrans int64 `json:"retrans"`
}

type sumsReq struct {
	Bucket string  `json:"bucket"`
	Key    string  `json:"key"`
	Ranges []Range `json:"ranges"`
}

type sumsResp struct {
	Sums []sampleSum `json:"sums"`
	// SHA256 of the whole object, when the ranges cover it.
	SHA256 string `json:"sha256,omitempty"`
}

type rateReq struct {
	Stream uint32 `json:"stream,omitempty"` // 0: the whole session
	Target int64  `json:"target_bps,omitempty"`
	Min    int64  `json:"min_bps,omitempty"`
	Policy string `json:"policy,omitempty"`
	Pause  *bool  `json:"pause,omitempty"`
}

type checkpointEvent struct {
	Stream uint32 `json:"stream"`
	State  []byte `json:"state"`
}

// sentEvent ("download_sent") tells the client, as the server sends a
// download's last new byte, what "download_finish" would answer: the
// client that then holds every byte needs no further round trip. The
// counters are those of that moment (retransmissions after it are not
// in them).
type sentEvent struct {
	Stream uint32 `json:"stream"`
	finishResp
}

type failedEvent struct {
	Stream uint32   `json:"stream"`
	Err    *wireErr `json:"err"`
}

// Range is marshalled as a two-element array.
func (r Range) MarshalJSON() ([]byte, error) {
	return json.Marshal([2]int64{r.Off, r.Len})
}

// UnmarshalJSON reads [off, len].
func (r *Range) UnmarshalJSON(b []byte) error {
	var a [2]int64
	if err := json.Unmarshal(b, &a); err != nil {
		return err
	}
	if a[0] < 0 || a[1] < 0 || a[0]+a[1] < a[0] {
		return fmt.Errorf("%w: bad range %v", ErrProtocol, a)
	}
	r.Off, r.Len = a[0], a[1]
	return nil
}
