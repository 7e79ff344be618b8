// Package smcaller is a calling modem for tests and the demo: a minimal
// SIP user agent (INVITE with digest authentication, ACK, BYE both ways)
// that runs the box's own software modem as the caller's modem on the
// call's G.711 RTP. It answers each of the far end's packets with one of
// its own, so it runs at the far end's sample clock, as an ATA locked to it.
package smcaller

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/pion/rtp"

	"github.com/isp-box/isp-box/softmodem"
	"github.com/isp-box/isp-box/softmodem/g711"
)

// Options of a call.
type Options struct {
	Box        netip.AddrPort // the PBX's SIP address
	User       string         // SIP peer name (From, digest user)
	Password   string
	Realm      string // digest realm; "asterisk" when empty
	Number     string
	Modulation softmodem.Modulation
}

// Call is a placed call; Modem is the caller's modem on it.
type Call struct {
	Modem *softmodem.Modem

	o      Options
	sip    *net.UDPConn
	media  *net.UDPConn
	callID string
	toTag  string
	cseq   int
	stop   context.CancelFunc
	wg     sync.WaitGroup
	ended  chan struct{}
	once   sync.Once
}

var nonceRE = regexp.MustCompile(`nonce="([^"]+)"`)

func md5hex(s string) string { h := md5.Sum([]byte(s)); return hex.EncodeToString(h[:]) }

// Dial places the call and starts the modem once it is answered.
func Dial(ctx context.Context, o Options) (*Call, error) {
	if o.Realm == "" {
		o.Realm = "asterisk"
	}
	lo := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}
	sc, err := net.ListenUDP("udp4", lo)
	if err != nil {
		return nil, err
	}
	mc, err := net.ListenUDP("udp4", lo)
	if err != nil {
		sc.Close()
		return nil, err
	}
	c := &Call{o: o, sip: sc, media: mc, callID: fmt.Sprintf("smcaller-%d@127.0.0.1", time.Now().UnixNano()), ended: make(chan struct{}),
		Modem: softmodem.New(softmodem.Config{Modulation: o.Modulation, Role: softmodem.Originate})}
	fail := func(err error) (*Call, error) { sc.Close(); mc.Close(); return nil, err }
	offer := fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio %d RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\n",
		mc.LocalAddr().(*net.UDPAddr).Port)
	ctype := "\nContent-Type: application/sdp"
	c.cseq = 1
	c.request("INVITE", ctype, offer)
	r, err := c.final(ctx)
	if err == nil && r.StatusCode == 401 {
		c.toTag, _ = r.To().Params.Get("tag")
		c.request("ACK", "", "")
		c.toTag = ""
		m := nonceRE.FindStringSubmatch(r.GetHeader("WWW-Authenticate").Value())
		if m == nil {
			return fail(errors.New("smcaller: 401 without a nonce"))
		}
		uri := c.uri()
		resp := md5hex(md5hex(o.User+":"+o.Realm+":"+o.Password) + ":" + m[1] + ":" + md5hex("INVITE:"+uri))
		auth := fmt.Sprintf("\nAuthorization: Digest username=%q, realm=%q, nonce=%q, uri=%q, response=%q, algorithm=MD5", o.User, o.Realm, m[1], uri, resp)
		c.cseq = 2
		c.request("INVITE", ctype+auth, offer)
		r, err = c.final(ctx)
	}
	if err != nil {
		return fail(err)
	}
	if r.StatusCode != 200 {
		return fail(fmt.Errorf("smcaller: INVITE %s: %d %s", o.Number, r.StatusCode, r.Reason))
	}
	c.toTag, _ = r.To().Params.Get("tag")
	c.request("ACK", "", "")
	remote, err := audioAddr(r.Body())
	if err != nil {
		return fail(err)
	}
	rctx, stop := context.WithCancel(context.Background())
	c.stop = stop
	c.wg.Add(2)
	go func() { defer c.wg.Done(); c.pump(rctx, remote) }()
	go func() { defer c.wg.Done(); c.signalling(rctx) }()
	return c, nil
}

func (c *Call) uri() string { return "sip:" + c.o.Number + "@" + c.o.Box.String() }

