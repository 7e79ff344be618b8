package pbx

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/pion/rtp"

	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/internal/testutil"
	"github.com/isp-box/isp-box/softmodem"
	"github.com/isp-box/isp-box/softmodem/g711"
)

func TestJitterBuffer(t *testing.T) {
	seq := func(ts uint32, n int) []int16 {
		s := make([]int16, n)
		for i := range s {
			s[i] = int16(ts) + int16(i)
		}
		return s
	}
	j := newJitterBuffer(320)
	out := make([]int16, 160)
	// Before the first packet: silence, nothing counted missing.
	if j.take(out) != 0 {
		t.Error("missing before the stream started")
	}
	// Packets out of order within the delay are all played in order.
	j.put(1000, seq(1000, 160))
	j.put(1320, seq(1320, 160))
	j.put(1160, seq(1160, 160))
	want := uint32(1000 - 320)
	for i := 0; i < 2; i++ {
		if m := j.take(out); m != 160 {
			t.Fatalf("lead-in block %d: %d missing, want the whole delay", i, m)
		}
		want += 160
	}
	for _, ts := range []uint32{1000, 1160, 1320} {
		if m := j.take(out); m != 0 || out[0] != int16(ts) || out[159] != int16(ts)+159 {
			t.Fatalf("block at %d: missing %d, first %d", ts, m, out[0])
		}
	}
	// A lost packet plays as silence.
	j.put(1640, seq(1640, 160))
	if m := j.take(out); m != 160 {
		t.Errorf("lost packet: %d missing", m)
	}
	if m := j.take(out); m != 0 || out[0] != int16(1640) {
		t.Errorf("after the loss: %d missing, %d", m, out[0])
	}
	// A late packet is counted and dropped.
	j.put(1000, seq(1000, 160))
	if j.late != 1 {
		t.Errorf("late = %d", j.late)
	}
	// A jump far ahead resynchronises.
	j.put(900000, seq(900000, 160))
	if j.slips != 1 {
		t.Errorf("slips = %d", j.slips)
	}
}

func TestParseModemOffer(t *testing.T) {
	for _, tc := range []struct {
		sdp   string
		pt    uint8
		law   g711.Law
		ptime int
		err   bool
	}{
		{"v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 18 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:30\r\n", 0, g711.Ulaw, 30, false},
		{"v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 8 96\r\na=rtpmap:96 PCMU/8000\r\n", 96, g711.Ulaw, 20, false},
		{"v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 8\r\na=ptime:10\r\n", 8, g711.Alaw, 10, false},
		{"v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 18\r\n", 0, 0, 0, true},
		{"v=0\r\nm=audio 4000 RTP/AVP 0\r\n", 0, 0, 0, true},
	} {
		o, err := parseModemOffer([]byte(tc.sdp))
		if (err != nil) != tc.err || (err == nil && (o.pt != tc.pt || o.law != tc.law || o.ptime != tc.ptime)) {
			t.Errorf("%q: %+v %v", tc.sdp, o, err)
		}
	}
	sdp := string(modemAnswerSDP("1a", 1, netip.MustParseAddrPort("10.0.0.2:30000"), modemOffer{pt: 0, ptime: 20}, "sendrecv"))
	for _, want := range []string{"m=audio 30000 RTP/AVP 0\r\n", "a=rtpmap:0 PCMU/8000\r\n", "a=gpmd:0 vbd=yes\r\n", "c=IN IP4 10.0.0.2\r\n", "o=isp-box 26 1 IN IP4 10.0.0.2\r\n", "a=sendrecv\r\n"} {
		if !strings.Contains(sdp, want) {
			t.Errorf("answer lacks %q:\n%s", want, sdp)
		}
	}
}

// rtpModem is the caller's side of a softmodem call in the tests: our own
// originate modem behind a real RTP socket. It answers each of the box's
// packets with one of its own, so it runs at exactly the box's clock, like
// an ATA locked to it, and a stall of the test process delays both
// directions alike instead of starving the box's jitter buffer.
type rtpModem struct {
	conn   *net.UDPConn
	remote netip.AddrPort
	m      *softmodem.Modem
	// jitter, if set, delays each packet sent by a random 0..jitter
	// (packets may then arrive out of order, as on a jittery path).
	jitter time.Duration
}

