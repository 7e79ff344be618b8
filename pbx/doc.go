// Package pbx is the box's SIP PBX: what chan_sip and the dial plan did in
// the Asterisk setup it replaces.
//
//   - Registrar (RFC 3261 §10) with MD5 digest authentication (RFC 2617
//     without qop, as chan_sip): nonces of our own, signed, expiring, and
//     each accepted once; bindings keyed by peer (the AOR's user part), so
//     two lines on one IP and two ports are two bindings; persistence
//     through BindingStore.
//   - Qualify: chan_sip's OPTIONS pokes and statuses (OK, LAGGED,
//     UNREACHABLE, UNKNOWN, Unmonitored).
//   - B2BUA: every call is two dialogs. The caller's INVITE is challenged,
//     routed through the dial plan (package dialplan) and sent to the
//     callee's registered contact; provisional and final responses, ACK,
//     BYE, CANCEL, re-INVITE and UPDATE are relayed.
//   - Media: with directmedia the SDP goes through untouched and RTP flows
//     between the two ATA ports; otherwise the box anchors the media and
//     relays RTP (RFC 3550 counters: packets, loss, jitter).
//   - Security: the request entry (edge.go) reads the socket itself: bans
//     and per-source rates before any parse, stateless answers no larger
//     than the request to strangers, state only for what admit() let in;
//     alwaysauthreject, ACLs, bans only on proven failures, a per-name
//     guess rate, load shedding with 503; nothing reaches the dial plan
//     without authentication. SECURITY.md at the repository root says
//     what an admin gets and sets.
//
// Replay protection: chan_sip offered no qop, so there is no nonce-count to
// check. Every nonce we issue carries its issue time, the address:port it
// was sent to and an HMAC (so we need no state to know it is ours, fresh
// and presented by the source it was sent to) and is accepted for one
// successful request only; a second use, or a use after NonceTTL, gets
// chan_sip's "401 stale=true" when the credentials are otherwise right.
package pbx
