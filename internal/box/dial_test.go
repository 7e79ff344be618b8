package box

import (
	"errors"
	"testing"

	"github.com/isp-box/isp-box/internal/config"
	"github.com/isp-box/isp-box/modem"
	"github.com/isp-box/isp-box/pbx/dialplan"
)

// TestRouteNumber: the number dialled on a virtual modem (or rung on a
// hardware line) picks the service from the dial plan.
func TestRouteNumber(t *testing.T) {
	cfg, err := config.Parse("t.conf", []byte(`
[general]
context=default
[pap2t-ispmodem]
type=friend
host=dynamic
secret=x
context=default
[pap2t-client]
type=friend
host=dynamic
secret=y
context=default
[default]
exten => 5552323,1,Telnet(bbs.example.org)
same => n,Dial(SIP/pap2t-ispmodem,20)
exten => 5550001,1,TCP(10.0.0.5:6400)
exten => 5550002,1,Login()
exten => 5550003,1,Busy()
exten => 5550004,1,Dial(SIP/pap2t-client)
exten => 5550005,1,Hangup()
exten => _X!,1,Dial(SIP/pap2t-ispmodem,20)
[mgetty]
port ttyUSB0
 peer pap2t-ispmodem
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := dialplan.Compile(cfg.PBX.Dialplan)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		number string
		want   modem.Route
		err    error // nil: connects
	}{
		{"5552323", modem.Route{Service: modem.ServiceTelnet, Target: "bbs.example.org:23"}, nil},
		{"5550001", modem.Route{Service: modem.ServiceTCP, Target: "10.0.0.5:6400"}, nil},
		{"5550002", modem.Route{Service: modem.ServiceLogin}, nil},
		{"5551234", modem.Route{Service: modem.ServicePPP}, nil},
		{"5550003", modem.Route{}, modem.ErrBusy},
		{"5550004", modem.Route{}, errors.New("a phone")},
		{"5550005", modem.Route{}, errors.New("hangup")},
	} {
		r, err := routeNumber(plan, cfg, "default", tc.number)
		switch {
		case tc.err == nil && err != nil:
			t.Errorf("%s: %v", tc.number, err)
		case tc.err != nil && err == nil:
			t.Errorf("%s: connected %+v, want an error", tc.number, r)
		case errors.Is(tc.err, modem.ErrBusy) && !errors.Is(err, modem.ErrBusy):
			t.Errorf("%s: %v, want busy", tc.number, err)
		case tc.err == nil && r != tc.want:
			t.Errorf("%s: %+v, want %+v", tc.number, r, tc.want)
		}
	}
	if _, err := dialplan.Compile([]dialplan.Line{{File: "x", Line: 1, Context: "c", Key: "exten", Value: "1,1,TCP(host)"}}); err == nil {
		t.Error("TCP(host) without a port compiled")
	}
}
