package pbx

import (
	"context"
	"net/netip"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/isp-box/isp-box/internal/bus"
)

// Qualify timing from chan_sip (channels/sip/include/sip.h 85-97).
const (
	freqNotOK  = 10 * time.Second // DEFAULT_FREQ_NOTOK: re-poke while unreachable or lagged
	tickPeriod = 100 * time.Millisecond
)

// pokeNow wakes the housekeeping loop early (after a REGISTER).
func (s *Server) pokeNow() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// housekeeping expires bindings and sends qualify pokes when due.
func (s *Server) housekeeping(ctx context.Context) {
	t := time.NewTicker(tickPeriod)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.wake:
		}
		now := s.now()
		var expired []string
		var pokes []pokeJob
		s.mu.Lock()
		for a, f := range s.fails { // forget old failures so the table stays small
			if now.Sub(f.first) > s.cfg.General.BanTime {
				delete(s.fails, a)
			}
		}
		for a, until := range s.bans {
			if !now.Before(until) {
				delete(s.bans, a)
			}
		}
		for name, p := range s.peers {
			if b := p.binding; b != nil && now.After(b.Expires.Add(expiryGrace)) {
				expired = append(expired, name)
				continue
			}
			if p.cfg.Qualify <= 0 || p.poking || now.Before(p.nextPoke) {
				continue
			}
			pk, ok := s.beginPokeLocked(p)
			if !ok {
				// no address: lastms 0 -> UNKNOWN (C 30660)
				p.lastms = 0
				p.nextPoke = now.Add(p.cfg.QualifyFreq)
				continue
			}
			pokes = append(pokes, pk)
		}
		s.mu.Unlock()
		for _, n := range expired {
			s.unregister(n, "expired")
		}
		for _, pk := range pokes {
			s.runPoke(ctx, pk)
		}
	}
}

// pokeJob is one qualify OPTIONS to send.
type pokeJob struct {
	name  string
	dest  netip.AddrPort
	uri   string
	maxms int
}

// beginPokeLocked marks a poke of p in flight: calls to p wait for its
// answer (waitPoke) instead of failing on a stale status. It reports false
// when p has no address. The caller holds s.mu and starts the poke with
// runPoke.
func (s *Server) beginPokeLocked(p *peer) (pokeJob, bool) {
	dest, uri, ok := s.peerDestLocked(p)
	if !ok {
		return pokeJob{}, false
	}
	p.poking = true
	p.pokeDone = make(chan struct{})
	return pokeJob{p.cfg.Name, dest, uri, p.cfg.Qualify}, true
}

func (s *Server) runPoke(ctx context.Context, pk pokeJob) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.poke(ctx, pk.name, pk.dest, pk.uri, pk.maxms)
	}()
}

// requalifyLocked starts a poke at once for a peer that just registered
// and is not known to be OK: a REGISTER is proof of life, so an ATA that
// was UNREACHABLE while it booted is callable as soon as it answers, not
// at the next scheduled poke (up to 10 s later). The caller holds s.mu and
// calls runPoke when ok.
func (s *Server) requalifyLocked(p *peer, refresh bool) (pokeJob, bool) {
	if p.cfg.Qualify <= 0 || p.poking || s.runCtx.Err() != nil {
		return pokeJob{}, false
	}
	if refresh && p.lastms > 0 && p.lastms <= p.cfg.Qualify {
		return pokeJob{}, false // OK already; the schedule goes on
	}
	return s.beginPokeLocked(p)
}

// waitPoke waits, when p is not reachable and a poke of it is in flight,
// for that poke's answer, at most 2 x qualify (the poke's own timeout).
// It reports whether it waited.
func (s *Server) waitPoke(ctx context.Context, name string) bool {
	s.mu.Lock()
	p := s.peers[name]
	if p == nil || reachableLocked(p) || p.pokeDone == nil {
		s.mu.Unlock()
		return false
	}
	done, limit := p.pokeDone, 2*time.Duration(p.cfg.Qualify)*time.Millisecond
	s.mu.Unlock()
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	case <-ctx.Done():
	}
	return true
}

