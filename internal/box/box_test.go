package box_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/isp-box/isp-box/internal/box"
	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/internal/config"
	"github.com/isp-box/isp-box/internal/console"
	"github.com/isp-box/isp-box/internal/demo"
	"github.com/isp-box/isp-box/internal/sim/ata"
	"github.com/isp-box/isp-box/internal/store"
	"github.com/isp-box/isp-box/internal/testutil"
)

var gateway = netip.MustParseAddr("192.168.32.1")

// dial calls 88567682 with the client modem, as the seed's Windows 95 PC
// did, and waits for CONNECT and PPP up; the test's end hangs up.
func (r *rig) dial(ctx context.Context) *demo.Session {
	r.t.Helper()
	s, err := demo.Dial(ctx, r.cli.Path(), demo.DialOptions{Number: "88567682", Log: r.log("")})
	if err != nil {
		r.t.Fatalf("dial: %v", err)
	}
	return s
}

// hangUp ends the call by LCP and waits for the line to be idle again.
func hangUp(t *testing.T, ctx context.Context, s *demo.Session, b *box.Box) {
	t.Helper()
	if err := s.HangUp(ctx); err != nil {
		t.Fatalf("hang up: %v", err)
	}
	waitPeersReady(t, b)
}

// TestRestartKeepsRegistrations (issue 3): the box stops as on SIGTERM
// while the ATA keeps running and does not register again; the new box on
// the same port and database knows where both lines are at once, and a
// call through it routes all the way to CONNECT and PPP.
func TestRestartKeepsRegistrations(t *testing.T) {
	ctx := slow(t, "restarts the box under a running ATA and dials through it", 2*time.Minute)
	r := newRig(t)
	b1 := r.readyBox()
	before := b1.Status()
	addrs := map[string]netip.AddrPort{}
	for _, li := range r.ata.Describe() {
		addrs[li.User] = li.SIP
	}

	start := time.Now()
	b1.Stop(t)
	b2 := r.startBox()
	st := b2.Status() // before any OPTIONS answer or REGISTER could arrive
	t.Logf("restarted in %v", time.Since(start).Round(time.Millisecond))
	for user, addr := range addrs {
		old, _ := peerByName(before, user)
		p, ok := peerByName(st, user)
		switch {
		case !ok:
			t.Errorf("peer %s missing after restart", user)
		case p.Host != addr.Addr() || p.Port != int(addr.Port()):
			t.Errorf("peer %s after restart: host %q port %d; want the ATA line's %v", user, p.Host, p.Port, addr)
		case p.Contact != old.Contact || !p.Expires.Equal(old.Expires) || p.UserAgent != old.UserAgent:
			t.Errorf("peer %s after restart: contact %q expires %v UA %q; before: %q %v %q", user,
				p.Contact, p.Expires, p.UserAgent, old.Contact, old.Expires, old.UserAgent)
		}
	}

	waitPeersReady(t, b2.Box)
	s := r.dial(ctx)
	if _, err := s.Net.Ping(ctx, gateway); err != nil {
		t.Errorf("ping the gateway through the restarted box: %v", err)
	}
	hangUp(t, ctx, s, b2.Box)
	b2.Stop(t) // drains the bus: every event is in the log

	var ended []bus.CallEnded
	for _, ev := range b2.events.all() {
		switch e := ev.(type) {
		case bus.PeerRegistered:
			// The ATA registered for an hour: the new box knew the
			// lines from the database, not from a new REGISTER.
			t.Errorf("a REGISTER reached the restarted box: %v", e)
		case bus.CallEnded:
			ended = append(ended, e)
		}
	}
	if len(ended) != 1 || ended[0].Status != "ANSWER" || ended[0].Callee != "pap2t-ispmodem" {
		t.Errorf("call records of the restarted box: %+v; want one ANSWER to pap2t-ispmodem", ended)
	}
}

// thirdPeer is a valid change to the config: a new SIP peer.
const thirdPeer = `
[pap2t-line3]
context=default
type=friend
secret=password3
host=dynamic
`

