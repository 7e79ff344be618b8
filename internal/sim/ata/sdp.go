package ata

import (
	"bufio"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Static and dynamic RTP payload types the ATA offers. RFC 3551 §6 fixes
// PCMU = 0 and PCMA = 8; CLEARMODE has no static number (RFC 4040 §5: it
// "MUST" be bound dynamically), 97 is the value RFC 4040's own example uses.
const (
	ptPCMU      = 0
	ptPCMA      = 8
	ptClearmode = 97

	// sdpPtime is the packet time in ms the ATA asks for (RFC 4566 §6
	// a=ptime). The PAP2T default is 30 ms; the modem line uses 20 ms so
	// that one packet carries 72 bytes at 28800 bit/s.
	sdpPtime = 20
)

var (
	errSDPNoAudio   = errors.New("sdp: no audio stream")
	errSDPNoAddress = errors.New("sdp: no connection address")
	errSDPSyntax    = errors.New("sdp: syntax error")
	errSDPNoCodec   = errors.New("sdp: no payload type in common")
)

// format is one payload type of an m= line with its a=rtpmap, if any.
type format struct {
	PT       uint8
	Encoding string // "PCMU", "CLEARMODE", ... ("" when no rtpmap and PT is not static)
	Clock    int    // clock rate in Hz
}

// sdpDesc is the part of an SDP session description (RFC 4566) a modem
// line cares about: one audio stream, where to send it and in which formats.
type sdpDesc struct {
	SessID  uint64
	SessVer uint64
	Addr    netip.Addr // c= (media level if present, else session level)
	Port    int        // m=audio port; 0 means the stream was refused
	Formats []format   // in m= line order (the offerer's preference)
	Ptime   int        // a=ptime in ms, 0 if absent
	Dir     string     // sendrecv, sendonly, recvonly, inactive ("" = sendrecv)
}

// staticFormat gives the RFC 3551 §6 table entry for static payload types
// used without an rtpmap line.
func staticFormat(pt uint8) format {
	switch pt {
	case ptPCMU:
		return format{PT: pt, Encoding: "PCMU", Clock: 8000}
	case ptPCMA:
		return format{PT: pt, Encoding: "PCMA", Clock: 8000}
	}
	return format{PT: pt}
}

// marshal renders the description in the line order RFC 4566 §5 requires.
func (d *sdpDesc) marshal() []byte {
	var b strings.Builder
	ip := "IP4"
	if d.Addr.Is6() && !d.Addr.Is4In6() {
		ip = "IP6"
	}
	addr := d.Addr.Unmap().String()
	fmt.Fprintf(&b, "v=0\r\n")
	fmt.Fprintf(&b, "o=- %d %d IN %s %s\r\n", d.SessID, d.SessVer, ip, addr)
	fmt.Fprintf(&b, "s=-\r\n")
	fmt.Fprintf(&b, "c=IN %s %s\r\n", ip, addr)
	fmt.Fprintf(&b, "t=0 0\r\n")
	fmt.Fprintf(&b, "m=audio %d RTP/AVP", d.Port)
	for _, f := range d.Formats {
		fmt.Fprintf(&b, " %d", f.PT)
	}
	b.WriteString("\r\n")
	for _, f := range d.Formats {
		if f.Encoding != "" {
			fmt.Fprintf(&b, "a=rtpmap:%d %s/%d\r\n", f.PT, f.Encoding, f.Clock)
		}
	}
	if d.Ptime > 0 {
		fmt.Fprintf(&b, "a=ptime:%d\r\n", d.Ptime)
	}
	if d.Dir != "" {
		fmt.Fprintf(&b, "a=%s\r\n", d.Dir)
	}
	return []byte(b.String())
}

// parseSDP reads the first audio stream of an SDP body. It is lenient in
// what it skips (unknown lines, other media) and strict in what it uses.
func parseSDP(body []byte) (*sdpDesc, error) {
	d := &sdpDesc{}
	var sessAddr, mediaAddr netip.Addr
	inAudio, seenAudio := false, false
	rtpmap := map[uint8]format{}
	var pts []uint8
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	sc.Buffer(make([]byte, 0, 1024), 64*1024)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), "\r")
		if line == "" {
			continue
		}
		if len(line) < 2 || line[1] != '=' {
			return nil, fmt.Errorf("%w: line %d %q", errSDPSyntax, n, line)
		}
		key, val := line[0], line[2:]
		switch key {
		case 'o':
			f := strings.Fields(val)
			if len(f) >= 3 {
				d.SessID, _ = strconv.ParseUint(f[1], 10, 64)
				d.SessVer, _ = strconv.ParseUint(f[2], 10, 64)
			}
		case 'c':
			// RFC 4566 §5.7: c=<nettype> <addrtype> <connection-address>
			f := strings.Fields(val)
			if len(f) < 3 || f[0] != "IN" {
				return nil, fmt.Errorf("%w: line %d bad c= %q", errSDPSyntax, n, val)
			}
			host, _, _ := strings.Cut(f[2], "/") // multicast TTL suffix
			a, err := netip.ParseAddr(host)
			if err != nil {
				return nil, fmt.Errorf("%w: line %d c= address %q: %w", errSDPSyntax, n, f[2], err)
			}
			if inAudio {
				mediaAddr = a
			} else if !seenAudio {
				sessAddr = a
			}
		case 'm':
			if seenAudio {
				inAudio = false // only the first audio stream is used
				continue
			}
			// RFC 4566 §5.14: m=<media> <port>[/<n>] <proto> <fmt> ...
			f := strings.Fields(val)
			if len(f) < 3 || f[0] != "audio" {
				inAudio = false
				continue
			}
			portStr, _, _ := strings.Cut(f[1], "/")
			port, err := strconv.Atoi(portStr)
			if err != nil || port < 0 || port > 65535 {
				return nil, fmt.Errorf("%w: line %d bad port %q", errSDPSyntax, n, f[1])
			}
			if f[2] != "RTP/AVP" {
				return nil, fmt.Errorf("%w: line %d transport %q is not RTP/AVP", errSDPSyntax, n, f[2])
			}
			for _, s := range f[3:] {
				pt, err := strconv.ParseUint(s, 10, 7)
				if err != nil {
					return nil, fmt.Errorf("%w: line %d bad format %q", errSDPSyntax, n, s)
				}
				pts = append(pts, uint8(pt))
			}
			d.Port = port
			inAudio, seenAudio = true, true
		case 'a':
			if !inAudio {
				continue
			}
			name, arg, _ := strings.Cut(val, ":")
			switch name {
			case "rtpmap":
				// RFC 4566 §6: a=rtpmap:<payload type> <encoding name>/<clock rate>[/<params>]
				ptStr, enc, ok := strings.Cut(arg, " ")
				pt, err := strconv.ParseUint(ptStr, 10, 7)
				if !ok || err != nil {
					return nil, fmt.Errorf("%w: line %d bad rtpmap %q", errSDPSyntax, n, arg)
				}
				parts := strings.Split(enc, "/")
				if len(parts) < 2 || parts[0] == "" {
					return nil, fmt.Errorf("%w: line %d bad rtpmap %q", errSDPSyntax, n, arg)
				}
				clock, err := strconv.Atoi(parts[1])
				if err != nil || clock <= 0 {
					return nil, fmt.Errorf("%w: line %d bad clock rate %q", errSDPSyntax, n, arg)
				}
				rtpmap[uint8(pt)] = format{PT: uint8(pt), Encoding: parts[0], Clock: clock}
			case "ptime":
				p, err := strconv.Atoi(strings.TrimSpace(arg))
				if err != nil || p <= 0 {
					return nil, fmt.Errorf("%w: line %d bad ptime %q", errSDPSyntax, n, arg)
				}
				d.Ptime = p
			case "sendrecv", "sendonly", "recvonly", "inactive":
				d.Dir = name
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", errSDPSyntax, err)
	}
	if !seenAudio {
		return nil, errSDPNoAudio
	}
	d.Addr = mediaAddr
	if !d.Addr.IsValid() {
		d.Addr = sessAddr
	}
	if !d.Addr.IsValid() {
		return nil, errSDPNoAddress
	}
	for _, pt := range pts {
		if f, ok := rtpmap[pt]; ok {
			d.Formats = append(d.Formats, f)
		} else {
			d.Formats = append(d.Formats, staticFormat(pt))
		}
	}
	return d, nil
}

// rtpAddr is where RTP for this stream must be sent.
func (d *sdpDesc) rtpAddr() netip.AddrPort {
	return netip.AddrPortFrom(d.Addr.Unmap(), uint16(d.Port))
}

// choose picks the payload the line uses from an offer: CLEARMODE (RFC 4040)
// if offered, else PCMU, else PCMA, whatever the offer's order, because a
// modem line wants the clear channel first ("Use Pref Codec Only").
func (d *sdpDesc) choose() (format, error) {
	if d.Port == 0 {
		return format{}, errSDPNoCodec
	}
	for _, want := range []string{"CLEARMODE", "PCMU", "PCMA"} {
		for _, f := range d.Formats {
			if strings.EqualFold(f.Encoding, want) && f.Clock == 8000 {
				return f, nil
			}
		}
	}
	return format{}, errSDPNoCodec
}

// offerFormats is what the ATA offers, clear channel first.
func offerFormats() []format {
	return []format{
		{PT: ptClearmode, Encoding: "CLEARMODE", Clock: 8000},
		{PT: ptPCMU, Encoding: "PCMU", Clock: 8000},
		{PT: ptPCMA, Encoding: "PCMA", Clock: 8000},
	}
}
