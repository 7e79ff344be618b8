package demo

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/isp-box/isp-box/internal/config"
	"github.com/isp-box/isp-box/internal/sim/smcaller"
	"github.com/isp-box/isp-box/netstack/clientnet"
	"github.com/isp-box/isp-box/pbx/dialplan"
	"github.com/isp-box/isp-box/ppp"
	"github.com/isp-box/isp-box/softmodem"
)

// softmodemNumber is the extension `demo --softmodem` adds and dials.
const softmodemNumber = "5550000"

// addSoftmodemExten puts `exten => 5550000,1,Modem(answer)` first in every
// context a peer uses, so the client's call reaches the box's own modem.
func addSoftmodemExten(cfg *config.Config) {
	seen := map[string]bool{}
	var add []dialplan.Line
	for _, p := range cfg.PBX.Peers {
		if p.Context == "" || seen[p.Context] {
			continue
		}
		seen[p.Context] = true
		add = append(add, dialplan.Line{Context: p.Context, Key: "exten", Value: softmodemNumber + ",1,Modem(answer)", File: "demo --softmodem", Line: 1})
	}
	cfg.PBX.Dialplan = append(add, cfg.PBX.Dialplan...)
}

// dialSoftmodem calls the box from the client's SIP account with a V.22bis
// software modem on the RTP (no ATA modem), waits for CONNECT and brings
// PPP and the client's IP stack up over it.
func dialSoftmodem(ctx context.Context, w *World, cfg *config.Config, client, number string, log *slog.Logger, step func(string, ...any)) (*Session, *smcaller.Call, error) {
	secret := ""
	for _, p := range cfg.PBX.Peers {
		if p.Name == client {
			secret = p.Secret
		}
	}
	step("calling %s as SIP peer %s with the client's software modem (V.22bis)", number, client)
	call, err := smcaller.Dial(ctx, smcaller.Options{Box: w.Box.SIPAddr(), User: client, Password: secret, Number: number, Modulation: softmodem.V22bis})
	if err != nil {
		return nil, nil, err
	}
	if err := call.WaitConnect(ctx); err != nil {
		call.Close()
		return nil, nil, err
	}
	st := call.Modem.Stats()
	step("CONNECT %d (%s, the box's own modem answered; SNR %.1f dB)", st.Rate, st.Modulation, st.SNR)
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pc, err := ppp.Dial(ctx, call.Modem, ppp.ClientConfig{User: "dial", Password: "dial"}, log)
	if err != nil {
		call.Close()
		return nil, nil, fmt.Errorf("ppp: %w", err)
	}
	step("PPP up: local %s, gateway %s, DNS %v, auth %q", pc.Local(), pc.Remote(), pc.DNS(), pc.AuthProto())
	cn, err := clientnet.New(pc.Local(), pc.DNS(), 1500, func(pkt []byte) { pc.WritePacket(pkt) })
	if err != nil {
		pc.Close()
		call.Close()
		return nil, nil, fmt.Errorf("client stack: %w", err)
	}
	s := &Session{Connect: fmt.Sprintf("CONNECT %d", st.Rate)}
	s.startStack(pc, cn)
	return s, call, nil
}
