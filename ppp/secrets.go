package ppp

import (
	"net/netip"
	"strings"
)

// Secrets looks up the secret of a peer, as pppd reads pap-secrets and
// chap-secrets. The [users] section of the config satisfies it through
// UserList; RADIUS could too.
type Secrets interface {
	// Lookup returns the secret for client name when talking to server,
	// and the addresses the client may use ("*" or empty = any).
	Lookup(client, server string) (secret string, addrs []string, ok bool)
}

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