func (r *rtpModem) run(ctx context.Context) {
	buf := make([]byte, 1500)
	h := rtp.Header{Version: 2, PayloadType: 0, SSRC: 1234}
	pkt := make([]byte, 1500)
	var p rtp.Packet
	for ctx.Err() == nil {
		r.conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, err := r.conn.Read(buf)
		if err != nil {
			continue
		}
		if p.Unmarshal(buf[:n]) != nil {
			continue
		}
		rx := make([]int16, len(p.Payload))
		tx := make([]int16, len(p.Payload))
		g711.Ulaw.Decode(rx, p.Payload)
		r.m.Process(rx, tx)
		hl, _ := h.MarshalTo(pkt)
		g711.Ulaw.Encode(pkt[hl:], tx)
		if r.jitter > 0 {
			out := append([]byte(nil), pkt[:hl+len(tx)]...)
			time.AfterFunc(time.Duration(mrand.Int64N(int64(r.jitter))), func() { r.conn.WriteToUDPAddrPort(out, r.remote) })
		} else {
			r.conn.WriteToUDPAddrPort(pkt[:hl+len(tx)], r.remote)
		}
		h.SequenceNumber++
		h.Timestamp += uint32(len(tx))
	}
}

// TestModemAnswer: a call to Modem(answer) is answered by the box's own
// V.22bis modem over real RTP in real time; the caller's modem trains
// with it, and data goes through the modem handler both ways.
func TestModemAnswer(t *testing.T) {
	if testing.Short() {
		t.Skip("real time: about 10 s of a modem call")
	}
	modemAnswer(t, 0)
}

// TestModemAnswerJitter is TestModemAnswer with 0-20 ms of jitter on the
// caller's packets (the impairment), absorbed by the box's fixed
// 100 ms jitter buffer.
func TestModemAnswerJitter(t *testing.T) {
	if testing.Short() {
		t.Skip("real time: about 10 s of a modem call")
	}
	modemAnswer(t, 20*time.Millisecond)
}

