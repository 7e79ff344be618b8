//go:build race

package netstack_test

// raceEnabled: the race detector slows packet handling about tenfold, so
// load tests send less.
const raceEnabled = true
