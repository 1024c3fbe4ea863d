package cos_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/chute/chute/cos"
)

func TestValidKey(t *testing.T) {
	tests := []struct {
		key     string
		wantErr string // "" means valid; else a piece of the message
	}{
		{"a", ""},
		{"a/b/c.txt", ""},
		{"dir/", ""},
		{"a/b/", ""},
		{"spaces and ünïcode/ok", ""},
		{"..a/b..", ""},
		{".hidden/.x", ""},
		{strings.Repeat("k", cos.MaxKeyLen), ""},
		{"", "empty"},
		{"/abs", `a leading "/" is not allowed`},
		{"a//b", "empty path elements"},
		{"a/", ""},
		{"a//", "empty path elements"},
		{"a/../b", `invalid object key "a/../b": ".." is not allowed`},
		{"..", `".." is not allowed`},
		{"a/..", `".." is not allowed`},
		{"./a", `"." is not allowed`},
		{"a/./b", `"." is not allowed`},
		{"a\x00b", "NUL"},
		{"\xff", "UTF-8"},
		{strings.Repeat("k", cos.MaxKeyLen+1), "more than the limit"},
	}
	for _, tc := range tests {
		err := cos.ValidKey(tc.key)
		if tc.wantErr == "" {
			if err != nil {
				t.Errorf("ValidKey(%.30q) = %v; want nil", tc.key, err)
			}
			continue
		}
		if !errors.Is(err, cos.ErrInvalidKey) {
			t.Errorf("ValidKey(%.30q) = %v; want an error wrapping ErrInvalidKey", tc.key, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("ValidKey(%.30q) = %q; want it to say %q", tc.key, err, tc.wantErr)
		}
	}
}

func TestValidBucket(t *testing.T) {
	tests := []struct {
		name    string
		wantErr string
	}{
		{"abc", ""},
		{"my-bucket.2024", ""},
		{strings.Repeat("b", 63), ""},
		{"b", "1 characters; bucket names have 3 to 63"},
		{"ab", "3 to 63"},
		{strings.Repeat("b", 64), "3 to 63"},
		{"MyBucket", "upper-case"},
		{"-abc", "begin and end"},
		{"abc.", "begin and end"},
		{"a_bc", "'_' is not allowed"},
		{"a..bc", `".." is not allowed`},
		{"10.0.0.1", "IP address"},
	}
	for _, tc := range tests {
		err := cos.ValidBucket(tc.name)
		if tc.wantErr == "" {
			if err != nil {
				t.Errorf("ValidBucket(%q) = %v; want nil", tc.name, err)
			}
			continue
		}
		if !errors.Is(err, cos.ErrInvalidBucket) || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("ValidBucket(%q) = %v; want ErrInvalidBucket saying %q", tc.name, err, tc.wantErr)
		}
	}
}

func FuzzValidKey(f *testing.F) {
	for _, s := range []string{"a", "a/b/", "a/../b", "//", "\x00", "./x", "x/."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		err := cos.ValidKey(key)
		if err != nil {
			if !errors.Is(err, cos.ErrInvalidKey) {
				t.Fatalf("ValidKey(%q) = %v, not wrapping ErrInvalidKey", key, err)
			}
			return
		}
		// A valid key never climbs out of a folder it is joined to.
		for _, elem := range strings.Split(strings.TrimSuffix(key, "/"), "/") {
			if elem == "" || elem == "." || elem == ".." {
				t.Fatalf("ValidKey accepted %q with element %q", key, elem)
			}
		}
		if strings.HasPrefix(key, "/") || strings.ContainsRune(key, 0) {
			t.Fatalf("ValidKey accepted %q", key)
		}
	})
}
