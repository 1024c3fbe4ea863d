package cache

import (
	"container/heap"
	"context"
	"log/slog"
	"sync"
	"time"
)

// PutFunc uploads the staged file with the given id. An error means it
// should be tried again later.
type PutFunc func(ctx context.Context, id string) error

// Queue runs uploads in the background: a heap of ids by due time, at most
// limit running at once, and a doubling backoff (from minDelay up to
// maxDelay) between the attempts of an id that keeps failing. It never gives
// up on an id: failures are logged and retried until Remove or Stop. It
// knows nothing of staged files beyond their ids.
type Queue struct {
	put      PutFunc
	limit    int
	minDelay time.Duration
	maxDelay time.Duration
	log      *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	items   map[string]*queued // waiting in the heap
	heap    queueHeap
	running map[string]*queued // being put now
	changed chan struct{}      // closed and replaced on every change
	kick    chan struct{}      // wakes the scheduler
}

type queued struct {
	id    string
	due   time.Time
	tries int  // failed attempts so far
	again bool // Add was called while running: run once more
	idx   int
}

// NewQueue starts a queue. Stop it with Stop.
func NewQueue(put PutFunc, limit int, minDelay, maxDelay time.Duration, log *slog.Logger) *Queue {
	if limit <= 0 {
		limit = 1
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	q := &Queue{
		put: put, limit: limit, minDelay: minDelay, maxDelay: maxDelay, log: log,
		ctx: ctx, cancel: cancel,
		items: map[string]*queued{}, running: map[string]*queued{},
		changed: make(chan struct{}), kick: make(chan struct{}, 1),
	}
	q.wg.Add(1)
	go q.schedule()
	return q
}

// Add queues id to run after delay. An id already waiting keeps the earlier
// of its due times; an id running now runs once more when it ends.
func (q *Queue) Add(id string, delay time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	due := time.Now().Add(delay)
	if r, ok := q.running[id]; ok {
		r.again = true
		return
	}
	if it, ok := q.items[id]; ok {
		if due.Before(it.due) {
			it.due = due
			heap.Fix(&q.heap, it.idx)
		}
	} else {
		it := &queued{id: id, due: due}
		q.items[id] = it
		heap.Push(&q.heap, it)
	}
	q.notifyLocked()
}

// Remove forgets a waiting id (an upload that runs now is not stopped).
func (q *Queue) Remove(id string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if it, ok := q.items[id]; ok {
		heap.Remove(&q.heap, it.idx)
		delete(q.items, id)
	}
	if r, ok := q.running[id]; ok {
		r.again = false
	}
	q.notifyLocked()
}

// Len reports how many ids wait and how many run.
func (q *Queue) Len() (waiting, running int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items), len(q.running)
}

// Drain waits until nothing waits or runs, or ctx ends.
func (q *Queue) Drain(ctx context.Context) error {
	for {
		q.mu.Lock()
		empty := len(q.items) == 0 && len(q.running) == 0
		ch := q.changed
		q.mu.Unlock()
		if empty {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// Stop cancels running puts and waits for them to return. Waiting ids are
// left as they are: the staged records keep them for the next start.
func (q *Queue) Stop() {
	q.cancel()
	q.wg.Wait()
}

func (q *Queue) notifyLocked() {
	close(q.changed)
	q.changed = make(chan struct{})
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

func (q *Queue) schedule() {
	defer q.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		q.mu.Lock()
		now := time.Now()
		for len(q.running) < q.limit && len(q.heap) > 0 && !q.heap[0].due.After(now) {
			it := heap.Pop(&q.heap).(*queued)
			delete(q.items, it.id)
			it.again = false
			q.running[it.id] = it
			q.wg.Add(1)
			go q.run(it)
		}
		wait := time.Hour
		if len(q.running) < q.limit && len(q.heap) > 0 {
			wait = q.heap[0].due.Sub(now)
		}
		q.mu.Unlock()
		timer.Reset(wait)
		select {
		case <-q.ctx.Done():
			return
		case <-q.kick:
		case <-timer.C:
		}
	}
}

func (q *Queue) run(it *queued) {
	defer q.wg.Done()
	err := q.put(q.ctx, it.id)
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.running, it.id)
	if q.ctx.Err() != nil {
		q.notifyLocked()
		return
	}
	switch {
	case err != nil:
		it.tries++
		d := q.minDelay << min(it.tries-1, 30)
		if d > q.maxDelay || d <= 0 {
			d = q.maxDelay
		}
		q.log.Warn("upload failed, will retry", "id", it.id, "attempt", it.tries, "retry_in", d, "err", err)
		it.due = time.Now().Add(d)
		q.requeueLocked(it)
	case it.again:
		it.tries = 0
		it.due = time.Now()
		q.requeueLocked(it)
	}
	q.notifyLocked()
}

func (q *Queue) requeueLocked(it *queued) {
	if old, ok := q.items[it.id]; ok {
		if it.due.Before(old.due) {
			old.due = it.due
			heap.Fix(&q.heap, old.idx)
		}
		return
	}
	q.items[it.id] = it
	heap.Push(&q.heap, it)
}

type queueHeap []*queued

func (h queueHeap) Len() int           { return len(h) }
func (h queueHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h queueHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx = i
	h[j].idx = j
}
func (h *queueHeap) Push(x any) {
	it := x.(*queued)
	it.idx = len(*h)
	*h = append(*h, it)
}
func (h *queueHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	it.idx = -1
	return it
}