// TestReloadDuringCall (issue 2): with a dial-up call up and PPP running,
// a valid config change is applied (a new peer shows in the status and on
// the control socket), a broken file is refused with file:line and the
// running config stays, and the call and its session live through both.
func TestReloadDuringCall(t *testing.T) {
	ctx, r, b, s := dialedRig(t, "dials through the box")
	up := b.Status()
	if len(up.Calls) != 1 || len(up.Sessions) != 1 {
		t.Fatalf("after CONNECT: %d calls, %d sessions; want 1 and 1", len(up.Calls), len(up.Sessions))
	}

	// A valid change.
	r.writeConfig(thirdPeer)
	if err := b.Reload(); err != nil {
		t.Fatalf("reload of a valid config: %v", err)
	}
	st, err := console.NewClient(r.sock).Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := peerByName(st, "pap2t-line3"); !ok || len(st.Peers) != 3 {
		t.Errorf("after reload: peers %v; want pap2t-line3 added to the two", peerNames(st))
	}
	applied := b.Config()

	// A broken file: an unknown key, reported at its line.
	broken := thirdPeer + "\n[pap2t-broken]\ntype=friend\nsecret=x\nhost=dynamic\nbogus-key=1\n"
	r.writeConfig(broken)
	badLine := strings.Count(r.configText(broken), "\n") // the last line
	err = b.Reload()
	want := fmt.Sprintf("%s:%d: ", r.cfgPath, badLine)
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "bogus-key") {
		t.Errorf("reload of a broken config: %v; want an error at %s about bogus-key", err, want)
	}
	if b.Config() != applied {
		t.Error("the refused config replaced the running one")
	}
	st = b.Status()
	if _, ok := peerByName(st, "pap2t-broken"); ok || len(st.Peers) != 3 {
		t.Errorf("after a refused reload: peers %v; want the three of the running config", peerNames(st))
	}

	// The call lived through both.
	if len(st.Calls) != 1 || st.Calls[0].ID != up.Calls[0].ID || len(st.Sessions) != 1 || st.Sessions[0].ID != up.Sessions[0].ID {
		t.Errorf("after reloads: calls %+v sessions %+v; want call %s and session %s still up", st.Calls, st.Sessions,
			up.Calls[0].ID, up.Sessions[0].ID)
	}
	if _, err := s.Net.Ping(ctx, gateway); err != nil {
		t.Errorf("ping through the call after the reloads: %v", err)
	}
	var notices []string
	for _, ev := range b.events.all() {
		switch e := ev.(type) {
		case bus.CallEnded, bus.PPPDown:
			t.Errorf("during the reloads: %v", e)
		case bus.Notice:
			notices = append(notices, e.Text)
		}
	}
	if !hasPrefix(notices, "config reloaded from "+r.cfgPath) || !hasPrefix(notices, "reload refused: "+want) {
		t.Errorf("notices %q: want the reload and the refusal", notices)
	}
	hangUp(t, ctx, s, b.Box)
}

