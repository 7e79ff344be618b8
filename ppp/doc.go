// Package ppp is isp-box's PPP: one session per modem call, server role
// (what pppd did for the seed setup) and client role (tests, the demo).
//
// A session runs on any io.ReadWriteCloser carrying RFC 1662 asynchronous
// HDLC frames. It negotiates LCP (RFC 1661), authenticates the peer with PAP
// (RFC 1334), CHAP-MD5 (RFC 1994), MS-CHAPv1 (RFC 2433) or MS-CHAPv2
// (RFC 2759), negotiates IPCP (RFC 1332) with RFC 1877's DNS and NBNS
// addresses and VJ header compression (RFC 1144), then moves IP packets
// between the line and a Network. The RFC 1661 automaton is cp's table,
// shared by LCP and IPCP.
//
// # Goroutines
//
// Each session has one owner goroutine that holds all protocol state (no
// locks), a reader goroutine that deframes the line into a channel, and a
// writer goroutine that drains a queue onto the line so that the owner never
// blocks on a slow or flow-controlled port. Serve and Client.Close wait for
// all three before returning.
package ppp
