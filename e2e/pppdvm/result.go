package pppdvm

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// resultPrefix starts the one line the guest's /init prints at the end.
const resultPrefix = "ISPBOX-RESULT "

var errNotResult = errors.New("pppdvm: not an ISPBOX-RESULT line")

// Result is what the guest reported at the end of its call.
type Result struct {
	// OK is true when IPCP came up (status word "ok"); the pings may still
	// have failed: check PingReceived.
	OK bool
	// Reason says why the call failed ("pppd-exited", "timeout", ...).
	Reason string
	// Local and Remote are pppd's IPLOCAL and IPREMOTE.
	Local, Remote netip.Addr
	// DNS1 and DNS2 are the DNS servers IPCP gave (usepeerdns).
	DNS1, DNS2 netip.Addr
	// PingSent and PingReceived count the echo requests to Remote.
	PingSent, PingReceived int
	// HTTP is how the guest's fetch of Options.HTTPURL ended: "ok", "fail"
	// (wget failed: no connection, an HTTP error, 30 s passed), or ""
	// when there was none. HTTPBytes and HTTPSHA256 describe what it got.
	HTTP       string
	HTTPBytes  int
	HTTPSHA256 string
	// PPPDExit is pppd's exit status (see pppd(8) EXIT STATUS), -1 if unknown.
	PPPDExit int
	// GuestTime is the guest's uptime when it printed the line.
	GuestTime time.Duration

	// Elapsed is the time from Start to the result line (set by Wait).
	Elapsed time.Duration
	// Console is the guest console's last lines (set by Wait).
	Console string
}

// ParseResult parses the guest's result line (with or without the
// ISPBOX-RESULT prefix and trailing CR/LF).
func ParseResult(line string) (Result, error) {
	line = strings.TrimRight(line, "\r\n")
	rest, ok := strings.CutPrefix(line, resultPrefix)
	if !ok {
		return Result{}, fmt.Errorf("%w: %q", errNotResult, line)
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 {
		return Result{}, fmt.Errorf("%w: no status: %q", errNotResult, line)
	}
	r := Result{PPPDExit: -1}
	switch fields[0] {
	case "ok":
		r.OK = true
	case "fail":
	default:
		return Result{}, fmt.Errorf("pppdvm: result status %q is neither ok nor fail", fields[0])
	}
	for _, f := range fields[1:] {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return Result{}, fmt.Errorf("pppdvm: result field %q is not key=value", f)
		}
		var err error
		switch k {
		case "reason":
			r.Reason = v
		case "local":
			r.Local, err = parseAddr(v)
		case "remote":
			r.Remote, err = parseAddr(v)
		case "dns1":
			r.DNS1, err = parseAddr(v)
		case "dns2":
			r.DNS2, err = parseAddr(v)
		case "ping":
			recv, sent, ok := strings.Cut(v, "/")
			if !ok {
				return Result{}, fmt.Errorf("pppdvm: result ping=%q is not received/sent", v)
			}
			if r.PingReceived, err = parseCount(recv); err == nil {
				r.PingSent, err = parseCount(sent)
			}
		case "http":
			if v != "ok" && v != "fail" {
				err = fmt.Errorf("%q is neither ok nor fail", v)
			}
			r.HTTP = v
		case "http_bytes":
			r.HTTPBytes, err = parseCount(v)
		case "http_sha256":
			r.HTTPSHA256 = v
		case "pppd_exit":
			r.PPPDExit, err = parseCount(v)
		case "t":
			var s float64
			s, err = strconv.ParseFloat(v, 64)
			if err == nil && !(s >= 0 && s <= 1e6) {
				err = fmt.Errorf("uptime %v out of range", s)
			}
			r.GuestTime = time.Duration(s * float64(time.Second)).Round(10 * time.Millisecond)
		default:
			// Unknown keys are kept out, not refused: a newer guest may add some.
		}
		if err != nil {
			return Result{}, fmt.Errorf("pppdvm: result field %s: %w", k, err)
		}
	}
	return r, nil
}

// parseAddr accepts the empty value the guest prints when pppd gave none.
func parseAddr(v string) (netip.Addr, error) {
	if v == "" {
		return netip.Addr{}, nil
	}
	return netip.ParseAddr(v)
}

func parseCount(v string) (int, error) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err == nil && (n < 0 || n > 1<<20) {
		err = fmt.Errorf("%d out of range", n)
	}
	return n, err
}

// Line formats r as the guest prints it (without Elapsed and Console).
func (r Result) Line() string {
	var b strings.Builder
	b.WriteString(resultPrefix)
	if r.OK {
		b.WriteString("ok")
	} else {
		b.WriteString("fail")
	}
	if r.Reason != "" {
		b.WriteString(" reason=" + r.Reason)
	}
	for _, a := range []struct {
		k string
		v netip.Addr
	}{{"local", r.Local}, {"remote", r.Remote}, {"dns1", r.DNS1}, {"dns2", r.DNS2}} {
		if a.v.IsValid() {
			fmt.Fprintf(&b, " %s=%s", a.k, a.v)
		}
	}
	fmt.Fprintf(&b, " ping=%d/%d", r.PingReceived, r.PingSent)
	if r.HTTP != "" {
		fmt.Fprintf(&b, " http=%s http_bytes=%d http_sha256=%s", r.HTTP, r.HTTPBytes, r.HTTPSHA256)
	}
	if r.PPPDExit >= 0 {
		fmt.Fprintf(&b, " pppd_exit=%d", r.PPPDExit)
	}
	fmt.Fprintf(&b, " t=%.2f", r.GuestTime.Seconds())
	return b.String()
}
