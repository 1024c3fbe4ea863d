package cos

import (
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"
)

// User-metadata names, as rclone and s3fs write them (after the
// "x-amz-meta-" prefix S3 adds).
const (
	MetaMtime  = "mtime"
	MetaMode   = "mode"
	MetaUID    = "uid"
	MetaGID    = "gid"
	MetaSHA256 = "sha256"
)

// userMetaPrefix is the HTTP header prefix of S3 user metadata.
const userMetaPrefix = "x-amz-meta-"

// FormatMtime formats t as the "mtime" metadata value.
//
// Whole seconds are written as an integer ("1700000000"); otherwise the
// fraction always has nine digits ("1700000000.050000000"). That is the form
// s3fs writes, and the only fractional form both tools read back correctly:
// rclone parses any decimal fraction, but s3fs (1.90 to at least 1.97) reads
// the digits after the point as a count of nanoseconds, so rclone's own
// trimmed form ("1700000000.05") would reach s3fs as 5 ns. Times before
// 1970, which s3fs ignores, are written as a signed decimal
// ("-1.500000000"), which rclone reads.
func FormatMtime(t time.Time) string {
	sec, ns := t.Unix(), t.Nanosecond()
	if ns == 0 {
		return strconv.FormatInt(sec, 10)
	}
	if sec < 0 {
		// -1.5 s is sec=-2, ns=500000000: write the magnitude.
		total := -(sec*1e9 + int64(ns))
		return fmt.Sprintf("-%d.%09d", total/1e9, total%1e9)
	}
	return fmt.Sprintf("%d.%09d", sec, ns)
}

// ParseMtime parses an "mtime" metadata value: decimal seconds since the
// Unix epoch with an optional fraction of any length (rclone writes up to
// nine digits with trailing zeros trimmed, s3fs exactly nine, or none).
// Digits past the ninth are dropped.
func ParseMtime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	neg := strings.HasPrefix(s, "-")
	body := strings.TrimPrefix(strings.TrimPrefix(s, "-"), "+")
	whole, frac, _ := strings.Cut(body, ".")
	if whole == "" && frac == "" || !allDigits(whole) || !allDigits(frac) {
		return time.Time{}, fmt.Errorf("mtime %q is not decimal seconds", s)
	}
	if whole == "" {
		whole = "0"
	}
	sec, err := strconv.ParseInt(whole, 10, 64)
	if err != nil || sec > 1<<40 {
		return time.Time{}, fmt.Errorf("mtime %q is out of range", s)
	}
	if len(frac) > 9 {
		frac = frac[:9]
	}
	var ns int64
	if frac != "" {
		ns, _ = strconv.ParseInt(frac+strings.Repeat("0", 9-len(frac)), 10, 64)
	}
	if neg {
		return time.Unix(-sec, -ns), nil
	}
	return time.Unix(sec, ns), nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// File-type bits of st_mode.
const (
	modeTypeMask = 0o170000
	modeAllBits  = 0o177777
)

func validStMode(m uint64) bool {
	if m&^modeAllBits != 0 {
		return false
	}
	switch m & modeTypeMask {
	case 0, 0o010000, 0o020000, 0o040000, 0o060000, 0o100000, 0o120000, 0o140000:
		return true
	}
	return false
}

