package cache

import (
	"sort"

	"github.com/chute/chute/engine"
)

// ranges is a set of byte ranges: sorted, non-empty, neither overlapping nor
// touching. The zero value is empty.
type ranges []engine.Range

// add returns the set with [off, off+n) added.
func (rs ranges) add(off, n int64) ranges {
	if n <= 0 {
		return rs
	}
	end := off + n
	// first range that ends at or after off (may merge)
	i := sort.Search(len(rs), func(i int) bool { return rs[i].End() >= off })
	j := i
	for j < len(rs) && rs[j].Off <= end {
		if rs[j].Off < off {
			off = rs[j].Off
		}
		if rs[j].End() > end {
			end = rs[j].End()
		}
		j++
	}
	out := make(ranges, 0, len(rs)-(j-i)+1)
	out = append(out, rs[:i]...)
	out = append(out, engine.Range{Off: off, Len: end - off})
	out = append(out, rs[j:]...)
	return out
}

// missing returns the parts of r not in the set, in order.
func (rs ranges) missing(r engine.Range) []engine.Range {
	var out []engine.Range
	pos, end := r.Off, r.End()
	for _, h := range rs {
		if h.End() <= pos {
			continue
		}
		if h.Off >= end {
			break
		}
		if h.Off > pos {
			out = append(out, engine.Range{Off: pos, Len: h.Off - pos})
		}
		pos = h.End()
		if pos >= end {
			break
		}
	}
	if pos < end {
		out = append(out, engine.Range{Off: pos, Len: end - pos})
	}
	return out
}

// contains reports whether all of r is in the set.
func (rs ranges) contains(r engine.Range) bool {
	if r.Len <= 0 {
		return true
	}
	return len(rs.missing(r)) == 0
}

// size is the number of bytes in the set.
func (rs ranges) size() int64 {
	var n int64
	for _, r := range rs {
		n += r.Len
	}
	return n
}

// subtract returns the parts of the ranges in a not covered by b.
func subtract(a []engine.Range, b []engine.Range) []engine.Range {
	var set ranges
	for _, r := range b {
		set = set.add(r.Off, r.Len)
	}
	var out []engine.Range
	for _, r := range a {
		out = append(out, set.missing(r)...)
	}
	return out
}