// peerDestLocked is where requests to p go: its registered contact, or its
// source when nat forces rport. The caller holds s.mu.
func (s *Server) peerDestLocked(p *peer) (netip.AddrPort, string, bool) {
	if ap, uri, ok := s.viaProxyLocked(p); ok {
		return ap, uri, true
	}
	nat := parseNAT(p.cfg.NAT)
	if b := p.binding; b != nil {
		ap, ok := contactAddr(b.Contact)
		if nat.forceRport || (nat.autoForce && b.NAT) || !ok {
			ap = b.Source
		}
		return ap, b.Contact, ap.IsValid()
	}
	if p.cfg.Host != "" && p.cfg.Host != "dynamic" {
		if ap, err := netip.ParseAddrPort(p.cfg.Host); err == nil {
			return ap, "sip:" + p.cfg.Name + "@" + ap.String(), true
		}
		if a, err := netip.ParseAddr(p.cfg.Host); err == nil {
			port := p.cfg.Port
			if port == 0 {
				port = 5060
			}
			ap := netip.AddrPortFrom(a, uint16(port))
			return ap, "sip:" + p.cfg.Name + "@" + ap.String(), true
		}
	}
	if p.cfg.DefaultIP.IsValid() {
		port := p.cfg.Port
		if port == 0 {
			port = 5060
		}
		ap := netip.AddrPortFrom(p.cfg.DefaultIP, uint16(port))
		return ap, "sip:" + p.cfg.Name + "@" + ap.String(), true
	}
	return netip.AddrPort{}, "", false
}

// poke sends one OPTIONS and records the answer as chan_sip's
// handle_response_peerpoke / sip_poke_noanswer do: any response but 100
// counts; no answer within 2*maxms is UNREACHABLE.
func (s *Server) poke(ctx context.Context, name string, dest netip.AddrPort, uri string, maxms int) {
	req, err := s.newOutOfDialog(sip.OPTIONS, uri, dest, name)
	if err != nil {
		s.pokeDone(name, -1, 0)
		return
	}
	timeout := 2 * time.Duration(maxms) * time.Millisecond
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	tx, err := s.cli.TransactionRequest(pctx, req, noBuild)
	if err != nil {
		s.pokeDone(name, -1, 0) // a transmit error counts as unreachable at once
		return
	}
	defer tx.Terminate()
	for {
		select {
		case res := <-tx.Responses():
			if res.StatusCode == 100 {
				continue
			}
			rtt := time.Since(start)
			ms := int((rtt + time.Millisecond - 1) / time.Millisecond) // rounded up, at least 1
			s.pokeDone(name, max(ms, 1), rtt)
			return
		case <-tx.Done():
			if ctx.Err() != nil {
				s.pokeDone(name, 0, 0)
				return
			}
			s.pokeDone(name, -1, 0)
			return
		case <-pctx.Done():
			if ctx.Err() != nil {
				s.pokeDone(name, 0, 0)
				return
			}
			s.pokeDone(name, -1, 0)
			return
		}
	}
}

func (s *Server) pokeDone(name string, lastms int, rtt time.Duration) {
	now := s.now()
	s.mu.Lock()
	p := s.peers[name]
	if p == nil {
		s.mu.Unlock()
		return
	}
	p.poking = false
	if p.pokeDone != nil {
		defer close(p.pokeDone) // after the new status is in place
		p.pokeDone = nil
	}
	if s.runCtx.Err() != nil {
		s.mu.Unlock()
		return
	}
	p.lastms, p.rtt = lastms, rtt
	reachable := lastms > 0 && lastms <= p.cfg.Qualify
	if reachable {
		p.nextPoke = now.Add(p.cfg.QualifyFreq)
	} else {
		p.nextPoke = now.Add(freqNotOK)
	}
	s.mu.Unlock()
	s.publishStatus(name)
}

// publishStatus publishes PeerStatus when the status class changed
// (Reachable, Lagged, UNREACHABLE, UNKNOWN), as chan_sip logs it.
func (s *Server) publishStatus(name string) {
	s.mu.Lock()
	p := s.peers[name]
	if p == nil {
		s.mu.Unlock()
		return
	}
	st := peerStatus(p.cfg.Qualify, p.lastms)
	class := statusClass(st)
	changed := class != statusClass(p.status)
	p.status = st
	ev := bus.PeerStatus{Peer: name, Status: st, RTT: p.rtt, MaxMS: p.cfg.Qualify}
	s.mu.Unlock()
	if changed {
		s.log.Info("peer status", "peer", name, "status", st)
		s.publish(ev)
	}
}

func statusClass(st string) string {
	for i := 0; i < len(st); i++ {
		if st[i] == ' ' {
			return st[:i]
		}
	}
	return st
}

// reachableLocked is create_addr_from_peer's test (C 6158-6163): with
// qualify on, only a peer whose last RTT is known and within maxms can be
// called.
func reachableLocked(p *peer) bool {
	return p.cfg.Qualify <= 0 || (p.lastms >= 0 && p.lastms <= p.cfg.Qualify)
}
