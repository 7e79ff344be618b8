package ppp

import (
	"context"
	"net/netip"
	"strings"
	"time"
)

// Secrets looks up the secret of a peer, as pppd reads pap-secrets and
// chap-secrets. The [users] section of the config satisfies it through
// UserList; RADIUS could too.
type Secrets interface {
	// Lookup returns the secret for client name when talking to server,
	// and the addresses the client may use ("*" or empty = any).
	Lookup(client, server string) (secret string, addrs []string, ok bool)
}

// AnyLogin is the secret of the users file's any-login rule: every name
// and password is accepted (DreamPi's rule for the Dreamcast, whose login
// is fixed). No password typed into pap-secrets can equal it (it holds NUL).
const AnyLogin = "\x00any-login\x00"

// UserList is Secrets over pap-secrets lines: the first line whose client
// and server columns match (either may be "*") wins, as in pppd.
type UserList []User

// Lookup implements Secrets.
func (l UserList) Lookup(client, server string) (string, []string, bool) {
	for _, u := range l {
		if (u.Name == client || u.Name == "*") && (u.Server == "*" || u.Server == "" || strings.EqualFold(u.Server, server)) {
			return u.Secret, u.Addrs, true
		}
	}
	return "", nil, false
}

// wantedAddr returns the single address a secrets line pins the client to,
// if any (pppd: the fourth column of pap-secrets).
func wantedAddr(addrs []string) netip.Addr {
	for _, a := range addrs {
		if ip, err := netip.ParseAddr(a); err == nil && ip.Is4() {
			return ip
		}
	}
	return netip.Addr{}
}

// Authenticator checks credentials the box cannot check itself because it
// does not know the secret: a RADIUS server (RFC 2865) does. It is asked
// after Secrets found no line for the user, or alone when Secrets is empty.
// Authenticate may block on the network; the session waits without
// stopping its other work. An error means no answer (not a reject).
type Authenticator interface {
	Authenticate(ctx context.Context, req AuthRequest) (AuthResult, error)
}

// AuthRequest is one peer's authentication as the session received it.
type AuthRequest struct {
	Session, Line, CallID string
	Proto                 AuthProto
	User                  string
	Password              string // PAP
	// CHAP family: the Response's Identifier, our Challenge, the
	// Response's value.
	ID        uint8
	Challenge []byte
	Response  []byte
}

// AuthResult is the verdict and what comes with an accept (RFC 2865 §5
// reply attributes); zero fields leave the line's options as they are.
type AuthResult struct {
	OK      bool
	Message string // shown to the peer (PAP Nak / CHAP Failure text) on failure
	// MSCHAPv2Success is the authenticator response "S=<40 hex>" that the
	// Success message must carry (RFC 2759 §5).
	MSCHAPv2Success string
	Addr            netip.Addr    // the client's address, over the pool's
	SessionTimeout  time.Duration // maxconnect for this session
	IdleTimeout     time.Duration // idle for this session
	MTU             int           // at most this MTU
	DNS             []netip.Addr  // offered instead of ms-dns
	Source          string        // who decided, for `isp-box sessions` ("radius")
}
