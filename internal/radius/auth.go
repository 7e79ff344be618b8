package radius

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"
)

// Method is how the client proved its identity to the NAS.
type Method uint8

// Methods.
const (
	PAP Method = iota + 1
	CHAP
	MSCHAPv1
	MSCHAPv2
)

// AuthRequest is one PPP authentication to check.
type AuthRequest struct {
	Method   Method
	User     string
	Password string // PAP
	// CHAP family: the Identifier of the Response, our Challenge, and the
	// Response's value (16 octets for MD5, 49 for MS-CHAP v1/v2).
	ID        uint8
	Challenge []byte
	Response  []byte

	Port      Port
	SessionID string // Acct-Session-Id to come, so the server can tie them
}

// Port describes the NAS port a session runs on (RFC 2865 §5.5, §5.41,
// RFC 2869 §5.17) and who called it.
type Port struct {
	Number  uint32 // NAS-Port
	ID      string // NAS-Port-Id: the line's name
	Type    uint32 // NAS-Port-Type: NASPortAsync, NASPortVirtual
	Calling string // Calling-Station-Id: the caller's number, when known
	Called  string // Called-Station-Id: the number dialled, when known
}

// AuthResult is what the server said.
type AuthResult struct {
	Accept         bool
	ReplyMessage   string     // Reply-Message(s), joined by newlines
	FramedIP       netip.Addr // Framed-IP-Address, unless 255.255.255.254/255 (the NAS chooses)
	SessionTimeout time.Duration
	IdleTimeout    time.Duration
	FramedMTU      int
	DNS            []netip.Addr // MS-Primary/Secondary-DNS-Server
	Class          [][]byte     // echoed in accounting (RFC 2865 §5.25)
	Interim        time.Duration
	MSCHAP2Success string // "S=..." for the CHAP Success message
	MSCHAPError    string // "E=691 R=..." from the server
	Server         string // who answered
}

// Authenticate sends an Access-Request and reads the reply. An error means
// no server gave a usable answer; a reject is a result with Accept false.
func (c *Client) Authenticate(ctx context.Context, r AuthRequest) (AuthResult, error) {
	p := &Packet{Code: AccessRequest}
	p.AddString(AttrUserName, r.User)
	switch r.Method {
	case PAP:
		p.AddString(AttrUserPassword, r.Password)
	case CHAP:
		if len(r.Response) != 16 {
			return AuthResult{}, fmt.Errorf("radius: CHAP response of %d octets", len(r.Response))
		}
		p.Add(AttrCHAPPassword, append([]byte{r.ID}, r.Response...))
		p.Add(AttrCHAPChallenge, r.Challenge)
	case MSCHAPv1, MSCHAPv2:
		// RFC 2548 §2.1.3/§2.3.2: Ident, Flags, then the PPP response
		// value without its trailing flags octet.
		if len(r.Response) != 49 {
			return AuthResult{}, fmt.Errorf("radius: MS-CHAP response of %d octets", len(r.Response))
		}
		v := append([]byte{r.ID, r.Response[48]}, r.Response[:48]...)
		p.AddVSA(VendorMicrosoft, MSCHAPChallenge, r.Challenge)
		t := MSCHAPResponse
		if r.Method == MSCHAPv2 {
			t = MSCHAP2Response
			v[1] = 0 // RFC 2548 §2.3.2: Flags is zero
		}
		p.AddVSA(VendorMicrosoft, t, v)
	default:
		return AuthResult{}, errors.New("radius: unknown authentication method")
	}
	p.AddUint32(AttrServiceType, ServiceFramed)
	p.AddUint32(AttrFramedProtocol, FramedPPP)
	c.addNAS(p, r.Port)
	if r.SessionID != "" {
		p.AddString(AttrAcctSessionID, r.SessionID)
	}
	reply, err := c.Exchange(ctx, p)
	if err != nil {
		return AuthResult{}, err
	}
	res := parseAuthReply(reply)
	return res, nil
}

func parseAuthReply(reply *Packet) AuthResult {
	res := AuthResult{Accept: reply.Code == AccessAccept}
	var msgs []string
	for _, m := range reply.All(AttrReplyMessage) {
		msgs = append(msgs, string(m))
	}
	res.ReplyMessage = strings.Join(msgs, "\n")
	if v, ok := reply.Get(AttrFramedIPAddress); ok && len(v) == 4 {
		a := netip.AddrFrom4([4]byte(v))
		// RFC 2865 §5.8: ...FF means the user chooses, ...FE the NAS.
		if a != netip.AddrFrom4([4]byte{255, 255, 255, 255}) && a != netip.AddrFrom4([4]byte{255, 255, 255, 254}) {
			res.FramedIP = a
		}
	}
	if v, ok := reply.Uint32(AttrSessionTimeout); ok {
		res.SessionTimeout = time.Duration(v) * time.Second
	}
	if v, ok := reply.Uint32(AttrIdleTimeout); ok {
		res.IdleTimeout = time.Duration(v) * time.Second
	}
	if v, ok := reply.Uint32(AttrFramedMTU); ok {
		res.FramedMTU = int(v)
	}
	if v, ok := reply.Uint32(AttrAcctInterimInterval); ok {
		res.Interim = time.Duration(v) * time.Second
	}
	for _, t := range []uint8{MSPrimaryDNSServer, MSSecondaryDNSSever} {
		if v, ok := reply.VSA(VendorMicrosoft, t); ok && len(v) == 4 {
			res.DNS = append(res.DNS, netip.AddrFrom4([4]byte(v)))
		}
	}
	for _, cl := range reply.All(AttrClass) {
		res.Class = append(res.Class, append([]byte(nil), cl...))
	}
	// RFC 2548 §2.3.3 / §2.1.5: an Ident octet, then the text.
	if v, ok := reply.VSA(VendorMicrosoft, MSCHAP2Success); ok && len(v) > 1 {
		res.MSCHAP2Success = string(v[1:])
	}
	if v, ok := reply.VSA(VendorMicrosoft, MSCHAPError); ok && len(v) > 1 {
		res.MSCHAPError = string(v[1:])
	}
	return res
}

