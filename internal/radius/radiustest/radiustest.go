// Package radiustest runs a real FreeRADIUS (Debian's freeradius package)
// for tests: its own config directory, loopback ports, a users file, and
// the accounting detail file to read back what it received.
package radiustest

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/isp-box/isp-box/internal/testutil"
)

// Binary finds freeradius: missing, a test skips, unless the CI
// (ISPBOX_REQUIRE_ROOT=1, which installs it) runs it: then it fails.
func Binary(t testing.TB) string {
	t.Helper()
	return testutil.NeedProgram(t, "freeradius", "freeradius", "radiusd")
}

// Options configure a server.
type Options struct {
	Secret string // shared with 127.0.0.1; "testing123" if empty
	// Users is the body of the files module's users file, e.g.
	//	alice Cleartext-Password := "wonderland"
	//	        Framed-IP-Address = 192.168.32.77, Session-Timeout = 30
	Users string
	// AuthPort, AcctPort: 0 = free ports picked now (kept across Restart).
	AuthPort, AcctPort int
}

// Server is a running FreeRADIUS.
type Server struct {
	t    testing.TB
	dir  string
	opts Options

	*testutil.Daemon // Stop, Restart (Start), Log, LogTail
}

// Start writes the config and starts the server; the test's end stops it.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	bin := Binary(t)
	if opts.Secret == "" {
		opts.Secret = "testing123"
	}
	if opts.AuthPort == 0 {
		opts.AuthPort = freeUDPPair(t)
		opts.AcctPort = opts.AuthPort + 1
	}
	dir := t.TempDir()
	s := &Server{t: t, dir: dir, opts: opts}
	s.writeConfig()
	// -X: the foreground, with the debug output the tests read.
	s.Daemon = testutil.StartDaemon(t, testutil.DaemonSpec{Name: "freeradius", Args: []string{bin, "-X", "-d", dir},
		ReadyLine: "Ready to process requests", UDPPorts: []int{opts.AuthPort, opts.AcctPort}})
	return s
}

// AuthAddr and AcctAddr are the server's loopback addresses.
func (s *Server) AuthAddr() string { return "127.0.0.1:" + strconv.Itoa(s.opts.AuthPort) }
func (s *Server) AcctAddr() string { return "127.0.0.1:" + strconv.Itoa(s.opts.AcctPort) }

// Secret is the shared secret.
func (s *Server) Secret() string { return s.opts.Secret }

// freeUDPPair finds a port p with p and p+1 free on loopback.
func freeUDPPair(t testing.TB) int {
	t.Helper()
	for range 50 {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		p := c.LocalAddr().(*net.UDPAddr).Port
		c2, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: p + 1})
		c.Close()
		if err == nil {
			c2.Close()
			return p
		}
	}
	t.Fatal("no pair of free UDP ports")
	return 0
}

func (s *Server) writeConfig() {
	d := s.dir
	for _, sub := range []string{"log", "run", "acct"} {
		os.MkdirAll(filepath.Join(d, sub), 0o755)
	}
	conf := fmt.Sprintf(`prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = /var
sbindir = /usr/sbin
datarootdir = /usr/share
dictdir = /usr/share/freeradius
logdir = %[1]s/log
raddbdir = %[1]s
radacctdir = %[1]s/acct
confdir = %[1]s
modconfdir = %[1]s
run_dir = %[1]s/run
db_dir = %[1]s
libdir = /usr/lib/freeradius
pidfile = %[1]s/run/radiusd.pid
name = freeradius
max_request_time = 30
cleanup_delay = 2
max_requests = 1024
hostname_lookups = no
log {
	destination = stdout
	auth = yes
	auth_badpass = yes
	auth_goodpass = yes
}
security {
	allow_core_dumps = no
	max_attributes = 200
	reject_delay = 0
	status_server = no
}
thread pool {
	start_servers = 1
	max_servers = 4
	min_spare_servers = 1
	max_spare_servers = 2
}
client box {
	ipaddr = 127.0.0.1
	secret = %[2]s
	require_message_authenticator = yes
}
modules {
	pap {
		normalise = yes
	}
	chap {
	}
	mschap {
		use_mppe = no
	}
	files {
		filename = %[1]s/users
	}
	detail {
		filename = %[1]s/acct/detail
		permissions = 0600
		header = "%%t"
	}
}
server default {
	listen {
		type = auth
		ipaddr = 127.0.0.1
		port = %[3]d
	}
	listen {
		type = acct
		ipaddr = 127.0.0.1
		port = %[4]d
	}
	authorize {
		chap
		mschap
		files
		pap
	}
	authenticate {
		Auth-Type PAP {
			pap
		}
		Auth-Type CHAP {
			chap
		}
		Auth-Type MS-CHAP {
			mschap
		}
	}
	preacct {
	}
	accounting {
		detail
	}
	post-auth {
	}
}
`, d, s.opts.Secret, s.opts.AuthPort, s.opts.AcctPort)
	must(s.t, os.WriteFile(filepath.Join(d, "radiusd.conf"), []byte(conf), 0o600))
	must(s.t, os.WriteFile(filepath.Join(d, "dictionary"), nil, 0o600))
	must(s.t, os.WriteFile(filepath.Join(d, "users"), []byte(s.opts.Users+"\n"), 0o600))
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Restart starts the server again on the same ports and files.
func (s *Server) Restart() {
	s.t.Helper()
	s.Start(s.t)
}

// Record is one accounting request from the detail file: attribute name
// to value, as FreeRADIUS wrote them (quotes removed).
type Record map[string]string

// Accounting reads the detail file: every Accounting-Request received.
func (s *Server) Accounting() []Record {
	b, err := os.ReadFile(filepath.Join(s.dir, "acct", "detail"))
	if err != nil {
		return nil
	}
	var out []Record
	var cur Record
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.TrimSpace(line) == "":
			if cur != nil {
				out = append(out, cur)
				cur = nil
			}
		case line[0] != '\t' && line[0] != ' ':
			cur = Record{}
		case cur != nil:
			k, v, ok := strings.Cut(strings.TrimSpace(line), " = ")
			if ok {
				cur[k] = strings.Trim(v, `"`)
			}
		}
	}
	if cur != nil {
		out = append(out, cur)
	}
	return out
}
