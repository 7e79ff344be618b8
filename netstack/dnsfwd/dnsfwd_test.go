package dnsfwd_test

import (
	"context"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/dns/dnsmessage"

	"github.com/isp-box/isp-box/internal/testutil"
	"github.com/isp-box/isp-box/netstack/dnsfwd"
)

func TestParseHosts(t *testing.T) {
	in := "127.0.0.1 localhost  # the loopback\n" +
		"::1 localhost ip6-localhost\n" +
		"# comment only\n" +
		"192.168.32.1 Box.Example. box\n" +
		"not-an-ip foo\n" +
		"fe80::1%eth0 linklocal\n" +
		"10.0.0.1\n" +
		"10.0.0.2 box\n"
	h := dnsfwd.ParseHosts([]byte(in))
	tests := []struct {
		name string
		want []string
		ok   bool
	}{
		{"localhost", []string{"127.0.0.1", "::1"}, true},
		{"LOCALHOST.", []string{"127.0.0.1", "::1"}, true},
		{"box.example", []string{"192.168.32.1"}, true},
		{"box", []string{"192.168.32.1", "10.0.0.2"}, true},
		{"foo", nil, false},
		{"linklocal", nil, false},
	}
	for _, tt := range tests {
		as, ok := h.Lookup(tt.name)
		var got []string
		for _, a := range as {
			got = append(got, a.String())
		}
		if ok != tt.ok || !cmp.Equal(got, tt.want) {
			t.Errorf("Lookup(%q) = %v, %v; want %v, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}

func TestParseResolvConf(t *testing.T) {
	got := dnsfwd.ParseResolvConf([]byte("search lan\nnameserver 10.255.255.53\nnameserver ::1\nnameserver bogus\noptions ndots:1\n"))
	want := []netip.AddrPort{netip.MustParseAddrPort("10.255.255.53:53"), netip.MustParseAddrPort("[::1]:53")}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
}

func query(t testing.TB, name string, typ dnsmessage.Type) []byte {
	t.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 0x1234, RecursionDesired: true})
	_ = b.StartQuestions()
	if err := b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: typ, Class: dnsmessage.ClassINET}); err != nil {
		t.Fatal(err)
	}
	q, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func parse(t *testing.T, resp []byte) (dnsmessage.Header, []string) {
	t.Helper()
	var m dnsmessage.Message
	if err := m.Unpack(resp); err != nil {
		t.Fatalf("unpack reply: %v", err)
	}
	var out []string
	for _, a := range m.Answers {
		switch r := a.Body.(type) {
		case *dnsmessage.AResource:
			out = append(out, netip.AddrFrom4(r.A).String())
		case *dnsmessage.AAAAResource:
			out = append(out, netip.AddrFrom16(r.AAAA).String())
		}
	}
	return m.Header, out
}

// upstream starts a real DNS server on 127.0.0.1 (UDP and TCP on the same
// port) that answers every A query with 203.0.113.7.
func upstream(t *testing.T) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Skipf("tcp port %d busy: %v", port, err)
	}
	t.Cleanup(func() { pc.Close(); l.Close() })
	answer := func(q []byte) []byte {
		var m dnsmessage.Message
		if err := m.Unpack(q); err != nil || len(m.Questions) != 1 {
			return nil
		}
		m.Response, m.RecursionAvailable = true, true
		m.Answers = []dnsmessage.Resource{{
			Header: dnsmessage.ResourceHeader{Name: m.Questions[0].Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 5},
			Body:   &dnsmessage.AResource{A: [4]byte{203, 0, 113, 7}},
		}}
		out, _ := m.Pack()
		return out
	}
	testutil.ServePackets(pc, func(q []byte, _ net.Addr) []byte {
		return append([]byte{}, answer(q)...) // an empty datagram for a query it cannot parse
	})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			var lb [2]byte
			if _, err := c.Read(lb[:]); err == nil {
				q := make([]byte, int(lb[0])<<8|int(lb[1]))
				if _, err := io.ReadFull(c, q); err == nil {
					r := answer(q)
					_, _ = c.Write(append([]byte{byte(len(r) >> 8), byte(len(r))}, r...))
				}
			}
			c.Close()
		}
	}()
	return netip.MustParseAddrPort(pc.LocalAddr().String())
}

