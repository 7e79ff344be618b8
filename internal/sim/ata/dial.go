package ata

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/isp-box/isp-box/internal/sim/phone"
	"github.com/isp-box/isp-box/softmodem"
)

// Outgoing calls: the modem's ATD becomes an INVITE through the registrar
// (or straight to a SIP URI); and the carrier both directions share.

// Dial places a call (phone.Line). number is a telephone number sent to
// the registrar as the Request-URI user (sip:88567682@registrar), or a SIP
// URI ("sip:user@127.0.0.1:5062", or "user@host:port") dialled directly,
// as the PAP2T's IP dialling does. Errors: phone.ErrNoDialtone when the
// line is not up or not registered, phone.ErrBusy (486, 600), ErrNoAnswer
// (408, 480, 487), ErrNoCarrier (anything else), or ctx's error.
func (l *Line) Dial(ctx context.Context, number string) (phone.Carrier, error) {
	if !l.running.Load() {
		return nil, fmt.Errorf("%w: line not running", phone.ErrNoDialtone)
	}
	target, domain, direct, err := l.target(number)
	if err != nil {
		return nil, err
	}
	if !direct && !l.Registered() {
		return nil, fmt.Errorf("%w: %s not registered", phone.ErrNoDialtone, l.cfg.Name)
	}
	c := &call{outgoing: true, peer: strings.TrimSpace(number), state: Dialing}
	l.mu.Lock()
	if l.cur != nil {
		l.mu.Unlock()
		return nil, fmt.Errorf("%w: line in use", phone.ErrBusy)
	}
	l.cur = c
	l.mu.Unlock()
	ok := false
	defer func() {
		if !ok {
			l.endCall(c, false)
		}
	}()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(l.life, cancel)
	defer stop()

	drainSocket(l.rtpConn)
	formats := offerFormats()
	if l.cfg.Softmodem != "" {
		formats = audioFormats()
	}
	offer := sdpDesc{SessID: uint64(randUint32()), SessVer: 1, Addr: l.rtpAddr.Addr(), Port: int(l.rtpAddr.Port()),
		Formats: formats, Ptime: sdpPtime, Dir: "sendrecv"}
	req := sip.NewRequest(sip.INVITE, target)
	from := &sip.FromHeader{DisplayName: l.cfg.DisplayName, Address: sip.Uri{Scheme: "sip", User: l.cfg.User, Host: domain.Host, Port: domain.Port}}
	from.Params.Add("tag", newTag())
	to := &sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: target.User, Host: target.Host, Port: target.Port}}
	callID := sip.CallIDHeader(newTag() + "@" + l.sipAddr.Addr().String())
	c.id = callID.Value()
	req.AppendHeader(from)
	req.AppendHeader(to)
	req.AppendHeader(&callID)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 101, MethodName: sip.INVITE})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.AppendHeader(sip.HeaderClone(&l.contact))
	req.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(inviteExpires)))
	l.decorate(req)
	req.AppendHeader(sip.NewHeader("Allow", allowMethods))
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	c.localSDP = offer.marshal()
	req.SetBody(c.localSDP)
	l.a.notify(l)
	l.log.Info("dialing", "number", c.peer, "to", target.String(), "call", c.id)

	dc, err := l.dua.WriteInvite(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("%w: INVITE: %w", phone.ErrNoCarrier, err)
	}
	l.mu.Lock()
	c.uac = dc
	l.mu.Unlock()
	if err := l.waitAnswer(ctx, c, dc); err != nil {
		return nil, err
	}
	ans, err := parseSDP(dc.InviteResponse.Body())
	var f format
	if err == nil {
		f, err = pickAnswer(ans, offer.Formats)
	}
	if err != nil {
		// RFC 3261 §13.2.2.4: the 2xx must be ACKed; then end the call.
		_ = dc.Ack(ctx)
		l.mu.Lock()
		c.state = Connected
		l.mu.Unlock()
		l.log.Info("unusable SDP answer", "call", c.id, "err", err)
		l.endCall(c, true)
		return nil, fmt.Errorf("%w: SDP answer: %w", phone.ErrNoCarrier, err)
	}
	c.payload, c.remote = f, ans.rtpAddr()
	if l.cfg.Softmodem != "" {
		k, err := l.connectAudio(ctx, c, dc, f)
		if err != nil {
			return nil, err
		}
		ok = true
		return k, nil
	}
	m := newMedia(l.rtpConn, c.remote, f.PT, l.a.opts.Speed, &l.stats, l.log)
	m.startRecv()
	// Connected before the ACK leaves: the far side may send a re-INVITE
	// the moment it has the ACK.
	l.mu.Lock()
	c.m, c.state = m, Connected
	l.mu.Unlock()
	if err := dc.Ack(ctx); err != nil {
		return nil, fmt.Errorf("%w: ACK: %w", phone.ErrNoCarrier, err)
	}
	m.startSend()
	ok = true
	l.log.Info("connected", "call", c.id, "rtp_to", c.remote.String(), "payload", f.Encoding)
	l.a.notify(l)
	return &carrier{l: l, c: c, m: m}, nil
}

