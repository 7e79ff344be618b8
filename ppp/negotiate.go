package ppp

import (
	"encoding/binary"
	"iter"
	"slices"

	"github.com/isp-box/isp-box/ppp/chap"
	"github.com/isp-box/isp-box/ppp/cp"
	"github.com/isp-box/isp-box/ppp/hdlc"
	"github.com/isp-box/isp-box/ppp/lcp"
)

// Option negotiation that the server and client roles do alike. What
// differs (the authenticator's and the authenticatee's Authentication-
// Protocol, IPCP address assignment and request) stays in server.go and
// client.go.

// lcpAsk says which of the LCP options both roles request are still asked
// for; RFC 1661 §5.4: a rejected option is not asked for again.
type lcpAsk struct{ accm, magic, pfc, acfc bool }

// askAll asks for all four, as both roles start.
var askAll = lcpAsk{accm: true, magic: true, pfc: true, acfc: true}

// appendTo appends our ACCM, then mid (the server's Authentication-
// Protocol), then Magic-Number, PFC and ACFC: pppd's order.
func (a lcpAsk) appendTo(o cp.Options, s *session, mid ...cp.Option) cp.Options {
	if a.accm {
		o = append(o, lcp.ACCM(s.cfg.AsyncMap).Encode())
	}
	o = append(o, mid...)
	if a.magic {
		o = append(o, lcp.Magic(s.magic).Encode())
	}
	if a.pfc {
		o = append(o, lcp.PFC{}.Encode())
	}
	if a.acfc {
		o = append(o, lcp.ACFC{}.Encode())
	}
	return o
}

// rejected stops asking for a rejected option of the four. Without a
// Magic-Number there is no loop detection (RFC 1661 §6.4), so ours is 0.
func (a *lcpAsk) rejected(s *session, typ uint8) {
	switch typ {
	case lcp.OptACCM:
		a.accm = false
	case lcp.OptMagic:
		a.magic = false
		s.magic = 0
	case lcp.OptPFC:
		a.pfc = false
	case lcp.OptACFC:
		a.acfc = false
	}
}

// checkLCP judges the peer's LCP Configure-Request as pppd's lcp_reqci does
// for MRU (Nak'd with minMRU when below it), ACCM, Magic-Number, PFC and
// ACFC; other judges every other decodable option, returning options to
// Nak with or reject=true. On Ack it applies the peer's framing to our
// sending side and returns ack=true.
func checkLCP(s *session, opts cp.Options, rejectOnly bool, minMRU int,
	other func(lcp.Option) (nak cp.Options, reject bool)) (code cp.Code, reply cp.Options, ack bool) {
	if looped, code, reply := loopCheck(s, opts); looped {
		return code, reply, false
	}
	mru, accm, pfc, acfc := lcp.DefaultMRU, hdlc.DefaultACCM, false, false
	code, reply, ack = judge(opts, rejectOnly, lcp.Decode, func(d lcp.Option) (cp.Options, bool) {
		switch v := d.(type) {
		case lcp.MRU:
			if int(v) < minMRU {
				return cp.Options{lcp.MRU(minMRU).Encode()}, false
			}
			mru = int(v)
		case lcp.ACCM:
			accm = uint32(v)
		case lcp.Magic:
			// RFC 1661 §6.4: zero is not a magic number (our own was
			// caught by loopCheck).
			if v == 0 {
				return cp.Options{lcp.Magic(newMagic()).Encode()}, false
			}
		case lcp.PFC:
			pfc = true
		case lcp.ACFC:
			acfc = true
		default:
			return other(d)
		}
		return nil, false
	})
	if ack {
		s.peerMRU, s.peerACCM, s.txPFC, s.txACFC = mru, accm, pfc, acfc
	}
	return code, reply, ack
}

// judge answers a Configure-Request (RFC 1661 §5.2-5.4): each option is
// typed by decode and judged by check, which returns the options to Nak it
// with, or reject=true; an option that does not decode (a known type of the
// wrong size) is rejected. verdict makes the answer.
func judge[T any](opts cp.Options, rejectOnly bool, decode func(cp.Option) (T, error),
	check func(T) (nak cp.Options, reject bool)) (code cp.Code, reply cp.Options, ack bool) {
	var rej, nak cp.Options
	for _, o := range opts {
		d, err := decode(o)
		if err != nil {
			rej = append(rej, o)
			continue
		}
		n, reject := check(d)
		if reject {
			rej = append(rej, o)
			continue
		}
		nak = append(nak, n...)
	}
	return verdict(opts, rej, nak, rejectOnly)
}

