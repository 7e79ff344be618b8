// Package ata emulates a Linksys PAP2T analog telephone adapter: N phone
// ports (two on the real device), each its own SIP user agent on its own UDP
// port of one IP address, registering with digest auth to a registrar,
// answering OPTIONS, placing and taking calls, and carrying the data of the
// modem plugged into the port as RTP.
//
// The modem side is internal/sim/phone: a Line is a phone.Line (the modem
// dials through it) and rings the phone.Ringer plugged into it.
//
// SIP: RFC 3261 (REGISTER §10, INVITE/ACK/BYE/CANCEL §13-15, digest §22),
// SDP offer/answer RFC 3264 with RFC 4566 syntax, RTP RFC 3550, the
// clear-channel payload RFC 4040.
//
// Wiring a two-line ATA to a registrar with a modem on each port:
//
//	a, _ := ata.New(ata.Options{Lines: []ata.LineConfig{
//		{Name: "line1", User: "pap2t-ispmodem", Password: "password", Registrar: box},
//		{Name: "line2", User: "pap2t-client", Password: "password", Registrar: box},
//	}})
//	isp, _ := hayes.New(hayes.Options{Phone: a.Line(0), Name: "isp"})
//	a.Line(0).Plug(isp) // RING on isp.Path() when the box calls line 1
//	cli, _ := hayes.New(hayes.Options{Phone: a.Line(1), Name: "client"})
//	a.Line(1).Plug(cli) // ATDT88567682 on cli.Path() calls through the box
//	go a.Run(ctx)
//
// What goes on the wire. Each side sends RTP to the address and port in
// the SDP it received (so a PBX doing direct media really is exercised),
// with CLEARMODE (dynamic PT 97, 8000 Hz clock, ptime 20) when both sides
// offered it, else PCMU carrying the same raw bytes. A packet carries at
// most 20 ms of line time (72 bytes at 28800 bit/s) and the sender never
// exceeds the connect speed on average (a 40 ms burst after idleness). The
// receiver drops late and duplicate packets by sequence number and counts
// gaps as lost (the modems' V.42 would retransmit; here a lost packet is a
// lost chunk). Nothing is sent while the modem is silent.
package ata

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/isp-box/isp-box/softmodem"
)

// DefaultUserAgent is what the ATA puts in User-Agent and Server headers
// unless Options.UserAgent says otherwise: the PAP2T's firmware string
// (the seed's log shows its SPA2102 sibling as
// "Linksys/SPA2102-5.2.5").
const DefaultUserAgent = "Linksys/PAP2T-5.1.6(LS)"

// Defaults of the PAP2T's Line and SIP tabs (Linksys ATA admin guide).
const (
	DefaultExpires       = 3600 * time.Second // "Register Expires"
	DefaultRetryInterval = 30 * time.Second   // "Reg Retry Intvl"
	DefaultSpeed         = 28800              // bit/s both modems report in CONNECT
	inviteExpires        = 240                // "INVITE Expires" header value, seconds
	regMinExpires        = 1 * time.Second    // "Reg Min Expires"
	regMaxExpires        = 7200 * time.Second // "Reg Max Expires"
	allowMethods         = "ACK, BYE, CANCEL, INFO, INVITE, NOTIFY, OPTIONS, REFER"
)

// LineConfig is one phone port of the ATA (its "Line N" tab).
type LineConfig struct {
	// Name labels the line in logs and Describe (default "line1", ...).
	Name string
	// User is the SIP user id (and auth id): the peer name in the box's
	// config, e.g. "pap2t-ispmodem".
	User string
	// Password answers digest challenges (the seed's peers use "password").
	Password string
	// Port is the local SIP UDP port; 0 picks a free one.
	Port int
	// Registrar is the SIP proxy/registrar the line registers with and
	// sends calls to. The zero value means no registrar: the line does not
	// register and can only dial SIP URIs directly (IP dialling).
	Registrar netip.AddrPort
	// Expires is the registration lifetime asked for (default 3600 s).
	Expires time.Duration
	// RetryInterval is how long to wait after a failed registration
	// (default 30 s, the PAP2T's "Reg Retry Intvl").
	RetryInterval time.Duration
	// DisplayName goes in From and Contact if set.
	DisplayName string
	// ReInviteOnAnswer makes the line, when it answers, send a re-INVITE
	// with the same media right after the ACK, as a PAP2T set to "FAX
	// Passthru Method: ReINVITE" does when it hears the 2100 Hz answer tone
	// (a modem's answer tone is fax CED to it, ITU-T T.30). It exercises a
	// PBX's in-dialog relay; the carrier comes up once the re-INVITE is done.
	ReInviteOnAnswer bool
	// Softmodem, when set ("v22bis", "v22", "v21", "bell103"), makes the
	// line carry its modem as audio: an outgoing call offers G.711 only
	// and the box's software modem (originate) runs on the RTP; CONNECT
	// comes after training, at the agreed rate. Answering stays on the
	// data path.
	Softmodem string
}

