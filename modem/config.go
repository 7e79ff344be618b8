package modem

import (
	"net/netip"
	"os"
	"time"
)

// LineConfig is one modem line: mgetty.config's `port` block plus the
// serial-port options pppd had (crtscts, lock, local) and the box's own keys.
type LineConfig struct {
	Name   string // line name: "ttyUSB0"
	Device string // path to open: "/dev/ttyUSB0" or a /dev/serial/by-id/ link
	Peer   string // SIP peer whose phone port this modem sits on (ties calls to the line)

	Speed         int           // speed: DTE speed; mgetty default 38400
	Rings         int           // rings: RINGs before answering; 1
	ToggleDTR     bool          // toggle-dtr; yes
	ToggleDTRWait time.Duration // toggle-dtr-waittime; 500 ms
	DataOnly      bool          // data-only
	IgnoreCarrier bool          // ignore-carrier; no
	Autobauding   bool          // autobauding
	PortOwner     string        // port-owner
	PortGroup     string        // port-group
	PortMode      os.FileMode   // port-mode; 0660
	InitChat      []string      // init-chat: expect/send pairs; mgetty's default when empty
	AnswerCommand string        // answer-chat's command; "ATA"
	AnswerTimeout time.Duration // answer-chat-timeout; 80 s
	ModemCheck    time.Duration // modem-check-time; 3600 s
	FlowControl   string        // "hard" (RTS/CTS) or "none"; from crtscts/nocrtscts or data-flow
	Lock          bool          // UUCP lock file (pppd's lock); yes
	LockDir       string        // /var/lock
	Local         bool          // pppd's local: ignore DCD, don't touch DTR
	Direct        bool          // direct yes: null-modem, no AT at all, PPP at once
	Kind          string        // kind: "modem" (a hardware modem; "" too) or "virtual-modem" (the box plays the modem)
	ConnectSpeed  int           // connect-speed: the rate a virtual modem reports in CONNECT; 0 = the port speed
	Context       string        // context: the dial plan context a virtual modem's ATD runs in; "" = default

	// TCP lines (Kind "tcp").
	Listen      string         // listen: host:port
	Telnet      bool           // telnet: RFC 854 with BINARY, SGA, ECHO; else raw bytes
	Dialogue    bool           // dialogue: a virtual modem's AT command mode first, not data mode
	MaxConns    int            // max-connections; 100
	RatePerMin  int            // rate-limit: new connections a minute from one source; 0 = none
	IdleTimeout time.Duration  // idle-timeout: no byte from the client for this long ends it; 0 = none
	Permit      []netip.Prefix // permit: sources allowed (alone: only these)
	Deny        []netip.Prefix // deny: sources refused unless a permit matches
	AutoPPP     bool           // detect PPP frames instead of a login name; yes
	LoginPrompt string         // login-prompt; "@!login: "
	Issue       string         // issue banner text (issue-file's contents)
	LoginTime   time.Duration  // login-time; 240 s
	Debug       int            // debug
	File        string
	Line        int
}

// DefaultLineConfig returns mgetty's defaults for a port named name.
func DefaultLineConfig(name string) LineConfig {
	return LineConfig{
		Name:          name,
		Device:        "/dev/" + name,
		Speed:         38400,
		Rings:         1,
		ToggleDTR:     true,
		ToggleDTRWait: 500 * time.Millisecond,
		PortMode:      0o660,
		AnswerCommand: "ATA",
		AnswerTimeout: 80 * time.Second,
		ModemCheck:    3600 * time.Second,
		FlowControl:   "hard",
		Lock:          true,
		LockDir:       "/var/lock",
		AutoPPP:       true,
		LoginPrompt:   "@!login: ",
		LoginTime:     240 * time.Second,
	}
}
