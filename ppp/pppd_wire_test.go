package ppp_test

import (
	"bytes"
	"encoding/hex"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/isp-box/isp-box/ppp"
	"github.com/isp-box/isp-box/ppp/hdlc"
	"github.com/isp-box/isp-box/ppp/ppptest"
)

func h(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

// rawPeer plays a recorded pppd 2.4.9 client octet by octet: it writes the
// frames pppd writes and checks the server's answers on the wire, so the
// server is tested against the RFC and pppd rather than against this
// package's own client.
type rawPeer struct {
	t      *testing.T
	rw     io.ReadWriteCloser
	enc    *hdlc.Encoder
	frames chan frame
	mu     sync.Mutex
	raw    bytes.Buffer // every octet the server sent
}

type frame struct {
	proto uint16
	info  []byte
	acfc  bool // address/control omitted
}

type recorder struct {
	p *rawPeer
	io.Reader
}

func (r recorder) Read(b []byte) (int, error) {
	n, err := r.Reader.Read(b)
	r.p.mu.Lock()
	r.p.raw.Write(b[:n])
	r.p.mu.Unlock()
	return n, err
}

func newRawPeer(t *testing.T, rw io.ReadWriteCloser) *rawPeer {
	p := &rawPeer{t: t, rw: rw, enc: hdlc.NewEncoder(), frames: make(chan frame, 64)}
	go func() {
		defer close(p.frames)
		d := hdlc.NewReader(recorder{p, rw})
		d.SetACCM(0)
		for {
			f, err := d.ReadFrame()
			if err != nil {
				return
			}
			proto, info, err := hdlc.ParseHeader(f)
			if err != nil {
				t.Errorf("server sent a bad header: % x", f)
				continue
			}
			p.frames <- frame{proto, bytes.Clone(info), f[0] != 0xff}
		}
	}()
	return p
}

func (p *rawPeer) write(b []byte) {
	p.t.Helper()
	if _, err := p.rw.Write(b); err != nil {
		p.t.Fatal(err)
	}
}

// send frames info as pppd does once LCP is up: ACCM 0, no FF 03, the
// protocol compressed when it can be.
func (p *rawPeer) send(proto uint16, info []byte) {
	p.enc.SetACCM(0)
	p.write(p.enc.AppendFrame(nil, hdlc.AppendHeader(nil, proto, true, true), info, false))
}

// expect returns the next frame of proto with the given code.
func (p *rawPeer) expect(proto uint16, code byte) frame {
	p.t.Helper()
	for {
		select {
		case f, ok := <-p.frames:
			if !ok {
				p.t.Fatalf("line closed waiting for %#04x code %d", proto, code)
			}
			if f.proto == proto && len(f.info) > 0 && f.info[0] == code {
				return f
			}
		case <-time.After(10 * time.Second):
			p.t.Fatalf("no %#04x code %d from the server", proto, code)
		}
	}
}

func (p *rawPeer) rawContains(b []byte) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return bytes.Contains(p.raw.Bytes(), b)
}

func checkBytes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Errorf("%s:\n got % x\nwant % x", what, got, want)
	}
}

