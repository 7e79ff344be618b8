package modem

import (
	"context"
	"fmt"
	"io"

	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/modem/at"
)

// SoftmodemCall is a call the box answered with its own software modem
// (the PBX's Modem(answer)): what a hardware modem reports with CONNECT.
type SoftmodemCall struct {
	CallID     string // the SIP call
	CallerID   string // the calling peer
	Modulation string // "V.22bis"
	Rate       int    // bit/s
}

// ServeSoftmodem runs the data side of a softmodem call on this line, as
// a hardware line runs it after CONNECT: the service the dial plan gives
// the call (LineOptions.Service: Login(), Telnet(), TCP()), else the
// text login or AutoPPP and the Handler. rw is the modem's data stream;
// closing it hangs up. A line serves one such call and is then down.
func (l *Line) ServeSoftmodem(ctx context.Context, rw io.ReadWriteCloser, call SoftmodemCall) error {
	cfg := l.config()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p := streamPort(cfg.Device, rw, l.clk)
	defer func() {
		p.close()
		p.wait()
		l.setState(StateDown, "", "")
	}()
	cn := at.Connection{Speed: call.Rate, Protocol: call.Modulation, Result: fmt.Sprintf("CONNECT %d/%s", call.Rate, call.Modulation)}
	l.mu.Lock()
	l.session++
	l.status.Caps = "softmodem"
	l.status.Answered++
	l.status.Session = fmt.Sprintf("%s/%d", cfg.Name, l.session)
	l.status.LastConnect, l.status.Speed, l.status.Protocol = cn.Result, cn.Speed, cn.Protocol
	l.status.CallID, l.status.CallerID = call.CallID, call.CallerID
	l.callerID = call.CallerID
	l.mu.Unlock()
	l.publish(bus.ModemConnected{Line: cfg.Name, Speed: cn.Speed, Protocol: cn.Protocol, Result: cn.Result, CallID: call.CallID})
	l.setState(StateConnected, cn.Result, call.CallID)
	kind, err := l.serviceKind(ctx, cfg.Name, call.CallID, sessionKind{stream: true})
	if err != nil {
		return err
	}
	return l.session1(ctx, p, cfg, cn, call.CallID, call.CallerID, kind)
}
