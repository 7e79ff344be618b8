package console

import (
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/isp-box/isp-box/internal/status"
)

// peersFormat is chan_sip's PEERS_FORMAT2 (channels/chan_sip.c 20292),
// used for the header and for every row.
const peersFormat = "%-25.25s %-39.39s %-3.3s %-10.10s %-10.10s %-3.3s %-8s %-11s %-32.32s %s\n"

// RenderPeers writes the table of `sip show peers`: header, one row per
// peer sorted by name (strcmp), and the summary line, exactly as chan_sip
// printed them, trailing spaces included. Pure users (type=user) are not
// listed, as in chan_sip.
func RenderPeers(w io.Writer, rows []status.Peer) {
	w = terminal(w)
	list := make([]status.Peer, 0, len(rows))
	for _, r := range rows {
		if r.Type != "user" {
			list = append(list, r)
		}
	}
	slices.SortFunc(list, func(a, b status.Peer) int { return strings.Compare(a.Name, b.Name) })
	fmt.Fprintf(w, peersFormat, "Name/username", "Host", "Dyn", "Forcerport", "Comedia", "ACL", "Port", "Status", "Description", "")
	var monOn, monOff, unmonOn, unmonOff int
	for _, r := range list {
		name := r.Name
		if r.Username != "" {
			name += "/" + r.Username
		}
		host, port := "(Unspecified)", "0"
		if r.Host.IsValid() {
			host, port = r.Host.String(), strconv.Itoa(r.Port)
		}
		dyn, acl := "   ", "   "
		if r.Dynamic {
			dyn = " D "
		}
		if r.ACL {
			acl = " A "
		}
		fmt.Fprintf(w, peersFormat, name, host, dyn, orNo(r.ForceRport), orNo(r.Comedia), acl, port, r.Status, r.Description, "")
		// C 20452-20463
		switch {
		case r.Monitored && r.Online:
			monOn++
		case r.Monitored:
			monOff++
		case r.Host.IsValid() && r.Port != 0:
			unmonOn++
		default:
			unmonOff++
		}
	}
	fmt.Fprintf(w, "%d sip peers [Monitored: %d online, %d offline Unmonitored: %d online, %d offline]\n",
		len(list), monOn, monOff, unmonOn, unmonOff)
}

func orNo(s string) string {
	if s == "" {
		return "No"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "Yes"
	}
	return "No"
}

func setOrNot(b bool) string {
	if b {
		return "<Set>"
	}
	return "<Not set>"
}

// RenderPeer writes `sip show peer NAME` (chan_sip.c 21193-21330) for one
// peer. The caller prints "Peer NAME not found." for an unknown name.
func RenderPeer(w io.Writer, row status.Peer) { renderPeerAt(terminal(w), row, time.Now()) }

func renderPeerAt(w io.Writer, r status.Peer, now time.Time) {
	line := func(label, format string, a ...any) {
		fmt.Fprintf(w, "  %-13s: "+format+"\n", append([]any{label}, a...)...)
	}
	fmt.Fprint(w, "\n\n")
	fmt.Fprintf(w, "  * Name       : %s\n", r.Name)
	line("Description", "%s", r.Description)
	line("Secret", "%s", setOrNot(r.SecretSet))
	line("MD5Secret", "%s", "<Not set>")
	line("Remote Secret", "%s", "<Not set>")
	line("Context", "%s", r.Context)
	line("Subscr.Cont.", "%s", "<Not set>")
	line("Language", "%s", "")
	line("Tonezone", "%s", "<Not set>")
	line("AMA flags", "%s", "Unknown")
	line("Transfer mode", "%s", "open")
	line("CallingPres", "%s", "Presentation Allowed, Not Screened")
	line("Callgroup", "%s", "")
	line("Pickupgroup", "%s", "")
	line("MOH Suggest", "%s", "")
	line("Mailbox", "%s", "")
	line("VM Extension", "%s", "asterisk")
	line("LastMsgsSent", "%d/%d", 0, 0)
	line("Call limit", "%d", r.CallLimit)
	line("Max forwards", "%d", r.MaxForwards)
	line("Dynamic", "%s", yesNo(r.Dynamic))
	line("Callerid", "%s", "\"\" <>")
	line("MaxCallBR", "%d kbps", 384)
	expire := int64(-1)
	if !r.Expires.IsZero() {
		expire = max(int64(r.Expires.Sub(now).Seconds()), 0)
	}
	line("Expire", "%d", expire)
	insecure := r.Insecure
	if insecure == "" {
		insecure = "no"
	}
	line("Insecure", "%s", insecure)
	line("Force rport", "%s", orNo(r.ForceRport))
	line("Symmetric RTP", "%s", orNo(r.Comedia))
	line("ACL", "%s", yesNo(r.ACL))
	line("ContactACL", "%s", "No")
	line("DirectMedACL", "%s", "No")
	line("T.38 support", "%s", "No")
	line("T.38 EC mode", "%s", "Unknown")
	line("T.38 MaxDtgrm", "%d", uint32(4294967295)) // chan_sip prints -1 as unsigned
	line("DirectMedia", "%s", yesNo(r.DirectMedia))
	line("PromiscRedir", "%s", "No")
	line("User=Phone", "%s", "No")
	line("Video Support", "%s", "No")
	line("Text Support", "%s", "No")
	line("Ign SDP ver", "%s", "No")
	line("Trust RPID", "%s", "No")
	line("Send RPID", "%s", "No")
	line("Path support", "%s", "No")
	line("TrustIDOutbnd", "%s", "Legacy")
	line("Subscriptions", "%s", "Yes")
	line("Overlap dial", "%s", "Yes")
	line("DTMFmode", "%s", "rfc2833")
	line("Timer T1", "%d", 500)
	line("Timer B", "%d", 32000)
	line("ToHost", "%s", "")
	addr := "(null)"
	if r.Host.IsValid() {
		addr = net.JoinHostPort(r.Host.String(), strconv.Itoa(r.Port))
	}
	line("Addr->IP", "%s", addr)
	line("Defaddr->IP", "%s", "(null)")
	line("Prim.Transp.", "%s", "UDP")
	line("Allowed.Trsp", "%s", "UDP")
	line("Def. Username", "%s", r.Username)
	line("SIP Options", "%s", "(none)")
	codecs := "(ulaw|alaw|gsm|h263)"
	if len(r.Codecs) > 0 {
		codecs = "(" + strings.Join(r.Codecs, "|") + ")"
	}
	line("Codecs", "%s", codecs)
	line("Auto-Framing", "%s", "No")
	line("Status", "%s", r.Status)
	line("Useragent", "%s", r.UserAgent)
	line("Reg. Contact", "%s", r.Contact)
	line("Qualify Freq", "%d ms", r.QualifyFreq)
	line("Keepalive", "%d ms", 0)
	line("Sess-Timers", "%s", "Accept")
	line("Sess-Refresh", "%s", "uas")
	line("Sess-Expires", "%d secs", 1800)
	line("Min-Sess", "%d secs", 90)
	line("RTP Engine", "%s", "asterisk")
	line("Parkinglot", "%s", "")
	line("Use Reason", "%s", "No")
	line("Encryption", "%s", "No")
	line("RTCP Mux", "%s", "No")
	fmt.Fprint(w, "\n")
}