func modemAnswer(t *testing.T, jitter time.Duration) {
	cfg := testConfig("Modem(answer)")
	b := bus.New(nil)
	ev := recordEvents(t, b)
	handled := make(chan string, 1)
	handler := func(ctx context.Context, mc ModemCall) error {
		handled <- fmt.Sprintf("%s %d %s", mc.Modulation(), mc.Rate(), mc.Exten())
		// An echo service: the caller's bytes come back.
		_, err := io.Copy(mc, mc)
		return err
	}
	s, err := New(cfg, Options{Bus: b, Log: slog.New(slog.NewTextHandler(testWriter{t}, nil)), Modem: handler})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, s)

	u := registeredUA(t, s.Addr(), clientLine, "3600")
	media, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer media.Close()
	port := media.LocalAddr().(*net.UDPAddr).Port
	offer := fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio %d RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\n", port)
	callID := "modem-call@127.0.0.1"
	u.send(inviteText(u.box.String(), u.port(), clientLine, "5550000", 1, callID, ""), offer)
	r := u.final(5 * time.Second)
	if r != nil && r.StatusCode == 401 {
		ackFor(u, r, callID, 1)
		u.send(inviteText(u.box.String(), u.port(), clientLine, "5550000", 2, callID,
			authz(r, clientLine, secret, "INVITE", "sip:5550000@"+u.box.String())), offer)
		r = u.final(5 * time.Second)
	}
	if r == nil || r.StatusCode != 200 {
		t.Fatalf("INVITE: %v", r)
	}
	answer := string(r.Body())
	if !strings.Contains(answer, "a=gpmd:0 vbd=yes") {
		t.Errorf("answer does not mark voice-band data:\n%s", answer)
	}
	remote, _, _ := sdpAudio(r.Body())
	ackFor(u, r, callID, 2)

	caller := &rtpModem{conn: media, remote: remote, jitter: jitter, m: softmodem.New(softmodem.Config{Modulation: softmodem.V22bis, Role: softmodem.Originate})}
	mctx, stop := context.WithCancel(context.Background())
	defer stop()
	go caller.run(mctx)
	select {
	case got := <-handled:
		if got != "V.22bis 2400 5550000" {
			t.Errorf("handler got %q", got)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("no CONNECT in 15 s: caller %+v", caller.m.Stats())
	}
	// In data, the caller's side switches to T.38 (refused: 488) and to
	// G.711 passthrough (200, our stream unchanged); the modems must not
	// notice either.
	toTag0, _ := r.To().Params.Get("tag")
	t38 := "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=image 16390 udptl t38\r\na=T38FaxVersion:0\r\n"
	u.send(inDialogText(u, "INVITE", 3, toTag0, callID, "application/sdp"), t38)
	if rr := u.final(5 * time.Second); rr == nil || rr.StatusCode != 488 {
		t.Fatalf("T.38 re-INVITE: %v", rr)
	} else {
		ackFor(u, rr, callID, 3)
	}
	u.send(inDialogText(u, "INVITE", 4, toTag0, callID, "application/sdp"), strings.Replace(offer, "o=- 1 1", "o=- 1 3", 1))
	if rr := u.final(5 * time.Second); rr == nil || rr.StatusCode != 200 || string(rr.Body()) != answer {
		t.Fatalf("G.711 re-INVITE: %v (answer %q, first %q)", rr, rr.Body(), answer)
	} else {
		ackFor(u, rr, callID, 4)
	}
	// Echo a message. Without error correction a hole in the audio (this
	// test's real-time loops can stall on a loaded machine past the
	// jitter buffer) garbles characters, so one of three attempts must
	// come back whole.
	var sent int
	ok := false
	for attempt := 0; attempt < 3 && !ok; attempt++ {
		data := []byte(fmt.Sprintf("attempt %d: the quick brown fox jumps over the lazy dog 0123456789\r\n", attempt))
		sent += len(data)
		caller.m.TakeReceived()
		caller.m.Write(data)
		var echoed []byte
		deadline := time.Now().Add(5 * time.Second)
		for !bytes.Contains(echoed, data) && time.Now().Before(deadline) {
			select {
			case <-caller.m.Changed():
			case <-time.After(100 * time.Millisecond):
			}
			echoed = append(echoed, caller.m.TakeReceived()...)
		}
		if ok = bytes.Contains(echoed, data); !ok {
			t.Logf("attempt %d garbled: %q (caller %+v)", attempt, echoed, caller.m.Stats())
		}
	}
	if !ok {
		t.Error("no message came back whole")
	}
	calls := s.Calls()
	if len(calls) != 1 || calls[0].MediaMode != "modem" || calls[0].To != "Modem/V.22bis/2400" {
		t.Errorf("calls: %+v", calls)
	}
	// The caller hangs up.
	toTag, _ := r.To().Params.Get("tag")
	u.send(dialogText(u, "BYE", 5, toTag, callID), "")
	if r := u.final(5 * time.Second); r == nil || r.StatusCode != 200 {
		t.Errorf("BYE: %v", r)
	}
	st := ev.wait(t, 5*time.Second, func(e bus.Event) bool { m, ok := e.(bus.ModemStats); return ok && m.Final }).(bus.ModemStats)
	// (More than the data may come in: a loaded test machine can stall
	// the caller's real-time loop past the jitter buffer, and a hole in
	// the audio garbles a character or two.)
	if st.Rate != 2400 || st.BytesIn < int64(sent) || st.BytesOut < int64(sent) {
		t.Errorf("final stats %+v", st)
	}
	t.Logf("%v", st)
	end := ev.wait(t, 5*time.Second, callEnded).(bus.CallEnded)
	if end.MediaMode != "modem" || end.HangupBy != "caller" {
		t.Errorf("call record %+v", end)
	}
}

// dialogReq is a request of the caller's dialog in TestModemAnswer,
// without a body.
func dialogReq(u *rawUA, method sip.RequestMethod, cseq int, toTag, callID string) sipReq {
	return sipReq{method: method, uri: "sip:5550000@" + u.box.String(), via: u.addr(), rport: true,
		from: fmt.Sprintf("<sip:%s@%s>;tag=inv%d", clientLine, u.box, u.port()), to: "<sip:5550000@" + u.box.String() + ">;tag=" + toTag,
		callID: callID, cseq: cseq}
}

func dialogText(u *rawUA, method sip.RequestMethod, cseq int, toTag, callID string) string {
	return dialogReq(u, method, cseq, toTag, callID).String()
}

// inDialogText is a request of the caller's dialog with a body of type
// ctype (a re-INVITE): a target refresh, so it carries a Contact.
func inDialogText(u *rawUA, method sip.RequestMethod, cseq int, toTag, callID, ctype string) string {
	r := dialogReq(u, method, cseq, toTag, callID)
	r.hdrs = []string{"Contact: <sip:" + clientLine + "@" + u.addr() + ">", "Content-Type: " + ctype}
	return r.String()
}

