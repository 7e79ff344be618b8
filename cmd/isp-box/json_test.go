package main

import (
	"encoding/json"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/internal/console"
	"github.com/isp-box/isp-box/internal/status"
)

var updateJSON = flag.Bool("update-json", false, "rewrite testdata/json-*.golden")

// fullModem is a softmodem call's figures (a call, its line and its
// session carry them).
var fullModem = &bus.ModemStats{CallID: "00000002", Modulation: "V.22bis", Rate: 2400, State: "data", SNR: 30.5, EQMSE: 0.0009,
	Retrains: 1, RxLevel: -13.2, RTPLost: 2, RTPJitter: 3.25, RTPLate: 1, BytesIn: 4000, BytesOut: 9000}

// full is a status in which every field of every component's status is
// set (TestJSONFixtureComplete keeps it so), so the goldens show each one.
var full = console.Status{
	Version: "test-9", Started: t0, Config: "/etc/isp-box/isp-box.conf", Network: "userspace", SIPAddr: "0.0.0.0:5060",
	Peers: []status.Peer{{
		Name: "pap2t-ispmodem", Username: "pap2t-ispmodem", Type: "friend", Host: netip.MustParseAddr("10.1.8.112"), Port: 5060,
		Dynamic: true, ForceRport: "No", Comedia: "No", ACL: true, Status: "OK (6 ms)", Monitored: true, Online: true,
		Description: "the ISP's modem", Context: "default", SecretSet: true, DirectMedia: true, Insecure: "port,invite",
		Codecs: []string{"ulaw"}, UserAgent: "Linksys/PAP2T-5.1.6(LS)", Contact: "sip:pap2t-ispmodem@10.1.8.112:5060",
		Expires: t0.Add(time.Hour), QualifyMS: 200, QualifyFreq: 60000, RTTMS: 6, LineBusy: true, Calls: 1, CallLimit: 1, MaxForwards: 70,
	}},
	Calls: []status.Call{{
		ID: "00000002", From: "pap2t-client", Exten: "88567682", To: "pap2t-ispmodem", State: bus.CallStatusUp, Start: t0,
		Answer: t0.Add(7 * time.Second), MediaMode: "relay", Codec: "PCMU", CallerLeg: "a84b4c76e66710@10.1.8.112",
		CalleeLeg: "isp-box-00000002@10.1.8.1", RelayCaller: netip.MustParseAddrPort("10.1.8.1:10000"),
		RelayCallee: netip.MustParseAddrPort("10.1.8.1:10002"), Packets: 12345, Lost: 2, JitterMS: 3.25, Modem: fullModem,
	}},
	Lines: []status.Line{{
		Name: "ttyUSB0", Device: "/dev/ttyUSB0", Peer: "pap2t-ispmodem", State: "connected", Since: t0.Add(7 * time.Second),
		LastConnect: "CONNECT 28800/ARQ/V34/LAPM/V42BIS", Speed: 28800, Protocol: "ARQ/V34/LAPM/V42BIS", CallerID: "5551234",
		CallID: "00000002", Session: "ttyUSB0/3", User: "dial", Answered: 3, Errors: 1,
		LastError: "modem did not answer ATZ (reset)", Caps: "modem lines, RTS/CTS", Pending: "config reloaded; applies when the call ends",
		Modem: fullModem,
	}},
	Sessions: []console.Session{{Session: status.Session{
		ID: "3f2a9c01d4e5b677", Line: "ttyUSB0", CallID: "00000002", CallerID: "pap2t-client", User: "dial", Phase: "running", Detail: "IPCP opened",
		Local: netip.MustParseAddr("192.168.32.1"), Remote: netip.MustParseAddr("192.168.32.105"),
		DNS: []netip.Addr{netip.MustParseAddr("192.168.32.1")}, Auth: "pap", AAA: "radius", VJ: true, Start: t0.Add(9 * time.Second),
		Up: t0.Add(12 * time.Second), BytesIn: 4000, BytesOut: 9000, PktsIn: 40, PktsOut: 50, Dropped: 3, FCSErrs: 2,
	}, Acct: "start sent", Modem: fullModem}},
	Registry: []status.Registration{{
		Host: "sip.provider.example:5060", Username: "5551000", Extension: "5551000", Refresh: 105, State: "Timeout",
		RegTime: t0.Add(-time.Hour), LastError: "REGISTER to sip.provider.example:5060: no answer", Attempts: 3,
	}},
	Net: status.Network{
		Mode: "userspace", ICMP: "ping socket", Flows: 4, Dropped: map[string]uint64{"spoofed": 3},
		Sessions: []status.NetSession{{
			Session: "3f2a9c01d4e5b677", Remote: netip.MustParseAddr("192.168.32.105"), Since: t0.Add(12 * time.Second),
			PktsIn: 40, BytesIn: 4000, PktsOut: 50, BytesOut: 9000, Flows: 4, Dropped: 3, Reasons: map[string]uint64{"spoofed": 3},
		}},
	},
	Counters: []console.Counter{{Name: "net.dropped.spoofed", Value: 3}},
	Bans:     []console.BanRow{{Addr: "203.0.113.9", Until: t0.Add(10 * time.Minute)}},
}

