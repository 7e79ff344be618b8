package config

import (
	"strings"
	"testing"

	"github.com/isp-box/isp-box/pbx"
)

func TestParseRegister(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want pbx.Registration
		err  string
	}{
		{in: "1234567:s3cret@sip.example.net", want: pbx.Registration{User: "1234567", Secret: "s3cret", Host: "sip.example.net"}},
		{in: "user:pw:authuser@10.0.0.1:5070/881", want: pbx.Registration{User: "user", Secret: "pw", AuthUser: "authuser", Host: "10.0.0.1", Port: 5070, Extension: "881"}},
		{in: "udp://u@h/s", want: pbx.Registration{User: "u", Host: "h", Extension: "s"}},
		{in: "u@dom.example:pw@proxy.example", want: pbx.Registration{User: "u@dom.example", Secret: "pw", Host: "proxy.example"}},
		{in: "nohost", err: "expected user"},
		{in: "@host", err: "expected user"},
		{in: "u@host:99999", err: "port must be"},
		{in: "u@host/", err: "empty extension"},
		{in: "tcp://u@host", err: "only udp"},
		{in: "u@host~3600", err: "~expiry"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseRegister(tc.in)
			if tc.err != "" {
				if !strings.Contains(err, tc.err) {
					t.Fatalf("err %q, want %q", err, tc.err)
				}
				return
			}
			if err != "" || got != tc.want {
				t.Fatalf("got %+v %q, want %+v", got, err, tc.want)
			}
		})
	}
}

func TestRegisterConfig(t *testing.T) {
	src := `[general]
register => 881:pw@provider/881
registertimeout = 5
registerattempts = 0
register => bad

[provider]
type = peer
host = 127.0.0.1:5080
fromuser = 881
fromdomain = example.net
outboundproxy = 127.0.0.1:5090
insecure = port,invite
context = from-provider

[from-provider]
exten => 881,1,Dial(SIP/provider)
`
	_, err := Parse("t.conf", []byte(src), nil)
	if err == nil || !strings.Contains(err.Error(), "t.conf:5: register => ") {
		t.Fatalf("want an error at t.conf:5, got %v", err)
	}
	cfg, err := Parse("t.conf", []byte(strings.Replace(src, "register => bad\n", "", 1)), nil)
	if err != nil {
		t.Fatal(err)
	}
	g := cfg.PBX.General
	if len(g.Registrations) != 1 || g.Registrations[0].Host != "provider" || g.Registrations[0].Line != 2 || g.RegisterTimeout.Seconds() != 5 {
		t.Errorf("general: %+v", g)
	}
	for _, p := range cfg.PBX.Peers {
		if p.Name == "provider" && (p.FromUser != "881" || p.FromDomain != "example.net" || p.OutboundProxy != "127.0.0.1:5090") {
			t.Errorf("peer: %+v", p)
		}
	}
}

func FuzzParseRegister(f *testing.F) {
	f.Add("user:pw:auth@host:5060/ext")
	f.Add("udp://a@b")
	f.Fuzz(func(t *testing.T, s string) {
		r, err := parseRegister(s)
		if err == "" && (r.User == "" || r.Host == "" || r.Port < 0 || r.Port > 65535) {
			t.Fatalf("accepted %q as %+v", s, r)
		}
	})
}