func TestAnswer(t *testing.T) {
	dir := t.TempDir()
	hosts := filepath.Join(dir, "hosts")
	if err := os.WriteFile(hosts, []byte("127.0.0.1 localhost\n::1 localhost\n192.0.2.5 printer.lan\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	up := upstream(t)
	// A closed port on loopback: the kernel refuses at once.
	dead := netip.MustParseAddrPort("127.0.0.1:1")

	tests := []struct {
		name     string
		upstream []netip.AddrPort
		qname    string
		qtype    dnsmessage.Type
		tcp      bool
		rcode    dnsmessage.RCode
		want     []string
	}{
		{"hosts A", nil, "localhost.", dnsmessage.TypeA, false, dnsmessage.RCodeSuccess, []string{"127.0.0.1"}},
		{"hosts AAAA", nil, "localhost.", dnsmessage.TypeAAAA, false, dnsmessage.RCodeSuccess, []string{"::1"}},
		{"hosts no AAAA is NODATA", nil, "printer.lan.", dnsmessage.TypeAAAA, false, dnsmessage.RCodeSuccess, nil},
		{"hosts case-insensitive", []netip.AddrPort{dead}, "PRINTER.lan.", dnsmessage.TypeA, false, dnsmessage.RCodeSuccess, []string{"192.0.2.5"}},
		{"upstream udp", []netip.AddrPort{up}, "example.test.", dnsmessage.TypeA, false, dnsmessage.RCodeSuccess, []string{"203.0.113.7"}},
		{"upstream tcp", []netip.AddrPort{up}, "example.test.", dnsmessage.TypeA, true, dnsmessage.RCodeSuccess, []string{"203.0.113.7"}},
		{"dead then good", []netip.AddrPort{dead, up}, "example.test.", dnsmessage.TypeA, false, dnsmessage.RCodeSuccess, []string{"203.0.113.7"}},
		{"no upstream servfail", []netip.AddrPort{dead}, "example.test.", dnsmessage.TypeA, false, dnsmessage.RCodeServerFailure, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := dnsfwd.New(dnsfwd.Config{Upstream: tt.upstream, HostsFile: hosts, ResolvConf: filepath.Join(dir, "none"), Timeout: 5 * time.Second})
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			resp, err := f.Answer(ctx, query(t, tt.qname, tt.qtype), tt.tcp)
			if err != nil {
				t.Fatal(err)
			}
			h, got := parse(t, resp)
			if h.ID != 0x1234 || !h.Response || h.RCode != tt.rcode {
				t.Fatalf("header %+v, want id 0x1234 response rcode %v", h, tt.rcode)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Fatalf("answers (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAnswerRejectsGarbage(t *testing.T) {
	f := dnsfwd.New(dnsfwd.Config{HostsFile: "-", ResolvConf: "/nonexistent"})
	for _, b := range [][]byte{nil, {1, 2, 3}, make([]byte, 12)} {
		if _, err := f.Answer(context.Background(), b, false); err == nil {
			t.Errorf("Answer(%x) accepted", b)
		}
	}
}

func FuzzParseHosts(f *testing.F) {
	f.Add([]byte("127.0.0.1 localhost\n::1 localhost ip6-localhost # x\n"))
	f.Add([]byte("192.168.32.1\tbox box.lan.\n#\n\n10.0.0.1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h := dnsfwd.ParseHosts(b)
		for name, as := range h {
			if name == "" || len(as) == 0 {
				t.Fatalf("empty entry %q %v", name, as)
			}
			got, ok := h.Lookup(name + ".")
			if !ok || len(got) != len(as) {
				t.Fatalf("Lookup(%q.) = %v %v", name, got, ok)
			}
		}
	})
}

// FuzzAnswer: whatever arrives, Answer never panics, and a reply it gives
// parses and carries the query's ID.
func FuzzAnswer(f *testing.F) {
	f.Add(query(f, "localhost.", dnsmessage.TypeA))
	f.Add(query(f, "x.", dnsmessage.TypeMX))
	fw := dnsfwd.New(dnsfwd.Config{HostsFile: "-", ResolvConf: "/nonexistent"})
	f.Fuzz(func(t *testing.T, b []byte) {
		resp, err := fw.Answer(context.Background(), b, false)
		if err != nil {
			return
		}
		var p dnsmessage.Parser
		h, err := p.Start(resp)
		if err != nil {
			t.Fatalf("reply does not parse: %v", err)
		}
		if !h.Response || len(b) < 2 || h.ID != uint16(b[0])<<8|uint16(b[1]) {
			t.Fatalf("bad reply header %+v", h)
		}
	})
}
