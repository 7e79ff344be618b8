// Package examples holds the ready configs, embedded so that `isp-box demo`
// runs the classic setup with nothing on disk.
package examples

import "embed"

// PAP2T is examples/pap2t.conf: the seed's whole setup in one file.
//
//go:embed pap2t.conf
var PAP2T []byte

// FS holds every example, for the includes of one of them.
//
//go:embed *.conf
var FS embed.FS
