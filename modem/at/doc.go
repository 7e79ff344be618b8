// Package at is the Hayes AT dialogue as text: the result lines a modem sends
// (ParseResult, Result.String), the command lines a DTE sends (ParseCommandLine)
// and mgetty-style expect/send chat scripts (ParseChat, DefaultInitChat).
//
// It does no I/O. The line manager in package modem and the emulated modem in
// internal/sim/hayes both speak through it, so the two sides agree on the
// grammar by construction and the grammar is fuzzed once.
//
// Sources: the Hayes command set as documented in the USR Courier V.34 and
// Sportster manuals (result codes, &A subsets, S-registers), USR 5631
// "Result Codes" (framing: verbose "\r\n<text>\r\n", numeric "<n>\r"), and
// mgetty 1.2 (cnd.c CONNECT parsing, conf_mg.c init chat, do_chat.c escapes).
package at
