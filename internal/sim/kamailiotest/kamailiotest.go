// Package kamailiotest runs a real Kamailio (Debian's kamailio package) as
// a SIP provider for tests: a registrar that challenges REGISTER with
// digest (MD5 or SHA-256, RFC 8760) and routes calls for registered users
// to their contact, on a loopback port with its own config file.
package kamailiotest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/isp-box/isp-box/internal/testutil"
)

// Binary finds kamailio: missing, a test skips, unless CI
// (ISPBOX_REQUIRE_ROOT=1, which installs it) runs it: then it fails.
func Binary(t testing.TB) string {
	t.Helper()
	return testutil.NeedProgram(t, "kamailio", "kamailio")
}

// Options configure the provider.
type Options struct {
	// Users maps a user (the DID) to its password; REGISTER is
	// challenged and must authenticate as the From user.
	Users map[string]string
	// Algorithm is the digest algorithm of the challenges: MD5 (default)
	// or SHA-256.
	Algorithm string
	Port      int // 0 = a free one, kept across Restart
	// MaxExpires caps the expiry the registrar grants; 3600 if 0.
	MaxExpires int
	// Forward routes calls to a number (the Request-URI user) to a
	// host:port, as a provider routes calls to the public network. Such
	// INVITEs must authenticate as a user of Users (407, Proxy-Authorization).
	Forward map[string]string
}

// Server is a running Kamailio.
type Server struct {
	t    testing.TB
	dir  string
	opts Options

	*testutil.Daemon // Stop, Log, LogTail
}

// Start writes the config and starts Kamailio; the test's end stops it.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	bin := Binary(t)
	if opts.Port == 0 {
		opts.Port = testutil.FreeUDPPortBelowEphemeral(t)
	}
	if opts.MaxExpires == 0 {
		opts.MaxExpires = 3600
	}
	if opts.Algorithm == "" {
		opts.Algorithm = "MD5"
	}
	s := &Server{t: t, dir: t.TempDir(), opts: opts}
	s.writeConfig()
	// -DD -E: the foreground, logging to stderr; its own process group,
	// as its SIP workers are children.
	s.Daemon = testutil.StartDaemon(t, testutil.DaemonSpec{Name: "kamailio", Group: true, UDPPorts: []int{opts.Port},
		Args: []string{bin, "-f", filepath.Join(s.dir, "kamailio.cfg"), "-DD", "-E", "-Y", s.dir,
			"-P", filepath.Join(s.dir, "kamailio.pid"), "-w", s.dir}})
	return s
}

// Addr is the provider's SIP address.
func (s *Server) Addr() string { return fmt.Sprintf("127.0.0.1:%d", s.opts.Port) }

// Port is the provider's SIP port.
func (s *Server) Port() int { return s.opts.Port }

func (s *Server) writeConfig() {
	var auth, fwd strings.Builder
	for u, pw := range s.opts.Users {
		fmt.Fprintf(&auth, "\tif ($fU == \"%s\") { $var(pw) = \"%s\"; }\n", u, pw)
	}
	for n, to := range s.opts.Forward {
		fmt.Fprintf(&fwd, "\tif ($rU == \"%s\") { $var(fwd) = \"sip:%s\"; }\n", n, to)
	}
	cfg := fmt.Sprintf(`#!KAMAILIO
debug=2
log_stderror=yes
children=2
listen=udp:127.0.0.1:%[1]d
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "kex.so"
loadmodule "corex.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "auth.so"
modparam("usrloc", "db_mode", 0)
modparam("auth", "algorithm", "%[2]s")
modparam("registrar", "min_expires", 5)
modparam("registrar", "max_expires", %[4]d)

request_route {
	if (!mf_process_maxfwd_header("10")) {
		sl_send_reply("483", "Too Many Hops");
		exit;
	}
	if (has_totag()) {
		if (loose_route() || is_method("BYE|ACK|UPDATE|INFO")) {
			t_relay();
			exit;
		}
		sl_send_reply("404", "Not here");
		exit;
	}
	if (is_method("CANCEL")) {
		if (t_check_trans()) {
			t_relay();
		}
		exit;
	}
	$var(pw) = "";
%[3]s
	$var(fwd) = "";
%[5]s
	if (is_method("INVITE") && $var(fwd) != "") {
		if ($var(pw) == "" || !pv_auth_check("$fd", "$var(pw)", "0", "1")) {
			xlog("L_INFO", "challenging INVITE from $fU to $rU\n");
			auth_challenge("$fd", "1");
			exit;
		}
		consume_credentials();
		xlog("L_INFO", "authenticated INVITE from $fU to $rU\n");
		record_route();
		$du = $var(fwd);
		t_relay();
		exit;
	}
	if (is_method("REGISTER")) {
		if ($var(pw) == "" || !pv_auth_check("$fd", "$var(pw)", "0", "1")) {
			xlog("L_INFO", "challenging REGISTER from $fU\n");
			auth_challenge("$fd", "1");
			exit;
		}
		consume_credentials();
		if (!save("location")) {
			sl_reply_error();
		}
		xlog("L_INFO", "registered $fU at $ct\n");
		exit;
	}
	if (is_method("OPTIONS") && $rU == $null) {
		sl_send_reply("200", "OK");
		exit;
	}
	if (is_method("INVITE")) {
		record_route();
	}
	if (!lookup("location")) {
		xlog("L_INFO", "no contact for $rU\n");
		sl_send_reply("404", "Not Found");
		exit;
	}
	xlog("L_INFO", "relaying $rm for $rU to $ru\n");
	t_relay();
}
`, s.opts.Port, s.opts.Algorithm, auth.String(), s.opts.MaxExpires, fwd.String())
	if err := os.WriteFile(filepath.Join(s.dir, "kamailio.cfg"), []byte(cfg), 0o600); err != nil {
		s.t.Fatal(err)
	}
}

// Restart starts Kamailio again on the same port; its registrations are
// gone (usrloc in memory), as after a provider's outage.
func (s *Server) Restart() { s.t.Helper(); s.Start(s.t) }