// decoded yields the options of a Configure-Nak that decode; one of the
// wrong size is ignored, as pppd's lcp_nakci and ipcp_nakci do.
func decoded[T any](opts cp.Options, decode func(cp.Option) (T, error)) iter.Seq[T] {
	return func(yield func(T) bool) {
		for _, o := range opts {
			if d, err := decode(o); err == nil && !yield(d) {
				return
			}
		}
	}
}

// verdict answers a Configure-Request from the options a check rejected
// and those it would Nak: Reject wins over Nak (RFC 1661 §5.4), and once
// Max-Failure Naks have gone (rejectOnly) the options we would Nak are
// Rejected instead (§4.6). ack is true when the request stands as sent.
func verdict(opts, rej, nak cp.Options, rejectOnly bool) (code cp.Code, reply cp.Options, ack bool) {
	if len(rej) > 0 {
		return cp.ConfRej, rej, false
	}
	if len(nak) > 0 {
		if rejectOnly {
			return cp.ConfRej, nakToRej(opts, nak), false
		}
		return cp.ConfNak, nak, false
	}
	return cp.ConfAck, opts, true
}

// nakToRej turns the options we would Nak into Rejects of the peer's own
// options (RFC 1661 §4.6 Max-Failure).
func nakToRej(opts, nak cp.Options) cp.Options {
	var rej cp.Options
	for _, o := range opts {
		if slices.ContainsFunc(nak, func(n cp.Option) bool { return n.Type == o.Type }) {
			rej = append(rej, o)
		}
	}
	return rej
}

// loopCheck handles a Configure-Request carrying our own Magic-Number: on a
// line that echoes (a tty not yet in raw mode, a modem in command mode) it
// is our own request coming back. RFC 1661 §6.4: Nak the magic with a new
// value and judge nothing else, so that the echo of our answer cannot be
// taken for the peer rejecting our options. Repeated loops end the link.
func loopCheck(s *session, opts cp.Options) (bool, cp.Code, cp.Options) {
	for _, o := range opts {
		if o.Type == lcp.OptMagic && len(o.Data) == 4 && s.magic != 0 && binary.BigEndian.Uint32(o.Data) == s.magic {
			s.loops++
			s.log.Debug("our own magic number received: line looped back?", "count", s.loops)
			if s.loops > 10 { // pppd lcp_loopbackfail
				s.closeSoon(CauseLoopback, "Serial line is looped back")
			}
			return true, cp.ConfNak, cp.Options{lcp.Magic(newMagic()).Encode()}
		}
	}
	return false, 0, nil
}

// authOption is the Authentication-Protocol option (RFC 1661 §6.2) for p.
func authOption(p AuthProto) lcp.Auth {
	switch p {
	case AuthPAP:
		return lcp.Auth{Protocol: lcp.ProtoPAP}
	case AuthCHAP:
		return lcp.Auth{Protocol: lcp.ProtoCHAP, Data: []byte{chap.MD5}}
	case AuthMSCHAP:
		return lcp.Auth{Protocol: lcp.ProtoCHAP, Data: []byte{chap.MSCHAPv1}}
	default:
		return lcp.Auth{Protocol: lcp.ProtoCHAP, Data: []byte{chap.MSCHAPv2}}
	}
}

// authProtoOf names the protocol an Authentication-Protocol option asks for.
func authProtoOf(a lcp.Auth) (AuthProto, bool) {
	switch {
	case a.Protocol == lcp.ProtoPAP && len(a.Data) == 0:
		return AuthPAP, true
	case a.Algorithm() == chap.MD5:
		return AuthCHAP, true
	case a.Algorithm() == chap.MSCHAPv1:
		return AuthMSCHAP, true
	case a.Algorithm() == chap.MSCHAPv2:
		return AuthMSCHAPv2, true
	}
	return "", false
}
