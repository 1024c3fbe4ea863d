package cos_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chute/chute/cos"
)

// s3fsParseMtime reads an mtime the way s3fs 1.90 does (metaheader.cpp,
// cvt_string_to_time): the digits after the point are taken as a count of
// nanoseconds, whatever their number.
func s3fsParseMtime(s string) (sec, nsec int64, ok bool) {
	whole, frac, hasFrac := strings.Cut(s, ".")
	sec, err := strconv.ParseInt(whole, 10, 64)
	if err != nil {
		return 0, 0, false
	}
	if hasFrac {
		if nsec, err = strconv.ParseInt(frac, 10, 64); err != nil {
			return 0, 0, false
		}
	}
	return sec, nsec, true
}

// rcloneParseMtime reads an mtime the way rclone 1.60 does (swift's
// FloatStringToTime): a decimal fraction, cut or padded to nine digits.
func rcloneParseMtime(s string) (int64, bool) {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	whole, frac, _ := strings.Cut(s, ".")
	if len(frac) > 9 {
		frac = frac[:9]
	}
	frac += strings.Repeat("0", 9-len(frac))
	ns, err := strconv.ParseInt(whole+frac, 10, 64)
	if err != nil {
		return 0, false
	}
	if neg {
		ns = -ns
	}
	return ns, true
}

func TestFormatMtimeReadsBackInBothTools(t *testing.T) {
	tests := []struct {
		t    time.Time
		want string
	}{
		{time.Unix(1700000000, 0), "1700000000"},
		{time.Unix(1700000000, 5), "1700000000.000000005"},
		{time.Unix(1700000000, 500000000), "1700000000.500000000"},
		{time.Unix(1700000000, 123456789), "1700000000.123456789"},
		{time.Unix(0, 0), "0"},
		{time.Unix(-2, 500000000), "-1.500000000"},
	}
	for _, tc := range tests {
		got := cos.FormatMtime(tc.t)
		if got != tc.want {
			t.Errorf("FormatMtime(%v) = %q; want %q", tc.t, got, tc.want)
		}
		back, err := cos.ParseMtime(got)
		if err != nil || !back.Equal(tc.t) {
			t.Errorf("ParseMtime(%q) = %v, %v; want %v", got, back, err, tc.t)
		}
		if ns, ok := rcloneParseMtime(got); !ok || ns != tc.t.UnixNano() {
			t.Errorf("rclone would read %q as %d ns; want %d", got, ns, tc.t.UnixNano())
		}
		if tc.t.Unix() > 0 { // s3fs ignores times before 1970
			sec, nsec, ok := s3fsParseMtime(got)
			if !ok || sec != tc.t.Unix() || nsec != int64(tc.t.Nanosecond()) {
				t.Errorf("s3fs would read %q as %d s + %d ns; want %d + %d", got, sec, nsec, tc.t.Unix(), tc.t.Nanosecond())
			}
		}
	}
}

