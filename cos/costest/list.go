package costest

import (
	"fmt"
	"testing"

	"github.com/chute/chute/cos"
)

// listKeys is a bucket whose byte order differs from a depth-first walk of
// folders: "a-c" and "a.b" sort before "a/b" ('-' and '.' come before
// '/'), "a0" after it. It holds no file and folder of one name.
var listKeys = []string{
	"a-c", "a.b", "a/b", "a/c/d", "a/c/e", "a/x-y/z", "a0", "a0b",
	"b/", "b/x", "b/y/", "c/", "d e/f", "zz",
}

func putKeys(t *testing.T, e env, keys []string) (cos.Store, string) {
	t.Helper()
	ctx, s, bucket := setup(t, e.newStore)
	for i, k := range keys {
		var body []byte
		if !cos.IsFolderKey(k) {
			body = data(uint64(100+i), 10+i)
		}
		put(t, ctx, s, bucket, k, body, cos.Meta{})
	}
	return s, bucket
}

func testListOrder(t *testing.T, e env) {
	s, bucket := putKeys(t, e, listKeys)
	ctx := ctxFor(t)
	page, err := s.List(ctx, bucket, cos.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := expectList(listKeys, cos.ListOptions{})
	var got []string
	for _, o := range page.Objects {
		got = append(got, o.Key)
		i := indexOf(listKeys, o.Key)
		wantSize := int64(0)
		if !cos.IsFolderKey(o.Key) {
			wantSize = int64(10 + i)
		}
		if o.Size != wantSize {
			t.Errorf("listed %s with size %d; want %d", o.Key, o.Size, wantSize)
		}
		if o.LastModified.IsZero() {
			t.Errorf("listed %s without LastModified", o.Key)
		}
	}
	if !sameStrings(got, want) {
		t.Errorf("flat listing:\n got  %q\n want %q (byte order)", got, want)
	}
	if page.NextStartAfter != "" || len(page.CommonPrefixes) != 0 {
		t.Errorf("flat listing of %d keys: NextStartAfter %q, prefixes %q; want none", len(want), page.NextStartAfter, page.CommonPrefixes)
	}
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

func testListDelimiter(t *testing.T, e env) {
	s, bucket := putKeys(t, e, listKeys)
	ctx := ctxFor(t)
	tests := []cos.ListOptions{
		{Delimiter: "/"},
		{Prefix: "a", Delimiter: "/"},
		{Prefix: "a/", Delimiter: "/"},
		{Prefix: "a/c", Delimiter: "/"},
		{Prefix: "a/c/", Delimiter: "/"},
		{Prefix: "b/", Delimiter: "/"},
		{Prefix: "b/y/", Delimiter: "/"},
		{Prefix: "c/", Delimiter: "/"},
		{Prefix: "a"},
		{Prefix: "a/"},
		{Prefix: "nothing"},
		{Prefix: "nothing/", Delimiter: "/"},
		{Prefix: "d e/", Delimiter: "/"},
		{StartAfter: "a/b"},
		{StartAfter: "a/b", Delimiter: "/"},
		{StartAfter: "a/", Delimiter: "/"},
		{StartAfter: "b", Delimiter: "/"},
		{StartAfter: "zz"},
		{Delimiter: "-"},
		{Delimiter: "c/"},
	}
	for _, opt := range tests {
		t.Run(fmt.Sprintf("%+v", opt), func(t *testing.T) {
			keys, prefixes, _ := listAll(t, ctx, s, bucket, opt)
			wantKeys, wantPrefixes := expectList(listKeys, opt)
			if !sameStrings(keys, wantKeys) || !sameStrings(prefixes, wantPrefixes) {
				t.Errorf("List(%+v):\n got  objects %q prefixes %q\n want objects %q prefixes %q", opt, keys, prefixes, wantKeys, wantPrefixes)
			}
		})
	}
}

func testListPagination(t *testing.T, e env) {
	keys := append([]string{}, listKeys...)
	for i := range 12 {
		keys = append(keys, fmt.Sprintf("p/%02d", i), fmt.Sprintf("q/%02d/x", i))
	}
	s, bucket := putKeys(t, e, keys)
	ctx := ctxFor(t)
	for _, base := range []cos.ListOptions{{}, {Delimiter: "/"}, {Prefix: "p/"}, {Prefix: "q/", Delimiter: "/"}, {Prefix: "a", Delimiter: "/"}} {
		wantKeys, wantPrefixes := expectList(keys, base)
		total := len(wantKeys) + len(wantPrefixes)
		for _, per := range []int{1, 2, 3, 7, 1000} {
			opt := base
			opt.MaxKeys = per
			t.Run(fmt.Sprintf("%+v", opt), func(t *testing.T) {
				got, prefixes, pages := listAll(t, ctx, s, bucket, opt)
				if !sameStrings(got, wantKeys) || !sameStrings(prefixes, wantPrefixes) {
					t.Errorf("paged listing:\n got  objects %q prefixes %q\n want objects %q prefixes %q", got, prefixes, wantKeys, wantPrefixes)
				}
				wantPages := max(1, (total+per-1)/per)
				if pages != wantPages {
					t.Errorf("%d items in %d pages of %d; want %d pages", total, pages, per, wantPages)
				}
			})
		}
	}
}

// testListPrefixGone checks that a prefix disappears with its last object.
func testListPrefixGone(t *testing.T, e env) {
	s, bucket := putKeys(t, e, []string{"x/1", "x/y/2", "z"})
	ctx := ctxFor(t)
	for _, k := range []string{"x/1", "x/y/2"} {
		if err := s.Delete(ctx, bucket, k); err != nil {
			t.Fatal(err)
		}
	}
	keys, prefixes, _ := listAll(t, ctx, s, bucket, cos.ListOptions{Delimiter: "/"})
	if e.skip(t, e.quirks.PrefixesLinger, "a prefix going with its last object") {
		prefixes = nil
	}
	if !sameStrings(keys, []string{"z"}) || len(prefixes) != 0 {
		t.Errorf("after deleting everything under x/: objects %q prefixes %q; want [z] and none", keys, prefixes)
	}
}