func (c *Call) request(method, extra, body string) {
	to := ""
	if c.toTag != "" {
		to = ";tag=" + c.toTag
	}
	port := c.sip.LocalAddr().(*net.UDPAddr).Port
	msg := fmt.Sprintf("%s %s SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK%d;rport\r\nFrom: <sip:%s@%s>;tag=smcaller\r\nTo: <sip:%s@%s>%s\r\nCall-ID: %s\r\nCSeq: %d %s\r\nContact: <sip:%s@127.0.0.1:%d>\r\nMax-Forwards: 70%s\r\nContent-Length: %d\r\n\r\n%s",
		method, c.uri(), port, time.Now().UnixNano(), c.o.User, c.o.Box, c.o.Number, c.o.Box, to, c.callID, c.cseq, method,
		c.o.User, port, strings.ReplaceAll(extra, "\n", "\r\n"), len(body), body)
	c.sip.WriteToUDPAddrPort([]byte(msg), c.o.Box)
}

func (c *Call) final(ctx context.Context) (*sip.Response, error) {
	p := sip.NewParser()
	buf := make([]byte, 65535)
	end := time.Now().Add(15 * time.Second)
	for time.Now().Before(end) && ctx.Err() == nil {
		c.sip.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, err := c.sip.Read(buf)
		if err != nil {
			continue
		}
		m, err := p.ParseSIP(buf[:n])
		if err != nil {
			continue
		}
		if r, ok := m.(*sip.Response); ok && r.StatusCode >= 200 {
			return r, nil
		}
	}
	return nil, errors.New("smcaller: no final answer to the INVITE")
}

func audioAddr(body []byte) (netip.AddrPort, error) {
	var ip netip.Addr
	port := 0
	for _, l := range strings.Split(string(body), "\r\n") {
		f := strings.Fields(l)
		switch {
		case len(f) == 3 && strings.HasPrefix(l, "c=IN"):
			ip, _ = netip.ParseAddr(f[2])
		case len(f) >= 2 && f[0] == "m=audio":
			fmt.Sscan(f[1], &port)
		}
	}
	if !ip.IsValid() || port == 0 {
		return netip.AddrPort{}, errors.New("smcaller: no audio address in the answer")
	}
	return netip.AddrPortFrom(ip, uint16(port)), nil
}

// pump runs the modem on the RTP, one packet out for each packet in.
func (c *Call) pump(ctx context.Context, remote netip.AddrPort) {
	buf, pkt := make([]byte, 1500), make([]byte, 1500)
	h := rtp.Header{Version: 2, PayloadType: 0, SSRC: 4321}
	var p rtp.Packet
	for ctx.Err() == nil {
		c.media.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, err := c.media.Read(buf)
		if err != nil || p.Unmarshal(buf[:n]) != nil || p.PayloadType != 0 {
			continue
		}
		rx, tx := make([]int16, len(p.Payload)), make([]int16, len(p.Payload))
		g711.Ulaw.Decode(rx, p.Payload)
		c.Modem.Process(rx, tx)
		hl, _ := h.MarshalTo(pkt)
		g711.Ulaw.Encode(pkt[hl:], tx)
		c.media.WriteToUDPAddrPort(pkt[:hl+len(tx)], remote)
		h.SequenceNumber++
		h.Timestamp += uint32(len(tx))
	}
}

// signalling answers the far end's BYE (the box hangs up when its PPP
// session ends).
func (c *Call) signalling(ctx context.Context) {
	p := sip.NewParser()
	buf := make([]byte, 65535)
	for ctx.Err() == nil {
		c.sip.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, from, err := c.sip.ReadFromUDPAddrPort(buf)
		if err != nil {
			continue
		}
		m, err := p.ParseSIP(buf[:n])
		if err != nil {
			continue
		}
		req, ok := m.(*sip.Request)
		if !ok || req.Method != sip.BYE {
			continue
		}
		res := sip.NewResponseFromRequest(req, 200, "OK", nil)
		c.sip.WriteToUDPAddrPort([]byte(res.String()), from)
		c.once.Do(func() { close(c.ended) })
		c.Modem.Close()
	}
}

// Ended is closed when the far end hung up.
func (c *Call) Ended() <-chan struct{} { return c.ended }

// WaitConnect waits for the modems to train (CONNECT).
func (c *Call) WaitConnect(ctx context.Context) error {
	for c.Modem.State() != softmodem.StateData {
		select {
		case <-c.Modem.Changed():
		case <-c.ended:
			return errors.New("smcaller: hung up before CONNECT")
		case <-ctx.Done():
			return fmt.Errorf("smcaller: no CONNECT (%v): %w", c.Modem.State(), ctx.Err())
		}
	}
	return nil
}

// Close hangs up (BYE unless the far end already did) and stops.
func (c *Call) Close() error {
	select {
	case <-c.ended:
	default:
		c.cseq++
		c.request("BYE", "", "")
	}
	c.stop()
	c.wg.Wait()
	c.Modem.Close()
	c.sip.Close()
	return c.media.Close()
}
