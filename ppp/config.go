package ppp

import (
	"net/netip"
	"time"
)

// AuthProto is an authentication protocol the server can ask for.
type AuthProto string

const (
	AuthPAP      AuthProto = "pap"
	AuthCHAP     AuthProto = "chap"      // CHAP-MD5, RFC 1994
	AuthMSCHAP   AuthProto = "mschap"    // MS-CHAPv1, RFC 2433
	AuthMSCHAPv2 AuthProto = "mschap-v2" // MS-CHAPv2, RFC 2759
)

// Config is a line's PPP options: pppd's /etc/ppp/options overlaid by
// options.<tty>. Options pppd had that belong to the serial port (crtscts,
// lock, local) are in modem.LineConfig instead.
type Config struct {
	Local   netip.Addr // local:remote; zero Local = the network's gateway
	Remote  netip.Addr // zero = from the pool
	Netmask netip.Addr

	DNS  []netip.Addr // ms-dns (one value fills both slots, as pppd)
	WINS []netip.Addr // ms-wins

	AsyncMap     uint32      // asyncmap
	RequireAuth  bool        // auth / noauth
	Auth         []AuthProto // order of preference: +pap, require-chap, require-mschap, require-mschap-v2
	Login        bool        // login: check PAP against the users list as if it were the system's
	ShowPassword bool        // show-password
	Debug        bool        // debug

	EchoInterval time.Duration // lcp-echo-interval; 0 = off
	EchoFailure  int           // lcp-echo-failure
	EchoAdaptive bool          // lcp-echo-adaptive

	MRU           int           // mru; 1500
	MTU           int           // mtu; 1500
	VJ            bool          // vj compression offered/accepted; novj turns off
	VJMaxSlots    int           // vj-max-slots; 16
	ProxyARP      bool          // proxyarp
	Idle          time.Duration // idle; 0 = off
	MaxConnect    time.Duration // maxconnect; 0 = off
	Restart       time.Duration // lcp-restart; 3 s
	MaxConfigure  int           // lcp-max-configure; 10
	MaxTerminate  int           // lcp-max-terminate; 2
	MaxFailure    int           // lcp-max-failure; 5
	AuthFailDelay time.Duration // delay before answering a failed authentication; 1 s

	// Added by the ppp package (keys proposed in the report):
	Name           string        // name: our name in CHAP challenges and the secrets' server column; "" = "isp-box"
	AuthTimeout    time.Duration // pap-timeout: how long to wait for the peer to authenticate; 30 s
	IPCPMaxFailure int           // ipcp-max-failure; 100 (pppd: some modems Nak repeatedly)
}

// User is one pap-secrets / chap-secrets line: client server secret [addresses].
type User struct {
	Name   string // "*" matches any
	Server string // "*" matches any
	Secret string
	Addrs  []string // allowed addresses; "*" or empty = any; "-" = none
	File   string
	Line   int
}

// DefaultConfig returns pppd's defaults (from its source, not its man page).
func DefaultConfig() Config {
	return Config{
		MRU:            1500,
		MTU:            1500,
		VJ:             true,
		VJMaxSlots:     16,
		Restart:        3 * time.Second,
		MaxConfigure:   10,
		MaxTerminate:   2,
		MaxFailure:     5,
		AuthFailDelay:  time.Second,
		AuthTimeout:    30 * time.Second,
		IPCPMaxFailure: 100,
	}
}
