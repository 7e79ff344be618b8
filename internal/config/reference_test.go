package config

import (
	"os"
	"strings"
	"testing"
)

// TestReference keeps README.md honest: every key and option the parser
// knows must appear in it, backquoted.
func TestReference(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	var keys []string
	keys = append(keys, generalKeys...)
	keys = append(keys, sortedKeys(generalIgnored)...)
	keys = append(keys, peerKeys...)
	keys = append(keys, sortedKeys(sipPeerIgnored)...)
	keys = append(keys, sortedKeys(sipGeneralIgnored)...)
	keys = append(keys, sortedKeys(peerDefaultKeys)...)
	keys = append(keys, sortedKeys(contextIgnored)...)
	keys = append(keys, boxKeys...)
	keys = append(keys, networkKeys...)
	keys = append(keys, radiusKeys...)
	keys = append(keys, mgettyKeys...)
	keys = append(keys, sortedKeys(pppOptions)...)
	for _, k := range keys {
		if !strings.Contains(doc, "`"+k+"`") && !strings.Contains(doc, "`"+k+" ") {
			t.Errorf("README.md does not document %q", k)
		}
	}
}
