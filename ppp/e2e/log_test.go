package e2e

import (
	"log/slog"
	"os"
	"testing"
)

type slogLogger = slog.Logger

func newTestLog(t *testing.T) *slog.Logger {
	if os.Getenv("PPP_DEBUG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
}
