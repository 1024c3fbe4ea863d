package cos_test

import (
	"errors"
	"testing"

	"github.com/chute/chute/cos"
)

func TestPlanParts(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name         string
		size, want   int64
		req          int64
		wantN        int
		wantTooLarge bool
		wantNegative bool
	}{
		{"empty object: one empty part", 0, cos.DefaultPartSize, 0, 1, false, false},
		{"default part size", 100 * mib, cos.DefaultPartSize, 0, 7, false, false},
		{"exact multiple", 48 * mib, 16 * mib, 16 * mib, 3, false, false},
		{"raised to S3's minimum", 12 * mib, cos.MinPartSize, 1 * mib, 3, false, false},
		{"raised to fit 10000 parts", 200_000 * mib, 20 * mib, 5 * mib, 10000, false, false},
		{"raised in whole MiB", 10000*16*mib + 1, 17 * mib, 16 * mib, 9412, false, false},
		{"largest object", cos.MaxObjectSize, 525 * mib, 0, 9987, false, false},
		{"too large", cos.MaxObjectSize + 1, 0, 0, 0, true, false},
		{"unknown size", -1, 0, 0, 0, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ps, n, err := cos.PlanParts(tc.size, tc.req)
			switch {
			case tc.wantTooLarge:
				if !errors.Is(err, cos.ErrTooLarge) {
					t.Errorf("PlanParts(%d) error %v; want ErrTooLarge", tc.size, err)
				}
				return
			case tc.wantNegative:
				if err == nil {
					t.Errorf("PlanParts(%d) succeeded", tc.size)
				}
				return
			case err != nil:
				t.Fatalf("PlanParts(%d, %d): %v", tc.size, tc.req, err)
			}
			if ps != tc.want || n != tc.wantN {
				t.Errorf("PlanParts(%d, %d) = %d bytes × %d; want %d × %d", tc.size, tc.req, ps, n, tc.want, tc.wantN)
			}
			if n > cos.MaxParts || ps < cos.MinPartSize || ps > cos.MaxPartSize {
				t.Errorf("PlanParts(%d) = %d × %d breaks S3's limits", tc.size, ps, n)
			}
			var total int64
			for i := 1; i <= n; i++ {
				off, l := cos.PartRange(tc.size, ps, i)
				if off != total {
					t.Fatalf("part %d starts at %d; want %d", i, off, total)
				}
				if l <= 0 && tc.size > 0 {
					t.Fatalf("part %d is empty", i)
				}
				total += l
			}
			if total != tc.size {
				t.Errorf("parts add up to %d bytes; want %d", total, tc.size)
			}
		})
	}
}
