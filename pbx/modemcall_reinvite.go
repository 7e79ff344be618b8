package pbx

import (
	"fmt"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// A softmodem call has no other leg to relay an in-dialog request to:
// the box is the far end. What it answers follows RFC 3261 §14.2 and
// RFC 3264 §8: a re-INVITE or UPDATE that keeps G.711 (an ATA switching
// to modem passthrough, a session refresh, hold/unhold) is answered 200
// with our current stream (same codec and port; the o= version moves
// only when our description changes); one asking for T.38 fax is refused
// with 488 and the G.711 session stays as it was (RFC 3264 §6: a refused
// offer leaves the old session in place).

// modemDirection is the direction an answer takes to an offer's
// (RFC 3264 §6.1): sendonly is answered recvonly, recvonly sendonly,
// inactive inactive. The old c=0.0.0.0 hold (RFC 2543) is a sendonly.
func modemDirection(offer []byte) string {
	dir := "sendrecv"
	for _, l := range sdpLines(offer) {
		switch strings.TrimSpace(l) {
		case "a=sendonly", "c=IN IP4 0.0.0.0":
			dir = "recvonly"
		case "a=recvonly":
			dir = "sendonly"
		case "a=inactive":
			dir = "inactive"
		}
	}
	return dir
}

// modemInDialog answers a request inside a softmodem call's dialog (the
// caller's leg; BYE is handled before). seResp restates the session
// timer in a 2xx.
func (c *call) modemInDialog(md *modemMedia, l *leg, req *sip.Request, tx sip.ServerTransaction, seResp []sip.Header) {
	s := c.s
	switch req.Method {
	case sip.INVITE, sip.UPDATE:
	case sip.OPTIONS, sip.INFO:
		// INFO without an Info-Package is the legacy kind (RFC 6086 §2):
		// nothing to do with it on a data call.
		s.respond(tx, req, 200, "OK", nil)
		return
	default:
		s.respond(tx, req, 405, "Method Not Allowed", nil)
		return
	}
	isInvite := req.Method == sip.INVITE
	body := req.Body()
	ctype := ""
	if h := req.ContentType(); h != nil {
		ctype = h.Value()
	}
	hasOffer := isSDP(ctype, body)
	if hasOffer && offersT38(body) {
		s.log.Info("T.38 refused on a softmodem call; G.711 stays", "id", c.id, "from", l.peer)
		s.respond(tx, req, 488, "Not Acceptable Here", nil, sip.NewHeader("Warning", `304 isp-box "Media type not available"`))
		return
	}
	var o modemOffer
	if hasOffer {
		var err error
		if o, err = parseModemOffer(body); err != nil {
			s.log.Info("softmodem call: re-offer refused", "id", c.id, "err", err)
			s.respond(tx, req, 488, "Not Acceptable Here", nil, sip.NewHeader("Warning", fmt.Sprintf(`305 isp-box %q`, err.Error())))
			return
		}
	}
	if isInvite {
		// Our 200 to the last re-INVITE is out, its ACK may still be on
		// the way: the next INVITE is not glare (RFC 3261 §14.2 asks 491
		// only while our own INVITE is pending, 500 before our final
		// answer), it waits for that ACK and is served in turn.
		md.reinvite.Lock()
		defer md.reinvite.Unlock()
		// one INVITE transaction at a time (RFC 3261 §14.2)
		if !c.changeState(stateReinvite, transition{}) {
			s.respond(tx, req, 491, "Request Pending", nil)
			return
		}
		defer c.changeState(stateUp, transition{})
	}
	var ourSDP []byte
	if hasOffer {
		ourSDP = md.reoffer(c.id, o, modemDirection(body))
		c.mu.Lock()
		l.sdp = body
		l.ourSDP = ourSDP
		c.mu.Unlock()
		s.log.Info("softmodem call: re-offer answered", "id", c.id, "method", req.Method, "remote", o.remote, "direction", modemDirection(body))
	} else {
		// No offer: a session refresh (UPDATE), or a re-INVITE that
		// wants ours in the 200 and answers in the ACK (RFC 3261
		// §14.2). Ours is unchanged, so its version is too (RFC 3264 §8).
		ourSDP = md.sdp()
	}
	if !isInvite {
		var hdrs []sip.Header
		if hasOffer {
			cth := sip.ContentTypeHeader("application/sdp")
			hdrs = append(hdrs, &cth)
		} else {
			ourSDP = nil
		}
		s.respond(tx, req, 200, "OK", ourSDP, append(hdrs, seResp...)...)
		return
	}
	ack := c.sendFinal2xx(tx, req, ourSDP, nil, l, seResp...)
	if ack == nil {
		s.log.Info("softmodem call: no ACK for the re-INVITE's 200", "id", c.id)
		return
	}
	if !hasOffer && len(ack.Body()) > 0 {
		// The answer to our offer, in the ACK: it may move the stream.
		if a, err := parseModemOffer(ack.Body()); err == nil {
			md.reoffer(c.id, a, modemDirection(ack.Body()))
			c.mu.Lock()
			l.sdp = ack.Body()
			c.mu.Unlock()
		}
	}
}

// reoffer takes the caller's new description of its stream and returns
// ours. The codec follows the offer (PCMU or PCMA, whichever it has, as
// at the start); the packet time stays ours; the remote address is the
// offer's until the caller's packets say otherwise (symmetric RTP).
func (md *modemMedia) reoffer(id string, o modemOffer, dir string) []byte {
	md.mu.Lock()
	defer md.mu.Unlock()
	changed := o.law != md.offer.law || o.pt != md.offer.pt || dir != md.dir
	if o.remote.Addr().IsUnspecified() {
		o.remote = md.remote // c=0.0.0.0: hold, the stream stays where it was
	} else {
		md.remote = o.remote
	}
	o.ptime = md.offer.ptime
	md.offer = o
	md.dir = dir
	if changed {
		md.version++
	}
	md.body = modemAnswerSDP(id, md.version, md.local, md.offer, md.dir)
	return md.body
}

// sdp is our current description of the stream.
func (md *modemMedia) sdp() []byte {
	md.mu.Lock()
	defer md.mu.Unlock()
	return md.body
}

// sending reports whether our direction lets us send (not on hold by
// the caller: recvonly or inactive).
func (md *modemMedia) sending() bool {
	return md.dir == "sendrecv" || md.dir == "sendonly"
}
