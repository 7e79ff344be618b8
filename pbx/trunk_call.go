package pbx

import (
	"github.com/emiago/sipgo/sip"
)

// trunkFrom makes a call to a provider peer come from the account the
// provider knows: fromuser and fromdomain (chan_sip's From for a peer
// that sets them) instead of the caller's name and our address.
// Precondition: lg is new (no request sent yet).
func trunkFrom(lg *leg, p Peer) {
	if p.FromUser != "" {
		lg.local.User = p.FromUser
	}
	if p.FromDomain != "" {
		lg.local.Host, lg.local.Port = p.FromDomain, 0
	}
}

// authRetry answers a provider's 401/407 to our INVITE (RFC 3261 §22.2,
// §8.1.3.5): the same request with the next CSeq and credentials from the
// peer's defaultuser (else fromuser, else its name) and secret. nil when
// the peer has no secret or the challenge cannot be answered.
func (c *call) authRetry(lg *leg, req *sip.Request, res *sip.Response, p Peer) *sip.Request {
	if p.Secret == "" {
		return nil
	}
	hdr, auth := "WWW-Authenticate", "Authorization"
	if res.StatusCode == 407 {
		hdr, auth = "Proxy-Authenticate", "Proxy-Authorization"
	}
	var vals []string
	for _, h := range res.GetHeaders(hdr) {
		vals = append(vals, h.Value())
	}
	ch, err := pickChallenge(vals)
	if err != nil {
		c.s.log.Warn("provider challenge not answerable", "call", c.id, "peer", p.Name, "err", err)
		return nil
	}
	user := p.Username
	if user == "" {
		user = p.FromUser
	}
	if user == "" {
		user = p.Name
	}
	c.mu.Lock()
	n := c.s.newInDialog(lg, sip.INVITE, req.Body(), "")
	c.mu.Unlock()
	// The new request keeps what newCalleeLeg added to the first one.
	for _, name := range []string{"Content-Type", "Max-Forwards", "Allow"} {
		if h := req.GetHeader(name); h != nil {
			n.RemoveHeader(name)
			n.AppendHeader(sip.NewHeader(name, h.Value()))
		}
	}
	if f := req.From(); f != nil {
		n.From().DisplayName = f.DisplayName
	}
	n.AppendHeader(sip.NewHeader(auth, ch.authorization(user, p.Secret, "INVITE", req.Recipient.String(), 1)))
	return n
}
