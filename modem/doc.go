// Package modem answers dial-up calls on serial modems: the job mgetty does
// on a classic Linux dial-up server, done in process and forever.
//
// A Line owns one port (a USB-RS232 adapter such as /dev/ttyUSB0, a
// /dev/serial/by-id link, or a pty of the emulated modem in
// internal/sim/hayes). It takes the UUCP lock (modem/lock), opens the port
// with go.bug.st/serial and sets what that library cannot: RTS/CTS
// (CRTSCTS, refused when CTS never rises), DTR (TIOCMBIC/TIOCMBIS, or speed
// B0 on ports without modem-control lines) and DCD polling, through a second
// fd on the same tty. It resets the modem by DTR, runs mgetty's init chat
// (force-init when the modem is silent), counts RINGs, answers, parses
// CONNECT (modem/at), then runs the text login or detects PPP (AutoPPP) and
// hands a Conn to the Handler — PPP, injected by internal/box. Carrier loss
// (DCD low, or NO CARRIER on ports without DCD) cancels the session within a
// poll interval (100 ms). After each call it drops DTR, flushes input and
// re-initialises. A vanished device is closed, unlocked and reopened with
// backoff; a modem that stops answering AT (checked every modem-check-time)
// is reset and reported. Line states and modem events go on the bus, tied to
// the SIP call that rang the line's peer.
//
// Sources: mgetty 1.2 (mgetty.c answer flow, ring.c, cnd.c, logname.c
// AutoPPP, locks.c, conf_mg.c defaults), pppd (lock, local, crtscts), the
// Hayes/USR Sportster manuals for the AT side.
package modem
