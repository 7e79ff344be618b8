package ata

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseSDP(t *testing.T) {
	tests := []struct {
		file     string
		want     *sdpDesc
		wantErr  error
		wantPick string // encoding choose() picks, "" if it fails
	}{
		{
			file: "offer-ata.sdp", // what this package offers
			want: &sdpDesc{SessID: 1234, SessVer: 1, Addr: netip.MustParseAddr("127.0.0.1"), Port: 16384, Ptime: 20, Dir: "sendrecv",
				Formats: []format{{97, "CLEARMODE", 8000}, {0, "PCMU", 8000}, {8, "PCMA", 8000}}},
			wantPick: "CLEARMODE",
		},
		{
			file: "offer-pap2t-voice.sdp", // a voice line's offer: G.711 first, NSE, telephone-event, no CLEARMODE
			want: &sdpDesc{SessID: 7291, SessVer: 7291, Addr: netip.MustParseAddr("10.1.8.112"), Port: 16482, Ptime: 30, Dir: "sendrecv",
				Formats: []format{{0, "PCMU", 8000}, {2, "", 0}, {8, "PCMA", 8000}, {18, "G729a", 8000}, {100, "NSE", 8000}, {101, "telephone-event", 8000}}},
			wantPick: "PCMU",
		},
		{
			file: "offer-media-level-c.sdp", // c= only at media level, static PTs without rtpmap, second m= ignored
			want: &sdpDesc{Addr: netip.MustParseAddr("192.0.2.7"), Port: 4000,
				Formats: []format{{8, "PCMA", 8000}}},
			wantPick: "PCMA",
		},
		{file: "no-audio.sdp", wantErr: errSDPNoAudio},
		{file: "no-address.sdp", wantErr: errSDPNoAddress},
		{file: "bad-rtpmap.sdp", wantErr: errSDPSyntax},
		{
			file: "refused.sdp", // port 0: stream refused
			want: &sdpDesc{Addr: netip.MustParseAddr("127.0.0.1"), Port: 0, Formats: []format{{0, "PCMU", 8000}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			body, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			got, err := parseSDP(body)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("parseSDP error = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseSDP: %v", err)
			}
			if d := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
				t.Errorf("parseSDP (-want +got):\n%s", d)
			}
			f, err := got.choose()
			if tt.wantPick == "" {
				if err == nil {
					t.Errorf("choose = %+v, want an error", f)
				}
			} else if err != nil || f.Encoding != tt.wantPick {
				t.Errorf("choose = %+v, %v; want %s", f, err, tt.wantPick)
			}
		})
	}
}

// roundTrip checks parse → marshal → parse gives the same description.
func roundTrip(t *testing.T, body []byte) {
	d1, err := parseSDP(body)
	if err != nil {
		return
	}
	// marshal writes only what it models; formats without a name are static
	// and come back through staticFormat.
	for i, f := range d1.Formats {
		if f.Encoding == "" {
			d1.Formats[i] = staticFormat(f.PT)
		}
	}
	out := d1.marshal()
	d2, err := parseSDP(out)
	if err != nil {
		t.Fatalf("re-parse of %q: %v", out, err)
	}
	for i, f := range d2.Formats {
		if f.Encoding == "" {
			d2.Formats[i] = staticFormat(f.PT)
		}
	}
	d1.Addr, d2.Addr = d1.Addr.Unmap(), d2.Addr.Unmap()
	if d := cmp.Diff(d1, d2, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
		t.Fatalf("round trip of %q (-first +second):\n%s", body, d)
	}
}

func TestSDPRoundTrip(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.sdp")
	for _, f := range files {
		body, _ := os.ReadFile(f)
		t.Run(filepath.Base(f), func(t *testing.T) { roundTrip(t, body) })
	}
}

func FuzzParseSDP(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.sdp")
	for _, file := range files {
		body, _ := os.ReadFile(file)
		f.Add(body)
	}
	f.Fuzz(func(t *testing.T, body []byte) { roundTrip(t, body) })
}
