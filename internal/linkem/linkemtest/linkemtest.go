// Package linkemtest starts link emulators for tests.
package linkemtest

import (
	"context"
	"testing"
	"time"

	"github.com/chute/chute/internal/linkem"
	"github.com/chute/chute/internal/testenv"
)

// New starts an emulator for the test and closes it when the test ends,
// failed or not. It needs root and nsenter (from util-linux); without them
// the test is skipped, or fails under CHUTE_TEST_STRICT=1.
func New(t testing.TB, cfg linkem.Config) *linkem.Emulator {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "nsenter", "apt-get install util-linux")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := linkem.New(ctx, cfg)
	if err != nil {
		t.Fatalf("linkem.New: %v", err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("linkem Close: %v", err)
		}
	})
	return e
}
