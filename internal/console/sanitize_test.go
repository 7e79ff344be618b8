package console

import (
	"bytes"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/internal/status"
)

func TestSanitize(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Linksys/PAP2T-5.1.6(LS)", "Linksys/PAP2T-5.1.6(LS)"},
		{"a\tb\n", "a\tb\n"},
		{"Grüße, 日本", "Grüße, 日本"},
		{"x\x1b[2J\x1b]0;pwned\x07y", `x\x1b[2J\x1b]0;pwned\x07y`},
		{"over\rwrite\b", `over\x0dwrite\x08`},
		{"c1 \u009b31m", `c1 \x9b31m`},
		{"raw \x9b byte", `raw \x9b byte`},
		{"del\x7f", `del\x7f`},
		{"bidi \u202egnp.exe", `bidi \u202egnp.exe`},
		{"cut \xe6\x97", `cut \xe6\x97`},
	}
	for _, tt := range tests {
		if got := string(sanitize([]byte(tt.in))); got != tt.want {
			t.Errorf("sanitize(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestRenderersEscapePeerStrings: what a peer sent (here a User-Agent that
// would clear the screen and retitle the terminal) reaches the terminal
// only as visible escapes, in `isp-box peer` and in the event stream.
func TestRenderersEscapePeerStrings(t *testing.T) {
	const ua = "PAP2T\x1b[2J\x1b]0;owned\x07\r"
	var out bytes.Buffer
	RenderPeer(&out, status.Peer{Name: "pap2t-client", Type: "friend", UserAgent: ua})
	RenderPeers(&out, []status.Peer{{Name: "evil\x1b[5m", Type: "friend"}})
	ev := bus.PeerRegistered{Peer: "pap2t-client", UserAgent: ua}
	if err := RenderEvent(&out, EventLine{Time: time.Now(), Kind: ev.Kind(), Text: eventText(ev)}); err != nil {
		t.Fatal(err)
	}
	for _, b := range out.Bytes() {
		if b < 0x20 && b != '\n' && b != '\t' || b == 0x7f {
			t.Fatalf("control byte %#x in the output:\n%q", b, out.String())
		}
	}
	if !strings.Contains(out.String(), `Useragent    : PAP2T\x1b[2J\x1b]0;owned\x07\x0d`) {
		t.Errorf("user agent not shown escaped:\n%s", out.String())
	}
}

// FuzzSanitize: whatever a peer sends, the output is valid UTF-8 with no
// control character but newline and tab.
func FuzzSanitize(f *testing.F) {
	f.Add([]byte("x\x1b[2J\u009b\u202e\xff"))
	f.Fuzz(func(t *testing.T, p []byte) {
		out := sanitize(p)
		if !utf8.Valid(out) {
			t.Fatalf("invalid UTF-8: %q", out)
		}
		for _, r := range string(out) {
			if unsafeRune(r, utf8.RuneLen(r)) {
				t.Fatalf("%U left in %q", r, out)
			}
		}
	})
}
