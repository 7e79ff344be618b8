package pbx

import (
	"strconv"
	"strings"
)

// offersT38 reports whether an SDP offer asks for a T.38 fax stream: an
// m=image line with a non-zero port over udptl (RFC 4612 media type
// image/t38; ITU-T T.38 Annex D for the SDP form). Port 0 is a stream
// being declined (RFC 3264 §6), not an offer.
func offersT38(body []byte) bool {
	for _, l := range sdpLines(body) {
		if !strings.HasPrefix(l, "m=") {
			continue
		}
		f := strings.Fields(l[2:])
		if len(f) < 4 || !strings.EqualFold(f[0], "image") {
			continue
		}
		port, err := strconv.Atoi(strings.SplitN(f[1], "/", 2)[0])
		if err != nil || port == 0 {
			continue
		}
		if strings.EqualFold(f[2], "udptl") || strings.EqualFold(f[2], "tcptl") {
			for _, fmtName := range f[3:] {
				if strings.EqualFold(fmtName, "t38") {
					return true
				}
			}
		}
	}
	return false
}

// involvesModem reports whether either end of the call is a peer with a
// modem line behind it (one the box has seen in a line's state). Such a
// call carries data over G.711: an ATA that hears the modem's 2100 Hz
// answer tone (ITU-T V.25) as fax and switches to T.38 would end it.
func (c *call) involvesModem() bool {
	c.mu.Lock()
	from, callee := c.from, c.callee
	c.mu.Unlock()
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	_, a := s.lineBusy[from]
	_, b := s.lineBusy[callee]
	return a || (callee != "" && b)
}
