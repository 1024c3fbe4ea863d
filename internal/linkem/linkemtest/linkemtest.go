// Package linkemtest starts link emulators for tests.
package linkemtest

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/chute/chute/internal/linkem"
	"github.com/chute/chute/internal/testenv"
)

// New starts an emulator for the test and closes it when the test ends,
// failed or not. It needs root and nsenter (from util-linux); without them
// the test is skipped, or fails under CHUTE_TEST_STRICT=1. Unless cfg has
// a Logger, the emulator logs through t.Log.
func New(t testing.TB, cfg linkem.Config) *linkem.Emulator {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "nsenter", "apt-get install util-linux")
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
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

// testWriter sends log lines to t.Log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
