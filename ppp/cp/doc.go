// Package cp holds what PPP's control protocols share (RFC 1661 §4, §5):
// the Code/Identifier/Length packet, Type/Length/Value configuration options,
// and the option negotiation automaton, written once as the RFC's
// state-transition table and driven by LCP, IPCP and any later NCP, which
// differ only in how they judge options (the Handler).
package cp
