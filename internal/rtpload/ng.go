package rtpload

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// NG is a client of rtpengine's ng control protocol over UDP (rtpengine's
// README, "The NG Control Protocol"): each request is "COOKIE
// <bencoded dictionary>", the answer repeats the cookie. It sets a call
// up as a SIP proxy would: "offer" with the caller's SDP (the relay
// answers the SDP to give the callee), "answer" with the callee's SDP
// (the SDP to give the caller), "delete" at the end.
type NG struct {
	conn    *net.UDPConn
	cookie  atomic.Uint64
	mu      sync.Mutex
	waiting map[string]chan map[string]any
	done    chan struct{}
}

// DialNG connects to an ng control port and starts reading answers.
func DialNG(addr netip.AddrPort) (*NG, error) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return nil, fmt.Errorf("ng: %w", err)
	}
	_ = c.SetReadBuffer(1 << 20)
	n := &NG{conn: c, waiting: map[string]chan map[string]any{}, done: make(chan struct{})}
	go n.read()
	return n, nil
}

// Close stops the client.
func (n *NG) Close() error {
	err := n.conn.Close()
	<-n.done
	return err
}

func (n *NG) read() {
	defer close(n.done)
	buf := make([]byte, 65536)
	for {
		m, err := n.conn.Read(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			// ICMP port unreachable (ECONNREFUSED) while the relay is
			// still starting: the resend will find it.
			continue
		}
		cookie, body, ok := bytes.Cut(buf[:m], []byte{' '})
		if !ok {
			continue
		}
		v, err := Decode(body)
		d, _ := v.(map[string]any)
		if err != nil || d == nil {
			continue
		}
		n.mu.Lock()
		ch := n.waiting[string(cookie)]
		delete(n.waiting, string(cookie))
		n.mu.Unlock()
		if ch != nil {
			ch <- d
		}
	}
}

// Command sends one request and waits for its answer, resending every
// 500 ms (the protocol is plain UDP; the cookie makes a resend safe:
// rtpengine answers a repeated cookie from its cache).
func (n *NG) Command(ctx context.Context, req map[string]any) (map[string]any, error) {
	cookie := strconv.FormatUint(n.cookie.Add(1), 36) + "_" + strconv.FormatInt(time.Now().UnixNano()%1e6, 36)
	msg, err := Encode([]byte(cookie+" "), req)
	if err != nil {
		return nil, err
	}
	ch := make(chan map[string]any, 1)
	n.mu.Lock()
	n.waiting[cookie] = ch
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		delete(n.waiting, cookie)
		n.mu.Unlock()
	}()
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		if _, err := n.conn.Write(msg); err != nil {
			return nil, fmt.Errorf("ng %v: %w", req["command"], err)
		}
		select {
		case d := <-ch:
			if r, _ := d["result"].(string); r != "ok" && r != "pong" {
				return d, fmt.Errorf("ng %v: result %q: %v", req["command"], r, d["error-reason"])
			}
			return d, nil
		case <-t.C:
		case <-ctx.Done():
			return nil, fmt.Errorf("ng %v: %w", req["command"], ctx.Err())
		}
	}
}

// Setup implements Relay: offer with a's SDP, answer with b's.
func (n *NG) Setup(ctx context.Context, id int, a, b netip.AddrPort) (toFromA, toFromB netip.AddrPort, err error) {
	callID := "rtpload-" + strconv.Itoa(id)
	off, err := n.Command(ctx, map[string]any{
		"command": "offer", "call-id": callID, "from-tag": "a" + strconv.Itoa(id),
		"sdp": SDP(a), "replace": []string{"origin", "session-connection"},
	})
	if err != nil {
		return toFromA, toFromB, err
	}
	if toFromB, err = SDPAddr(off["sdp"]); err != nil {
		return toFromA, toFromB, fmt.Errorf("ng offer: %w", err)
	}
	ans, err := n.Command(ctx, map[string]any{
		"command": "answer", "call-id": callID, "from-tag": "a" + strconv.Itoa(id), "to-tag": "b" + strconv.Itoa(id),
		"sdp": SDP(b), "replace": []string{"origin", "session-connection"},
	})
	if err != nil {
		return toFromA, toFromB, err
	}
	if toFromA, err = SDPAddr(ans["sdp"]); err != nil {
		return toFromA, toFromB, fmt.Errorf("ng answer: %w", err)
	}
	return toFromA, toFromB, nil
}

// Teardown implements Relay: delete the call.
func (n *NG) Teardown(ctx context.Context, id int) error {
	_, err := n.Command(ctx, map[string]any{"command": "delete", "call-id": "rtpload-" + strconv.Itoa(id), "from-tag": "a" + strconv.Itoa(id)})
	return err
}

// SDP is a minimal G.711 µ-law offer or answer for media at ap.
func SDP(ap netip.AddrPort) string {
	ip := ap.Addr().String()
	return "v=0\r\no=- 1 1 IN IP4 " + ip + "\r\ns=-\r\nc=IN IP4 " + ip + "\r\nt=0 0\r\n" +
		"m=audio " + strconv.Itoa(int(ap.Port())) + " RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n"
}

var errNoMedia = errors.New("no c= address or m=audio port in the SDP")

// SDPAddr reads the audio address of an SDP (session- or media-level c=,
// first m=audio).
func SDPAddr(v any) (netip.AddrPort, error) {
	s, _ := v.(string)
	var ip netip.Addr
	port := -1
	for line := range strings.Lines(s) {
		line = strings.TrimRight(line, "\r\n")
		switch {
		case strings.HasPrefix(line, "c=IN IP4 ") || strings.HasPrefix(line, "c=IN IP6 "):
			if a, err := netip.ParseAddr(strings.Fields(line[9:])[0]); err == nil {
				ip = a
			}
		case strings.HasPrefix(line, "m=audio ") && port < 0:
			f := strings.Fields(line)
			if p, err := strconv.Atoi(f[1]); err == nil && p > 0 && p < 65536 {
				port = p
			}
		}
	}
	if !ip.IsValid() || port < 0 {
		return netip.AddrPort{}, errNoMedia
	}
	return netip.AddrPortFrom(ip, uint16(port)), nil
}

// NGHandler answers one ng request dictionary.
type NGHandler func(req map[string]any) map[string]any

// ServeNG answers ng requests on conn until ctx ends; a request that is
// not "COOKIE <dictionary>" is dropped.
func ServeNG(ctx context.Context, conn *net.UDPConn, h NGHandler) {
	go func() {
		<-ctx.Done()
		conn.Close()
	}()
	buf := make([]byte, 65536)
	for {
		m, src, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		cookie, body, ok := bytes.Cut(buf[:m], []byte{' '})
		if !ok {
			continue
		}
		v, err := Decode(body)
		req, _ := v.(map[string]any)
		if err != nil || req == nil {
			continue
		}
		out, err := Encode(append(cookie[:len(cookie):len(cookie)], ' '), h(req))
		if err != nil {
			continue
		}
		_, _ = conn.WriteToUDPAddrPort(out, src)
	}
}
