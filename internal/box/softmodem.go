package box

import (
	"context"
	"sort"
	"sync"

	"github.com/isp-box/isp-box/internal/radius"
	"github.com/isp-box/isp-box/modem"
	"github.com/isp-box/isp-box/pbx"
	"github.com/isp-box/isp-box/ppp"
)

// softLines are the lines of the calls the PBX answered with the box's
// own software modem (Modem(answer)): one line per call, named
// softmodem/<call id>, for as long as the call is connected.
type softLines struct {
	mu sync.Mutex
	m  map[string]*modem.Line
}

func (s *softLines) add(name string, l *modem.Line) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]*modem.Line{}
	}
	s.m[name] = l
}

func (s *softLines) remove(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, name)
}

// status lists the softmodem lines by name.
func (s *softLines) status() []modem.LineStatus {
	s.mu.Lock()
	out := make([]modem.LineStatus, 0, len(s.m))
	for _, l := range s.m {
		out = append(out, l.Status())
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// serveSoftmodem serves a call the PBX answered with its own software
// modem (dial plan Modem(answer)) as a hardware line serves one after
// CONNECT: on a line of its own, softmodem/<call id>, the dial plan's
// service for the number (Login(), Telnet(), TCP() before the
// Modem(answer)), else the text login or AutoPPP, then PPP with the [ppp]
// options.
func (b *Box) serveSoftmodem(ctx context.Context, mc pbx.ModemCall) error {
	name := "softmodem/" + mc.CallID()
	b.log.Info("softmodem call connected", "call", mc.CallID(), "from", mc.From(), "modulation", mc.Modulation(), "rate", mc.Rate())
	lc := modem.DefaultLineConfig(name)
	lc.Device = name
	lc.Lock = false
	line, err := modem.NewLine(lc, modem.LineOptions{
		Bus:        b.bus,
		Log:        b.log,
		Handler:    func(ctx context.Context, c modem.Conn, user string) error { return b.softmodemPPP(ctx, mc, c, user) },
		DetectPPP:  ppp.Detect,
		CheckLogin: b.checkLogin,
		Service:    b.serviceForCall,
	})
	if err != nil {
		return err
	}
	b.soft.add(name, line)
	defer b.soft.remove(name)
	return line.ServeSoftmodem(ctx, mc, modem.SoftmodemCall{CallID: mc.CallID(), CallerID: mc.From(), Modulation: mc.Modulation(), Rate: mc.Rate()})
}

// softmodemPPP runs PPP on a softmodem call's line (after AutoPPP or the
// text login of user).
func (b *Box) softmodemPPP(ctx context.Context, mc pbx.ModemCall, c modem.Conn, user string) error {
	port := radius.Port{ID: c.Line(), Type: radius.NASPortVirtual, Calling: mc.From(), Called: mc.Exten()}
	rec, err := b.runPPP(ctx, c, b.Config().PPP, ppp.Options{CallID: mc.CallID(), LoggedInUser: user}, port)
	b.log.Debug("softmodem ppp session ended", "call", mc.CallID(), "cause", rec.Cause)
	return err
}
