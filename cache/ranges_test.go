package cache

import (
	"reflect"
	"testing"

	"github.com/chute/chute/engine"
)

type rg = engine.Range

func TestRangesAdd(t *testing.T) {
	tests := []struct {
		name string
		adds []rg
		want ranges
	}{
		{"one", []rg{{Off: 10, Len: 5}}, ranges{{Off: 10, Len: 5}}},
		{"empty ignored", []rg{{Off: 10, Len: 0}}, nil},
		{"disjoint sorted", []rg{{Off: 20, Len: 5}, {Off: 0, Len: 5}}, ranges{{Off: 0, Len: 5}, {Off: 20, Len: 5}}},
		{"touching merge", []rg{{Off: 0, Len: 5}, {Off: 5, Len: 5}}, ranges{{Off: 0, Len: 10}}},
		{"overlap merge", []rg{{Off: 0, Len: 6}, {Off: 4, Len: 6}}, ranges{{Off: 0, Len: 10}}},
		{"bridge three", []rg{{Off: 0, Len: 2}, {Off: 4, Len: 2}, {Off: 8, Len: 2}, {Off: 1, Len: 8}}, ranges{{Off: 0, Len: 10}}},
		{"inside", []rg{{Off: 0, Len: 10}, {Off: 2, Len: 2}}, ranges{{Off: 0, Len: 10}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var rs ranges
			for _, a := range tc.adds {
				rs = rs.add(a.Off, a.Len)
			}
			if !reflect.DeepEqual(rs, tc.want) {
				t.Fatalf("got %v, want %v", rs, tc.want)
			}
		})
	}
}

func TestRangesMissing(t *testing.T) {
	have := ranges{{Off: 10, Len: 10}, {Off: 30, Len: 10}}
	tests := []struct {
		name string
		want rg
		miss []rg
	}{
		{"all present", rg{Off: 12, Len: 5}, nil},
		{"before", rg{Off: 0, Len: 5}, []rg{{Off: 0, Len: 5}}},
		{"across a gap", rg{Off: 15, Len: 20}, []rg{{Off: 20, Len: 10}}},
		{"around everything", rg{Off: 0, Len: 50}, []rg{{Off: 0, Len: 10}, {Off: 20, Len: 10}, {Off: 40, Len: 10}}},
		{"empty", rg{Off: 5, Len: 0}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := have.missing(tc.want)
			if !reflect.DeepEqual(got, tc.miss) {
				t.Fatalf("missing(%v) = %v, want %v", tc.want, got, tc.miss)
			}
			if have.contains(tc.want) != (len(tc.miss) == 0) {
				t.Fatalf("contains disagrees with missing")
			}
		})
	}
	if have.size() != 20 {
		t.Fatalf("size %d", have.size())
	}
	if got := subtract([]rg{{Off: 0, Len: 100}}, []rg{{Off: 10, Len: 10}, {Off: 50, Len: 60}}); !reflect.DeepEqual(got, []rg{{Off: 0, Len: 10}, {Off: 20, Len: 30}}) {
		t.Fatalf("subtract: %v", got)
	}
}
