package config

import (
	"errors"
	"sort"
	"strings"

	"github.com/isp-box/isp-box/modem"
	"github.com/isp-box/isp-box/pbx/dialplan"
)

// validate checks what no single section can: references between
// sections, and values that must agree.
func (b *builder) validate() {
	c := b.cfg
	peers := map[string]int{} // name -> index
	groups := map[string]bool{}
	for i, p := range c.PBX.Peers {
		peers[p.Name] = i
		if p.HuntGroup != "" {
			groups[p.HuntGroup] = true
		}
	}

	// The dial plan: compile it as the PBX will, then check every Dial()
	// target names a peer or hunt group that exists.
	plan := b.dialplan()
	dialled := map[string]bool{} // peers and hunt groups some Dial() reaches
	if plan != nil {
		for _, t := range plan.Targets() {
			switch strings.ToUpper(t.Tech) {
			case "SIP":
				dialled[t.Resource] = true
				i, ok := peers[t.Resource]
				switch {
				case !ok:
					b.errorf(t.File, t.Line, "Dial(%s): there is no SIP peer [%s]%s", t, t.Resource, suggest(t.Resource, sortedKeys(peers)))
				case c.PBX.Peers[i].Type == "user":
					b.errorf(t.File, t.Line, "Dial(%s): peer [%s] has type=user and cannot be called; use type=friend", t, t.Resource)
				}
			case "HUNT":
				dialled["HUNT/"+t.Resource] = true
				if !groups[t.Resource] {
					b.errorf(t.File, t.Line, "Dial(%s): no peer has huntgroup=%s", t, t.Resource)
				}
			}
		}
		for _, p := range c.PBX.Peers {
			if !plan.HasContext(p.Context) {
				b.warnf(p.File, p.Line, "peer [%s]: context %q has no dial plan; calls from this peer will get 404 Not Found", p.Name, p.Context)
			}
		}
	}

	// Lines: tied to a peer that exists, one line per device and per peer.
	byDevice := map[string]Line{}
	byPeer := map[string]Line{}
	for _, l := range c.Lines {
		m := l.Modem
		switch {
		case m.Kind == modem.KindTCP && m.Listen == "":
			b.errorf(m.File, m.Line, "line %s: kind tcp needs listen host:port, like listen 0.0.0.0:2323", m.Name)
		case m.Kind != modem.KindTCP && m.Listen != "":
			b.errorf(m.File, m.Line, "line %s: listen is for kind tcp lines", m.Name)
		case m.Kind == modem.KindVirtual && m.Direct:
			b.errorf(m.File, m.Line, "line %s: a virtual-modem line answers AT; direct (no AT at all) contradicts it", m.Name)
		}
		if m.Kind == modem.KindTCP {
			continue // no device, no peer: every connection is its own line
		}
		if prev, ok := byDevice[m.Device]; ok {
			b.errorf(m.File, m.Line, "line %s: device %s is already used by line %s (%s:%d)", m.Name, m.Device, prev.Modem.Name, prev.Modem.File, prev.Modem.Line)
		} else {
			byDevice[m.Device] = l
		}
		if m.Peer == "" && m.Kind == modem.KindVirtual {
			// The box is the modem: no ATA, no SIP peer.
		} else if m.Peer == "" {
			b.warnf(m.File, m.Line, "line %s: no peer: calls cannot be tied to this line (set peer NAME to the SIP peer of its ATA port)", m.Name)
		} else if i, ok := peers[m.Peer]; !ok {
			b.errorf(m.File, m.Line, "line %s: peer %q is not a SIP peer in this config%s", m.Name, m.Peer, suggest(m.Peer, sortedKeys(peers)))
		} else if c.PBX.Peers[i].Type == "user" {
			b.errorf(m.File, m.Line, "line %s: peer %q has type=user and can never be called; use type=friend", m.Name, m.Peer)
		} else if prev, ok := byPeer[m.Peer]; ok {
			b.errorf(m.File, m.Line, "line %s: peer %s already has line %s (%s:%d); one ATA port holds one modem", m.Name, m.Peer, prev.Modem.Name, prev.Modem.File, prev.Modem.Line)
		} else {
			byPeer[m.Peer] = l
			p := c.PBX.Peers[i]
			if plan != nil && !dialled[p.Name] && (p.HuntGroup == "" || !dialled["HUNT/"+p.HuntGroup]) {
				b.warnf(m.File, m.Line, "line %s: no Dial() in the dial plan reaches peer %s, so this modem never rings", m.Name, m.Peer)
			}
		}
	}

	// [ppp NAME] must name a line.
	names := make([]string, 0, len(b.pppFor))
	for n := range b.pppFor {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if _, ok := b.lines.byName[n]; ok {
			continue
		}
		known := make([]string, 0, len(b.lines.order))
		for _, d := range b.lines.order {
			known = append(known, d.name)
		}
		for _, l := range b.pppFor[n] {
			list := "there are no lines"
			if len(known) > 0 {
				list = "the lines are " + strings.Join(known, ", ")
			}
			b.errorf(l.file, l.line, "[ppp %s]: no line %s (define it with port %s in [mgetty] or [line %s]); %s", n, n, n, n, list)
		}
	}

	// Addresses: every remote inside the pool, local and remote apart, no
	// two lines handing out the same remote.
	pool, gw := c.Net.Pool, c.Net.Gateway
	byRemote := map[string]string{}
	for _, l := range c.Lines {
		at, ok := b.addrAt[l.Modem.Name]
		if !ok {
			continue
		}
		p := l.PPP
		if p.Remote.IsValid() {
			switch {
			case !inPool(pool, p.Remote):
				b.errorf(at.File, at.Line, "line %s: remote address %s must be a host address inside the network pool %s ([network] pool)", l.Modem.Name, p.Remote, pool)
			case p.Remote == gw:
				b.errorf(at.File, at.Line, "line %s: remote address %s is the network gateway; give the client another address", l.Modem.Name, p.Remote)
			case p.Remote == p.Local:
				b.errorf(at.File, at.Line, "line %s: local and remote address are both %s", l.Modem.Name, p.Remote)
			}
			if prev, ok := byRemote[p.Remote.String()]; ok {
				b.errorf(at.File, at.Line, "line %s: remote address %s is already given to line %s", l.Modem.Name, p.Remote, prev)
			} else {
				byRemote[p.Remote.String()] = l.Modem.Name
			}
		}
		if p.Local.IsValid() && !pool.Contains(p.Local) {
			b.errorf(at.File, at.Line, "line %s: local address %s must be inside the network pool %s (normally the gateway %s)", l.Modem.Name, p.Local, pool, gw)
		}
	}
	if len(c.Lines) == 0 {
		b.warnf(b.lx.files[0], 0, "no modem lines: nothing will answer calls (add port NAME to [mgetty] or a [line NAME] section)")
	}
	for _, l := range c.Lines {
		if l.PPP.RequireAuth && len(c.Users) == 0 {
			b.errorf(l.Modem.File, l.Modem.Line, "line %s: PPP requires authentication (auth) but [users] has no one", l.Modem.Name)
		}
	}
}

// dialplan compiles the dial plan and reports its errors at their lines.
func (b *builder) dialplan() *dialplan.Plan {
	plan, err := dialplan.Compile(b.cfg.PBX.Dialplan)
	if err == nil {
		return plan
	}
	var list []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		list = j.Unwrap()
	} else {
		list = []error{err}
	}
	for _, e := range list {
		var de *dialplan.Error
		if errors.As(e, &de) {
			b.errorf(de.File, de.Line, "%s", de.Msg)
		} else {
			b.errorf(b.lx.files[0], 0, "dial plan: %v", e)
		}
	}
	return plan
}