// TestReloadWithoutFile: a box run from a parsed config with no file
// refuses reload in words, instead of failing to read "".
func TestReloadWithoutFile(t *testing.T) {
	cfg, err := config.Parse("inline.conf", []byte("[general]\nudpbindaddr=127.0.0.1:5060\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := box.New(cfg, box.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Reload(); err == nil || err.Error() != "no config file to reload" {
		t.Errorf("Reload without a file: %v", err)
	}
}

func peerNames(st console.Status) []string {
	var n []string
	for _, p := range st.Peers {
		n = append(n, p.Name)
	}
	return n
}

func hasPrefix(list []string, prefix string) bool {
	for _, s := range list {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}

// writeRaw writes text as the config file.
func (r *rig) writeRaw(text string) {
	r.t.Helper()
	if err := os.WriteFile(r.cfgPath, []byte(text), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

// cut removes text from the line starting with from up to (not
// including) the line starting with to.
func cut(t *testing.T, text, from, to string) string {
	t.Helper()
	a, b := strings.Index(text, from), strings.Index(text, to)
	if a < 0 || b < a {
		t.Fatalf("config has no %q ... %q", from, to)
	}
	return text[:a] + text[b:]
}

// withoutLine removes the modem line from the config: its mgetty port
// and its PPP options.
func withoutLine(t *testing.T, text string) string {
	t.Helper()
	text = cut(t, text, "[mgetty]", "; ---- /etc/ppp/options (unchanged)")
	return cut(t, text, "[ppp ttyUSB0]", "; ---- /etc/ppp/pap-secrets")
}

// rings returns the highest RING count the box's line saw for each call.
func rings(evs []bus.Event) map[string]int {
	m := map[string]int{}
	for _, ev := range evs {
		if e, ok := ev.(bus.LineRing); ok && e.Count > m[e.CallID] {
			m[e.CallID] = e.Count
		}
	}
	return m
}

// TestReloadLineConfigAtNextIdle (issue 2): a line whose config changes
// during a call keeps the call, and takes the new config for the next
// one: "rings 2" becomes "rings 3".
func TestReloadLineConfigAtNextIdle(t *testing.T) {
	ctx, r, b, s := dialedRig(t, "dials through the box twice")
	first := b.Status().Calls[0].ID

	r.writeRaw(mustReplace(t, r.configText(""), " rings 2\n", " rings 3\n"))
	if err := b.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Net.Ping(ctx, gateway); err != nil {
		t.Errorf("ping after the reload: %v", err)
	}
	if st := b.Status(); len(st.Calls) != 1 || st.Calls[0].ID != first || st.Lines[0].State != "connected" {
		t.Errorf("after the reload: calls %+v, line %s; want call %s connected", st.Calls, st.Lines[0].State, first)
	}
	hangUp(t, ctx, s, b.Box)
	r.readClient("NO CARRIER")

	s = r.dial(ctx)
	second := b.Status().Calls[0].ID
	hangUp(t, ctx, s, b.Box)
	got := rings(b.events.all())
	if got[first] != 2 || got[second] != 3 {
		t.Errorf("RINGs counted: first call %d, second %d; want 2 (old config) and 3 (the reloaded one)", got[first], got[second])
	}
}

// TestReloadRemovesLineAfterCall (issue 2): a line removed from the config
// during a call stops after its call ends, not during it ("removed lines
// stop after their call ends", box's package doc).
func TestReloadRemovesLineAfterCall(t *testing.T) {
	ctx, r, b, s := dialedRig(t, "dials through the box")
	up := b.Status()

	r.writeRaw(withoutLine(t, r.configText("")))
	if err := b.Reload(); err != nil {
		t.Fatal(err)
	}
	if len(b.Config().Lines) != 0 {
		t.Fatalf("the reloaded config has %d lines; want none", len(b.Config().Lines))
	}
	// The call must still carry traffic after the reload.
	if _, err := s.Net.Ping(ctx, gateway); err != nil {
		t.Errorf("ping after the line was removed from the config: %v", err)
	}
	for _, ev := range b.events.all() {
		switch e := ev.(type) {
		case bus.CallEnded, bus.PPPDown:
			t.Errorf("the call ended when its line was removed from the config, before the caller hung up: %v", e)
		}
	}
	if st := b.Status(); len(st.Calls) != 1 || st.Calls[0].ID != up.Calls[0].ID {
		t.Errorf("after the reload: calls %+v; want %s still up", st.Calls, up.Calls[0].ID)
	}
	if err := s.HangUp(ctx); err != nil {
		t.Logf("hang up: %v", err)
	}
	testutil.WaitFor(t, 30*time.Second, "the call over and the line gone", func() (bool, string) {
		st := b.Status()
		return len(st.Calls) == 0 && len(st.Lines) == 0 && len(st.Sessions) == 0,
			fmt.Sprintf("%d calls, %d lines, %d sessions", len(st.Calls), len(st.Lines), len(st.Sessions))
	})
}

// readClient reads the client modem's pty until it has printed want. The
// client modem reports the end of a call (NO CARRIER) after the PPP client
// has closed the tty; the next dial would read it as the answer to its
// ATZ, so a second call on the same modem first takes it, as a terminal
// user would see it.
func (r *rig) readClient(want string) {
	r.t.Helper()
	term, err := demo.OpenTerminal(r.cli.Path())
	if err != nil {
		r.t.Fatal(err)
	}
	defer term.Close()
	term.SetDeadline(time.Now().Add(30 * time.Second))
	var seen []byte
	buf := make([]byte, 256)
	for !strings.Contains(string(seen), want) {
		n, err := term.Read(buf)
		if err != nil {
			r.t.Fatalf("client modem: no %s (read %q): %v", want, seen, err)
		}
		seen = append(seen, buf[:n]...)
	}
}

// TestStopDuringCall (issue 2): stopping the box (SIGTERM) with a call up
// ends the call and the PPP session and records both before the database
// closes; the ATA sees the call end (BYE) and the client modem loses its
// carrier.
func TestStopDuringCall(t *testing.T) {
	ctx, r, b, s := dialedRig(t, "dials through the box")
	defer s.PPP.Close()
	up := b.Status()

	b.Stop(t)
	testutil.WaitFor(t, 30*time.Second, "ATA lines idle after the box stopped", func() (bool, string) {
		for _, li := range r.ata.Describe() {
			if li.Call != ata.Idle {
				return false, fmt.Sprintf("%s %v", li.User, li.Call)
			}
		}
		return true, ""
	})
	if r.cli.Online() || r.isp.Online() {
		t.Errorf("modems online after the box stopped: client %v, ISP %v", r.cli.Online(), r.isp.Online())
	}
	st, err := store.Open(ctx, r.db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	calls, err := st.Calls(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	sessions, err := st.Sessions(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != 1 || calls[0].CallID != up.Calls[0].ID || calls[0].Status != "ANSWER" || calls[0].End.IsZero() {
		t.Errorf("call records after stop: %+v; want call %s, ANSWER, ended", calls, up.Calls[0].ID)
	}
	if len(sessions) != 1 || sessions[0].Session != up.Sessions[0].ID || sessions[0].End.IsZero() {
		t.Errorf("session records after stop: %+v; want session %s, ended", sessions, up.Sessions[0].ID)
	}
}

// TestReloadKeepsSockets: what is opened once (the SIP socket, the control
// socket, the database) stays as it is when the file changes it, and the
// config in force says what is really running, with a warning in the log.
func TestReloadKeepsSockets(t *testing.T) {
	r := newRig(t)
	b := r.startBox()
	sip := b.SIPAddr()
	text := mustReplace(t, r.configText(""), fmt.Sprintf("udpbindaddr=127.0.0.1:%d", r.port), fmt.Sprintf("udpbindaddr=127.0.0.1:%d", r.port+1))
	text = mustReplace(t, text, "; database = /var/lib/isp-box/isp-box.db", "database = "+r.dir+"/other.db")
	r.writeRaw(text)
	if err := b.Reload(); err != nil {
		t.Fatal(err)
	}
	cfg := b.Config()
	if got := cfg.PBX.General.UDPBindAddr; got != sip || b.SIPAddr() != sip {
		t.Errorf("after reload: config udpbindaddr %v, listening on %v; want both still %v", got, b.SIPAddr(), sip)
	}
	if cfg.Box.Database != "" {
		t.Errorf("after reload: config database %q; want the running one (the -db flag's)", cfg.Box.Database)
	}
	logs := r.logs.Tail(1000)
	for _, want := range []string{"reload: udpbindaddr changes take effect at the next start", "reload: [box] changes take effect at the next start"} {
		if !strings.Contains(logs, want) {
			t.Errorf("no %q in the log", want)
		}
	}
	if _, err := console.NewClient(r.sock).Status(t.Context()); err != nil {
		t.Errorf("control socket after reload: %v", err)
	}
}

// TestReloadLineRemovedAndBack: a line removed by one reload and added
// back by the next while its call is still up keeps the call; the line
// comes back after it (one runner on the port at a time) and takes the
// next call.
func TestReloadLineRemovedAndBack(t *testing.T) {
	ctx, r, b, s := dialedRig(t, "dials through the box twice")
	first := b.Status().Calls[0].ID

	full := r.configText("")
	r.writeRaw(withoutLine(t, full))
	if err := b.Reload(); err != nil {
		t.Fatal(err)
	}
	r.writeRaw(full)
	if err := b.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Net.Ping(ctx, gateway); err != nil {
		t.Errorf("ping after the line was removed and added back: %v", err)
	}
	if st := b.Status(); len(st.Calls) != 1 || st.Calls[0].ID != first || len(st.Lines) != 1 {
		t.Errorf("after the reloads: calls %+v, %d lines; want call %s up and the line listed", st.Calls, len(st.Lines), first)
	}
	hangUp(t, ctx, s, b.Box)
	r.readClient("NO CARRIER")

	s = r.dial(ctx)
	if _, err := s.Net.Ping(ctx, gateway); err != nil {
		t.Errorf("ping on the second call: %v", err)
	}
	hangUp(t, ctx, s, b.Box)
	var ended int
	for _, ev := range b.events.all() {
		if e, ok := ev.(bus.CallEnded); ok {
			ended++
			if e.Status != "ANSWER" {
				t.Errorf("call record %+v; want ANSWER", e)
			}
		}
	}
	if ended != 2 {
		t.Errorf("%d call records; want 2", ended)
	}
}