func TestParseMtimeForms(t *testing.T) {
	tests := []struct {
		in   string
		want time.Time
		bad  bool
	}{
		{"1700000000", time.Unix(1700000000, 0), false},                   // s3fs, whole seconds
		{"1700000000.123456789", time.Unix(1700000000, 123456789), false}, // s3fs and rclone
		{"1700000000.5", time.Unix(1700000000, 500000000), false},         // rclone trims zeros
		{"1700000000.1234567891234", time.Unix(1700000000, 123456789), false},
		{" 1700000000 ", time.Unix(1700000000, 0), false},
		{"-1.5", time.Unix(-2, 500000000), false},
		{".5", time.Unix(0, 500000000), false},
		{"", time.Time{}, true},
		{"abc", time.Time{}, true},
		{"1e9", time.Time{}, true},
		{"2024-01-02T03:04:05Z", time.Time{}, true},
		{"1.2.3", time.Time{}, true},
		{"99999999999999999999", time.Time{}, true},
	}
	for _, tc := range tests {
		got, err := cos.ParseMtime(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("ParseMtime(%q) = %v; want an error", tc.in, got)
			}
			continue
		}
		if err != nil || !got.Equal(tc.want) {
			t.Errorf("ParseMtime(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

// TestParseModeBothBases checks every mode of a file, folder or link in
// the two forms the tools write: s3fs's decimal and rclone's octal. Links
// have permissions 0777 on Linux; the one string both tools could mean
// differently, "41471", is left out of the folders (see ParseMode).
func TestParseModeBothBases(t *testing.T) {
	var modes []uint32
	for perm := uint32(0); perm <= 0o7777; perm++ {
		modes = append(modes, 0o100000|perm)
		if perm != 0o1471 {
			modes = append(modes, 0o040000|perm)
		}
	}
	modes = append(modes, 0o120777)
	for _, mode := range modes {
		for _, s := range []string{strconv.FormatUint(uint64(mode), 10), strconv.FormatUint(uint64(mode), 8)} {
			got, err := cos.ParseMode(s)
			if err != nil || got != mode {
				t.Fatalf("ParseMode(%q) = %o, %v; want %o", s, got, err, mode)
			}
		}
	}
	if got, _ := cos.ParseMode("41471"); got != 0o120777 {
		t.Errorf(`ParseMode("41471") = %o; want s3fs's link 120777`, got)
	}
	for _, tc := range []struct {
		in   string
		want uint32
		bad  bool
	}{
		{"33188", 0o100644, false},
		{"100644", 0o100644, false},
		{"0644", 0o644, false},
		{"420", 420, false}, // permission bits only, decimal
		{"", 0, true},
		{"-1", 0, true},
		{"rwxr-xr-x", 0, true},
		{"999999", 0, true},
		{"0999", 0, true},
	} {
		got, err := cos.ParseMode(tc.in)
		if tc.bad != (err != nil) || (!tc.bad && got != tc.want) {
			t.Errorf("ParseMode(%q) = %o, %v; want %o (error: %v)", tc.in, got, err, tc.want, tc.bad)
		}
	}
}

func TestMetaEncodeDecode(t *testing.T) {
	uid, gid := uint32(1000), uint32(0)
	tests := []struct {
		name string
		meta cos.Meta
		want map[string]string
	}{
		{"empty", cos.Meta{}, map[string]string{}},
		{"all", cos.Meta{
			Mtime: time.Unix(1700000000, 1), Mode: 0o100644, UID: &uid, GID: &gid,
			SHA256: strings.Repeat("AB", 32), Other: map[string]string{"Color": "blue"},
		}, map[string]string{
			"mtime": "1700000000.000000001", "mode": "33188", "uid": "1000", "gid": "0",
			"sha256": strings.Repeat("ab", 32), "color": "blue",
		}},
		{"other cannot override a field", cos.Meta{Mode: 0o100600, Other: map[string]string{"mode": "1"}},
			map[string]string{"mode": "33152"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.meta.Encode()
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("Encode = %v; want %v", got, tc.want)
			}
			back := cos.DecodeMeta(got)
			want := tc.meta.Clone()
			want.SHA256 = strings.ToLower(want.SHA256)
			if want.Other != nil {
				delete(want.Other, "mode")
				other := map[string]string{}
				for k, v := range want.Other {
					other[strings.ToLower(k)] = v
				}
				want.Other = other
			}
			if !back.Equal(want) {
				t.Errorf("DecodeMeta(Encode) = %+v; want %+v", back, want)
			}
		})
	}
}

func TestDecodeMetaHeaders(t *testing.T) {
	got := cos.DecodeMeta(map[string]string{
		"X-Amz-Meta-Mtime": "1700000000.5",
		"Mode":             "100755", // rclone --metadata, octal
		"x-amz-meta-uid":   "not-a-number",
		"Btime":            "2024-01-02T03:04:05Z",
		"sha256":           "short",
	})
	if !got.Mtime.Equal(time.Unix(1700000000, 500000000)) || got.Mode != 0o100755 || got.UID != nil {
		t.Errorf("DecodeMeta: mtime %v mode %o uid %v", got.Mtime, got.Mode, got.UID)
	}
	want := map[string]string{"uid": "not-a-number", "btime": "2024-01-02T03:04:05Z", "sha256": "short"}
	if fmt.Sprint(got.Other) != fmt.Sprint(want) {
		t.Errorf("DecodeMeta kept %v in Other; want %v (what did not parse, and unknown names)", got.Other, want)
	}
	if enc := got.Encode(); enc["uid"] != "not-a-number" || enc["sha256"] != "short" {
		t.Errorf("values that did not parse are not written back: %v", enc)
	}
}

func FuzzParseMtime(f *testing.F) {
	for _, s := range []string{"1700000000", "1700000000.5", "-1.5", ".5", "1.2.3", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tm, err := cos.ParseMtime(s)
		if err != nil {
			return
		}
		back, err := cos.ParseMtime(cos.FormatMtime(tm))
		if err != nil || !back.Equal(tm) {
			t.Fatalf("ParseMtime(%q) = %v; formatted and parsed again: %v, %v", s, tm, back, err)
		}
	})
}
