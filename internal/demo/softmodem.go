package demo

import (
	"github.com/isp-box/isp-box/internal/config"
	"github.com/isp-box/isp-box/pbx/dialplan"
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
