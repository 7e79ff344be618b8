package ata_test

import (
	"log/slog"
	"os"

	"github.com/emiago/sipgo/sip"
)

// SIP_DEBUG=1 dumps every SIP message the tests send and receive.
func init() {
	if os.Getenv("SIP_DEBUG") != "" {
		sip.SIPDebug = true
		slog.SetLogLoggerLevel(slog.LevelDebug)
	}
}