// ParseMode parses a "mode" metadata value. s3fs writes st_mode in decimal
// ("33188" for a 0644 file); rclone's --metadata copies the local file's
// mode in octal ("100644"). A leading "0" means octal. Otherwise a value is
// read in the base that gives a valid st_mode; when both do, decimal wins,
// except that a decimal reading as a symbolic link with permissions other
// than 0777 (which Linux never gives a link) yields to an octal reading as
// a folder: "41777" is rclone's sticky folder, not a link. One string
// stays ambiguous among files, folders and links, "41471": it is read as
// s3fs's link (0120777), not as a folder with permissions 1471.
func ParseMode(s string) (uint32, error) {
	s = strings.TrimSpace(s)
	if s == "" || !allDigits(s) {
		return 0, fmt.Errorf("mode %q is not a number", s)
	}
	if len(s) > 1 && s[0] == '0' {
		if v, err := strconv.ParseUint(s, 8, 32); err == nil && validStMode(v) {
			return uint32(v), nil
		}
		return 0, fmt.Errorf("mode %q is not a valid octal st_mode", s)
	}
	d, derr := strconv.ParseUint(s, 10, 32)
	o, oerr := strconv.ParseUint(s, 8, 32)
	decOK := derr == nil && validStMode(d)
	octOK := oerr == nil && validStMode(o)
	switch {
	case decOK && octOK && d&modeTypeMask == 0o120000 && d&0o7777 != 0o777 && o&modeTypeMask == 0o040000:
		return uint32(o), nil
	case decOK:
		return uint32(d), nil
	case octOK:
		return uint32(o), nil
	}
	return 0, fmt.Errorf("mode %q is not a valid st_mode in decimal or octal", s)
}

// Encode returns m as S3 user metadata: names in lower case without the
// "x-amz-meta-" prefix, values as s3fs and rclone write them. Fields at
// their zero value are left out; Other is copied, but never overrides a
// field.
func (m Meta) Encode() map[string]string {
	out := make(map[string]string, len(m.Other)+5)
	for k, v := range m.Other {
		out[strings.ToLower(k)] = v
	}
	if !m.Mtime.IsZero() {
		out[MetaMtime] = FormatMtime(m.Mtime)
	}
	if m.Mode != 0 {
		out[MetaMode] = strconv.FormatUint(uint64(m.Mode), 10)
	}
	if m.UID != nil {
		out[MetaUID] = strconv.FormatUint(uint64(*m.UID), 10)
	}
	if m.GID != nil {
		out[MetaGID] = strconv.FormatUint(uint64(*m.GID), 10)
	}
	if m.SHA256 != "" {
		out[MetaSHA256] = strings.ToLower(m.SHA256)
	}
	return out
}

// DecodeMeta reads user metadata as S3 returns it. Names may carry the
// "x-amz-meta-" prefix and any case. A value of a known name that does not
// parse is kept verbatim in Other, so that writing the Meta back preserves
// it.
func DecodeMeta(user map[string]string) Meta {
	var m Meta
	for k, v := range user {
		name := strings.ToLower(k)
		name = strings.TrimPrefix(name, userMetaPrefix)
		ok := true
		switch name {
		case MetaMtime:
			t, err := ParseMtime(v)
			ok = err == nil
			if ok {
				m.Mtime = t
			}
		case MetaMode:
			mode, err := ParseMode(v)
			ok = err == nil
			if ok {
				m.Mode = mode
			}
		case MetaUID, MetaGID:
			id, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
			ok = err == nil
			if ok {
				id32 := uint32(id)
				if name == MetaUID {
					m.UID = &id32
				} else {
					m.GID = &id32
				}
			}
		case MetaSHA256:
			v = strings.ToLower(strings.TrimSpace(v))
			ok = isHex(v, 64)
			if ok {
				m.SHA256 = v
			}
		default:
			ok = false
		}
		if !ok {
			if m.Other == nil {
				m.Other = make(map[string]string)
			}
			m.Other[name] = v
		}
	}
	return m
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Clone returns a deep copy of m.
func (m Meta) Clone() Meta {
	c := m
	if m.UID != nil {
		u := *m.UID
		c.UID = &u
	}
	if m.GID != nil {
		g := *m.GID
		c.GID = &g
	}
	c.Other = maps.Clone(m.Other)
	return c
}

// Equal reports whether m and o record the same metadata (times compared
// with time.Time.Equal, a nil Other equal to an empty one).
func (m Meta) Equal(o Meta) bool {
	if !m.Mtime.Equal(o.Mtime) || m.Mode != o.Mode || m.SHA256 != o.SHA256 {
		return false
	}
	if !eqID(m.UID, o.UID) || !eqID(m.GID, o.GID) {
		return false
	}
	return maps.Equal(m.Other, o.Other)
}

func eqID(a, b *uint32) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}
