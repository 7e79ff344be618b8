package radius

// Attribute types (RFC 2865 §5, RFC 2866 §5, RFC 2869 §5).
const (
	AttrUserName             uint8 = 1
	AttrUserPassword         uint8 = 2
	AttrCHAPPassword         uint8 = 3
	AttrNASIPAddress         uint8 = 4
	AttrNASPort              uint8 = 5
	AttrServiceType          uint8 = 6
	AttrFramedProtocol       uint8 = 7
	AttrFramedIPAddress      uint8 = 8
	AttrFramedIPNetmask      uint8 = 9
	AttrFramedMTU            uint8 = 12
	AttrReplyMessage         uint8 = 18
	AttrState                uint8 = 24
	AttrClass                uint8 = 25
	AttrVendorSpecific       uint8 = 26
	AttrSessionTimeout       uint8 = 27
	AttrIdleTimeout          uint8 = 28
	AttrCalledStationID      uint8 = 30
	AttrCallingStationID     uint8 = 31
	AttrNASIdentifier        uint8 = 32
	AttrAcctStatusType       uint8 = 40
	AttrAcctDelayTime        uint8 = 41
	AttrAcctInputOctets      uint8 = 42
	AttrAcctOutputOctets     uint8 = 43
	AttrAcctSessionID        uint8 = 44
	AttrAcctAuthentic        uint8 = 45
	AttrAcctSessionTime      uint8 = 46
	AttrAcctInputPackets     uint8 = 47
	AttrAcctOutputPackets    uint8 = 48
	AttrAcctTerminateCause   uint8 = 49
	AttrAcctInputGigawords   uint8 = 52
	AttrAcctOutputGigawords  uint8 = 53
	AttrEventTimestamp       uint8 = 55
	AttrCHAPChallenge        uint8 = 60
	AttrNASPortType          uint8 = 61
	AttrMessageAuthenticator uint8 = 80
	AttrAcctInterimInterval  uint8 = 85
	AttrNASPortID            uint8 = 87
)

// Values.
const (
	ServiceFramed = 2 // Service-Type Framed-User
	FramedPPP     = 1 // Framed-Protocol PPP

	NASPortAsync   = 0 // NAS-Port-Type Async (a modem)
	NASPortVirtual = 5 // NAS-Port-Type Virtual (a TCP line)

	AcctStart   = 1 // Acct-Status-Type
	AcctStop    = 2
	AcctInterim = 3
	AcctOn      = 7
	AcctOff     = 8

	AuthenticRADIUS = 1 // Acct-Authentic
	AuthenticLocal  = 2
)

// Acct-Terminate-Cause values (RFC 2866 §5.10).
const (
	TermUserRequest    = 1
	TermLostCarrier    = 2
	TermLostService    = 3
	TermIdleTimeout    = 4
	TermSessionTimeout = 5
	TermAdminReset     = 6
	TermAdminReboot    = 7
	TermPortError      = 8
	TermNASError       = 9
	TermNASRequest     = 10
)

// Microsoft's vendor id and its attributes (RFC 2548 §2).
const (
	VendorMicrosoft uint32 = 311

	MSCHAPResponse      uint8 = 1
	MSCHAPError         uint8 = 2
	MSCHAPChallenge     uint8 = 11
	MSCHAP2Response     uint8 = 25
	MSCHAP2Success      uint8 = 26
	MSPrimaryDNSServer  uint8 = 28
	MSSecondaryDNSSever uint8 = 29
)
