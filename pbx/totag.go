package pbx

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"strconv"

	"github.com/emiago/sipgo/sip"
)

// A new call's To-tag goes on the INVITE's bytes at the edge, before
// sipgo's transaction layer parses them, and not on the parsed request
// in the handler: sipgo's INVITE server transaction reads that request
// from goroutines of its own (the 100 Trying it sends 200 ms after the
// transaction began, the 487 it builds on CANCEL), and a handler that
// starts late (many INVITEs at once on a loaded machine) would write the
// request while they read it. With the tag in place from the start,
// every response to the INVITE, sipgo's 487 included, carries it as
// RFC 3261 §8.2.6.2 asks, and nothing writes the request afterwards.

// tagKey keys callTag, so that a To-tag that a request carries can be
// told from the one the edge gave this very INVITE.
var tagKey = func() (k [16]byte) { _, _ = rand.Read(k[:]); return }()

// callTag is the To-tag the edge gives a new INVITE: a keyed hash of its
// Call-ID, From-tag and top Via branch. The handler recomputes it to tell
// a new call (tag == callTag) from a re-INVITE, whose To-tag was made for
// the dialog's first INVITE and so for another branch.
func callTag(req *sip.Request) string {
	h := sha256.New()
	h.Write(tagKey[:])
	h.Write([]byte(req.CallID().Value()))
	h.Write([]byte{0})
	if t, ok := req.From().Params.Get("tag"); ok {
		h.Write([]byte(t))
	}
	h.Write([]byte{0})
	if v := req.Via(); v != nil {
		if b, ok := v.Params.Get("branch"); ok {
			h.Write([]byte(b))
		}
	}
	sum := h.Sum(nil)
	return "c" + strconv.FormatUint(binary.BigEndian.Uint64(sum[:8]), 36)
}

// taggable reports whether withToTag may tag req's bytes: its To is a
// SIP URI with a host, which reads the same with a parameter after it.
// Any other To is left for the handler to tag (sipgo reads "x:" as a URI
// but not "x:;tag=1").
func taggable(req *sip.Request) bool {
	a := req.To().Address
	return (a.Scheme == "sip" || a.Scheme == "sips") && a.Host != ""
}

// withToTag returns a copy of the SIP message msg with ";tag=" + tag
// appended to its To header (full or compact form, folded or not), or
// nil when it has no To header in its head. The parameter goes after the
// header's last non-blank octet: after the closing '>' of a name-addr,
// or after an addr-spec, where a parameter is a header parameter too
// (RFC 3261 §20.10).
func withToTag(msg []byte, tag string) []byte {
	// Lines end in CRLF only, as sipgo's parser reads them (RFC 3261 §7):
	// a bare LF is part of a line.
	head := msg
	if i := bytes.Index(msg, []byte("\r\n\r\n")); i >= 0 {
		head = msg[:i+2]
	}
	at := -1 // where the tag goes
	inTo := false
	for off := 0; off < len(head); {
		end := bytes.Index(head[off:], []byte("\r\n"))
		if end < 0 {
			end = len(head) - off
		}
		line := head[off : off+end]
		if inTo || off > 0 && isToLine(line) {
			if bytes.ContainsFunc(line, func(r rune) bool { return r < ' ' && r != '\t' }) {
				return nil // a control octet in the To header: leave it to sipgo as it is
			}
		}
		switch {
		case off == 0: // the request line
		case len(line) > 0 && (line[0] == ' ' || line[0] == '\t'):
			if inTo { // a folded continuation of the To header
				if t := bytes.TrimRight(line, " \t"); len(t) > 0 {
					at = off + len(t)
				}
			}
		default:
			inTo = isToLine(line)
			if inTo {
				if at >= 0 {
					return nil // two To headers: not ours to pick
				}
				at = off + len(bytes.TrimRight(line, " \t"))
			}
		}
		off += end + 2
	}
	if at < 0 {
		return nil
	}
	out := make([]byte, 0, len(msg)+len(";tag=")+len(tag))
	out = append(out, msg[:at]...)
	out = append(out, ";tag="...)
	out = append(out, tag...)
	return append(out, msg[at:]...)
}

// isToLine reports whether a header line starts the To header.
func isToLine(line []byte) bool {
	name, _, ok := bytes.Cut(line, []byte(":"))
	if !ok {
		return false
	}
	name = bytes.TrimRight(name, " \t")
	return bytes.EqualFold(name, []byte("To")) || bytes.EqualFold(name, []byte("t"))
}
