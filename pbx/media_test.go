package pbx

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
)

func udpAt(t testing.TB, a string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(a)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func rtpPacket(seq uint16, ts uint32) []byte {
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: seq, Timestamp: ts, SSRC: 0x1234}, Payload: make([]byte, 160)}
	b, _ := p.Marshal()
	return b
}

// Media anchored in the box: the callee gets the box's address, codecs the
// peer does not allow are gone, and RTP flows both ways through the relay.
func TestSippRelayMedia(t *testing.T) {
	needSipp(t)
	cfg := testConfig("")
	cfg.Peers[0].DirectMedia = false
	cfg.Peers[0].Allow = []string{"ulaw"}
	box := startBox(t, cfg, nil)
	ispPort, cliPort := registerBoth(t, box)
	d := defaults(ispLine)
	d.CheckSDP, d.WantAddrRE, d.WantPort, d.WantPTs = true, `127\.0\.0\.1`, 0, "0 101"
	d.WantPort = -1
	caller := udpAt(t, "127.0.0.50:16384") // where the caller's SDP says it listens
	callee := udpAt(t, "127.0.0.60:16482")
	callerRTCP := udpAt(t, "127.0.0.50:16385")
	calleeRTCP := udpAt(t, "127.0.0.60:16483")
	c := defaults(clientLine)
	c.Hold = 3000
	uas, uac := sippCall(t, box, ispPort, cliPort, sippLeg{"uas_answer.xml", d}, sippLeg{"uac_call.xml", c})

	var ci CallInfo
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if cs := box.Calls(); len(cs) == 1 && cs[0].State == "up" {
			ci = cs[0]
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if ci.MediaMode != "relay" || !ci.RelayCaller.IsValid() || !ci.RelayCallee.IsValid() {
		t.Fatalf("call: %+v", ci)
	}
	// caller -> box -> callee, and back; the relay answers from the port it was sent to
	buf := make([]byte, 1500)
	for i := 0; i < 5; i++ {
		if _, err := caller.WriteToUDPAddrPort(rtpPacket(uint16(100+i), uint32(160*i)), ci.RelayCaller); err != nil {
			t.Fatal(err)
		}
		_ = callee.SetReadDeadline(time.Now().Add(3 * time.Second))
		n, from, err := callee.ReadFromUDPAddrPort(buf)
		if err != nil || n != 172 || from != ci.RelayCallee {
			t.Fatalf("callee got n=%d from %v err %v (relay %v)", n, from, err, ci.RelayCallee)
		}
		if _, err := callee.WriteToUDPAddrPort(rtpPacket(uint16(7+i), uint32(160*i)), ci.RelayCallee); err != nil {
			t.Fatal(err)
		}
		_ = caller.SetReadDeadline(time.Now().Add(3 * time.Second))
		n, from, err = caller.ReadFromUDPAddrPort(buf)
		if err != nil || n != 172 || from != ci.RelayCaller {
			t.Fatalf("caller got n=%d from %v err %v", n, from, err)
		}
	}
	if cs := box.Calls(); len(cs) != 1 || cs[0].Packets != 10 || cs[0].Lost != 0 {
		t.Errorf("counters: %+v", cs)
	}
	// RTCP rides on the port above (RFC 3550 §11)
	sr := []byte{0x80, 200, 0, 6, 0, 0, 0x12, 0x34, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	if _, err := callerRTCP.WriteToUDPAddrPort(sr, netip.AddrPortFrom(ci.RelayCaller.Addr(), ci.RelayCaller.Port()+1)); err != nil {
		t.Fatal(err)
	}
	_ = calleeRTCP.SetReadDeadline(time.Now().Add(3 * time.Second))
	if n, from, err := calleeRTCP.ReadFromUDPAddrPort(buf); err != nil || n != len(sr) || from.Port() != ci.RelayCallee.Port()+1 {
		t.Errorf("RTCP: n=%d from %v err %v", n, from, err)
	}
	waitSipp(t, uac, uas)
	if ev := mustEnded(t, box); ev.MediaMode != "relay" || ev.Status != "ANSWER" {
		t.Errorf("CallEnded = %+v", ev)
	}
	// the caller saw the box's address, not the callee's
	if m := uac.messages(); !strings.Contains(m, "c=IN IP4 127.0.0.1") {
		t.Errorf("caller did not get the relay address")
	}
}

func TestStreamStats(t *testing.T) {
	var st streamStats
	t0 := time.Unix(0, 0)
	// 20 ms packets, seq 1..10 with 4 and 7 missing, one arriving 10 ms late
	for _, seq := range []uint16{1, 2, 3, 5, 6, 8, 9, 10} {
		arr := t0.Add(time.Duration(seq) * 20 * time.Millisecond)
		if seq == 6 {
			arr = arr.Add(10 * time.Millisecond)
		}
		h := rtp.Header{SequenceNumber: seq, Timestamp: uint32(seq) * 160}
		st.update(&h, 172, arr)
	}
	if st.Packets != 8 || st.Lost != 2 || st.Bytes != 8*172 {
		t.Errorf("%+v", st.StreamStats)
	}
	if st.JitterMS <= 0 || st.JitterMS > 10 {
		t.Errorf("jitter %v ms", st.JitterMS)
	}
	// sequence wrap
	var w streamStats
	for i, seq := range []uint16{65534, 65535, 0, 1} {
		h := rtp.Header{SequenceNumber: seq, Timestamp: uint32(i) * 160}
		w.update(&h, 10, t0.Add(time.Duration(i)*20*time.Millisecond))
	}
	if w.Lost != 0 || w.Packets != 4 {
		t.Errorf("wrap: %+v", w.StreamStats)
	}
}

func TestSDPFilterAndRewrite(t *testing.T) {
	offer := []byte("v=0\r\no=- 1 1 IN IP4 10.1.8.112\r\ns=-\r\nc=IN IP4 10.1.8.112\r\nt=0 0\r\nm=audio 16384 RTP/AVP 18 0 8 100 101\r\na=rtpmap:18 G729/8000\r\na=fmtp:18 annexb=no\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:100 NSE/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:30\r\n")
	got, err := filterCodecs(offer, []string{"ulaw", "alaw"})
	if err != nil {
		t.Fatal(err)
	}
	want := "v=0\r\no=- 1 1 IN IP4 10.1.8.112\r\ns=-\r\nc=IN IP4 10.1.8.112\r\nt=0 0\r\nm=audio 16384 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:30\r\n"
	if string(got) != want {
		t.Errorf("filter:\n%q\nwant\n%q", got, want)
	}
	if same, _ := filterCodecs(offer, nil); string(same) != string(offer) {
		t.Error("no policy must keep the body byte for byte")
	}
	if _, err := filterCodecs(offer, []string{"g722"}); err == nil {
		t.Error("nothing left: want an error")
	}
	rw := rewriteMedia(offer, netip.MustParseAddrPort("192.0.2.1:30000"))
	ap, pts, names := sdpAudio(rw)
	if ap.String() != "192.0.2.1:30000" || len(pts) != 5 || names["0"] != "ulaw" || names["18"] != "g729" {
		t.Errorf("rewrite: %v %v %v", ap, pts, names)
	}
	if c := sdpCodec(offer); c != "g729" {
		t.Errorf("codec %q", c)
	}
}

// BenchmarkRelay forwards RTP through 100 relayed calls at once (100
// concurrent G.711 streams). Each stream keeps 4 packets in flight (a
// window, so that no socket buffer overflows and nothing is lost): the
// result is the packets/s the relay carries and the time one packet
// spends going through it.
func BenchmarkRelay(b *testing.B) {
	const streams, window = 100, 4
	s := &Server{}
	s.cfg.General.RTPStart, s.cfg.General.RTPEnd = 40000, 50000
	s.addr = netip.MustParseAddrPort("127.0.0.1:0")
	type pair struct {
		r        *relay
		src, dst *net.UDPConn
	}
	pairs := make([]pair, streams)
	for i := range pairs {
		r, err := s.newRelay(netip.MustParseAddr("127.0.0.1"), false)
		if err != nil {
			b.Fatal(err)
		}
		src := udpAt(b, "127.0.0.1:0")
		dst := udpAt(b, "127.0.0.1:0")
		r.setRemoteAddr(sideCallee, dst.LocalAddr().(*net.UDPAddr).AddrPort())
		pairs[i] = pair{r, src, dst}
		b.Cleanup(r.close)
	}
	per := b.N/streams + 1
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	total := 0
	for _, p := range pairs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1500)
			to := p.r.addr(sideCaller)
			sent, got := 0, 0
			for got < per {
				for sent < per && sent-got < window {
					_, _ = p.src.WriteToUDPAddrPort(rtpPacket(uint16(sent), uint32(sent*160)), to)
					sent++
				}
				_ = p.dst.SetReadDeadline(time.Now().Add(2 * time.Second))
				if _, _, err := p.dst.ReadFromUDP(buf); err != nil {
					break
				}
				got++
			}
			mu.Lock()
			total += got
			mu.Unlock()
		}()
	}
	wg.Wait()
	el := time.Since(start)
	b.ReportMetric(float64(total)/el.Seconds(), "pkts/s")
	b.ReportMetric(100*(1-float64(total)/float64(per*streams)), "%lost")
}

