package ata

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// registration is the state RFC 3261 §10.2.4 asks a UA to keep across
// refreshes: the same Call-ID, an increasing CSeq.
type registration struct {
	callID  string
	fromTag string
	cseq    uint32
	expires time.Duration // what we ask for; raised by 423 Min-Expires
}

// refreshAfter is when to renew a registration the registrar granted for
// `granted`. The PAP2T "renews registration shortly before the current
// registration expired" (Sipura SPA admin guide, "Register Expires"); the
// exact margin is not documented, so: 1/8 of the lifetime, at most 30 s
// (3600 s → 3570 s, 120 s → 105 s, 2 s → 1.75 s).
func refreshAfter(granted time.Duration) time.Duration {
	return granted - min(granted/8, 30*time.Second)
}

// clampExpires applies the PAP2T's "Reg Min Expires"/"Reg Max Expires".
func clampExpires(d time.Duration) time.Duration {
	return min(max(d, regMinExpires), regMaxExpires)
}

// registerLoop keeps the line registered until ctx ends, then removes the
// binding (expires=0).
func (l *Line) registerLoop(ctx context.Context) {
	if !l.cfg.Registrar.IsValid() {
		return
	}
	r := &registration{
		callID:  newTag() + "@" + l.sipAddr.Addr().String(),
		fromTag: newTag(),
		cseq:    1,
		expires: l.cfg.Expires,
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			if l.Registered() {
				uctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				if _, err := l.register(uctx, r, 0); err != nil {
					l.log.Info("unregister failed", "err", err)
				} else {
					l.log.Info("unregistered")
				}
				cancel()
				l.setRegistered(false, 0, "")
			}
			return
		case <-timer.C:
		}
		granted, err := l.register(ctx, r, r.expires)
		if ctx.Err() != nil {
			continue
		}
		if err != nil {
			l.log.Warn("registration failed", "registrar", l.cfg.Registrar.String(), "err", err, "retry_in", l.cfg.RetryInterval)
			l.setRegistered(false, 0, err.Error())
			timer.Reset(l.cfg.RetryInterval)
			continue
		}
		l.setRegistered(true, granted, "")
		timer.Reset(refreshAfter(granted))
	}
}

func (l *Line) setRegistered(ok bool, granted time.Duration, why string) {
	l.mu.Lock()
	changed := l.registered != ok || l.regErr != why
	first := ok && !l.registered
	l.registered, l.granted, l.regErr = ok, granted, why
	l.mu.Unlock()
	if first {
		l.log.Info("registered", "registrar", l.cfg.Registrar.String(), "expires", granted)
	} else if ok {
		l.log.Debug("registration refreshed", "expires", granted)
	}
	if changed {
		l.a.notify(l)
	}
}

// register sends one REGISTER (answering a 401/407 challenge, and a 423
// with the Min-Expires asked for) and returns the lifetime granted.
func (l *Line) register(ctx context.Context, r *registration, expires time.Duration) (time.Duration, error) {
	for range 3 {
		req := l.newRegister(r, expires)
		tctx, cancel := context.WithTimeout(ctx, 40*time.Second)
		res, err := l.cli.Do(tctx, req)
		if err == nil && (res.StatusCode == sip.StatusUnauthorized || res.StatusCode == sip.StatusProxyAuthRequired) {
			// RFC 3261 §22.2: retry with credentials; sipgo raises CSeq.
			res, err = l.cli.DoDigestAuth(tctx, req, res, sipgo.DigestAuth{Username: l.cfg.User, Password: l.cfg.Password})
		}
		cancel()
		r.cseq = req.CSeq().SeqNo + 1
		if err != nil {
			return 0, fmt.Errorf("REGISTER: %w", err)
		}
		switch {
		case res.StatusCode == sip.StatusIntervalToBrief:
			// RFC 3261 §10.2.8: retry with at least Min-Expires.
			h := res.GetHeader("Min-Expires")
			if h == nil {
				return 0, fmt.Errorf("registrar answered 423 without Min-Expires")
			}
			n, err := strconv.Atoi(strings.TrimSpace(h.Value()))
			if err != nil || time.Duration(n)*time.Second <= expires {
				return 0, fmt.Errorf("registrar answered 423 with Min-Expires %q", h.Value())
			}
			expires = time.Duration(n) * time.Second
			r.expires = expires
			continue
		case res.IsSuccess():
			if expires == 0 {
				return 0, nil
			}
			return clampExpires(l.grantedExpires(res, expires)), nil
		default:
			return 0, fmt.Errorf("registrar answered %d %s", res.StatusCode, res.Reason)
		}
	}
	return 0, fmt.Errorf("registrar kept answering 423")
}

// newRegister builds a REGISTER the way the PAP2T does: Request-URI is the
// proxy, To and From the AOR user@proxy, the lifetime as a Contact param.
func (l *Line) newRegister(r *registration, expires time.Duration) *sip.Request {
	u := l.registrarURI()
	req := sip.NewRequest(sip.REGISTER, u)
	aor := sip.Uri{Scheme: "sip", User: l.cfg.User, Host: u.Host, Port: u.Port}
	from := &sip.FromHeader{DisplayName: l.cfg.DisplayName, Address: aor}
	from.Params.Add("tag", r.fromTag)
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{DisplayName: l.cfg.DisplayName, Address: aor})
	callID := sip.CallIDHeader(r.callID)
	req.AppendHeader(&callID)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: r.cseq, MethodName: sip.REGISTER})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	ct := l.contact.Clone()
	ct.Params.Add("expires", strconv.Itoa(int(expires/time.Second)))
	req.AppendHeader(ct)
	l.decorate(req)
	req.AppendHeader(sip.NewHeader("Allow", allowMethods))
	return req
}

// grantedExpires reads the lifetime from a 2xx to REGISTER: our Contact's
// expires param, else the Expires header, else what we asked (§10.2.4).
func (l *Line) grantedExpires(res *sip.Response, asked time.Duration) time.Duration {
	for _, h := range res.GetHeaders("Contact") {
		ct, ok := h.(*sip.ContactHeader)
		if !ok || ct.Address.User != l.contact.Address.User || ct.Address.Port != l.contact.Address.Port ||
			ct.Address.Host != l.contact.Address.Host {
			continue
		}
		if v, ok := ct.Params.Get("expires"); ok {
			if n, err := strconv.Atoi(v); err == nil && n >= 0 {
				return time.Duration(n) * time.Second
			}
		}
	}
	if h := res.GetHeader("Expires"); h != nil {
		if n, err := strconv.Atoi(strings.TrimSpace(h.Value())); err == nil && n >= 0 {
			return time.Duration(n) * time.Second
		}
	}
	return asked
}
