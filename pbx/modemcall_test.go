package pbx

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/pion/rtp"

	"github.com/isp-box/isp-box/internal/bus"
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
	sdp := string(modemAnswerSDP("1", netip.MustParseAddrPort("10.0.0.2:30000"), modemOffer{pt: 0, ptime: 20}))
	for _, want := range []string{"m=audio 30000 RTP/AVP 0\r\n", "a=rtpmap:0 PCMU/8000\r\n", "a=gpmd:0 vbd=yes\r\n", "c=IN IP4 10.0.0.2\r\n"} {
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
		r.conn.WriteToUDPAddrPort(pkt[:hl+len(tx)], r.remote)
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
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	<-s.Ready()

	u := newRawUA(t, s.Addr())
	if r := u.registerAuth(clientLine, secret, "3600"); r.StatusCode != 200 {
		t.Fatalf("REGISTER: %v", r)
	}
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

	caller := &rtpModem{conn: media, remote: remote, m: softmodem.New(softmodem.Config{Modulation: softmodem.V22bis, Role: softmodem.Originate})}
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
	u.send(fmt.Sprintf(`
BYE sip:5550000@%[1]s SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:%[2]d;branch=%[3]s;rport
From: <sip:%[4]s@%[1]s>;tag=inv%[2]d
To: <sip:5550000@%[1]s>;tag=%[5]s
Call-ID: %[6]s
CSeq: 3 BYE
Max-Forwards: 70`, u.box, u.port(), branch(), clientLine, toTag, callID), "")
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

// ackFor sends the ACK for a final response to our INVITE with cseq.
func ackFor(u *rawUA, r *sip.Response, callID string, cseq int) {
	tag, _ := r.To().Params.Get("tag")
	u.send(fmt.Sprintf(`
ACK sip:5550000@%[1]s SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:%[2]d;branch=%[3]s;rport
From: <sip:%[4]s@%[1]s>;tag=inv%[2]d
To: <sip:5550000@%[1]s>;tag=%[5]s
Call-ID: %[6]s
CSeq: %[7]s ACK
Max-Forwards: 70`, u.box, u.port(), branch(), clientLine, tag, callID, strconv.Itoa(cseq)), "")
}
