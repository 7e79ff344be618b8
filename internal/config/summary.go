package config

import (
	"fmt"
	"io"
	"net/netip"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/isp-box/isp-box/pbx/dialplan"
	"github.com/isp-box/isp-box/ppp"
)

// Summary writes what the config sets up, for people: what check-config
// prints when the file is good.
func (c *Config) Summary(w io.Writer) {
	g := c.PBX.General
	fmt.Fprintf(w, "SIP: udp %s, realm %q, register expiry %v (min %v, max %v)\n",
		g.UDPBindAddr, g.Realm, secs(g.DefaultExpiry), secs(g.MinExpiry), secs(g.MaxExpiry))

	fmt.Fprintf(w, "\npeers (%d):\n", len(c.PBX.Peers))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(c.PBX.Peers) > 0 {
		fmt.Fprintln(tw, "  NAME\tTYPE\tCONTEXT\tHOST\tQUALIFY\tDIRECTMEDIA\tNAT\tAUTH")
	}
	for _, p := range c.PBX.Peers {
		q := "no"
		if p.Qualify > 0 {
			q = fmt.Sprintf("%d ms", p.Qualify)
		}
		auth := "secret"
		switch {
		case p.MD5Secret != "":
			auth = "md5secret"
		case p.Secret == "":
			auth = "none"
		}
		host := p.Host
		if host == "" {
			host = "-"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, p.Type, p.Context, host, q, yesNo(p.DirectMedia), p.NAT, auth)
	}
	tw.Flush()

	c.summaryDialplan(w)

	fmt.Fprintf(w, "\nlines (%d):\n", len(c.Lines))
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(c.Lines) > 0 {
		fmt.Fprintln(tw, "  NAME\tDEVICE\tPEER\tRINGS\tSPEED\tFLOW\tLOCAL:REMOTE\tDNS\tAUTH\tECHO")
	}
	for _, l := range c.Lines {
		m, p := l.Modem, l.PPP
		peer := m.Peer
		if peer == "" {
			peer = "-"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\n", m.Name, m.Device, peer, m.Rings, m.Speed,
			m.FlowControl, addrPair(p), addrs(p.DNS), authString(p), echoString(p))
	}
	tw.Flush()
	p := c.PPP
	fmt.Fprintf(w, "\nppp defaults: %s, dns %s, auth %s, echo %s\n", addrPair(p), addrs(p.DNS), authString(p), echoString(p))
	fmt.Fprintf(w, "users: %d\n", len(c.Users))
	n := c.Net
	fmt.Fprintf(w, "network: %s, gateway %s, pool %s", n.Mode, n.Gateway, n.Pool)
	if len(n.DNS) > 0 {
		fmt.Fprintf(w, ", dns %s", addrs(n.DNS))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "console: %s\n", orDefault(c.Box.Console))
	fmt.Fprintf(w, "database: %s\n", orDefault(c.Box.Database))
	fmt.Fprintf(w, "log level: %s\n", strings.ToLower(c.Box.LogLevel.String()))
	if len(c.Files) > 1 {
		fmt.Fprintf(w, "files: %s\n", strings.Join(c.Files, ", "))
	}
}

// summaryDialplan lists each context with its extension count and Dial
// targets.
func (c *Config) summaryDialplan(w io.Writer) {
	var contexts []string
	extens := map[string]map[string]bool{}
	ctxAt := map[string]string{} // file:line -> context
	for _, l := range c.PBX.Dialplan {
		if extens[l.Context] == nil {
			extens[l.Context] = map[string]bool{}
			contexts = append(contexts, l.Context)
		}
		if l.Key == "exten" {
			ext, _, _ := strings.Cut(l.Value, ",")
			extens[l.Context][strings.TrimSpace(ext)] = true
		}
		ctxAt[fmt.Sprintf("%s:%d", l.File, l.Line)] = l.Context
	}
	targets := map[string][]string{}
	// A plan with errors still lists the Dials of the lines that compiled.
	if plan, _ := dialplan.Compile(c.PBX.Dialplan); plan != nil {
		for _, t := range plan.Targets() {
			ctx := ctxAt[fmt.Sprintf("%s:%d", t.File, t.Line)]
			targets[ctx] = appendUnique(targets[ctx], t.String())
		}
	}
	fmt.Fprintf(w, "\ndial plan (%d %s):\n", len(contexts), plural(len(contexts), "context"))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, ctx := range contexts {
		n := len(extens[ctx])
		dial := "-"
		if len(targets[ctx]) > 0 {
			dial = strings.Join(targets[ctx], ", ")
		}
		fmt.Fprintf(tw, "  [%s]\t%d %s\tDial: %s\n", ctx, n, plural(n, "extension"), dial)
	}
	tw.Flush()
}

func secs(d time.Duration) string { return fmt.Sprintf("%ds", int(d/time.Second)) }

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func orDefault(s string) string {
	if s == "" {
		return "(default)"
	}
	return s
}

func addrs(list []netip.Addr) string {
	if len(list) == 0 {
		return "-"
	}
	out := make([]string, len(list))
	for i, a := range list {
		out[i] = a.String()
	}
	return strings.Join(out, ",")
}

func addrPair(p ppp.Config) string {
	l, r := "gateway", "pool"
	if p.Local.IsValid() {
		l = p.Local.String()
	}
	if p.Remote.IsValid() {
		r = p.Remote.String()
	}
	return l + ":" + r
}

func authString(p ppp.Config) string {
	if !p.RequireAuth {
		return "none"
	}
	if len(p.Auth) == 0 {
		return "any"
	}
	out := make([]string, len(p.Auth))
	for i, a := range p.Auth {
		out[i] = string(a)
	}
	return strings.Join(out, ",")
}

func echoString(p ppp.Config) string {
	if p.EchoInterval == 0 {
		return "off"
	}
	return fmt.Sprintf("%s x%d", secs(p.EchoInterval), p.EchoFailure)
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}
