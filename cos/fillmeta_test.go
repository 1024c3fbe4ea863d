package cos

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestFillMeta(t *testing.T) {
	ctx := context.Background()
	f, err := NewFolder(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f.CreateBucket(ctx, "bkt")
	mt := time.Unix(1700000000, 0)
	put := func(key string, mode uint32) {
		if _, err := f.Put(ctx, "bkt", key, strings.NewReader(""), 0, Meta{Mtime: mt, Mode: mode}); err != nil {
			t.Fatal(err)
		}
	}
	put("a.txt", 0o100600)
	put("marked/", 0o40700)
	put("marked/x", 0o100644)
	put("bare/y", 0o100644) // a prefix without a marker
	page, err := f.List(ctx, "bkt", ListOptions{Delimiter: "/", WithMeta: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := FillMeta(ctx, f, "bkt", &page, 4); err != nil {
		t.Fatal(err)
	}
	if len(page.Objects) != 1 || !page.Objects[0].HasMeta || page.Objects[0].Meta.Mode != 0o100600 || !page.Objects[0].Meta.Mtime.Equal(mt) {
		t.Fatalf("objects: %+v", page.Objects)
	}
	if len(page.Markers) != 1 || page.Markers[0].Key != "marked/" || page.Markers[0].Meta.Mode != 0o40700 || !page.Markers[0].HasMeta {
		t.Fatalf("markers: %+v (prefixes %v)", page.Markers, page.CommonPrefixes)
	}
}
