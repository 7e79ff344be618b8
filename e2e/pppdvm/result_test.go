package pppdvm

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseResult(t *testing.T) {
	a := netip.MustParseAddr
	tests := []struct {
		name    string
		line    string
		want    Result
		wantErr bool
	}{
		{
			name: "ok",
			line: "ISPBOX-RESULT ok local=192.168.32.105 remote=192.168.32.1 dns1=8.8.8.8 dns2=8.8.4.4 ping=3/3 pppd_exit=5 t=9.81\r\n",
			want: Result{OK: true, Local: a("192.168.32.105"), Remote: a("192.168.32.1"),
				DNS1: a("8.8.8.8"), DNS2: a("8.8.4.4"), PingSent: 3, PingReceived: 3, PPPDExit: 5,
				GuestTime: 9810 * time.Millisecond},
		},
		{
			name: "no dns given",
			line: "ISPBOX-RESULT ok local=10.0.0.2 remote=10.0.0.1 dns1= dns2= ping=2/3 pppd_exit=5 t=1",
			want: Result{OK: true, Local: a("10.0.0.2"), Remote: a("10.0.0.1"), PingSent: 3, PingReceived: 2,
				PPPDExit: 5, GuestTime: time.Second},
		},
		{
			name: "http fetched",
			line: "ISPBOX-RESULT ok local=10.0.0.2 remote=10.0.0.1 ping=3/3 http=ok http_bytes=1234 http_sha256=ab12 pppd_exit=5 t=2",
			want: Result{OK: true, Local: a("10.0.0.2"), Remote: a("10.0.0.1"), PingSent: 3, PingReceived: 3,
				HTTP: "ok", HTTPBytes: 1234, HTTPSHA256: "ab12", PPPDExit: 5, GuestTime: 2 * time.Second},
		},
		{name: "bad http status", line: "ISPBOX-RESULT ok http=maybe", wantErr: true},
		{
			name: "pppd exited",
			line: "ISPBOX-RESULT fail reason=pppd-exited pppd_exit=19 t=8.99",
			want: Result{Reason: "pppd-exited", PPPDExit: 19, GuestTime: 8990 * time.Millisecond},
		},
		{
			name: "unknown key kept out",
			line: "ISPBOX-RESULT fail reason=timeout future=1",
			want: Result{Reason: "timeout", PPPDExit: -1},
		},
		{name: "not a result", line: "ISPBOX-INIT t=1 start", wantErr: true},
		{name: "no status", line: "ISPBOX-RESULT ", wantErr: true},
		{name: "bad status", line: "ISPBOX-RESULT maybe", wantErr: true},
		{name: "bare word", line: "ISPBOX-RESULT ok local", wantErr: true},
		{name: "bad addr", line: "ISPBOX-RESULT ok local=192.168.32.300", wantErr: true},
		{name: "bad ping", line: "ISPBOX-RESULT ok ping=3", wantErr: true},
		{name: "negative count", line: "ISPBOX-RESULT ok ping=-1/3", wantErr: true},
		{name: "NaN time", line: "ISPBOX-RESULT ok t=NaN", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseResult(tt.line)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseResult(%q) error %v, want error %v", tt.line, err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
				t.Errorf("ParseResult(%q) (-want +got):\n%s", tt.line, diff)
			}
		})
	}
}

// FuzzParseResult: whatever parses must format with Line and parse back to
// the same Result.
func FuzzParseResult(f *testing.F) {
	f.Add("ISPBOX-RESULT ok local=192.168.32.105 remote=192.168.32.1 dns1=8.8.8.8 dns2=8.8.8.8 ping=3/3 pppd_exit=5 t=9.81")
	f.Add("ISPBOX-RESULT fail reason=pppd-exited pppd_exit=16 t=8.99")
	f.Add("ISPBOX-RESULT fail reason=timeout")
	f.Add("ISPBOX-RESULT ok local=fe80::1%ppp0 ping=0/0 t=0")
	f.Fuzz(func(t *testing.T, line string) {
		r, err := ParseResult(line)
		if err != nil {
			return
		}
		again, err := ParseResult(r.Line())
		if err != nil {
			t.Fatalf("%q parsed, but its Line %q does not: %v", line, r.Line(), err)
		}
		if diff := cmp.Diff(r, again, cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
			t.Fatalf("round trip of %q via %q (-first +second):\n%s", line, r.Line(), diff)
		}
	})
}
