package pbx

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// noBuild makes sipgo send a request exactly as we built it.
func noBuild(*sipgo.Client, *sip.Request) error { return nil }

func newTag() string { return sip.GenerateTagN(16) }

func newCallID(host netip.Addr) string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:]) + "@" + host.String()
}

func (s *Server) hostPort(remote netip.Addr) (string, int) {
	return s.localIP(remote).String(), int(s.addr.Port())
}

// newVia is our Via for a request to dest (RFC 3261 §8.1.1.7, RFC 3581 rport).
func (s *Server) newVia(dest netip.AddrPort) *sip.ViaHeader {
	h, p := s.hostPort(dest.Addr())
	v := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP", Host: h, Port: p, Params: sip.NewParams()}
	v.Params.Add("branch", sip.GenerateBranchN(16))
	v.Params.Add("rport", "")
	return v
}

func (s *Server) contactFor(user string, dest netip.AddrPort) *sip.ContactHeader {
	h, p := s.hostPort(dest.Addr())
	return &sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: user, Host: h, Port: p}}
}

// finishRequest adds what every request of ours carries and pins the
// source socket: requests leave from the listening port, so an ATA's NAT
// and "only from the proxy" rules hold (pbx.md §4, outbound source port).
func (s *Server) finishRequest(req *sip.Request, dest netip.AddrPort, body []byte, ctype string) {
	req.AppendHeader(sip.NewHeader("User-Agent", s.general().UserAgent))
	if body != nil {
		if ctype == "" {
			ctype = "application/sdp"
		}
		ct := sip.ContentTypeHeader(ctype)
		req.AppendHeader(&ct)
	}
	req.SetBody(body)
	req.SetTransport("UDP")
	req.SetDestination(dest.String())
	req.Laddr = s.laddr
}

// newOutOfDialog builds a request such as a qualify OPTIONS.
func (s *Server) newOutOfDialog(method sip.RequestMethod, uri string, dest netip.AddrPort, _ string) (*sip.Request, error) {
	var ru sip.Uri
	if err := sip.ParseUri(uri, &ru); err != nil {
		return nil, fmt.Errorf("pbx: contact %q: %w", uri, err)
	}
	req := sip.NewRequest(method, ru)
	req.AppendHeader(s.newVia(dest))
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	h, _ := s.hostPort(dest.Addr())
	from := &sip.FromHeader{DisplayName: "asterisk", Address: sip.Uri{Scheme: "sip", User: "asterisk", Host: h}, Params: sip.NewParams()}
	from.Params.Add("tag", newTag())
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: ru.User, Host: ru.Host, Port: ru.Port}})
	cid := sip.CallIDHeader(newCallID(s.localIP(dest.Addr())))
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 102, MethodName: method})
	req.AppendHeader(s.contactFor("asterisk", dest))
	req.AppendHeader(sip.NewHeader("Accept", "application/sdp"))
	s.finishRequest(req, dest, nil, "")
	return req, nil
}

// newInDialog builds a request on leg l (RFC 3261 §12.2.1.1). It
// increments the leg's CSeq except for ACK. The caller holds c.mu.
func (s *Server) newInDialog(l *leg, method sip.RequestMethod, body []byte, ctype string) *sip.Request {
	req := sip.NewRequest(method, l.target)
	req.AppendHeader(s.newVia(l.dest))
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	from := &sip.FromHeader{Address: l.local, Params: sip.NewParams()}
	from.Params.Add("tag", l.localTag)
	req.AppendHeader(from)
	to := &sip.ToHeader{Address: l.remote, Params: sip.NewParams()}
	if l.remoteTag != "" {
		to.Params.Add("tag", l.remoteTag)
	}
	req.AppendHeader(to)
	cid := sip.CallIDHeader(l.callID)
	req.AppendHeader(&cid)
	seq := l.inviteSeq
	if method != sip.ACK {
		l.cseq++
		seq = l.cseq
	}
	if method == sip.INVITE {
		l.inviteSeq = seq
	}
	req.AppendHeader(&sip.CSeqHeader{SeqNo: seq, MethodName: method})
	if method == sip.INVITE || method == sip.UPDATE {
		req.AppendHeader(s.contactFor(l.local.User, l.dest))
	}
	s.finishRequest(req, l.dest, body, ctype)
	return req
}

// sendCancel CANCELs an INVITE we sent (RFC 3261 §9.1: same Request-URI,
// Call-ID, From, To, CSeq number and top Via).
func (s *Server) sendCancel(inv *sip.Request) {
	req := sip.NewRequest(sip.CANCEL, inv.Recipient)
	req.AppendHeader(inv.Via().Clone())
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.AppendHeader(sip.HeaderClone(inv.From()))
	req.AppendHeader(sip.HeaderClone(inv.To()))
	req.AppendHeader(sip.HeaderClone(inv.CallID()))
	req.AppendHeader(&sip.CSeqHeader{SeqNo: inv.CSeq().SeqNo, MethodName: sip.CANCEL})
	dest, _ := netip.ParseAddrPort(inv.Destination())
	s.finishRequest(req, dest, nil, "")
	s.doRequest(req)
}

// doRequest sends a non-INVITE request now and waits for its final
// response in the background, so that the transaction retransmits as it
// should; when the box stops it stops waiting.
func (s *Server) doRequest(req *sip.Request) {
	tx, err := s.cli.TransactionRequest(context.Background(), req, noBuild)
	if err != nil {
		s.log.Debug("sending request", "method", req.Method, "err", err)
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer tx.Terminate()
		t := time.NewTimer(64 * sip.T1)
		defer t.Stop()
		for {
			select {
			case res := <-tx.Responses():
				if !res.IsProvisional() {
					return
				}
			case <-tx.Done():
				return
			case <-t.C:
				return
			case <-s.runCtx.Done():
				return
			}
		}
	}()
}

// roundTrip sends a request and returns its final response. For INVITE
// the transaction is returned so that the caller terminates it after the
// ACK; sipgo ACKs non-2xx itself.
func (s *Server) roundTrip(req *sip.Request) (*sip.Response, sip.ClientTransaction, error) {
	return s.roundTripWithin(req, 64*sip.T1)
}

// roundTripWithin is roundTrip giving up after d.
func (s *Server) roundTripWithin(req *sip.Request, d time.Duration) (*sip.Response, sip.ClientTransaction, error) {
	ctx, cancel := context.WithTimeout(s.runCtx, d)
	defer cancel()
	tx, err := s.cli.TransactionRequest(ctx, req, noBuild)
	if err != nil {
		return nil, nil, err
	}
	for {
		select {
		case res := <-tx.Responses():
			if res.IsProvisional() {
				continue
			}
			return res, tx, nil
		case <-tx.Done():
			tx.Terminate()
			return nil, nil, fmt.Errorf("pbx: %s: %w", req.Method, tx.Err())
		case <-ctx.Done():
			tx.Terminate()
			return nil, nil, ctx.Err()
		}
	}
}

func atoiOr(s string, def int) int {
	if n, err := strconv.Atoi(s); err == nil {
		return n
	}
	return def
}