func TestServerAgainstRecordedPppd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := net.Pipe()
		netw := ppptest.NewNetwork("192.168.32.1", "192.168.32.105")
		srv := startServer(t, t.Context(), a, seedConfig(ppp.AuthPAP), ppp.Options{Users: users, Network: netw})
		p := newRawPeer(t, b)

		// pppd's first frame, octet for octet (as captured from pppd 2.4.9 in e2e/pppdvm): LCP ConfReq
		// id 1 <asyncmap 0x0> <magic 0x5ad2e3f1> <pcomp> <accomp>.
		p.write(h("7e ff 7d 23 c0 21 7d 21 7d 21 7d 20 7d 34 7d 22 7d 26 7d 20 7d 20 7d 20 7d 20 7d 25 7d 26 5a d2 e3 f1 7d 27 7d 22 7d 28 7d 22 90 d0 7e"))

		req := p.expect(0xc021, 1)
		// <asyncmap 0x0> <auth pap> <magic ...> <pcomp> <accomp>
		checkBytes(t, "server ConfReq options (magic masked)", append(req.info[4:16:16], req.info[20:]...),
			h("02 06 00 00 00 00 03 04 c0 23 05 06 07 02 08 02"))
		ack := p.expect(0xc021, 2)
		checkBytes(t, "ConfAck", ack.info, h("02 01 00 14 02 06 00 00 00 00 05 06 5a d2 e3 f1 07 02 08 02"))
		// RFC 1662 §7.1: sent with every control character escaped, full header.
		if !p.rawContains(h("7e ff 7d 23 c0 21 7d 22 7d 21 7d 20 7d 34 7d 22 7d 26 7d 20 7d 20 7d 20 7d 20 7d 25 7d 26 5a d2 e3 f1 7d 27 7d 22 7d 28 7d 22")) {
			t.Error("ConfAck not framed with the default ACCM")
		}
		// pppd acks the server's request as received.
		ackReq := append([]byte{2}, req.info[1:]...)
		p.write(hdlc.NewEncoder().AppendFrame(nil, h("ff 03 c0 21"), ackReq, true))

		// PAP Authenticate-Request dial/dial.
		p.send(0xc023, h("01 01 00 0e 04 64 69 61 6c 04 64 69 61 6c"))
		papAck := p.expect(0xc023, 2)
		checkBytes(t, "PAP Ack", papAck.info, append(h("02 01 00 0d 08"), "Login ok"...))
		if !papAck.acfc {
			t.Error("PAP Ack sent with FF 03 although ACFC was acked")
		}

		// IPCP: the server asks <compress VJ 0f 01> <addr 192.168.32.1>.
		sreq := p.expect(0x8021, 1)
		checkBytes(t, "server IPCP ConfReq", sreq.info[2:], h("00 10 02 06 00 2d 0f 01 03 06 c0 a8 20 01"))
		// pppd usepeerdns noipdefault: <compress VJ 0f 01> <addr 0.0.0.0> <ms-dns1 0> <ms-dns3 0>.
		p.send(0x8021, h("01 01 00 1c 02 06 00 2d 0f 01 03 06 00 00 00 00 81 06 00 00 00 00 83 06 00 00 00 00"))
		nak := p.expect(0x8021, 3)
		checkBytes(t, "IPCP ConfNak", nak.info, h("03 01 00 16 03 06 c0 a8 20 69 81 06 08 08 08 08 83 06 08 08 08 08"))
		p.send(0x8021, h("01 02 00 1c 02 06 00 2d 0f 01 03 06 c0 a8 20 69 81 06 08 08 08 08 83 06 08 08 08 08"))
		ipAck := p.expect(0x8021, 2)
		checkBytes(t, "IPCP ConfAck", ipAck.info, h("02 02 00 1c 02 06 00 2d 0f 01 03 06 c0 a8 20 69 81 06 08 08 08 08 83 06 08 08 08 08"))
		p.send(0x8021, append([]byte{2}, sreq.info[1:]...))

		link, err := netw.Attached(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		// An IP datagram with a one-octet protocol field (PFC).
		pkt := udp(client, dns, "x")
		p.send(0x0021, pkt)
		select {
		case got := <-link.Sent:
			checkBytes(t, "IP datagram", got, pkt)
		case <-time.After(10 * time.Second):
			t.Fatal("datagram not delivered")
		}

		// IPv6CP, which pppd offers by default: Protocol-Rejected, link stays.
		p.send(0x8057, h("01 01 00 0e 01 0a 11 22 33 44 55 66 77 88"))
		rej := p.expect(0xc021, 8)
		checkBytes(t, "Protocol-Reject", rej.info[2:], h("00 14 80 57 01 01 00 0e 01 0a 11 22 33 44 55 66 77 88"))
		// Echo-Request: the reply carries the server's magic.
		p.send(0xc021, h("09 05 00 08 5a d2 e3 f1"))
		echo := p.expect(0xc021, 10)
		checkBytes(t, "Echo-Reply", echo.info, append(h("0a 05 00 08"), req.info[16:20]...))
		// An unknown LCP code: Code-Reject carrying the packet.
		p.send(0xc021, h("20 07 00 06 ab cd"))
		cj := p.expect(0xc021, 7)
		checkBytes(t, "Code-Reject", cj.info[2:], h("00 0a 20 07 00 06 ab cd"))
		// Identification (Windows sends "MSRASV5.20") is ignored silently.
		p.send(0xc021, append(h("0c 08 00 12 5a d2 e3 f1"), "MSRASV5.20"...))

		// pppd's SIGTERM: Terminate-Request, the server acks.
		p.send(0xc021, h("05 09 00 10 55 73 65 72 20 72 65 71 75 65 73 74"))
		ta := p.expect(0xc021, 6)
		checkBytes(t, "Terminate-Ack", ta.info, h("06 09 00 04"))
		b.Close()
		if res := <-srv; res.rec.Cause != ppp.CausePeer || res.rec.PktsIn != 1 {
			t.Fatalf("record %+v", res.rec)
		}
	})
}

// A Microsoft client's LCP request (pppd logs): callback CBCP, MRRU and
// endpoint discriminator are rejected together, in order, and nothing else.
func TestServerRejectsWindowsLCPOptions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := net.Pipe()
		srv := startServer(t, t.Context(), a, seedConfig(), ppp.Options{Network: ppptest.NewNetwork("192.168.32.1", "192.168.32.105")})
		p := newRawPeer(t, b)
		req := h("01 01 00 27 02 06 00 00 00 00 05 06 12 34 56 78 07 02 08 02 0d 03 06 11 04 06 4e 13 0a 01 4d 53 57 49 4e 39 35 17 04 00 01")
		req[3] = byte(len(req))
		p.write(hdlc.NewEncoder().AppendFrame(nil, h("ff 03 c0 21"), req, true))
		rej := p.expect(0xc021, 4)
		checkBytes(t, "ConfRej", rej.info[4:], h("0d 03 06 11 04 06 4e 13 0a 01 4d 53 57 49 4e 39 35 17 04 00 01"))
		if rej.info[1] != 1 {
			t.Errorf("ConfRej id %d", rej.info[1])
		}
		// A bad magic (zero) and a tiny MRU are Nak'd.
		p.write(hdlc.NewEncoder().AppendFrame(nil, h("ff 03 c0 21"), h("01 02 00 0e 01 04 00 40 05 06 00 00 00 00"), true))
		nak := p.expect(0xc021, 3)
		if nak.info[1] != 2 || !bytes.Equal(nak.info[4:8], h("01 04 00 80")) || nak.info[8] != 5 {
			t.Errorf("ConfNak % x", nak.info)
		}
		b.Close()
		<-srv
	})
}

