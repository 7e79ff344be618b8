package pbx

import (
	"bytes"
	"errors"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// The SDP handling here is what a B2BUA needs (RFC 4566): find the audio
// stream, rewrite its address for the relay, drop codecs a peer does not
// allow. Everything else in the body is kept byte for byte.

func isSDP(ctype string, body []byte) bool {
	return len(body) > 0 && (ctype == "" || strings.Contains(strings.ToLower(ctype), "application/sdp"))
}

// staticPT are RFC 3551's static audio payload types, by Asterisk's names.
var staticPT = map[string]string{"0": "ulaw", "3": "gsm", "4": "g723", "8": "alaw", "9": "g722", "18": "g729"}

// codecName maps an rtpmap encoding name to Asterisk's codec name.
func codecName(enc string) string {
	switch e := strings.ToLower(enc); e {
	case "pcmu":
		return "ulaw"
	case "pcma":
		return "alaw"
	default:
		return e
	}
}

func sdpLines(body []byte) []string {
	s := strings.ReplaceAll(string(body), "\r\n", "\n")
	s = strings.TrimRight(s, "\n")
	return strings.Split(s, "\n")
}

func joinSDP(lines []string) []byte {
	return []byte(strings.Join(lines, "\r\n") + "\r\n")
}

// sdpAudio returns the audio stream's address (media-level c= or
// session-level c=) and its payload types.
func sdpAudio(body []byte) (netip.AddrPort, []string, map[string]string) {
	var sessC, mediaC netip.Addr
	port := 0
	var pts []string
	names := map[string]string{}
	inAudio, seenAudio := false, false
	for _, l := range sdpLines(body) {
		switch {
		case strings.HasPrefix(l, "m="):
			f := strings.Fields(l[2:])
			inAudio = !seenAudio && len(f) >= 3 && f[0] == "audio"
			if inAudio {
				seenAudio = true
				port, _ = strconv.Atoi(strings.SplitN(f[1], "/", 2)[0])
				pts = f[3:]
			}
		case strings.HasPrefix(l, "c="):
			f := strings.Fields(l[2:])
			if len(f) == 3 {
				a, err := netip.ParseAddr(strings.SplitN(f[2], "/", 2)[0])
				if err == nil {
					if inAudio {
						mediaC = a
					} else if !seenAudio {
						sessC = a
					}
				}
			}
		case inAudio && strings.HasPrefix(l, "a=rtpmap:"):
			pt, rest, _ := strings.Cut(l[len("a=rtpmap:"):], " ")
			enc, _, _ := strings.Cut(rest, "/")
			names[pt] = codecName(enc)
		}
	}
	for _, pt := range pts {
		if _, ok := names[pt]; !ok {
			if n, ok := staticPT[pt]; ok {
				names[pt] = n
			}
		}
	}
	addr := mediaC
	if !addr.IsValid() {
		addr = sessC
	}
	if !addr.IsValid() || port <= 0 || port > 65535 {
		return netip.AddrPort{}, pts, names
	}
	return netip.AddrPortFrom(addr.Unmap(), uint16(port)), pts, names
}

// sdpCodec is the first audio codec offered, e.g. "ulaw".
func sdpCodec(body []byte) string {
	_, pts, names := sdpAudio(body)
	for _, pt := range pts {
		if n := names[pt]; n != "" && n != "telephone-event" {
			return n
		}
	}
	return ""
}

var errNoCodec = errors.New("no allowed codec left in the offer")

// filterCodecs removes from the audio stream every codec not in allow
// (Asterisk names: ulaw, alaw...). telephone-event stays: it is DTMF, not
// a codec. An empty allow keeps everything.
func filterCodecs(body []byte, allow []string) ([]byte, error) {
	if len(allow) == 0 || len(body) == 0 {
		return body, nil
	}
	_, pts, names := sdpAudio(body)
	drop := map[string]bool{}
	var keep []string
	audio := 0
	for _, pt := range pts {
		n := names[pt]
		switch {
		case n == "telephone-event":
			keep = append(keep, pt)
		case slices.Contains(allow, n):
			keep = append(keep, pt)
			audio++
		default:
			drop[pt] = true
		}
	}
	if audio == 0 {
		return nil, errNoCodec
	}
	if len(drop) == 0 {
		return body, nil
	}
	var out []string
	inAudio, seenAudio := false, false
	for _, l := range sdpLines(body) {
		if strings.HasPrefix(l, "m=") {
			f := strings.Fields(l[2:])
			inAudio = !seenAudio && len(f) >= 3 && f[0] == "audio"
			if inAudio {
				seenAudio = true
				l = "m=" + strings.Join(append(f[:3:3], keep...), " ")
			}
		} else if inAudio {
			for _, pre := range []string{"a=rtpmap:", "a=fmtp:"} {
				if strings.HasPrefix(l, pre) {
					pt, _, _ := strings.Cut(l[len(pre):], " ")
					if drop[pt] {
						l = ""
					}
				}
			}
			if l == "" {
				continue
			}
		}
		out = append(out, l)
	}
	return joinSDP(out), nil
}

// rewriteMedia points the audio stream (and every c= line) at addr.
func rewriteMedia(body []byte, addr netip.AddrPort) []byte {
	if len(body) == 0 {
		return body
	}
	fam := "IP4"
	if addr.Addr().Is6() {
		fam = "IP6"
	}
	var out []string
	seenAudio := false
	for _, l := range sdpLines(body) {
		switch {
		case strings.HasPrefix(l, "c="):
			l = "c=IN " + fam + " " + addr.Addr().String()
		case strings.HasPrefix(l, "m=audio ") && !seenAudio:
			seenAudio = true
			f := strings.Fields(l[2:])
			if len(f) >= 2 {
				f[1] = strconv.Itoa(int(addr.Port()))
				l = "m=" + strings.Join(f, " ")
			}
		}
		out = append(out, l)
	}
	return joinSDP(out)
}

// transformOffer prepares an SDP from side `from` for the other side: the
// codec policies of both peers, then the relay address if media is
// anchored. With direct media and no policy the body is returned
// unchanged, byte for byte. The caller holds c.mu.
func (c *call) transformOffer(from int, body []byte) []byte {
	out := body
	for _, l := range c.legs {
		if l != nil && len(l.allow) > 0 {
			if f, err := filterCodecs(out, l.allow); err == nil {
				out = f
			}
		}
	}
	if c.relay != nil {
		out = rewriteMedia(out, c.relay.addr(1-from))
	}
	return out
}

// transformAnswer prepares an SDP answer from side `side` for the other.
// The caller holds c.mu.
func (c *call) transformAnswer(side int, body []byte) []byte {
	if c.relay != nil && len(body) > 0 {
		return rewriteMedia(body, c.relay.addr(1-side))
	}
	return body
}

// answerBody is the callee's SDP as the caller must see it.
func (c *call) answerBody(body []byte) []byte {
	if len(body) == 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.relay != nil {
		c.relay.setRemote(sideCallee, body)
	}
	return c.transformAnswer(sideCallee, body)
}

// offerFor builds the INVITE body for the callees: it decides whether
// media is anchored (directmedia=no on either peer, or comedia) and
// applies the codec policies.
func (c *call) offerFor(cands []candidate) ([]byte, string, error) {
	s := c.s
	req := c.inviteReq
	ctype := ""
	if h := req.ContentType(); h != nil {
		ctype = h.Value()
	}
	body := req.Body()
	if !isSDP(ctype, body) {
		return body, ctype, nil // no offer (late offer): passed as is
	}
	relayIt := needRelay(c.callerCfg, viaNAT(req, sourceOf(req)))
	for _, cd := range cands {
		if needRelay(cd.peer, false) {
			relayIt = true
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	out := body
	for _, allow := range append([][]string{c.callerCfg.Allow}, allowsOf(cands)...) {
		if len(allow) == 0 {
			continue
		}
		f, err := filterCodecs(out, allow)
		if err != nil {
			return nil, "", err
		}
		out = f
	}
	if relayIt && c.relay == nil {
		src := sourceOf(req)
		rl, err := s.newRelay(s.localIP(src.Addr()), parseNAT(c.callerCfg.NAT).comedia || parseNAT(c.callerCfg.NAT).autoComedia)
		if err != nil {
			s.log.Error("no RTP ports for relay; using direct media", "id", c.id, "err", err)
		} else {
			c.relay = rl
			c.media = "relay"
			rl.setRemote(sideCaller, body)
		}
	}
	if c.relay != nil {
		out = rewriteMedia(out, c.relay.addr(sideCallee))
	}
	c.codec = sdpCodec(out)
	return out, ctype, nil
}

func allowsOf(cands []candidate) [][]string {
	var out [][]string
	for _, cd := range cands {
		out = append(out, cd.peer.Allow)
	}
	return out
}

// needRelay: media is anchored when the peer forbids direct media or must
// be answered by comedia (nat=comedia/yes, or auto_comedia with NAT seen).
func needRelay(p Peer, natSeen bool) bool {
	n := parseNAT(p.NAT)
	return !p.DirectMedia || n.comedia || (n.autoComedia && natSeen)
}

var _ = bytes.Equal