// ackFor sends the ACK for a final response to our INVITE with cseq. The
// ACK of a non-2xx response is part of the INVITE transaction and carries
// its branch, or the response comes again (RFC 3261 §17.1.1.3); a 2xx's
// ACK is a transaction of its own.
func ackFor(u *rawUA, r *sip.Response, callID string, cseq int) {
	tag, _ := r.To().Params.Get("tag")
	ack := dialogReq(u, sip.ACK, cseq, tag, callID)
	if r.StatusCode >= 300 {
		ack.branch, _ = r.Via().Params.Get("branch")
	}
	u.send(ack.String(), "")
}

// sippResponses returns the bodies of the 200 OKs sipp received, by CSeq
// ("4 INVITE"), from its message log.
func sippResponses(log string, code string) map[string]string {
	out := map[string]string{}
	for _, m := range strings.Split(log, "message received")[1:] {
		i := strings.Index(m, "SIP/2.0 ")
		if i < 0 || !strings.HasPrefix(m[i+8:], code+" ") {
			continue
		}
		msg := strings.ReplaceAll(m[i:], "\r\n", "\n")
		head, body, _ := strings.Cut(msg, "\n\n")
		if j := strings.Index(body, "\n---"); j >= 0 {
			body = body[:j+1]
		}
		for _, l := range strings.Split(head, "\n") {
			if v, ok := strings.CutPrefix(l, "CSeq:"); ok {
				out[strings.TrimSpace(v)] = strings.TrimSpace(body)
			}
		}
	}
	return out
}

// TestSippModemReinvite: in the middle of a Modem(answer) call sipp sends
// what an ATA and a session timer send. A T.38 re-INVITE gets 488 and the
// stream stays; a G.711 one, one without an offer, an UPDATE refresh,
// hold and unhold get 200 with our stream (same codec, same port) and the
// o= version moves only when our description does (RFC 3264 §8).
func TestSippModemReinvite(t *testing.T) {
	needSipp(t)
	cfg := testConfig("Modem(answer)")
	box := startBoxWith(t, cfg, Options{Modem: func(ctx context.Context, mc ModemCall) error { <-ctx.Done(); return nil }})
	pc := testutil.FreeUDPPortBelowEphemeral(t)
	registerLine(t, box, clientLine, pc)
	d := defaults(clientLine)
	d.Exten = "5550000"
	uac := startSipp(t, scenario(t, "uac_modem_reinvite.xml", d), pc, box.Addr().String())
	uac.wait(t, 30*time.Second)
	oks := sippResponses(uac.messages(), "200")
	mline := func(b string) string {
		for _, l := range strings.Split(b, "\n") {
			if strings.HasPrefix(l, "m=") {
				return l
			}
		}
		return ""
	}
	version := func(b string) string {
		for _, l := range strings.Split(b, "\n") {
			if f := strings.Fields(l); len(f) > 2 && strings.HasPrefix(l, "o=") {
				return f[2]
			}
		}
		return ""
	}
	first := oks["2 INVITE"]
	m := mline(first)
	if !strings.HasPrefix(m, "m=audio ") || !strings.HasSuffix(m, " RTP/AVP 0") || version(first) != "1" {
		t.Fatalf("first answer:\n%s", first)
	}
	for _, tc := range []struct {
		cseq, version, dir string
	}{
		{"4 INVITE", "1", "a=sendrecv"}, // passthrough: nothing of ours changes
		{"5 INVITE", "1", "a=sendrecv"}, // no offer: ours, unchanged
		{"7 INVITE", "2", "a=recvonly"}, // held by the caller
		{"8 INVITE", "3", "a=sendrecv"},
	} {
		b, ok := oks[tc.cseq]
		if !ok {
			t.Errorf("no 200 for %s", tc.cseq)
			continue
		}
		if mline(b) != m || version(b) != tc.version || !strings.Contains(b, tc.dir) || !strings.Contains(b, "a=gpmd:0 vbd=yes") {
			t.Errorf("200 for %s: want %q, version %s, %s:\n%s", tc.cseq, m, tc.version, tc.dir, b)
		}
	}
	if b, ok := oks["6 UPDATE"]; !ok || b != "" {
		t.Errorf("UPDATE refresh: ok=%v body %q", ok, b)
	}
	if ev := mustEnded(t, box); ev.MediaMode != "modem" || ev.HangupBy != "caller" {
		t.Errorf("CallEnded = %+v", ev)
	}
}