// Options configures an ATA.
type Options struct {
	// Log receives the ATA's events; nil discards them.
	Log *slog.Logger
	// Bind is the IP address every line listens on (default 127.0.0.1).
	Bind netip.Addr
	// Lines are the phone ports; nil gives the two lines of a PAP2T with
	// no registrar (set at least Registrar and User to use them).
	Lines []LineConfig
	// RTPPortBase is the first local RTP port: line i uses RTPPortBase+2i
	// (the PAP2T's range starts at 16384). 0 picks free ports.
	RTPPortBase int
	// Speed is the connect speed in bit/s (default 28800): the data rate
	// of the carrier and the number the modems print in CONNECT.
	Speed int
	// Notify, if set, is called after a line's registration or call state
	// changed, with the line's new state. It must not block; it may be
	// called from several goroutines at once.
	Notify func(LineInfo)
	// UserAgent replaces DefaultUserAgent in User-Agent and Server headers.
	UserAgent string
}

// ATA is an emulated PAP2T. Create it with New, then Run it.
type ATA struct {
	opts  Options
	log   *slog.Logger
	lines []*Line

	mu      sync.Mutex
	started bool
}

// New validates opts and binds every line's SIP and RTP sockets, so that
// Line(i).Addr() is known before Run. The sockets are closed when Run
// returns (or by Close if Run is never called).
func New(opts Options) (*ATA, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if !opts.Bind.IsValid() {
		opts.Bind = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	if opts.UserAgent == "" {
		opts.UserAgent = DefaultUserAgent
	}
	if opts.Speed <= 0 {
		opts.Speed = DefaultSpeed
	}
	if opts.Lines == nil {
		opts.Lines = make([]LineConfig, 2)
	}
	if opts.RTPPortBase < 0 || opts.RTPPortBase+2*len(opts.Lines) > 65535 {
		return nil, fmt.Errorf("ata: RTP port base %d out of range", opts.RTPPortBase)
	}
	a := &ATA{opts: opts, log: opts.Log}
	for i, lc := range opts.Lines {
		if lc.Name == "" {
			lc.Name = fmt.Sprintf("line%d", i+1)
		}
		if lc.User == "" {
			lc.User = lc.Name
		}
		if lc.Expires <= 0 {
			lc.Expires = DefaultExpires
		}
		if lc.RetryInterval <= 0 {
			lc.RetryInterval = DefaultRetryInterval
		}
		if lc.Softmodem != "" {
			if _, err := softmodem.ParseModulation(lc.Softmodem); err != nil {
				return nil, fmt.Errorf("ata: line %d (%s): %w", i+1, lc.Name, err)
			}
		}
		rtpPort := 0
		if opts.RTPPortBase > 0 {
			rtpPort = opts.RTPPortBase + 2*i // RTP on even ports, RTCP above (RFC 3550 §11)
		}
		l, err := newLine(a, i, lc, rtpPort)
		if err != nil {
			a.closeLines()
			return nil, fmt.Errorf("ata: line %d (%s): %w", i+1, lc.Name, err)
		}
		a.lines = append(a.lines, l)
	}
	return a, nil
}

// Line returns port i (0-based): line 1 of a PAP2T is Line(0). It panics
// if i is out of range.
func (a *ATA) Line(i int) *Line { return a.lines[i] }

// Lines is the number of phone ports.
func (a *ATA) Lines() int { return len(a.lines) }

// Run serves SIP on every line, registers the lines that have a registrar
// and keeps them registered, until ctx ends. Then it hangs up calls,
// unregisters (expires=0), closes the sockets and returns nil. It can be
// called once.
func (a *ATA) Run(ctx context.Context) error {
	a.mu.Lock()
	if a.started {
		a.mu.Unlock()
		return errors.New("ata: Run called twice")
	}
	a.started = true
	a.mu.Unlock()

	var wg sync.WaitGroup
	errs := make([]error, len(a.lines))
	for i, l := range a.lines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = l.run(ctx)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Close releases the sockets of an ATA whose Run was never called.
func (a *ATA) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.started {
		return nil
	}
	a.started = true
	a.closeLines()
	return nil
}

func (a *ATA) closeLines() {
	for _, l := range a.lines {
		l.closeSockets()
	}
}

// Describe returns the state of every line, in port order.
func (a *ATA) Describe() []LineInfo {
	out := make([]LineInfo, len(a.lines))
	for i, l := range a.lines {
		out[i] = l.Info()
	}
	return out
}

func (a *ATA) notify(l *Line) {
	if a.opts.Notify != nil {
		a.opts.Notify(l.Info())
	}
}
