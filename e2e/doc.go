// Package e2e holds isp-box's end-to-end tests: the whole dial-up chain in
// one process (internal/demo's World: the box from a config, the virtual
// ATA registering with its PBX, emulated Hayes modems on both sides, a PPP
// client and a client IP stack), a real Debian pppd in a qemu VM dialling
// through it and every other test against that pppd (pppd_test.go; the VM
// harness is e2e/pppdvm), and the scale measurement (scale_test.go, run
// only when ISPBOX_SCALE is set).
//
// There is no code here outside tests; this file only names the package.
package e2e
