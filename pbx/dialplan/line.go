package dialplan

// Line is one dial plan line as written in the config file, before it is
// compiled: `exten => _X!,1,Dial(SIP/pap2t-ispmodem, 20)` in context
// "default" is {Context: "default", Key: "exten", Value: "_X!,1,Dial(SIP/pap2t-ispmodem, 20)"}.
type Line struct {
	Context string
	Key     string // exten, same, include
	Value   string
	File    string
	Line    int
}