// connectAudio runs the line's software modem on the answered call and
// waits for the modems to train: CONNECT at their rate, or NO CARRIER.
func (l *Line) connectAudio(ctx context.Context, c *call, dc *sipgo.DialogClientSession, f format) (phone.Carrier, error) {
	mod, _ := softmodem.ParseModulation(l.cfg.Softmodem) // checked by New
	a := newAudioMedia(l.rtpConn, c.remote, f, mod, &l.stats, l.log)
	a.start()
	l.mu.Lock()
	c.audio, c.state = a, Connected
	l.mu.Unlock()
	if err := dc.Ack(ctx); err != nil {
		l.endCall(c, true)
		return nil, fmt.Errorf("%w: ACK: %w", phone.ErrNoCarrier, err)
	}
	l.log.Info("answered; training", "call", c.id, "rtp_to", c.remote.String(), "payload", f.Encoding, "modulation", mod)
	if err := a.waitConnect(ctx.Done()); err != nil {
		l.log.Info("no carrier", "call", c.id, "err", err, "modem", a.modem.Stats())
		l.endCall(c, true)
		return nil, fmt.Errorf("%w: %w", phone.ErrNoCarrier, err)
	}
	st := a.modem.Stats()
	l.log.Info("connected", "call", c.id, "modulation", mod, "rate", st.Rate, "snr", st.SNR)
	l.a.notify(l)
	return &audioCarrier{l: l, c: c, a: a}, nil
}

// waitAnswer waits for the final response to the INVITE. sipgo sends
// CANCEL when ctx ends, but only after a provisional response arrived and
// then waits for the 487; the modem must not hang that long (ATH, S7), so
// waitAnswer returns at once and lets the dialog finish in the background,
// hanging up a 200 that still comes.
func (l *Line) waitAnswer(ctx context.Context, c *call, dc *sipgo.DialogClientSession) error {
	done := make(chan error, 1)
	go func() {
		err := dc.WaitAnswer(ctx, sipgo.AnswerOptions{
			Username: l.cfg.User, Password: l.cfg.Password,
			OnResponse: func(res *sip.Response) error {
				if res.StatusCode == sip.StatusRinging || res.StatusCode == sip.StatusSessionInProgress {
					l.log.Info("far end ringing", "call", c.id, "code", res.StatusCode)
				}
				return nil
			},
		})
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			l.log.Info("dial abandoned", "call", c.id)
			return ctx.Err()
		}
		return l.dialError(c, err)
	case <-ctx.Done():
		l.log.Info("dial abandoned", "call", c.id)
		go func() {
			if err := <-done; err == nil { // answered after all: ACK, then BYE
				bctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
				defer cancel()
				if dc.Ack(bctx) == nil {
					bye := sip.NewRequest(sip.BYE, l.remoteTarget(dc.InviteResponse.Contact(), dc.InviteRequest.Recipient))
					l.decorate(bye)
					_ = dc.WriteBye(bctx, bye)
				}
			}
		}()
		return ctx.Err()
	}
}

