package pbx

import (
	"hash/fnv"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// statelessReply answers one request without a transaction.
type statelessReply struct {
	s     *Server
	conn  net.PacketConn
	req   *sip.Request
	src   netip.AddrPort
	inLen int
}

// slTag is the To-tag of a stateless response: the same for every
// retransmission of the request (RFC 3261 §8.2.6.2), as Kamailio's sl
// module derives it.
func slTag(req *sip.Request) string {
	h := fnv.New64a()
	h.Write([]byte(req.CallID().Value()))
	if t, ok := req.From().Params.Get("tag"); ok {
		h.Write([]byte(t))
	}
	if b, ok := req.Via().Params.Get("branch"); ok {
		h.Write([]byte(b))
	}
	return statelessTagPrefix + strconv.FormatUint(h.Sum64()&0x7fffffff, 36)
}

// respond sends code statelessly with the headers hdrs. Any other header
// the request warrants (see optional) goes in only while the response
// stays no larger than the request; a response that would still be
// larger is not sent at all: it would make the box an amplifier for a
// forged source. Server is never added: it would make the size, and so
// the headers, depend on the request's length.
func (r *statelessReply) respond(code int, reason string, hdrs ...sip.Header) {
	s, req := r.s, r.req
	if _, ok := req.To().Params.Get("tag"); !ok {
		req.To().Params.Add("tag", slTag(req))
	}
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	s.routeResponse(req, res)
	out := compact(res)
	if len(out) > r.inLen {
		s.edge.noAmplify.Add(1)
		// an admin whose device never gets an answer must be able to see why
		s.log.Info("request from a stranger not answered: the answer would be larger than the request",
			"src", r.src, "method", string(req.Method), "code", code, "in", r.inLen, "out", len(out))
		return
	}
	if code == 200 || code == 405 { // RFC 3261 §11.2, §21.4.6
		res.AppendHeader(sip.NewHeader("Allow", allowMethods))
		if o := compact(res); len(o) <= r.inLen {
			out = o
		} else if code == 405 {
			s.edge.noAmplify.Add(1)
			return
		}
	}
	dest, err := netip.ParseAddrPort(res.Destination())
	if err != nil {
		dest = r.src
	}
	if _, err := r.conn.WriteTo([]byte(out), net.UDPAddrFromAddrPort(dest)); err != nil {
		s.log.Debug("stateless response not sent", "code", code, "dest", dest, "err", err)
		return
	}
	s.edge.stateless.Add(1)
	s.edge.statelessIn.Add(uint64(r.inLen))
	s.edge.statelessOut.Add(uint64(len(out)))
}

// compact writes a bodiless response with the compact header names of
// RFC 3261 §7.3.3, which every implementation must accept, and without
// Content-Length, which UDP does not need (§20.14, §18.3): what the box
// sends to a stranger stays as small as the protocol allows.
func compact(res *sip.Response) string {
	var b strings.Builder
	b.Grow(512)
	b.WriteString("SIP/2.0 ")
	b.WriteString(strconv.Itoa(res.StatusCode))
	b.WriteByte(' ')
	b.WriteString(res.Reason)
	b.WriteString("\r\n")
	for _, h := range res.Headers() {
		name := h.Name()
		switch strings.ToLower(name) {
		case "via":
			name = "v"
		case "from":
			name = "f"
		case "to":
			name = "t"
		case "call-id":
			name = "i"
		case "content-length":
			continue
		}
		b.WriteString(name)
		b.WriteString(": ")
		b.WriteString(h.Value())
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

// txReply answers through a server transaction.
func (s *Server) txReply(tx sip.ServerTransaction, req *sip.Request) func(int, string, ...sip.Header) {
	return func(code int, reason string, hdrs ...sip.Header) {
		s.respond(tx, req, code, reason, nil, hdrs...)
	}
}
