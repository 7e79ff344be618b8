package config

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/isp-box/isp-box/ppp"
)

// TestPap2tMeaning checks that the seed's pasted lines mean in isp-box
// what they meant to Asterisk, mgetty and pppd.
func TestPap2tMeaning(t *testing.T) {
	cfg, err := Load("../../examples/pap2t.conf")
	if err != nil {
		t.Fatal(err)
	}
	// The one warning: the seed's show-password logs callers' guesses.
	if len(cfg.Warnings) != 1 || !strings.Contains(cfg.Warnings[0].Error(), ":88: show-password: the log will hold every PAP password") {
		t.Errorf("warnings: %v", cfg.Warnings)
	}
	if got := cfg.PBX.General.UDPBindAddr; got != netip.MustParseAddrPort("0.0.0.0:5060") {
		t.Errorf("udpbindaddr = %v", got)
	}
	if len(cfg.PBX.Peers) != 2 {
		t.Fatalf("peers = %d", len(cfg.PBX.Peers))
	}
	for i, want := range []struct{ name, regexten string }{{"pap2t-ispmodem", "881"}, {"pap2t-client", "882"}} {
		p := cfg.PBX.Peers[i]
		if p.Name != want.name || p.RegExten != want.regexten || p.Type != "friend" || p.Context != "default" ||
			p.Secret != "password" || p.Qualify != 200 || p.Host != "dynamic" || !p.DirectMedia || p.NAT != "no" {
			t.Errorf("peer %d = %+v", i, p)
		}
	}
	if len(cfg.PBX.Dialplan) != 1 || cfg.PBX.Dialplan[0].Value != "_X!,1,Dial(SIP/pap2t-ispmodem, 20)" || cfg.PBX.Dialplan[0].Context != "default" {
		t.Errorf("dial plan = %+v", cfg.PBX.Dialplan)
	}
	if len(cfg.Lines) != 1 {
		t.Fatalf("lines = %d", len(cfg.Lines))
	}
	m, p := cfg.Lines[0].Modem, cfg.Lines[0].PPP
	checks := []struct {
		what string
		ok   bool
	}{
		{"device /dev/ttyUSB0", m.Device == "/dev/ttyUSB0"},
		{"peer pap2t-ispmodem", m.Peer == "pap2t-ispmodem"},
		{"rings 2", m.Rings == 2},
		{"speed 9600", m.Speed == 9600},
		{"debug 9 (a default before port)", m.Debug == 9},
		{"port-owner root, group dialout, mode 0660", m.PortOwner == "root" && m.PortGroup == "dialout" && m.PortMode == 0o660},
		{"data-only yes", m.DataOnly},
		{"ignore-carrier no", !m.IgnoreCarrier},
		{"toggle-dtr yes, 500 ms", m.ToggleDTR && m.ToggleDTRWait == 500*time.Millisecond},
		{"#autobauding yes is a comment", !m.Autobauding},
		{"nocrtscts (options.ttyUSB0) beats crtscts (options)", m.FlowControl == "none"},
		{"lock", m.Lock},
		{"local", m.Local},
		{"noauth beats auth and +pap", !p.RequireAuth},
		{"+pap still names PAP", slices.Equal(p.Auth, []ppp.AuthProto{ppp.AuthPAP})},
		{"lcp-echo-failure 60 beats 4", p.EchoFailure == 60},
		{"lcp-echo-interval 30", p.EchoInterval == 30*time.Second},
		{"one ms-dns fills both slots", slices.Equal(p.DNS, []netip.Addr{netip.MustParseAddr("8.8.8.8"), netip.MustParseAddr("8.8.8.8")})},
		{"asyncmap 0", p.AsyncMap == 0},
		{"local:remote", p.Local == netip.MustParseAddr("192.168.32.1") && p.Remote == netip.MustParseAddr("192.168.32.105")},
		{"netmask", p.Netmask == netip.MustParseAddr("255.255.255.0")},
		{"proxyarp, show-password, debug", p.ProxyARP && p.ShowPassword && p.Debug},
		{"[ppp] alone still requires auth", cfg.PPP.RequireAuth && cfg.PPP.EchoFailure == 4},
		{"pap-secrets dial * \"dial\" *", len(cfg.Users) == 1 && cfg.Users[0].Name == "dial" && cfg.Users[0].Server == "*" && cfg.Users[0].Secret == "dial" && slices.Equal(cfg.Users[0].Addrs, []string{"*"})},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("%s: no", c.what)
		}
	}
}
