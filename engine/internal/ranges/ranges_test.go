package ranges

import (
	"math/rand/v2"
	"reflect"
	"testing"
)

func TestAdd(t *testing.T) {
	for _, tc := range []struct {
		name string
		add  []Range
		want []Range
	}{
		{"empty add ignored", []Range{{5, 0}}, nil},
		{"append", []Range{{0, 5}, {10, 5}}, []Range{{0, 5}, {10, 5}}},
		{"touching merges", []Range{{0, 5}, {5, 5}}, []Range{{0, 10}}},
		{"insert before", []Range{{10, 5}, {0, 5}}, []Range{{0, 5}, {10, 5}}},
		{"fill gap", []Range{{0, 5}, {10, 5}, {5, 5}}, []Range{{0, 15}}},
		{"span several", []Range{{0, 2}, {4, 2}, {8, 2}, {12, 2}, {1, 10}}, []Range{{0, 11}, {12, 2}}},
		{"inside", []Range{{0, 10}, {2, 3}}, []Range{{0, 10}}},
		{"extend last", []Range{{0, 10}, {5, 10}}, []Range{{0, 15}}},
		{"middle touch both", []Range{{0, 3}, {6, 3}, {3, 3}}, []Range{{0, 9}}},
	} {
		s := Of(tc.add...)
		if got := s.Ranges(); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %v want %v", tc.name, got, tc.want)
		}
	}
}

func TestRemoveMissingIntersect(t *testing.T) {
	s := Of(Range{0, 10}, Range{20, 10})
	s.Remove(5, 20)
	if got, want := s.Ranges(), []Range{{0, 5}, {25, 5}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Remove: %v want %v", got, want)
	}
	if got, want := s.Missing(0, 40), []Range{{5, 20}, {30, 10}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Missing: %v want %v", got, want)
	}
	if got, want := s.Intersect(3, 25), []Range{{3, 2}, {25, 3}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Intersect: %v want %v", got, want)
	}
	if !s.Contains(25, 5) || s.Contains(24, 2) || !s.Contains(0, 0) {
		t.Fatal("Contains wrong")
	}
	if s.Prefix(0) != 5 || s.Prefix(2) != 3 || s.Prefix(5) != 0 {
		t.Fatalf("Prefix wrong: %d %d %d", s.Prefix(0), s.Prefix(2), s.Prefix(5))
	}
	if r, ok := s.NextFrom(3, 100); !ok || r != (Range{3, 2}) {
		t.Fatalf("NextFrom(3) = %v %v", r, ok)
	}
	if r, ok := s.NextFrom(6, 2); !ok || r != (Range{25, 2}) {
		t.Fatalf("NextFrom(6) = %v %v", r, ok)
	}
	if _, ok := s.NextFrom(30, 1); ok {
		t.Fatal("NextFrom past the end found something")
	}
}

// TestModel checks Set against a bitmap over random operations.
func TestModel(t *testing.T) {
	const size = 512
	r := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 200; round++ {
		var s Set
		var bits [size]bool
		for op := 0; op < 60; op++ {
			off := r.Int64N(size)
			n := r.Int64N(size-off) + 1
			if r.IntN(3) == 0 {
				s.Remove(off, n)
				for i := off; i < off+n; i++ {
					bits[i] = false
				}
			} else {
				s.Add(off, n)
				for i := off; i < off+n; i++ {
					bits[i] = true
				}
			}
			var want []Range
			for i := 0; i < size; i++ {
				if bits[i] && (i == 0 || !bits[i-1]) {
					want = append(want, Range{int64(i), 0})
				}
				if bits[i] {
					want[len(want)-1].Len++
				}
			}
			if got := s.Ranges(); !reflect.DeepEqual(got, want) {
				t.Fatalf("round %d op %d: got %v want %v", round, op, got, want)
			}
			var count int64
			for _, b := range bits {
				if b {
					count++
				}
			}
			if s.Size() != count {
				t.Fatalf("Size %d want %d", s.Size(), count)
			}
			qo := r.Int64N(size)
			qn := r.Int64N(size-qo) + 1
			all, anyb := true, false
			for i := qo; i < qo+qn; i++ {
				all = all && bits[i]
				anyb = anyb || bits[i]
			}
			if s.Contains(qo, qn) != all || s.Overlaps(qo, qn) != anyb {
				t.Fatalf("Contains/Overlaps(%d,%d) wrong for %v", qo, qn, s.Ranges())
			}
			var miss int64
			for _, m := range s.Missing(qo, qn) {
				for i := m.Off; i < m.End(); i++ {
					if bits[i] {
						t.Fatalf("Missing reports held byte %d", i)
					}
				}
				miss += m.Len
			}
			var held int64
			for _, m := range s.Intersect(qo, qn) {
				held += m.Len
			}
			if miss+held != qn {
				t.Fatalf("Missing+Intersect = %d+%d, want %d", miss, held, qn)
			}
		}
	}
}

func BenchmarkAddInOrder(b *testing.B) {
	var s Set
	var off int64
	for b.Loop() {
		s.Add(off, 1400)
		off += 1400
	}
}

func BenchmarkAddWithGaps(b *testing.B) {
	var s Set
	var off int64
	for i := 0; b.Loop(); i++ {
		if i%50 != 0 {
			s.Add(off, 1400)
		}
		off += 1400
		if s.Count() > 200 {
			s = Set{}
		}
	}
}

// BenchmarkRemoveAmongMany removes acknowledged spans from a set with a
// hundred holes, as a sender's pending bytes look on a lossy path.
func BenchmarkRemoveAmongMany(b *testing.B) {
	var s Set
	for i := int64(0); i < 100; i++ {
		s.Add(i*10000, 9000)
	}
	i := int64(0)
	for b.Loop() {
		off := (i % 100) * 10000
		s.Remove(off, 1400)
		s.Add(off, 1400)
		i++
	}
}
