package pbx

import (
	"bytes"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// Checks of a parsed request that the SIP library lets through but RFC
// 3261 does not: the entry answers them (or drops and counts them) before
// any state is made.

// keepAlive reports whether a datagram is a keep-alive rather than a
// message: CRLFs (RFC 5626 §3.5.1), or a few NULs, which some NATed
// phones send to hold their binding open. A longer run of NULs is not.
func keepAlive(data []byte) bool {
	if len(bytes.Trim(data, "\r\n \t")) == 0 {
		return true
	}
	return len(data) <= 8 && len(bytes.Trim(data, "\x00")) == 0
}

// nulInHead reports a NUL in the start line or the headers: no header
// grammar of RFC 3261 §25 admits one (a body may carry any octet).
func nulInHead(data []byte) bool {
	head := data
	if i := bytes.Index(data, []byte("\r\n\r\n")); i >= 0 {
		head = data[:i]
	}
	return bytes.IndexByte(head, 0) >= 0
}

// singleHeaders are the headers a request carries once (RFC 3261 §7.3.1:
// only headers defined as comma-separated lists may repeat), by full and
// compact name (§7.3.3). Two of them make the request ambiguous.
var singleHeaders = [...][2]string{
	{"call-id", "i"}, {"cseq", ""}, {"from", "f"}, {"to", "t"},
	{"content-length", "l"}, {"content-type", "c"}, {"max-forwards", ""},
}

// badRequest says why req must be answered 400 (§21.4.1), or "". One
// pass over the headers: it runs for every request at the entry, and a
// lookup per name (sip's GetHeaders) walks them all each time.
func badRequest(req *sip.Request) string {
	var n [len(singleHeaders)]int
	viaPort := false
	for _, h := range req.Headers() {
		name := sip.HeaderToLower(h.Name())
		if name == "via" {
			if v, ok := h.(*sip.ViaHeader); ok && (v.Port < 0 || v.Port > 65535) {
				viaPort = true
			}
			continue
		}
		for i, sh := range singleHeaders {
			if name == sh[0] || (sh[1] != "" && name == sh[1]) {
				n[i]++
				break
			}
		}
	}
	for i, sh := range singleHeaders {
		if n[i] > 1 {
			return "more than one " + sh[0]
		}
	}
	if viaPort {
		return "Via port out of range"
	}
	return ""
}

// supportedTags are the option tags this UAS understands (RFC 3261 §19.2):
// session timers (RFC 4028). 100rel (RFC 3262) is not among them.
var supportedTags = []string{"timer"}

// unsupportedRequire lists the option tags of req's Require that this UAS
// does not understand: §8.2.2.3 answers them 420 with Unsupported. ACK and
// CANCEL are exempt (they have no response of their own to carry a 420).
func unsupportedRequire(req *sip.Request) []string {
	if req.Method == sip.ACK || req.Method == sip.CANCEL {
		return nil
	}
	var out []string
	for _, h := range req.GetHeaders("require") {
		for _, tag := range strings.Split(h.Value(), ",") {
			tag = strings.TrimSpace(tag)
			if tag == "" {
				continue
			}
			known := false
			for _, s := range supportedTags {
				if strings.EqualFold(tag, s) {
					known = true
				}
			}
			if !known {
				out = append(out, tag)
			}
		}
	}
	return out
}
