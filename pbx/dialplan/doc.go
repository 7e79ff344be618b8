// Package dialplan compiles and runs an Asterisk extensions.conf dial plan:
// contexts, `exten =>` and `same =>` with priorities (numbers, n, s, +N,
// labels), `include =>`, literal extensions and `_` patterns (X Z N [...]
// . !) sorted and matched as main/pbx.c does, and the applications a PBX
// without media needs: Dial, Hangup, Busy, Congestion, Answer, Wait, NoOp,
// Goto, Ringing, Progress, Set; and the services of the box's data calls:
// PPP(), Login(), Telnet(host[:port]) and TCP(host:port), which say what
// answers a call on a modem line (a virtual modem's ATD, a hardware line
// rung by a Dial()): the first of them met before the call connects wins.
//
// # Hunt groups
//
// Dial(HUNT/group[,timeout]) rings the members of a hunt group (peers whose
// huntgroup= names the group, in config order) one at a time: the first
// that is registered, reachable and whose line is not busy gets the call; a
// member that answers busy or unavailable passes the call to the next. It
// is meant for modem banks; the pbx package expands the group.
//
// The package is pure: no I/O, no clock. Compile once, then Start/Next or
// Trace for each call; a Plan is safe for concurrent use.
package dialplan
