package box_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/internal/sim/kamailiotest"
	"github.com/isp-box/isp-box/internal/testutil"
)

const did = "5551000"

// trunkConfig registers the box with the provider as the DID and sends
// the provider's calls for it to the ISP modem line.
func trunkConfig(t *testing.T, r *rig, prov *kamailiotest.Server) string {
	src := r.configText(fmt.Sprintf(`
[provider]
type=peer
host=127.0.0.1:%d
insecure=port,invite
context=from-provider
qualify=yes
fromdomain=127.0.0.1

[from-provider]
exten => %s,1,Dial(SIP/pap2t-ispmodem,20)
`, prov.Port(), did))
	return mustReplace(t, src, "context=default\n", fmt.Sprintf("context=default\nregister => %s:provsecret@provider/%s\nregistertimeout=1\n", did, did))
}

func registryState(b *running) (string, string) {
	st := b.Status()
	if len(st.Registry) != 1 {
		return "", fmt.Sprintf("%d registrations", len(st.Registry))
	}
	return st.Registry[0].State, fmt.Sprintf("%+v", st.Registry[0])
}

// TestTrunkKamailio (issue 14): Kamailio is the provider. The box
// registers with digest (MD5, then SHA-256), a sipp caller behind Kamailio
// dials the DID, the call enters the trunk's context and the ISP modem
// line answers it; the provider goes away and comes back, and the box
// registers again within its retry interval, as `isp-box registry` shows.
func TestTrunkKamailio(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Kamailio, sipp and the dial-up chain")
	}
	sipp := testutil.NeedProgram(t, "sip-tester", "sipp")
	for _, alg := range []string{"MD5", "SHA-256"} {
		t.Run(alg, func(t *testing.T) {
			prov := kamailiotest.Start(t, kamailiotest.Options{Users: map[string]string{did: "provsecret"}, Algorithm: alg, MaxExpires: 6})
			r := newRig(t)
			r.writeRaw(trunkConfig(t, r, prov))
			b := r.readyBox()
			testutil.WaitFor(t, 20*time.Second, "registered with the provider", func() (bool, string) {
				st, why := registryState(b)
				return st == "Registered", why
			})
			if !strings.Contains(r.logs.Tail(400), "digest="+alg) {
				t.Errorf("the box did not answer a %s challenge", alg)
			}
			if !strings.Contains(prov.Log(), "registered "+did) {
				t.Errorf("Kamailio did not log the registration")
			}
			if alg != "SHA-256" {
				// One call is enough; the second run checks the digest.
				call(t, sipp, r, b, prov)
			}

			// The provider goes away: the refresh fails, the state says so.
			prov.Stop()
			testutil.WaitFor(t, 30*time.Second, "registration failing while the provider is away", func() (bool, string) {
				st, why := registryState(b)
				return st != "Registered", why
			})
			prov.Restart()
			// registertimeout 1 s backs off to at most 8 s.
			testutil.WaitFor(t, 20*time.Second, "registered again after the provider came back", func() (bool, string) {
				st, why := registryState(b)
				return st == "Registered", why
			})
		})
	}
}

// call runs a sipp caller behind Kamailio that dials the DID, holds the
// answered call 3 s and hangs up; the ISP modem line must answer it.
func call(t *testing.T, sipp string, r *rig, b *running, prov *kamailiotest.Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	port := testutil.FreeUDPPortBelowEphemeral(t)
	scen, err := filepath.Abs(filepath.Join("testdata", "did_caller.xml"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, sipp, prov.Addr(), "-sf", scen, "-s", did, "-i", "127.0.0.1", "-p", fmt.Sprint(port),
		"-m", "1", "-timeout", "50s", "-timeout_error", "-nostdin", "-trace_err",
		"-error_file", filepath.Join(r.dir, "sipp-errors.log"))
	cmd.Dir = r.dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		errs, _ := os.ReadFile(filepath.Join(r.dir, "sipp-errors.log"))
		t.Fatalf("sipp caller: %v\n%s\nsipp errors:\n%s\nkamailio:\n%s", err, tailString(string(out), 10), errs, prov.LogTail(30))
	}
	var started *bus.CallStarted
	answered := false
	lineUp := false
	for _, ev := range b.events.all() {
		switch e := ev.(type) {
		case bus.CallStarted:
			if e.Exten == did {
				started = &e
			}
		case bus.CallAnswered:
			if started != nil && e.CallID == started.CallID && e.Callee == "pap2t-ispmodem" {
				answered = true
			}
		case bus.LineState:
			if started != nil && e.Line == "ttyUSB0" && (e.State == "answering" || e.State == "connected") {
				lineUp = true
			}
		}
	}
	if started == nil || started.From != "provider" || started.Context != "from-provider" {
		t.Fatalf("no call from the provider entered the trunk's context: %+v", started)
	}
	if !answered || !lineUp {
		t.Errorf("call %s: answered by the ISP line %v, modem line answered %v", started.CallID, answered, lineUp)
	}
	waitPeersReady(t, b.Box)
}

func tailString(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
