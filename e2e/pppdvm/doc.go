// Package pppdvm boots a small qemu VM that runs Debian's real pppd (and
// chat) on its second serial port, for interoperability tests of the
// project's PPP server and of the whole dial-in chain.
//
// The host's kernel has no PPP driver, so pppd cannot run on the host. The
// VM is built once by tools/pppd-vm/build.sh (`make pppd-vm`) from Debian
// packages into a cache directory (see CacheDir); each Start appends a small
// per-VM cpio with the call's settings to the prebuilt initramfs, so nothing
// is rebuilt per test. The guest's /init runs one call and prints a line
//
//	ISPBOX-RESULT ok local=192.168.32.105 remote=192.168.32.1 dns1=8.8.8.8 dns2=8.8.8.8 ping=3/3 pppd_exit=5 t=9.81
//
// on its console, which Wait parses into a Result.
//
// The guest's ttyS1 is one end of a socketpair that the host keeps: no byte
// pppd writes is lost however late the test reads (qemu discards output to
// a pty that nobody has open: qemu's pty chardev drops writes while no reader is connected). Serial
// gives that byte stream to serve as a direct line; BridgeToPTY joins it to
// an emulated modem's pty so that the guest's chat dials through it. With
// Options.SerialTCP qemu itself carries ttyS1 to a TCP address instead (its
// `-serial tcp:` and telnet=on chardevs), as an emulator's serial port does.
package pppdvm
