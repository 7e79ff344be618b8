package modem

//go:generate go run golang.org/x/tools/cmd/stringer@v0.52.0 -type State -trimprefix State

// State is where a Line is in mgetty's job, done in process and forever:
//
//	    ┌──────── device vanished / open failed (backoff) ◄──────────┐
//	    ▼                                                            │
//	opening ──► resetting ──► initialising ──► idle ──► ringing ──► answering
//	              ▲   ▲   modem silent │       ▲ │ ▲      │ stopped    │ CONNECT
//	              │   └────────────────┘       │ │ └──────┘ ringing    ▼
//	              │         modem-check fails  │ │                 connected
//	              └────────────────────────────┼─┘                     │ carrier lost,
//	                                           │                       │ session over
//	                             re-init ◄── hangingup ◄───────────────┘
//
// Direct lines (no modem) go opening → connected → hangingup → connected.
// Down is the state after Run returned.
type State int

// Line states; the String form is what LineState events and `isp-box lines` show.
const (
	StateOpening State = iota
	StateResetting
	StateInitialising
	StateIdle
	StateRinging
	StateAnswering
	StateConnected
	StateHangingup
	StateDown
)