// addNAS adds who we are and which port the user is on.
func (c *Client) addNAS(p *Packet, port Port) {
	if c.cfg.NASIPAddress.Is4() {
		a := c.cfg.NASIPAddress.As4()
		p.Add(AttrNASIPAddress, a[:])
	}
	id := c.cfg.NASIdentifier
	if id == "" {
		id, _ = os.Hostname()
	}
	if id != "" {
		p.AddString(AttrNASIdentifier, id)
	}
	p.AddUint32(AttrNASPort, port.Number)
	if port.ID != "" {
		p.AddString(AttrNASPortID, port.ID)
	}
	p.AddUint32(AttrNASPortType, port.Type)
	if port.Calling != "" {
		p.AddString(AttrCallingStationID, port.Calling)
	}
	if port.Called != "" {
		p.AddString(AttrCalledStationID, port.Called)
	}
}

// AcctRecord is one Accounting-Request's content (RFC 2866 §5).
type AcctRecord struct {
	Status      uint32 // AcctStart, AcctStop, AcctInterim
	SessionID   string
	User        string
	Port        Port
	FramedIP    netip.Addr
	Authentic   uint32 // AuthenticRADIUS or AuthenticLocal
	Class       [][]byte
	SessionTime time.Duration
	InOctets    uint64
	OutOctets   uint64
	InPackets   uint64
	OutPackets  uint64
	Terminate   uint32 // Stop only; 0 = none
	Event       time.Time
}

// AcctPacket builds the Accounting-Request for rec, as of delay after the
// event (Acct-Delay-Time, RFC 2866 §5.2).
func (c *Client) AcctPacket(rec AcctRecord, delay time.Duration) *Packet {
	p := &Packet{Code: AccountingRequest}
	p.AddUint32(AttrAcctStatusType, rec.Status)
	p.AddString(AttrAcctSessionID, rec.SessionID)
	if rec.User != "" {
		p.AddString(AttrUserName, rec.User)
	}
	p.AddUint32(AttrServiceType, ServiceFramed)
	p.AddUint32(AttrFramedProtocol, FramedPPP)
	c.addNAS(p, rec.Port)
	if rec.FramedIP.Is4() {
		a := rec.FramedIP.As4()
		p.Add(AttrFramedIPAddress, a[:])
	}
	if rec.Authentic != 0 {
		p.AddUint32(AttrAcctAuthentic, rec.Authentic)
	}
	for _, cl := range rec.Class {
		p.Add(AttrClass, cl)
	}
	if rec.Status != AcctStart {
		p.AddUint32(AttrAcctSessionTime, uint32(rec.SessionTime/time.Second))
		// RFC 2869 §5.1-5.2: the 2^32 overflows go in Gigawords.
		p.AddUint32(AttrAcctInputOctets, uint32(rec.InOctets))
		p.AddUint32(AttrAcctOutputOctets, uint32(rec.OutOctets))
		p.AddUint32(AttrAcctInputGigawords, uint32(rec.InOctets>>32))
		p.AddUint32(AttrAcctOutputGigawords, uint32(rec.OutOctets>>32))
		p.AddUint32(AttrAcctInputPackets, uint32(rec.InPackets))
		p.AddUint32(AttrAcctOutputPackets, uint32(rec.OutPackets))
	}
	if rec.Status == AcctStop && rec.Terminate != 0 {
		p.AddUint32(AttrAcctTerminateCause, rec.Terminate)
	}
	if !rec.Event.IsZero() {
		p.AddUint32(AttrEventTimestamp, uint32(rec.Event.Unix()))
	}
	p.AddUint32(AttrAcctDelayTime, uint32(max(delay, 0)/time.Second))
	return p
}

// Account sends rec; the error says no server acknowledged it.
func (c *Client) Account(ctx context.Context, rec AcctRecord, delay time.Duration) error {
	_, err := c.Exchange(ctx, c.AcctPacket(rec, delay))
	return err
}

// EncodeRecord and DecodeRecord keep an AcctRecord in the store's queue:
// the Accounting-Request's attributes as they are on the wire, which the
// packet codec already knows how to read back.
func (c *Client) EncodeRecord(rec AcctRecord) ([]byte, error) {
	return (&Packet{Code: AccountingRequest, Attrs: c.AcctPacket(rec, 0).Attrs}).Marshal()
}

// SendEncoded sends a queued record with Acct-Delay-Time set to delay.
func (c *Client) SendEncoded(ctx context.Context, b []byte, delay time.Duration) error {
	p, err := Parse(b)
	if err != nil {
		return fmt.Errorf("radius: queued record: %w", err)
	}
	d := binary.BigEndian.AppendUint32(nil, uint32(max(delay, 0)/time.Second))
	for i := range p.Attrs {
		if p.Attrs[i].Type == AttrAcctDelayTime {
			p.Attrs[i].Value = d
		}
	}
	_, err = c.Exchange(ctx, p)
	return err
}
