package pbx

import (
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/isp-box/isp-box/internal/bus"
)

const t38SDP = "v=0\r\no=- 7 8 IN IP4 127.0.0.60\r\ns=-\r\nc=IN IP4 127.0.0.60\r\nt=0 0\r\n" +
	"m=image 16484 udptl t38\r\na=T38FaxVersion:0\r\na=T38MaxBitRate:14400\r\na=T38FaxRateManagement:transferredTCF\r\n" +
	"a=T38FaxMaxDatagram:400\r\na=T38FaxUdpEC:t38UDPRedundancy\r\n"

func TestOffersT38(t *testing.T) {
	for _, tt := range []struct {
		name string
		sdp  string
		want bool
	}{
		{"T.38 offer", t38SDP, true},
		{"G.711", calleeSDP, false},
		{"audio and T.38", calleeSDP + "m=image 16484 udptl t38\r\n", true},
		{"T.38 declined (port 0)", "v=0\r\nm=audio 16482 RTP/AVP 0\r\nm=image 0 udptl t38\r\n", false},
		{"upper case", "v=0\r\nm=IMAGE 4000 UDPTL T38\r\n", true},
		{"T.38 over TCP", "v=0\r\nm=image 4000 tcptl t38\r\n", true},
		{"image, not T.38", "v=0\r\nm=image 4000 udptl x-other\r\n", false},
		{"truncated m= line", "v=0\r\nm=image 4000\r\n", false},
		{"empty", "", false},
	} {
		if got := offersT38([]byte(tt.sdp)); got != tt.want {
			t.Errorf("%s: offersT38 = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func FuzzOffersT38(f *testing.F) {
	f.Add([]byte(t38SDP))
	f.Add([]byte(calleeSDP))
	f.Add([]byte("m=image 1/2 udptl t38"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if offersT38(b) && !strings.Contains(strings.ToLower(string(b)), "image") {
			t.Fatalf("T.38 found in %q without an image stream", b)
		}
	})
}

// An ATA that hears the modem's answer tone as fax re-INVITEs to T.38; on
// a call with a modem line the box answers 488 and the call stays on
// G.711. A G.711 re-INVITE is relayed as before, and on a call without a
// modem line T.38 is relayed too.
func TestT38RefusedOnModemCalls(t *testing.T) {
	for _, modem := range []bool{true, false} {
		name := "no modem line"
		if modem {
			name = "modem line"
		}
		t.Run(name, func(t *testing.T) {
			rc := newRawCall(t)
			if modem {
				rc.box.bus.Publish(bus.LineState{Line: "ttyUSB0", Peer: ispLine, State: bus.LineConnected})
				waitPeer(t, rc.box.Server, ispLine, 5*time.Second, func(p PeerInfo) bool { return p.LineBusy })
			}
			rc.isp.send(rc.fromCallee(sip.INVITE, 2), t38SDP)
			if !modem {
				inv := rc.cli.nextRequest(t, sip.INVITE)
				if !strings.Contains(string(inv.Body()), "m=image") {
					t.Fatalf("relayed re-INVITE lost its T.38 offer:\n%s", inv.Body())
				}
				res := sip.NewResponseFromRequest(inv, 488, "Not Acceptable Here", nil)
				rc.cli.sendRaw([]byte(res.String()))
				if r := rc.isp.final(5 * time.Second); r == nil || r.StatusCode != 488 {
					t.Fatalf("the caller's 488 was not relayed: %v", r)
				}
				return
			}
			r := rc.isp.final(5 * time.Second)
			if r == nil || r.StatusCode != 488 {
				t.Fatalf("T.38 re-INVITE on a modem call got %v, want 488", r)
			}
			if m := rc.cli.recv(300 * time.Millisecond); m != nil {
				t.Fatalf("the caller got %v", m)
			}
			rc.expect(t, "up", 2)
			// G.711 passthrough re-INVITE: relayed as today
			rc.calleeReinviteThenBye(t, 3, 3)
		})
	}
}
