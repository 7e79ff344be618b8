package pbx

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/internal/testutil"
)

func peerByName(s *Server, name string) PeerInfo {
	for _, p := range s.Peers() {
		if p.Name == name {
			return p
		}
	}
	return PeerInfo{}
}

func waitPeer(t *testing.T, s *Server, name string, d time.Duration, ok func(PeerInfo) bool) PeerInfo {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		p := peerByName(s, name)
		if ok(p) {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("peer %s: condition not met within %s; last %+v", name, d, p)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var okStatus = regexp.MustCompile(`^OK \(\d+ ms\)$`)

// Both lines answer OPTIONS: OK (N ms); the ISP line stops: UNREACHABLE.
// The pokes leave from the box's SIP port (the ATA only talks to it).
func TestSippQualify(t *testing.T) {
	needSipp(t)
	cfg := testConfig("")
	for i := range cfg.Peers {
		cfg.Peers[i].Qualify = 200
		cfg.Peers[i].QualifyFreq = time.Second
	}
	box := startBox(t, cfg, nil)
	ports := map[string]int{ispLine: testutil.FreeUDPPortBelowEphemeral(t), clientLine: testutil.FreeUDPPortBelowEphemeral(t)}
	uas := map[string]*sippProc{}
	for _, name := range []string{ispLine, clientLine} {
		registerLine(t, box, name, ports[name])
		uas[name] = startSipp(t, scenario(t, "uas_options.xml", defaults(name)), ports[name], "", "-m", "1000")
	}
	for _, name := range []string{ispLine, clientLine} {
		p := waitPeer(t, box.Server, name, 15*time.Second, func(p PeerInfo) bool { return okStatus.MatchString(p.Status) })
		if !p.Online || !p.Monitored || p.Port != ports[name] || p.Host.String() != "127.0.0.1" || p.Username != name {
			t.Errorf("%s: %+v", name, p)
		}
	}
	box.ev.wait(t, 5*time.Second, func(e bus.Event) bool {
		ps, ok := e.(bus.PeerStatus)
		return ok && ps.Peer == ispLine && strings.HasPrefix(ps.Status, "OK (")
	})
	uas[ispLine].kill()
	msgs := uas[ispLine].messages()
	if !strings.Contains(msgs, "OPTIONS sip:"+ispLine+"@127.0.0.1:"+strconv.Itoa(ports[ispLine])) ||
		!strings.Contains(msgs, "Via: SIP/2.0/UDP 127.0.0.1:"+strconv.Itoa(int(box.Addr().Port()))+";") {
		t.Errorf("OPTIONS not from the box's SIP port:\n%s", tail([]byte(msgs), 3000))
	}
	p := waitPeer(t, box.Server, ispLine, 15*time.Second, func(p PeerInfo) bool { return p.Status == "UNREACHABLE" })
	if p.Online {
		t.Errorf("unreachable but online: %+v", p)
	}
	box.ev.wait(t, 5*time.Second, func(e bus.Event) bool {
		ps, ok := e.(bus.PeerStatus)
		return ok && ps.Peer == ispLine && ps.Status == "UNREACHABLE"
	})
	// An UNREACHABLE peer is not dialled: the call fails like an unregistered one.
	cli := newRawUA(t, box.Addr())
	r := cli.inviteAuth(clientLine, "88567682", "unreach@x")
	if r == nil || r.StatusCode != 503 {
		t.Errorf("call to an unreachable peer: %v", r)
	}
	if c := peerByName(box.Server, clientLine); !okStatus.MatchString(c.Status) {
		t.Errorf("client line: %s", c.Status)
	}
}

func TestPeerStatusStrings(t *testing.T) {
	for _, tt := range []struct {
		maxms, lastms int
		want          string
	}{{0, 5, "Unmonitored"}, {200, -1, "UNREACHABLE"}, {200, 0, "UNKNOWN"}, {200, 7, "OK (7 ms)"}, {200, 200, "OK (200 ms)"}, {200, 201, "LAGGED (201 ms)"}} {
		if got := peerStatus(tt.maxms, tt.lastms); got != tt.want {
			t.Errorf("peerStatus(%d,%d) = %q, want %q", tt.maxms, tt.lastms, got, tt.want)
		}
	}
}
