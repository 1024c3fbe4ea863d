package cos

import "sync"

// Buffers of one capacity, recycled across Readers: a transfer node serving
// a mount makes a Reader for each read-ahead window, and fresh buffers of
// tens of MiB for each cost more (page faults and zeroing) than the
// copies they hold.
var bufPools sync.Map // capacity (int64) → *sync.Pool of *[]byte

// getBuf returns a buffer of length n and capacity c, recycled when one is
// free.
func getBuf(n, c int64) []byte {
	if p, ok := bufPools.Load(c); ok {
		if b, ok := p.(*sync.Pool).Get().(*[]byte); ok {
			return (*b)[:n]
		}
	}
	return make([]byte, n, c)
}

// putBuf gives b back for reuse; the caller must not touch it after.
func putBuf(b []byte) {
	if cap(b) == 0 {
		return
	}
	c := int64(cap(b))
	p, _ := bufPools.LoadOrStore(c, &sync.Pool{})
	b = b[:0]
	p.(*sync.Pool).Put(&b)
}
