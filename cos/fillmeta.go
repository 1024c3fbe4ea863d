package cos

import (
	"context"
	"errors"
	"sync"
)

// FillMeta completes a listing page with metadata: each object's, by Stat
// (HasMeta set), and the marker object of each common prefix, when there
// is one, in page.Markers. The Stats run concurrency at a time (0 means
// 16). An object that vanished since the listing is dropped from the page.
func FillMeta(ctx context.Context, s Store, bucket string, page *ListPage, concurrency int) error {
	if concurrency <= 0 {
		concurrency = 16
	}
	type job struct {
		key    string
		marker bool
		i      int
	}
	jobs := make(chan job)
	objs := make([]ObjectInfo, len(page.Objects))
	gone := make([]bool, len(page.Objects))
	markers := make([]*ObjectInfo, len(page.CommonPrefixes))
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	for w := 0; w < min(concurrency, len(page.Objects)+len(page.CommonPrefixes)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				o, err := s.Stat(ctx, bucket, j.key)
				switch {
				case err == nil:
					o.HasMeta = true
					if j.marker {
						markers[j.i] = &o
					} else {
						objs[j.i] = o
					}
				case errors.Is(err, ErrNotFound):
					if !j.marker {
						gone[j.i] = true
					}
				default:
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i, o := range page.Objects {
		jobs <- job{key: o.Key, i: i}
	}
	for i, p := range page.CommonPrefixes {
		jobs <- job{key: p, marker: true, i: i}
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	kept := page.Objects[:0]
	for i := range objs {
		if !gone[i] {
			kept = append(kept, objs[i])
		}
	}
	page.Objects = kept
	page.Markers = page.Markers[:0]
	for _, m := range markers {
		if m != nil {
			page.Markers = append(page.Markers, *m)
		}
	}
	return nil
}
