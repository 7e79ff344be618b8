// Package dialin holds the dial-up test of Debian's pppd and chat in the
// qemu VM of internal/pppdvm against the project's modem line manager and
// PPP server, joined by two emulated Hayes modems on an in-memory exchange
// (internal/sim/hayes): the chain of a dial-in without the SIP legs. The
// whole chain with the virtual ATA and the PBX is the box's e2e test. It is
// a package of its own so that the other pppdvm tests build without modem.
package dialin