// A line that echoes (the client's tty before it is put in raw mode) sends
// our own ConfReq back: the server Naks the magic and nothing else.
func TestServerOwnRequestEchoed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := net.Pipe()
		srv := startServer(t, t.Context(), a, seedConfig(ppp.AuthPAP), ppp.Options{Users: users, Network: ppptest.NewNetwork("192.168.32.1", "192.168.32.105")})
		p := newRawPeer(t, b)
		req := p.expect(0xc021, 1)
		p.write(hdlc.NewEncoder().AppendFrame(nil, h("ff 03 c0 21"), req.info, true)) // the echo
		nak := p.expect(0xc021, 3)
		if len(nak.info) != 10 || nak.info[4] != 5 || bytes.Equal(nak.info[6:10], req.info[16:20]) {
			t.Fatalf("answer to our own request: % x", nak.info)
		}
		// Then pppd's real request still negotiates normally.
		p.write(h("7e ff 7d 23 c0 21 7d 21 7d 21 7d 20 7d 34 7d 22 7d 26 7d 20 7d 20 7d 20 7d 20 7d 25 7d 26 5a d2 e3 f1 7d 27 7d 22 7d 28 7d 22 90 d0 7e"))
		p.expect(0xc021, 2)
		b.Close()
		if res := <-srv; res.rec.Cause == ppp.CauseAuthRefused {
			t.Fatalf("cause %q", res.rec.Cause)
		}
	})
}

// The AutoPPP detector's octets handed over in Options.Preread start the
// negotiation at once instead of after the client's retransmission.
func TestPreread(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := net.Pipe()
		first := h("7e ff 7d 23 c0 21 7d 21 7d 21 7d 20 7d 34 7d 22 7d 26 7d 20 7d 20 7d 20 7d 20 7d 25 7d 26 5a d2 e3 f1 7d 27 7d 22 7d 28 7d 22 90 d0 7e")
		if isPPP, decided := ppp.Detect(first[:8]); !isPPP || !decided {
			t.Fatal("Detect")
		}
		srv := startServer(t, t.Context(), a, seedConfig(), ppp.Options{Preread: first, Network: ppptest.NewNetwork("192.168.32.1", "192.168.32.105")})
		p := newRawPeer(t, b)
		start := time.Now()
		p.expect(0xc021, 2)
		if time.Since(start) != 0 {
			t.Errorf("ConfAck after %s", time.Since(start))
		}
		b.Close()
		<-srv
	})
}

// FuzzServerInput feeds random control packets, framed correctly, to a live
// server session: no panic, and the session always ends.
func FuzzServerInput(f *testing.F) {
	f.Add([]byte{0xc0, 0x21, 1, 1, 0, 8, 5, 6, 1, 2, 3, 4, 0x80, 0x21, 1, 1, 0, 10, 3, 6, 0, 0, 0, 0})
	f.Add([]byte{0xc0, 0x23, 1, 1, 0, 14, 4, 'd', 'i', 'a', 'l', 4, 'd', 'i', 'a', 'l'})
	f.Add([]byte{0xc2, 0x23, 2, 7, 0, 8, 1, 0xaa, 'x', 'y', 0x80, 0x2b, 1, 1, 0, 4})
	f.Fuzz(func(t *testing.T, script []byte) {
		synctest.Test(t, func(t *testing.T) {
			a, b := net.Pipe()
			cfg := seedConfig(ppp.AuthCHAP, ppp.AuthPAP)
			cfg.EchoInterval, cfg.EchoFailure = 5*time.Second, 2
			srv := startServer(t, t.Context(), a, cfg, ppp.Options{Users: users, Network: ppptest.NewNetwork("192.168.32.1", "192.168.32.105")})
			go io.Copy(io.Discard, b)
			enc := hdlc.NewEncoder()
			protos := []uint16{0xc021, 0xc023, 0xc223, 0x8021, 0x0021, 0x002d, 0x002f, 0x802b}
			for len(script) >= 3 {
				proto := protos[int(script[0])%len(protos)]
				n := min(int(script[1]), len(script)-2)
				info := script[2 : 2+n]
				script = script[2+n:]
				if _, err := b.Write(enc.AppendFrame(nil, hdlc.AppendHeader(nil, proto, false, false), info, true)); err != nil {
					break
				}
			}
			time.Sleep(time.Minute)
			b.Close()
			<-srv
		})
	})
}