// pickAnswer finds the payload the answerer chose: the first of its
// formats that was in the offer (RFC 3264 §6.1 keeps the numbers).
func pickAnswer(ans *sdpDesc, offered []format) (format, error) {
	if ans.Port == 0 {
		return format{}, errSDPNoCodec
	}
	for _, a := range ans.Formats {
		for _, o := range offered {
			if a.PT == o.PT {
				return o, nil
			}
		}
	}
	return format{}, errSDPNoCodec
}

// dialError maps a failed INVITE to what the modem reports.
func (l *Line) dialError(c *call, err error) error {
	var code int
	var reason string
	var pe *sipgo.ErrDialogResponse
	var ve sipgo.ErrDialogResponse
	switch {
	case errors.As(err, &pe):
		code, reason = pe.Res.StatusCode, pe.Res.Reason
	case errors.As(err, &ve):
		code, reason = ve.Res.StatusCode, ve.Res.Reason
	default:
		l.log.Info("dial failed", "call", c.id, "err", err)
		return fmt.Errorf("%w: %w", phone.ErrNoCarrier, err)
	}
	l.log.Info("dial failed", "call", c.id, "code", code, "reason", reason)
	return fmt.Errorf("%w (SIP %d %s)", codeError(code), code, reason)
}

// codeError is the Hayes result a SIP final response turns into.
func codeError(code int) error {
	switch code {
	case sip.StatusBusyHere, 600: // 600 Busy Everywhere
		return phone.ErrBusy
	case sip.StatusRequestTimeout, sip.StatusTemporarilyUnavailable, sip.StatusRequestTerminated:
		return phone.ErrNoAnswer
	}
	return phone.ErrNoCarrier
}

// target turns what the modem dialled into a Request-URI and the domain
// for From. A number goes to the registrar; a SIP URI is dialled directly.
func (l *Line) target(number string) (target, domain sip.Uri, direct bool, err error) {
	number = strings.TrimSpace(number)
	if number == "" {
		return target, domain, false, fmt.Errorf("%w: empty number", phone.ErrNoCarrier)
	}
	if strings.HasPrefix(number, "sip:") || strings.Contains(number, "@") {
		s := number
		if !strings.HasPrefix(s, "sip:") {
			s = "sip:" + s
		}
		if err := sip.ParseUri(s, &target); err != nil {
			return target, domain, false, fmt.Errorf("%w: bad SIP URI %q: %w", phone.ErrNoCarrier, number, err)
		}
		domain = sip.Uri{Host: l.sipAddr.Addr().String(), Port: int(l.sipAddr.Port())}
		return target, domain, true, nil
	}
	if !l.cfg.Registrar.IsValid() {
		return target, domain, false, fmt.Errorf("%w: %s has no registrar to route %q", phone.ErrNoDialtone, l.cfg.Name, number)
	}
	domain = l.registrarURI()
	target = sip.Uri{Scheme: "sip", User: number, Host: domain.Host, Port: domain.Port}
	return target, domain, false, nil
}

// registrarURI is sip:host[:port] of the registrar, port omitted when 5060
// as the PAP2T writes its "Proxy" setting.
func (l *Line) registrarURI() sip.Uri {
	u := sip.Uri{Scheme: "sip", Host: l.cfg.Registrar.Addr().Unmap().String()}
	if p := int(l.cfg.Registrar.Port()); p != 5060 && p != 0 {
		u.Port = p
	}
	return u
}

func newTag() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// carrier is the phone.Carrier of an answered call.
type carrier struct {
	l *Line
	c *call
	m *media
}

var _ phone.Carrier = (*carrier)(nil)

func (k *carrier) Read(p []byte) (int, error)  { return k.m.Read(p) }
func (k *carrier) Write(p []byte) (int, error) { return k.m.Write(p) }
func (k *carrier) Speed() int                  { return k.m.speed }

// Close hangs up: BYE to the far end, unless it hung up first.
func (k *carrier) Close() error {
	k.l.endCall(k.c, true)
	return nil
}
