package box

import (
	"context"
	"fmt"

	"github.com/isp-box/isp-box/internal/config"
	"github.com/isp-box/isp-box/modem"
	"github.com/isp-box/isp-box/pbx/dialplan"
)

// dialFromLine resolves a number dialled on a virtual modem line (ATD)
// through the same dial plan a SIP call from an ATA runs: the line's
// `context` (default "default"), priority 1 on, as pbx runs it. A Dial()
// whose target reaches one of the box's own modem lines (the peer a line
// sits behind, or a hunt group with such a member) is the ISP answering:
// the call connects and the line's session runs. Busy() is BUSY; Hangup(),
// Congestion(), a number not in the plan, or a Dial() to a phone the box
// cannot reach without audio is NO CARRIER.
func (b *Box) dialFromLine(ctx context.Context, line, number string) (modem.Route, error) {
	cfg := b.Config()
	plan, err := b.plan(cfg)
	if err != nil {
		return modem.Route{}, err
	}
	dctx := "default"
	for _, lc := range cfg.Lines {
		if lc.Modem.Name == line && lc.Modem.Context != "" {
			dctx = lc.Modem.Context
		}
	}
	return routeNumber(plan, cfg, dctx, number)
}

// plan compiles the dial plan of cfg once per config.
func (b *Box) plan(cfg *config.Config) (*dialplan.Plan, error) {
	b.planMu.Lock()
	defer b.planMu.Unlock()
	if b.planFor == cfg && b.planC != nil {
		return b.planC, nil
	}
	p, err := dialplan.Compile(cfg.PBX.Dialplan)
	if err != nil {
		return nil, fmt.Errorf("dial plan: %w", err)
	}
	b.planFor, b.planC = cfg, p
	return p, nil
}

// routeNumber runs plan for (dctx, number); pure, for tests.
func routeNumber(plan *dialplan.Plan, cfg *config.Config, dctx, number string) (modem.Route, error) {
	run, m := plan.Start(dctx, number)
	if run == nil {
		return modem.Route{}, fmt.Errorf("%s not in context %s (%v)", number, dctx, m)
	}
	linePeers := map[string]bool{}
	for _, lc := range cfg.Lines {
		if lc.Modem.Peer != "" && lc.Modem.Kind != modem.KindVirtual {
			linePeers[lc.Modem.Peer] = true
		}
	}
	groups := map[string]bool{}
	for _, p := range cfg.PBX.Peers {
		if p.HuntGroup != "" && linePeers[p.Name] {
			groups[p.HuntGroup] = true
		}
	}
	for {
		st, ok := run.Next()
		if !ok {
			if run.Err != "" {
				return modem.Route{}, fmt.Errorf("dial plan: %s", run.Err)
			}
			return modem.Route{}, fmt.Errorf("%s: the dial plan ended without connecting (DIALSTATUS %s)", number, run.DialStatus)
		}
		switch st.App {
		case "PPP":
			return modem.Route{Service: modem.ServicePPP}, nil
		case "Login":
			return modem.Route{Service: modem.ServiceLogin}, nil
		case "Telnet":
			return modem.Route{Service: modem.ServiceTelnet, Target: st.Args[0]}, nil
		case "TCP":
			return modem.Route{Service: modem.ServiceTCP, Target: st.Args[0]}, nil
		case "Modem":
			// the box's own modem answers: the line's login/AutoPPP
			return modem.Route{Service: modem.ServicePPP}, nil
		case "Busy":
			return modem.Route{}, modem.ErrBusy
		case "Hangup", "Congestion":
			return modem.Route{}, fmt.Errorf("%s: %s() at %s:%d", number, st.App, st.File, st.Line)
		case "Dial":
			for _, t := range st.Dial.Targets {
				if (t.Tech == "SIP" && linePeers[t.Resource]) || (t.Tech == "HUNT" && groups[t.Resource]) {
					return modem.Route{Service: modem.ServicePPP}, nil
				}
			}
			run.SetDialStatus("CHANUNAVAIL")
		}
	}
}

// serviceForCall is what answers the SIP call callID that a hardware line
// answered: the dial plan for the number the caller dialled, in the
// caller's context, read up to the Dial() that rang the line (Telnet(),
// TCP(), Login(), PPP() before it pick the service; PPP when none does).
func (b *Box) serviceForCall(ctx context.Context, line, callID string) modem.Route {
	ppp := modem.Route{Service: modem.ServicePPP}
	if b.pbx == nil {
		return ppp
	}
	cfg := b.Config()
	for _, c := range b.pbx.Calls() {
		if c.ID != callID {
			continue
		}
		dctx := "default"
		for _, p := range cfg.PBX.Peers {
			if p.Name == c.From && p.Context != "" {
				dctx = p.Context
			}
		}
		plan, err := b.plan(cfg)
		if err != nil {
			return ppp
		}
		r, err := routeNumber(plan, cfg, dctx, c.Exten)
		if err != nil {
			b.log.Debug("service for call", "call", callID, "err", err)
			return ppp
		}
		return r
	}
	return ppp
}
