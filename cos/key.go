package cos

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxKeyLen is the longest key S3 accepts, in bytes.
const MaxKeyLen = 1024

// ValidKey reports whether key is an acceptable object key, with an error
// wrapping ErrInvalidKey that says what is wrong. A key is at most
// MaxKeyLen bytes of UTF-8 without NUL, has no leading "/", and none of its
// slash-separated elements is empty, "." or "..". A single trailing "/" is
// allowed and names a folder marker ("photos/2024/").
func ValidKey(key string) error {
	bad := func(why string) error {
		return fmt.Errorf("%w %q: %s", ErrInvalidKey, key, why)
	}
	switch {
	case key == "":
		return fmt.Errorf("%w: the key is empty", ErrInvalidKey)
	case len(key) > MaxKeyLen:
		return fmt.Errorf("%w %.40q...: %d bytes, more than the limit of %d", ErrInvalidKey, key, len(key), MaxKeyLen)
	case !utf8.ValidString(key):
		return bad("not valid UTF-8")
	case strings.IndexByte(key, 0) >= 0:
		return bad("NUL bytes are not allowed")
	case key[0] == '/':
		return bad("a leading \"/\" is not allowed")
	}
	rest := strings.TrimSuffix(key, "/")
	for elem := range strings.SplitSeq(rest, "/") {
		switch elem {
		case "":
			return bad("empty path elements (\"//\") are not allowed")
		case ".":
			return bad("\".\" is not allowed")
		case "..":
			return bad("\"..\" is not allowed")
		}
	}
	return nil
}

// IsFolderKey reports whether key names a folder marker (ends in "/").
func IsFolderKey(key string) bool { return strings.HasSuffix(key, "/") }

// ValidBucket reports whether name is an acceptable bucket name, with an
// error wrapping ErrInvalidBucket that says what is wrong. The rules are
// S3's: 3 to 63 characters of lower-case letters, digits, '-' and '.',
// beginning and ending with a letter or digit, no "..", and not shaped like
// an IP address.
func ValidBucket(name string) error {
	bad := func(why string) error {
		return fmt.Errorf("%w %q: %s", ErrInvalidBucket, name, why)
	}
	if len(name) < 3 || len(name) > 63 {
		return bad(fmt.Sprintf("%d characters; bucket names have 3 to 63", len(name)))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-' || c == '.':
			if i == 0 || i == len(name)-1 {
				return bad("must begin and end with a lower-case letter or digit")
			}
		case c >= 'A' && c <= 'Z':
			return bad("upper-case letters are not allowed")
		default:
			return bad(fmt.Sprintf("character %q is not allowed (use a-z, 0-9, '-' and '.')", rune(c)))
		}
	}
	if strings.Contains(name, "..") {
		return bad("\"..\" is not allowed")
	}
	if looksLikeIPv4(name) {
		return bad("must not look like an IP address")
	}
	return nil
}

func looksLikeIPv4(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 4 {
		return false
	}
	for _, p := range parts {
		if p == "" || len(p) > 3 {
			return false
		}
		for i := 0; i < len(p); i++ {
			if p[i] < '0' || p[i] > '9' {
				return false
			}
		}
	}
	return true
}
