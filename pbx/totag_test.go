package pbx

import (
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

func TestWithToTag(t *testing.T) {
	const (
		start = "INVITE sip:1@box SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK1\r\n"
		rest  = "From: <sip:a@box>;tag=f1\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 9\r\n\r\nTo: body!"
	)
	for _, tc := range []struct {
		name, in, want string
	}{
		{"name-addr", start + "To: <sip:1@box>\r\n" + rest, start + "To: <sip:1@box>;tag=T\r\n" + rest},
		{"addr-spec", start + "To: sip:1@box\r\n" + rest, start + "To: sip:1@box;tag=T\r\n" + rest},
		{"display name and params", start + "To: \"ISP\" <sip:1@box>;x=y\r\n" + rest, start + "To: \"ISP\" <sip:1@box>;x=y;tag=T\r\n" + rest},
		{"compact, no space", start + "t:<sip:1@box>\r\n" + rest, start + "t:<sip:1@box>;tag=T\r\n" + rest},
		{"case and blanks", start + "TO :  <sip:1@box>  \t\r\n" + rest, start + "TO :  <sip:1@box>;tag=T  \t\r\n" + rest},
		{"folded", start + "To: \"ISP\"\r\n <sip:1@box>\r\n" + rest, start + "To: \"ISP\"\r\n <sip:1@box>;tag=T\r\n" + rest},
		{"LF only (sipgo reads no lines in it)", "INVITE sip:1@box SIP/2.0\nTo: <sip:1@box>\nCall-ID: c1\n\nTo: x", ""},
		{"bare LF inside the To line", start + "To: <sip:1@box>\nX: 1\r\n" + rest, ""},
		{"header named like To", start + "Toll: 1\r\nTo: <sip:1@box>\r\n" + rest, start + "Toll: 1\r\nTo: <sip:1@box>;tag=T\r\n" + rest},
		{"none in the head", start + rest, ""},
		{"two", start + "To: <sip:1@box>\r\nt: <sip:2@box>\r\n" + rest, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := withToTag([]byte(tc.in), "T")
			if tc.want == "" {
				if got != nil {
					t.Fatalf("got %q, want nil", got)
				}
				return
			}
			if string(got) != tc.want {
				t.Fatalf("got\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}

// FuzzWithToTag: whatever sipgo parses as a request with one To header
// and no To-tag parses again after withToTag, with the tag as its To-tag
// and the rest unchanged.
func FuzzWithToTag(f *testing.F) {
	f.Add([]byte("INVITE sip:1@box SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:1@box>\r\nFrom: <sip:a@box>;tag=1\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("INVITE sip:1@box SIP/2.0\r\nt: sip:1@box;x=1\r\nf: <sip:a@box>;tag=1\r\ni: c\r\nCSeq: 1 INVITE\r\nl: 2\r\n\r\nab"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		m, err := sip.NewParser().ParseSIP(msg)
		if err != nil {
			return
		}
		req, ok := m.(*sip.Request)
		if !ok || req.To() == nil || len(req.GetHeaders("To")) != 1 {
			return
		}
		if _, ok := req.To().Params.Get("tag"); ok || !taggable(req) {
			return
		}
		out := withToTag(msg, "fuzztag")
		if out == nil {
			return // a To the byte scan does not find (e.g. two To lines folded into one list): the handler tags it
		}
		m2, err := sip.NewParser().ParseSIP(out)
		if err != nil {
			t.Fatalf("tagged message does not parse: %v\n%q", err, out)
		}
		req2 := m2.(*sip.Request)
		if tag, _ := req2.To().Params.Get("tag"); tag != "fuzztag" {
			t.Fatalf("To-tag %q in %q", tag, out)
		}
		if req2.To().Address.String() != req.To().Address.String() || string(req2.Body()) != string(req.Body()) ||
			strings.Count(string(out), "fuzztag") != 1 {
			t.Fatalf("tagging changed more than the tag:\n%q\n%q", msg, out)
		}
	})
}
