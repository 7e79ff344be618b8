package ata

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/pion/rtp"
)

func TestPacer(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ms := time.Millisecond
	tests := []struct {
		name  string
		sends []struct {
			at time.Duration
			n  int
		}
		wantWait []time.Duration // wait() before each send
	}{
		{
			name: "back to back full packets wait a packet time each, after the burst",
			sends: []struct {
				at time.Duration
				n  int
			}{{0, 72}, {0, 72}, {0, 72}, {0, 72}},
			wantWait: []time.Duration{0, 0, 0, 20 * ms},
		},
		{
			name: "idle line: no wait",
			sends: []struct {
				at time.Duration
				n  int
			}{{0, 72}, {100 * ms, 72}, {300 * ms, 36}},
			wantWait: []time.Duration{0, 0, 0},
		},
		{
			name: "small packets book their own line time",
			sends: []struct {
				at time.Duration
				n  int
			}{{0, 36}, {0, 36}, {0, 36}, {0, 36}, {0, 36}, {0, 36}},
			// 36 bytes = 10 ms; slack 40 ms is used up after 4 packets
			wantWait: []time.Duration{0, 0, 0, 0, 0, 10 * ms},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := pacer{bitRate: 28800, slack: 40 * ms}
			var got []time.Duration
			for _, s := range tt.sends {
				now := t0.Add(s.at)
				got = append(got, p.wait(now))
				p.sent(now, s.n)
			}
			if d := cmp.Diff(tt.wantWait, got); d != "" {
				t.Errorf("waits (-want +got):\n%s", d)
			}
		})
	}
}

func udp(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func addr(c *net.UDPConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }

// TestMediaReceive: the receiver keeps order by sequence number, drops
// duplicates, late packets, strangers and wrong payload types, and counts
// each; a gap is counted as lost.
func TestMediaReceive(t *testing.T) {
	local, peer, stranger := udp(t), udp(t), udp(t)
	var st mediaCounters
	m := newMedia(local, addr(peer), ptClearmode, 28800, &st, slog.New(slog.DiscardHandler))
	m.startRecv()

	send := func(from *net.UDPConn, seq uint16, pt uint8, ssrc uint32, payload string) {
		t.Helper()
		b, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: seq, SSRC: ssrc}, Payload: []byte(payload)}).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := from.WriteToUDPAddrPort(b, addr(local)); err != nil {
			t.Fatal(err)
		}
	}
	send(peer, 65534, ptClearmode, 7, "a")
	send(peer, 65535, ptClearmode, 7, "b")
	send(peer, 65535, ptClearmode, 7, "B")                                        // duplicate
	send(peer, 0, ptClearmode, 7, "c")                                            // wraps
	send(peer, 65533, ptClearmode, 7, "z")                                        // late
	send(stranger, 1, ptClearmode, 7, "X")                                        // wrong source
	send(peer, 1, ptPCMU, 7, "Y")                                                 // wrong payload type
	send(peer, 1, ptClearmode, 8, "W")                                            // wrong SSRC
	send(peer, 3, ptClearmode, 7, "d")                                            // 1 and 2 lost
	if _, err := peer.WriteToUDPAddrPort([]byte{1, 2}, addr(local)); err != nil { // not RTP
		t.Fatal(err)
	}
	send(peer, 4, ptClearmode, 7, "e")

	got := make([]byte, 5)
	if _, err := io.ReadFull(m, got); err != nil {
		t.Fatal(err)
	}
	if string(got) != "abcde" {
		t.Errorf("received %q, want %q", got, "abcde")
	}
	m.end()
	if n, err := m.Read(got); n != 0 || !errors.Is(err, io.EOF) {
		t.Errorf("Read after end = %d, %v; want 0, io.EOF", n, err)
	}
	want := MediaStats{PacketsReceived: 5, BytesReceived: 5, Lost: 2, Late: 2, Foreign: 2, BadPayload: 2}
	if d := cmp.Diff(want, st.snapshot()); d != "" {
		t.Errorf("stats (-want +got):\n%s", d)
	}
}

// TestMediaSend: what is written leaves as RTP with the negotiated payload
// type, consecutive sequence numbers, at most 72 bytes a packet at 28800
// bit/s, and the timestamp advancing 160 per full packet (8000 Hz).
func TestMediaSend(t *testing.T) {
	local, peer := udp(t), udp(t)
	var st mediaCounters
	m := newMedia(local, addr(peer), ptPCMU, 28800, &st, slog.New(slog.DiscardHandler))
	m.startSend()
	defer m.end()
	data := bytes.Repeat([]byte("0123456789"), 30) // 300 bytes: 5 packets
	if _, err := m.Write(data); err != nil {
		t.Fatal(err)
	}
	var got []byte
	var pkts []rtp.Packet
	buf := make([]byte, 2048)
	_ = peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	for len(got) < len(data) {
		n, err := peer.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		var p rtp.Packet
		if err := p.Unmarshal(append([]byte(nil), buf[:n]...)); err != nil {
			t.Fatal(err)
		}
		pkts = append(pkts, p)
		got = append(got, p.Payload...)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("payload differs")
	}
	for i, p := range pkts {
		if p.PayloadType != ptPCMU || len(p.Payload) > 72 {
			t.Errorf("packet %d: PT %d len %d", i, p.PayloadType, len(p.Payload))
		}
		if i > 0 {
			if p.SequenceNumber != pkts[i-1].SequenceNumber+1 {
				t.Errorf("packet %d: seq %d after %d", i, p.SequenceNumber, pkts[i-1].SequenceNumber)
			}
			if d := p.Timestamp - pkts[i-1].Timestamp; d != uint32(len(pkts[i-1].Payload))*64000/28800 {
				t.Errorf("packet %d: timestamp step %d for %d bytes", i, d, len(pkts[i-1].Payload))
			}
			if p.SSRC != pkts[0].SSRC || p.Marker {
				t.Errorf("packet %d: SSRC %x marker %v", i, p.SSRC, p.Marker)
			}
		} else if !p.Marker {
			t.Error("first packet without marker bit")
		}
	}
	m.end() // the counters are booked after each send returns
	if s := st.snapshot(); s.PacketsSent != uint64(len(pkts)) || s.BytesSent != uint64(len(data)) {
		t.Errorf("stats %+v", s)
	}
}