// BenchmarkRelayJitter100Streams paces 100 G.711 streams at 20 ms for 2 s
// and reports the jitter the relay adds (RFC 3550 interarrival jitter
// measured after the relay) and the packets lost; it fails if more than
// 1 % are lost or the relay adds more than 5 ms on average. A benchmark,
// not a test: its outcome depends on the machine's load (make bench).
func BenchmarkRelayJitter100Streams(b *testing.B) {
	for b.Loop() {
		relayJitter100Streams(b)
	}
}

func relayJitter100Streams(t testing.TB) {
	const streams, dur = 100, 2 * time.Second
	s := &Server{}
	s.cfg.General.RTPStart, s.cfg.General.RTPEnd = 50000, 60000
	s.addr = netip.MustParseAddrPort("127.0.0.1:0")
	relays := make([]*relay, streams)
	dsts := make([]*net.UDPConn, streams)
	srcs := make([]*net.UDPConn, streams)
	for i := range relays {
		r, err := s.newRelay(netip.MustParseAddr("127.0.0.1"), false)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(r.close)
		srcs[i], dsts[i] = udpAt(t, "127.0.0.1:0"), udpAt(t, "127.0.0.1:0")
		r.setRemoteAddr(sideCallee, dsts[i].LocalAddr().(*net.UDPAddr).AddrPort())
		relays[i] = r
	}
	n := int(dur / (20 * time.Millisecond))
	var wg sync.WaitGroup
	after := make([]streamStats, streams)
	for i := range relays {
		wg.Add(2)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1500)
			var h rtp.Header
			for k := 0; k < n; k++ {
				_ = dsts[i].SetReadDeadline(time.Now().Add(time.Second))
				m, _, err := dsts[i].ReadFromUDP(buf)
				if err != nil {
					return
				}
				if _, err := h.Unmarshal(buf[:m]); err == nil {
					after[i].update(&h, m, time.Now())
				}
			}
		}()
		go func() {
			defer wg.Done()
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			to := relays[i].addr(sideCaller)
			for k := 0; k < n; k++ {
				<-tick.C
				_, _ = srcs[i].WriteToUDPAddrPort(rtpPacket(uint16(k), uint32(k*160)), to)
			}
		}()
	}
	wg.Wait()
	var inJ, outJ float64
	var lost, pkts uint64
	for i, r := range relays {
		in := r.Stats()[sideCaller] // as the relay received them: the sender's own jitter
		inJ += in.JitterMS
		outJ += after[i].JitterMS
		lost += after[i].Lost
		pkts += after[i].Packets
	}
	inJ, outJ = inJ/streams, outJ/streams
	t.Logf("100 G.711 streams, %d packets each: %.0f pkts/s relayed, jitter at relay input %.3f ms, after relay %.3f ms, added %.3f ms, lost %d",
		n, float64(pkts)/dur.Seconds(), inJ, outJ, outJ-inJ, lost)
	if b, ok := t.(*testing.B); ok {
		b.ReportMetric(outJ-inJ, "ms-added-jitter")
		b.ReportMetric(100*(1-float64(pkts)/float64(streams*n)), "%lost")
	}
	if pkts < uint64(streams*n*99/100) {
		t.Errorf("relayed %d of %d packets", pkts, streams*n)
	}
	if outJ-inJ > 5 {
		t.Errorf("relay adds %.2f ms jitter", outJ-inJ)
	}
}
