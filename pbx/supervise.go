package pbx

import (
	"fmt"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// superviseTick is how often an answered call checks its dialogs, its
// modem line and its media.
const superviseTick = time.Second

// defaultLineIdleGrace is how long a call may stay up while the modem line
// of one of its peers carries no call (no carrier, no session).
const defaultLineIdleGrace = 30 * time.Second

var sideNames = [2]string{"caller", "callee"}

// supervise runs while the call is up: it refreshes or probes each dialog
// when due (RFC 4028 §10), and ends the call with a reason when a dialog
// is gone (481, 408, no answer, a missed refresh), when a modem line of
// the call has been idle past the grace, or when relayed media stopped
// (rtptimeout/rtpholdtimeout). It returns when the call ends.
func (c *call) supervise() {
	s := c.s
	defer s.wg.Done()
	t := time.NewTicker(superviseTick)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		why := c.check(s.now())
		if why == "" {
			continue
		}
		c.mu.Lock()
		c.reason = why
		c.mu.Unlock()
		s.log.Info("ending a dead call", "id", c.id, "reason", why)
		c.hangup(-1, "ANSWER", 200, "box")
		return
	}
}

// check returns why the call must end now, or "".
func (c *call) check(now time.Time) string {
	for side := range c.legs {
		c.mu.Lock()
		l := c.legs[side]
		if l == nil {
			c.mu.Unlock()
			continue
		}
		st := l.st
		c.mu.Unlock()
		if st.expired(now) {
			return fmt.Sprintf("session timer expired: the %s did not refresh within %s", sideNames[side], st.interval)
		}
		if st.due(now) {
			if why := c.refresh(side, l, st); why != "" {
				return why
			}
		}
	}
	if why := c.lineIdle(now); why != "" {
		return why
	}
	return c.mediaGone(now)
}

// refresh sends one session refresh (UPDATE when the peer allows it, else
// a re-INVITE with the SDP it already has, RFC 4028 §7.4) or, without a
// timer, an in-dialog OPTIONS. 481, 408 or no answer means the dialog is
// gone (RFC 4028 §10); any other answer proves the peer alive.
func (c *call) refresh(side int, l *leg, st sessionTimer) string {
	s := c.s
	method := sip.OPTIONS
	settled := false // our re-INVITE is over and the call back to up
	switch {
	case st.negotiated && st.update:
		method = sip.UPDATE
	case st.negotiated:
		method = sip.INVITE
		if !c.changeState(stateReinvite, transition{}) {
			c.mu.Lock()
			l.st.nextTry = s.now().Add(2 * time.Second) // an INVITE is under way; it refreshes too
			c.mu.Unlock()
			return ""
		}
		defer func() {
			if !settled {
				c.changeState(stateUp, transition{})
			}
		}()
	}
	c.mu.Lock()
	var body []byte
	if method == sip.INVITE {
		body = l.ourSDP
	}
	req := s.newInDialog(l, method, body, "")
	if st.negotiated {
		req.AppendHeader(sip.NewHeader("Supported", "timer"))
		for _, h := range seHeaders(st.interval, "uac", false) {
			req.AppendHeader(h)
		}
	}
	c.mu.Unlock()
	res, tx, err := s.roundTripWithin(req, st.probeTimeout())
	if tx != nil {
		defer tx.Terminate()
	}
	what := "session refresh"
	if method == sip.OPTIONS {
		what = "probe"
	}
	if c.ctx.Err() != nil {
		return ""
	}
	if err != nil {
		return fmt.Sprintf("no answer from the %s to the %s %s within %s", sideNames[side], what, method, st.probeTimeout())
	}
	if res.StatusCode == 481 || res.StatusCode == 408 {
		return fmt.Sprintf("the %s answered the %s %s with %d %s", sideNames[side], what, method, res.StatusCode, res.Reason)
	}
	c.mu.Lock()
	now := s.now()
	if res.StatusCode == 491 {
		l.st.nextTry = now.Add(2 * time.Second)
		c.mu.Unlock()
		return ""
	}
	var ack *sip.Request
	l.st.last = now
	if method == sip.INVITE && res.IsSuccess() {
		c.adopt2xx(l, res)
		if len(res.Body()) == 0 {
			l.sdp = nil
		}
		if c.relay != nil && len(l.sdp) > 0 {
			c.relay.setRemote(side, l.sdp)
		}
		ack = s.newInDialog(l, sip.ACK, nil, "")
		l.lastAck = ack
	}
	if res.IsSuccess() && st.negotiated {
		if se, ref, ok := sessionExpires(res); ok {
			l.st.interval, l.st.boxRefresh = se, ref != "uas"
		}
	}
	c.mu.Unlock()
	if ack != nil {
		// up again before the ACK leaves, as for a relayed re-INVITE
		c.changeState(stateUp, transition{})
		settled = true
		_ = s.cli.WriteRequest(ack, noBuild)
	}
	return ""
}

// lineIdle says why the call must end when the modem line behind one of
// its peers has carried no call (idle, down: no carrier, no session) for
// longer than the grace since the call was answered.
func (c *call) lineIdle(now time.Time) string {
	s := c.s
	c.mu.Lock()
	peers, answer := []string{c.from, c.callee}, c.answer
	c.mu.Unlock()
	grace := s.general().LineIdleGrace
	if grace <= 0 {
		grace = defaultLineIdleGrace
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range peers {
		since, ok := s.lineFree[p]
		if !ok || p == "" {
			continue
		}
		if since.Before(answer) {
			since = answer
		}
		if now.Sub(since) > grace {
			return fmt.Sprintf("the modem line of %s has carried no call for %s", p, now.Sub(since).Round(time.Second))
		}
	}
	return ""
}

// mediaGone applies chan_sip's rtptimeout and rtpholdtimeout to a relayed
// call: no RTP or RTCP from a side for that long ends the call.
func (c *call) mediaGone(now time.Time) string {
	c.mu.Lock()
	rl, answer, legs := c.relay, c.answer, c.legs
	if rl == nil {
		// direct media: nothing of ours to watch, and the SDPs need not be
		// scanned every tick of every call
		c.mu.Unlock()
		return ""
	}
	type check struct {
		limit time.Duration
		hold  bool
	}
	var checks [2]check
	hold := false // either side's SDP silences a direction
	for _, l := range legs {
		hold = hold || (l != nil && onHold(l.sdp))
	}
	for side, l := range legs {
		if l == nil {
			continue
		}
		limit := l.rtpTimeout[0]
		if hold {
			limit = l.rtpTimeout[1]
		}
		checks[side] = check{limit, hold}
	}
	c.mu.Unlock()
	for side, ck := range checks {
		if ck.limit <= 0 {
			continue
		}
		last := rl.lastRecv(side)
		if last.Before(answer) {
			last = answer
		}
		if now.Sub(last) > ck.limit {
			key := "rtptimeout"
			if ck.hold {
				key = "rtpholdtimeout"
			}
			return fmt.Sprintf("no RTP from the %s for %s (%s)", sideNames[side], ck.limit, key)
		}
	}
	return ""
}

// onHold reports whether an SDP stops one direction of the stream:
// a=sendonly, a=recvonly or a=inactive (RFC 3264 §8.4), or the old
// c=0.0.0.0 hold (RFC 2543).
func onHold(sdp []byte) bool {
	for _, l := range sdpLines(sdp) {
		switch strings.TrimSpace(l) {
		case "a=sendonly", "a=recvonly", "a=inactive", "c=IN IP4 0.0.0.0":
			return true
		}
	}
	return false
}
