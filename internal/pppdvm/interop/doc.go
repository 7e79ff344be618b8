// Package interop holds the interoperability tests of the project's PPP
// server (package ppp) against Debian's real pppd in the qemu VM of
// internal/pppdvm: `make e2e-pppd`. It has no non-test code; it is a
// package of its own so that internal/pppdvm's tests build even while ppp
// does not.
package interop
