package cache

import (
	"encoding/json"
	"log/slog"
	"math/rand/v2"
)

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func testLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// randomData returns n reproducible pseudo-random bytes.
func randomData(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed+1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}
