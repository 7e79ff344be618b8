// Package config reads isp-box's one config file and maps it onto the
// components' Config types (pbx.Config, modem.LineConfig, ppp.Config,
// ppp.User, netstack.Config), with every problem reported as file:line and
// what was expected.
//
// The file is in Asterisk's syntax, and the seed setup's sip.conf,
// extensions.conf, mgetty.config, /etc/ppp/options, options.ttyUSB0 and
// pap-secrets paste into it unchanged, meaning what they meant. Load reads
// a file, Parse reads bytes (includes from an fs.FS); both collect every
// problem (an ErrorList, sorted by file then line) rather than stopping at
// the first. Warnings (keys accepted but ignored, a peer with no secret)
// never fail a load.
//
// # Syntax
//
//   - `[section]` starts a section; `key = value` and `key => value` are the
//     same; keys are case-insensitive.
//   - `;` starts a comment to the end of the line; `\;` is a literal
//     semicolon; `;--` ... `--;` is a block comment, which may span lines.
//   - `#include "file"`, `#include <file>` or `#include file` inlines a
//     file, relative to the file that includes it; globs are allowed
//     (`#include "peers/*.conf"`; a glob that matches nothing is a warning).
//     A missing file is an error at the #include's line. `#tryinclude`
//     tolerates a missing file. Include cycles are errors. `#exec` is refused.
//   - Templates, as Asterisk: `[name](!)` defines a template only;
//     `[dev](tmpl1,tmpl2)` inherits its parents' lines in order, then its
//     own, so later settings override and multi-value keys (permit, deny,
//     allow, disallow) accumulate; `[tmpl](!,parent)` is a template that
//     inherits; a parent must be defined above its use. `[name](+)` adds
//     lines to a section defined above.
//
// # Sections
//
// What a section is follows from its header, or for sip.conf-style
// sections from its keys:
//
//   - [general]: sip.conf's [general] (pbx.General).
//   - [box]: the box's own settings (Box).
//   - [network]: the IP side (netstack.Config).
//   - a section with type=friend|peer|user, directly or from a template:
//     a SIP peer (pbx.Peer), keys as sip.conf.
//   - a section with exten =>, same => or include =>: a dial plan context,
//     as extensions.conf; its lines go to pbx.Config.Dialplan in file order
//     and are compiled by pbx/dialplan, whose errors are reported here at
//     their lines, as is a Dial(SIP/x) to a peer x that does not exist or a
//     Dial(HUNT/g) to a hunt group no peer is in.
//   - [mgetty]: /etc/mgetty/mgetty.config verbatim: `key value` lines,
//     `#` comments, leading blanks ignored; keys before the first
//     `port NAME` are defaults for every line; `port ttyUSB0` starts line
//     ttyUSB0.
//   - [line NAME]: the same keys for one line, written `key value` or
//     `key = value`; it adds to `port NAME` in [mgetty] if both exist.
//   - [ppp]: /etc/ppp/options verbatim: pppd option words, `#` comments,
//     quotes and backslash escapes as pppd reads them. [ppp NAME] is
//     /etc/ppp/options.NAME for line NAME, read after [ppp] so it wins, as
//     pppd reads options then options.ttyname. The serial options (crtscts,
//     nocrtscts, lock, nolock, local, modem, a bare speed) set the line's
//     modem.LineConfig; the rest set its ppp.Config.
//   - [users]: /etc/ppp/pap-secrets verbatim: `client server secret
//     [address ...]`, quoted with "..." or '...' as pppd reads it; a
//     secret written @FILE is read from FILE.
//
// Any other section is an error that lists these kinds.
//
// # Values
//
// Booleans are yes/no, true/false, on/off, y/n, t/f, 1/0 (Asterisk's
// ast_true; mgetty's keys also take a bare key as yes). Durations are whole
// seconds unless a key says milliseconds (qualify, toggle-dtr-waittime).
// pppd's asyncmap is hex, as pppd reads it ("asyncmap 200" is 0x200), and
// repeated asyncmap options OR together. One ms-dns fills both DNS slots;
// a second sets the secondary (ipcp.c setdnsaddr), also across [ppp] and
// [ppp NAME]. issue-file is read when the config is loaded (relative to
// the config file) and its text becomes the line's banner; it is listed in
// Config.Files so SIGHUP re-reads it.
//
// # Checks across sections
//
// A line's peer must be a SIP peer that can be called (not type=user) and
// holds no other line; two lines cannot share a device; [ppp NAME] must
// name a line; a line's remote address must be a host address inside
// [network] pool and not the gateway, its local address inside the pool,
// and no two lines may hand out the same remote address; PPP
// authentication (auth) needs at least one [users] line; minexpiry must
// not exceed maxexpiry, rtpstart must be below rtpend; the gateway must be
// inside the pool.
package config
