// Package ranges keeps sets of byte ranges: what a receiver holds, what a
// sender still has to deliver.
package ranges

import "sort"

// Range is the half-open span [Off, Off+Len).
type Range struct {
	Off, Len int64
}

// End is the offset just past the range.
func (r Range) End() int64 { return r.Off + r.Len }

// Set is a set of bytes, kept as sorted, disjoint, non-touching ranges.
// The zero value is empty. A Set is not safe for concurrent use.
type Set struct {
	rs []Range
}

// Of returns a set holding the given ranges.
func Of(rs ...Range) *Set {
	s := &Set{}
	for _, r := range rs {
		s.Add(r.Off, r.Len)
	}
	return s
}

// Ranges returns the set's ranges in order. The slice is the caller's.
func (s *Set) Ranges() []Range {
	return append([]Range(nil), s.rs...)
}

// Count is the number of ranges.
func (s *Set) Count() int { return len(s.rs) }

// Size is the number of bytes in the set.
func (s *Set) Size() int64 {
	var n int64
	for _, r := range s.rs {
		n += r.Len
	}
	return n
}

// Clone returns an independent copy.
func (s *Set) Clone() *Set { return &Set{rs: s.Ranges()} }

// Add puts [off, off+n) into the set.
func (s *Set) Add(off, n int64) {
	if n <= 0 {
		return
	}
	end := off + n
	// Fast path: appending at or touching the end.
	if k := len(s.rs); k == 0 || s.rs[k-1].End() < off {
		s.rs = append(s.rs, Range{off, n})
		return
	} else if last := &s.rs[k-1]; last.Off <= off {
		if end > last.End() {
			last.Len = end - last.Off
		}
		return
	}
	// i: first range whose end reaches off (touching counts).
	i := sort.Search(len(s.rs), func(i int) bool { return s.rs[i].End() >= off })
	// j: first range starting after end (touching does not count as after).
	j := sort.Search(len(s.rs), func(j int) bool { return s.rs[j].Off > end })
	if i == j {
		s.rs = append(s.rs, Range{})
		copy(s.rs[i+1:], s.rs[i:])
		s.rs[i] = Range{off, n}
		return
	}
	lo := min(off, s.rs[i].Off)
	hi := max(end, s.rs[j-1].End())
	s.rs[i] = Range{lo, hi - lo}
	s.rs = append(s.rs[:i+1], s.rs[j:]...)
}

// Remove takes [off, off+n) out of the set. It works in place: the ranges
// it touches are found by binary search and replaced by the at most two
// pieces left of them.
func (s *Set) Remove(off, n int64) {
	if n <= 0 || len(s.rs) == 0 {
		return
	}
	end := off + n
	// i: first range ending after off; j: first range starting at or after end.
	i := sort.Search(len(s.rs), func(i int) bool { return s.rs[i].End() > off })
	j := sort.Search(len(s.rs), func(j int) bool { return s.rs[j].Off >= end })
	if i >= j {
		return // nothing overlaps
	}
	var keep [2]Range
	k := 0
	if first := s.rs[i]; first.Off < off {
		keep[k] = Range{first.Off, off - first.Off}
		k++
	}
	if last := s.rs[j-1]; last.End() > end {
		keep[k] = Range{end, last.End() - end}
		k++
	}
	// Replace rs[i:j] by keep[:k].
	switch d := k - (j - i); {
	case d > 0: // one range split in two
		s.rs = append(s.rs, Range{})
		copy(s.rs[j+d:], s.rs[j:])
	case d < 0:
		copy(s.rs[i+k:], s.rs[j:])
		s.rs = s.rs[:len(s.rs)+d]
	}
	copy(s.rs[i:], keep[:k])
}

// Contains reports whether all of [off, off+n) is in the set.
func (s *Set) Contains(off, n int64) bool {
	if n <= 0 {
		return true
	}
	i := sort.Search(len(s.rs), func(i int) bool { return s.rs[i].End() > off })
	return i < len(s.rs) && s.rs[i].Off <= off && s.rs[i].End() >= off+n
}

// Overlaps reports whether any of [off, off+n) is in the set.
func (s *Set) Overlaps(off, n int64) bool {
	if n <= 0 {
		return false
	}
	i := sort.Search(len(s.rs), func(i int) bool { return s.rs[i].End() > off })
	return i < len(s.rs) && s.rs[i].Off < off+n
}

// Prefix is how many bytes from start on are all in the set.
func (s *Set) Prefix(start int64) int64 {
	i := sort.Search(len(s.rs), func(i int) bool { return s.rs[i].End() > start })
	if i == len(s.rs) || s.rs[i].Off > start {
		return 0
	}
	return s.rs[i].End() - start
}

// Missing returns the parts of [off, off+n) not in the set, in order.
func (s *Set) Missing(off, n int64) []Range {
	var out []Range
	end := off + n
	pos := off
	i := sort.Search(len(s.rs), func(i int) bool { return s.rs[i].End() > off })
	for ; i < len(s.rs) && pos < end; i++ {
		r := s.rs[i]
		if r.Off >= end {
			break
		}
		if r.Off > pos {
			out = append(out, Range{pos, r.Off - pos})
		}
		pos = max(pos, r.End())
	}
	if pos < end {
		out = append(out, Range{pos, end - pos})
	}
	return out
}

// Intersect returns the parts of [off, off+n) that are in the set.
func (s *Set) Intersect(off, n int64) []Range {
	var out []Range
	end := off + n
	i := sort.Search(len(s.rs), func(i int) bool { return s.rs[i].End() > off })
	for ; i < len(s.rs) && s.rs[i].Off < end; i++ {
		r := s.rs[i]
		lo, hi := max(r.Off, off), min(r.End(), end)
		if hi > lo {
			out = append(out, Range{lo, hi - lo})
		}
	}
	return out
}

// First returns the set's first range; ok is false when it is empty.
func (s *Set) First() (r Range, ok bool) {
	if len(s.rs) == 0 {
		return Range{}, false
	}
	return s.rs[0], true
}

// NextFrom returns the first byte range of the set at or after pos,
// clipped to start at pos, and at most max bytes long.
func (s *Set) NextFrom(pos, max int64) (r Range, ok bool) {
	i := sort.Search(len(s.rs), func(i int) bool { return s.rs[i].End() > pos })
	if i == len(s.rs) {
		return Range{}, false
	}
	r = s.rs[i]
	if r.Off < pos {
		r = Range{pos, r.End() - pos}
	}
	if r.Len > max {
		r.Len = max
	}
	return r, true
}
