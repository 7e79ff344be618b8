package console

import (
	"time"

	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/internal/status"
)

// Status is the one status type shared by the daemon and the CLI: the
// daemon fills it with each part's own snapshot (internal/status's types,
// unchanged) and serves it as JSON at GET /v1/status; the CLI decodes it
// and renders tables, the status page and /metrics read the same document.
type Status struct {
	Version  string                `json:"version"`            // isp-box version
	Started  time.Time             `json:"started"`            // when the daemon started
	Config   string                `json:"config"`             // config file path
	Network  string                `json:"network"`            // network mode: userspace or kernel
	SIPAddr  string                `json:"sip_addr"`           // address the PBX listens on
	Peers    []status.Peer         `json:"peers"`              // SIP peers, sorted by name
	Calls    []status.Call         `json:"calls"`              // live calls
	Lines    []status.Line         `json:"lines"`              // modem lines in config order
	Sessions []Session             `json:"sessions"`           // live PPP sessions
	Registry []status.Registration `json:"registry,omitempty"` // outbound SIP registrations (register =>)
	Net      status.Network        `json:"net"`                // the network side
	Counters []Counter             `json:"counters"`           // named counters (drops by reason, ...)
	Bans     []BanRow              `json:"bans"`               // SIP source addresses banned after failed logins
	Bus      BusStats              `json:"bus"`                // event bus health
}

// Session is a live PPP session as ppp reports it, with the state of its
// RADIUS accounting, which the box keeps, not ppp.
type Session struct {
	status.Session
	Acct string `json:"acct,omitempty"` // "start sent", "2 queued: timeout", ...
	// Modem: a session on a call the box's own modem answered.
	Modem *bus.ModemStats `json:"modem,omitempty"`
}

// BanRow is one banned SIP source address (`isp-box unban ADDR` lifts it).
type BanRow struct {
	Addr  string    `json:"addr"`
	Until time.Time `json:"until"`
}

// UnbanResult is the answer of POST /v1/unban.
type UnbanResult struct {
	Addr   string `json:"addr"`
	Lifted bool   `json:"lifted"` // false: it was not banned
}

// Counter is one named counter.
type Counter struct {
	Name  string `json:"name"`
	Value uint64 `json:"value"`
}

// BusStats is the event bus's health as the console shows it.
type BusStats struct {
	Published   uint64         `json:"published"`
	Subscribers []bus.SubStats `json:"subscribers"`
}