// TestJSONGolden: each command's --json prints the components' status
// types whole, every field under its JSON name.
func TestJSONGolden(t *testing.T) {
	d := startDaemonWith(t, full, nil)
	tests := []struct {
		args []string
		typ  reflect.Type // the type of each listed item (or of the document)
	}{
		{[]string{"peers"}, reflect.TypeFor[status.Peer]()},
		{[]string{"peer", "pap2t-ispmodem"}, reflect.TypeFor[status.Peer]()},
		{[]string{"calls"}, reflect.TypeFor[status.Call]()},
		{[]string{"lines"}, reflect.TypeFor[status.Line]()},
		{[]string{"sessions"}, reflect.TypeFor[console.Session]()},
		{[]string{"registry"}, reflect.TypeFor[status.Registration]()},
		{[]string{"status"}, reflect.TypeFor[console.Status]()},
	}
	for _, tt := range tests {
		t.Run(tt.args[0], func(t *testing.T) {
			code, out, errs := runCmd(t.Context(), append([]string{tt.args[0], "--json", "-s", d.sock}, tt.args[1:]...)...)
			if code != 0 || errs != "" {
				t.Fatalf("exit %d, stderr %q", code, errs)
			}
			var doc any
			if err := json.Unmarshal([]byte(out), &doc); err != nil {
				t.Fatal(err)
			}
			if list, ok := doc.([]any); ok {
				if len(list) != 1 {
					t.Fatalf("%d items, want 1", len(list))
				}
				doc = list[0]
			}
			for _, missing := range missingKeys(tt.typ, doc, "") {
				t.Errorf("--json lacks %s", missing)
			}
			path := filepath.Join("testdata", "json-"+tt.args[0]+".golden")
			if *updateJSON {
				if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update-json to create it)", err)
			}
			if diff := cmp.Diff(string(want), out); diff != "" {
				t.Errorf("%s (-want +got):\n%s", path, diff)
			}
		})
	}
}

// missingKeys lists the JSON names of typ's fields (embedded structs'
// included, struct-typed fields and lists of structs followed) that doc
// lacks. The console's own fields of Status that the server fills from
// its bus are followed too: every name must be there.
func missingKeys(typ reflect.Type, doc any, at string) []string {
	obj, ok := doc.(map[string]any)
	if !ok {
		return []string{at + " (not an object)"}
	}
	var missing []string
	for f := range typ.Fields() {
		if !f.IsExported() {
			continue
		}
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			missing = append(missing, missingKeys(f.Type, doc, at)...)
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			missing = append(missing, at+typ.Name()+"."+f.Name+" (json:\"-\")")
			continue
		}
		if name == "" {
			name = f.Name
		}
		v, ok := obj[name]
		if !ok {
			missing = append(missing, at+name)
			continue
		}
		ft := f.Type
		if ft.Kind() == reflect.Slice {
			if list, ok := v.([]any); ok && len(list) > 0 {
				v, ft = list[0], ft.Elem()
			}
		}
		if ft.Kind() == reflect.Struct && ft != reflect.TypeFor[time.Time]() && !ft.Implements(reflect.TypeFor[json.Marshaler]()) &&
			!reflect.PointerTo(ft).Implements(reflect.TypeFor[interface{ MarshalText() ([]byte, error) }]()) {
			missing = append(missing, missingKeys(ft, v, at+name+".")...)
		}
	}
	return missing
}

// TestJSONFixtureComplete fails when a component's status type gains a
// field that the fixture above leaves zero: set it, and rerun
// TestJSONGolden with -update-json so the goldens show it.
func TestJSONFixtureComplete(t *testing.T) {
	for _, v := range []any{full.Peers[0], full.Calls[0], full.Lines[0], full.Sessions[0], full.Registry[0], full.Net, full.Net.Sessions[0]} {
		for _, name := range zeroFields(reflect.ValueOf(v)) {
			t.Errorf("the fixture leaves %T.%s zero: set it so the --json goldens show it", v, name)
		}
	}
}

func zeroFields(v reflect.Value) []string {
	var zero []string
	for i := range v.NumField() {
		f := v.Type().Field(i)
		if f.Anonymous {
			zero = append(zero, zeroFields(v.Field(i))...)
			continue
		}
		if v.Field(i).IsZero() {
			zero = append(zero, f.Name)
		}
	}
	return zero
}
