package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/isp-box/isp-box/internal/config"
	"github.com/isp-box/isp-box/internal/console"
	"github.com/isp-box/isp-box/internal/doctor"
)

func cmdDoctor(ctx context.Context, e *env, args []string) int {
	fs := newFlagSet(e, "doctor", `
Usage: isp-box doctor [-c FILE] [--user USER] [-s SOCKET]

Checks this machine against the config file and says what to do, one line
per finding ("ok", "warn" or "FAIL", what was checked, what was found):
each line's device exists and the service user may open it (group
dialout), a UUCP lock held by another program, ModemManager or brltty
running, the SIP port free (and if not, which program holds it), ping
(net.ipv4.ping_group_range, CAP_NET_RAW) in userspace mode, TUN and
CAP_NET_ADMIN in kernel mode, the database writable, the clock set. When
the daemon runs, each registered ATA gets the settings a modem line needs,
from its User-Agent, with where they are in its web page.

Run it as root (or as the service user) to see what the service sees.
Exit status 1 if anything FAILs.`)
	cfgPath := fs.String("c", "/etc/isp-box/isp-box.conf", "config file")
	usr := fs.String("user", "", "the account the service runs as (default: this user; the package's is isp-box)")
	db := fs.String("db", "", "SQLite database (default: [box] database, else serve's default)")
	socket := fs.String("s", "", "control socket of a running daemon, for the ATAs (default: as the other commands)")
	if code := fs.parse(args, 0, 0); code >= 0 {
		return code
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		var list config.ErrorList
		if errors.As(err, &list) {
			for _, p := range list {
				fmt.Fprintln(e.stdout, doctor.Finding{Level: doctor.Fail, Check: "config", Msg: p.Error()})
			}
		} else {
			fmt.Fprintln(e.stdout, doctor.Finding{Level: doctor.Fail, Check: "config", Msg: err.Error()})
		}
		return 1
	}
	findings := []doctor.Finding{{Level: doctor.OK, Check: "config", Msg: *cfgPath + " has no problems"}}
	for _, w := range cfg.Warnings {
		findings = append(findings, doctor.Finding{Level: doctor.Warn, Check: "config", Msg: w.Error()})
	}
	findings = append(findings, doctor.Check(cfg, doctor.Options{User: *usr, Database: *db})...)
	// The ATAs, if a daemon answers.
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	st, err := console.NewClient(*socket).Status(cctx)
	cancel()
	if err == nil {
		for _, p := range st.Peers {
			findings = append(findings, doctor.ATAAdvice(doctor.ATA{Peer: p.Name, UserAgent: p.UserAgent})...)
		}
	} else {
		findings = append(findings, doctor.Finding{Level: doctor.Warn, Check: "ata", Msg: "no running daemon to ask which ATAs registered (" + err.Error() + ")"})
	}
	failed := false
	for _, f := range findings {
		fmt.Fprintln(e.stdout, f)
		failed = failed || f.Level == doctor.Fail
	}
	if failed {
		return 1
	}
	return 0
}
