package pbx

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/isp-box/isp-box/internal/status"
)

// PeerInfo is a peer as `sip show peers` and `sip show peer` need it; the
// type is internal/status's, so it reaches the console's JSON unchanged.
type PeerInfo = status.Peer

// Peers returns every peer, sorted by name.
func (s *Server) Peers() []PeerInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]PeerInfo, 0, len(s.peers))
	for _, p := range s.peers {
		out = append(out, s.peerInfoLocked(p))
	}
	slices.SortFunc(out, func(a, b PeerInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func (s *Server) peerInfoLocked(p *peer) PeerInfo {
	c := p.cfg
	pi := PeerInfo{
		Name: c.Name, Username: c.Username, Type: c.Type, Dynamic: strings.EqualFold(c.Host, "dynamic"),
		ACL: len(c.ACL) > 0, Description: c.Description, Context: c.Context,
		SecretSet: c.Secret != "" || c.MD5Secret != "", DirectMedia: c.DirectMedia, Insecure: c.Insecure,
		Codecs: slices.Clone(c.Allow), QualifyMS: c.Qualify, QualifyFreq: int(c.QualifyFreq / time.Millisecond),
		Monitored: c.Qualify > 0, LineBusy: s.lineBusy[c.Name], Calls: p.calls, CallLimit: c.CallLimit,
		MaxForwards: c.MaxForwards, RTTMS: p.lastms,
	}
	nat := parseNAT(c.NAT)
	detected := false
	if b := p.binding; b != nil {
		pi.Host, pi.Port = b.Source.Addr(), int(b.Source.Port())
		if !nat.forceRport && !(nat.autoForce && b.NAT) {
			if ap, ok := contactAddr(b.Contact); ok {
				pi.Host, pi.Port = ap.Addr(), int(ap.Port())
			}
		}
		pi.UserAgent, pi.Contact, pi.Expires = b.UserAgent, b.Contact, b.Expires
		if pi.Username == "" {
			pi.Username = b.Username
		}
		detected = b.NAT
	} else if !pi.Dynamic {
		if ap, err := netip.ParseAddrPort(c.Host); err == nil {
			pi.Host, pi.Port = ap.Addr(), int(ap.Port())
		} else if a, err := netip.ParseAddr(c.Host); err == nil {
			pi.Host, pi.Port = a, c.Port
			if pi.Port == 0 {
				pi.Port = 5060
			}
		}
	}
	if !pi.Host.IsValid() && c.DefaultIP.IsValid() {
		pi.Host, pi.Port = c.DefaultIP, c.Port
	}
	pi.ForceRport = yesNoAuto(nat.forceRport, nat.autoForce, detected)
	pi.Comedia = yesNoAuto(nat.comedia, nat.autoComedia, detected)
	pi.Status = peerStatus(c.Qualify, p.lastms)
	switch {
	case pi.Monitored:
		pi.Online = p.lastms > 0 // OK or LAGGED
	default:
		pi.Online = pi.Host.IsValid() && pi.Port != 0
	}
	return pi
}

func yesNoAuto(on, auto, detected bool) string {
	if auto {
		if detected {
			return "Auto (Yes)"
		}
		return "Auto (No)"
	}
	if on {
		return "Yes"
	}
	return "No"
}

// natSetting is nat= parsed (channels/sip/config_parser.c 795-838).
type natSetting struct {
	forceRport, comedia, autoForce, autoComedia bool
}

func parseNAT(v string) natSetting {
	var n natSetting
	if strings.TrimSpace(v) == "" {
		return natSetting{autoForce: true} // the global default: auto_force_rport
	}
	for f := range strings.SplitSeq(strings.ToLower(v), ",") {
		switch strings.TrimSpace(f) {
		case "no":
			return natSetting{} // "no" anywhere wins
		case "yes":
			n.forceRport, n.comedia = true, true
		case "force_rport":
			n.forceRport = true
		case "comedia":
			n.comedia = true
		case "auto_force_rport":
			n.autoForce = true
		case "auto_comedia":
			n.autoComedia = true
		}
	}
	return n
}

// peerStatus is chan_sip's peer_status() (C 20055-20077).
func peerStatus(maxms, lastms int) string {
	if maxms <= 0 {
		return "Unmonitored"
	}
	switch {
	case lastms < 0:
		return "UNREACHABLE"
	case lastms > maxms:
		return fmt.Sprintf("LAGGED (%d ms)", lastms)
	case lastms > 0:
		return fmt.Sprintf("OK (%d ms)", lastms)
	}
	return "UNKNOWN"
}
