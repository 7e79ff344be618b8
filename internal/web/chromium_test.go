package web_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/remote"

	"github.com/isp-box/isp-box/examples"
	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/internal/config"
	"github.com/isp-box/isp-box/internal/console"
	"github.com/isp-box/isp-box/internal/demo"
	"github.com/isp-box/isp-box/internal/status"
	"github.com/isp-box/isp-box/internal/web"
)

// chromiumPath finds Debian's chromium (or $ISPBOX_CHROMIUM). Without it
// the test skips, unless CI asks for it (.ci/run installs the package and
// sets ISPBOX_REQUIRE_CHROMIUM=1; ISPBOX_REQUIRE_ROOT=1 asks too).
func chromiumPath(t *testing.T) string {
	t.Helper()
	names := []string{"chromium", "chromium-browser"}
	if p := os.Getenv("ISPBOX_CHROMIUM"); p != "" {
		names = []string{p}
	}
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	msg := "headless Chromium not found (apt-get install chromium, or set ISPBOX_CHROMIUM)"
	if os.Getenv("ISPBOX_REQUIRE_CHROMIUM") == "1" || os.Getenv("ISPBOX_REQUIRE_ROOT") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// artifactDir is where the screenshots go: $ISPBOX_ARTIFACTS/web, else
// testdata/artifacts (git ignores it).
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join("testdata", "artifacts")
	if a := os.Getenv("ISPBOX_ARTIFACTS"); a != "" {
		dir = filepath.Join(a, "web")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(dir)
	return abs
}

// startChromium starts a headless Chromium with its own profile and its
// own process group and returns its DevTools websocket address. The test's
// cleanup kills the whole group (browser, zygote, renderers, GPU and
// network processes), and then anything else still using the profile.
func startChromium(t *testing.T, ctx context.Context, path string) string {
	t.Helper()
	profile := t.TempDir()
	args := []string{
		"--headless=new", "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
		"--user-data-dir=" + profile, "--no-first-run", "--no-default-browser-check",
		"--disable-gpu", "--disable-dev-shm-usage", "--disable-extensions", "--disable-sync",
		"--disable-background-networking", "--disable-component-update", "--mute-audio",
		"--password-store=basic", "--use-mock-keychain",
		// Chromium refuses its sandbox as root, and as a user it needs
		// user namespaces a container may not have; the page is the
		// box's own, on loopback.
		"--no-sandbox",
		"about:blank",
	}
	cmd := exec.Command(path, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Env = append(os.Environ(), "HOME="+profile) // nothing of the user's
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	waited := make(chan struct{})
	wsURL := make(chan string, 1)
	go func() {
		// Read stderr to the end, so Chromium never blocks on it.
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			out.WriteString(line + "\n")
			if u, ok := strings.CutPrefix(line, "DevTools listening on "); ok {
				select {
				case wsURL <- u:
				default:
				}
			}
		}
		cmd.Wait()
		close(waited)
	}()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-waited:
		case <-time.After(10 * time.Second):
			t.Errorf("chromium (pid %d) did not exit after SIGKILL", cmd.Process.Pid)
		}
		if n := killUsing(profile); n > 0 {
			t.Logf("killed %d Chromium processes outside its process group", n)
		}
		if t.Failed() {
			t.Logf("chromium's output:\n%s", out.String())
		}
	})
	select {
	case u := <-wsURL:
		return u
	case <-waited:
		t.Fatalf("chromium exited before listening:\n%s", out.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("chromium did not print its DevTools address in 30 s:\n%s", out.String())
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	return ""
}

// killUsing kills every process whose command line has the profile
// directory: a Chromium child that left the process group (none is
// expected) must not outlive the test.
func killUsing(profile string) int {
	want := []byte("--user-data-dir=" + profile)
	ents, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cl, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		for _, a := range bytes.Split(cl, []byte{0}) {
			if bytes.Equal(a, want) {
				syscall.Kill(pid, syscall.SIGKILL)
				n++
				break
			}
		}
	}
	return n
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) WriteString(x string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.WriteString(x)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestStatusPageInChromium loads the status page of the demo's box (the
// embedded examples/pap2t.conf with the virtual ATA and emulated modems,
// the web listener on loopback) in headless Chromium over the DevTools
// protocol, checks that the seed's two peers are shown, then makes the
// demo's call and checks that the page shows it within a second of the
// box starting it, its PPP session with bytes, and the call gone within a
// second of its end. Screenshots (desktop and phone) go to artifactDir.
func TestStatusPageInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Chromium and dials in through the whole chain")
	}
	chromium := chromiumPath(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	arts := artifactDir(t)

	cfg, err := config.Parse("examples/pap2t.conf", examples.PAP2T, examples.FS)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Box.Metrics = netip.MustParseAddrPort("127.0.0.1:0")
	w, err := demo.Start(ctx, demo.WorldOptions{Config: cfg, RingInterval: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	page := "http://" + w.Box.MetricsAddr() + "/"

	wsURL := startChromium(t, ctx, chromium)
	actx, acancel := remote.NewAllocator(ctx, wsURL, remote.NoModifyURL)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()
	// Every step has its own deadline, so a browser that stops answering
	// fails the test instead of hanging it.
	run := func(what string, d time.Duration, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, scancel := context.WithTimeout(bctx, d)
		defer scancel()
		if err := chromedp.Do(sctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	eval := func(expr string) string {
		t.Helper()
		sctx, scancel := context.WithTimeout(bctx, 10*time.Second)
		defer scancel()
		s, err := chromedp.Run(sctx, chromedp.Evaluate[string](expr))
		if err != nil {
			t.Fatalf("evaluate %s: %v", expr, err)
		}
		return s
	}
	// waitText polls the DOM (every animation frame) until the element's
	// text has every one of want.
	waitText := func(sel string, d time.Duration, want ...string) error {
		sctx, scancel := context.WithTimeout(bctx, d+5*time.Second)
		defer scancel()
		cond := make([]string, len(want))
		for i, s := range want {
			cond[i] = fmt.Sprintf("t.includes(%q)", s)
		}
		expr := fmt.Sprintf(`(() => { const e = document.querySelector(%q); const t = e ? e.textContent : ""; return %s; })()`,
			sel, strings.Join(cond, " && "))
		_, err := chromedp.Run(sctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(d)))
		return err
	}
	shot := func(name string, full bool) {
		t.Helper()
		sctx, scancel := context.WithTimeout(bctx, 20*time.Second)
		defer scancel()
		var png []byte
		var err error
		if full {
			png, err = chromedp.Run(sctx, chromedp.FullScreenshot(100))
		} else {
			png, err = chromedp.Run(sctx, chromedp.CaptureScreenshot())
		}
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		p := filepath.Join(arts, name)
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", p)
	}

	// The first Run starts the tab, which lives as long as the context
	// of that Run: bctx itself, bounded by the test's 3 minutes.
	if err := chromedp.Do(bctx, chromedp.EmulateViewport(1280, 900), chromedp.Navigate(page)); err != nil {
		t.Fatalf("open the page: %v", err)
	}
	if err := waitText("#peers", 10*time.Second, "pap2t-ispmodem", "pap2t-client", "OK"); err != nil {
		t.Fatalf("the seed's two peers are not shown: %v\npeers: %s", err, eval(`document.querySelector("#peers").innerText`))
	}
	for _, p := range []string{"pap2t-ispmodem", "pap2t-client"} {
		row := eval(fmt.Sprintf(`[...document.querySelectorAll("#peers tr")].map(r => r.innerText).find(s => s.includes(%q)) || ""`, p))
		if !strings.Contains(row, "OK (") || !strings.Contains(row, "127.0.0.1:") {
			t.Errorf("peer %s shown as %q, want its address and OK (N ms)", p, row)
		}
	}
	if err := waitText("#lines", 5*time.Second, "ttyUSB0", "idle"); err != nil {
		t.Errorf("the line is not shown idle: %v: %s", err, eval(`document.querySelector("#lines").innerText`))
	}
	if got := eval(`document.querySelector("#calls").innerText`); strings.TrimSpace(got) != "none" {
		t.Errorf("calls before the call: %q, want none", got)
	}
	shot("status-page.png", false)

	// The demo's call: the client's modem dials 88567682, the ATA sends
	// the INVITE, the box rings the ISP modem's line, it answers, PPP.
	events := w.Bus.Subscribe("test", 256, func(ev bus.Event) bool {
		switch ev.(type) {
		case bus.CallStarted, bus.CallEnded:
			return true
		}
		return false
	})
	defer events.Close()
	nextEvent := func(kind string) time.Time {
		t.Helper()
		for {
			select {
			case env := <-events.C():
				if env.Event.Kind() == kind {
					return env.Time
				}
			case <-ctx.Done():
				t.Fatalf("no %s event: %v", kind, ctx.Err())
			}
		}
	}
	var client string
	for _, p := range w.Peers {
		if _, ok := w.Clients[p]; ok {
			client = p
		}
	}
	type dialed struct {
		s   *demo.Session
		err error
	}
	dialDone := make(chan dialed, 1)
	go func() {
		s, err := demo.Dial(ctx, w.Clients[client].Path(), demo.DialOptions{Number: "88567682", User: "dial", Password: "dial"})
		dialDone <- dialed{s, err}
	}()
	started := nextEvent("call.started")
	if err := waitText("#calls", 3*time.Second, "88567682", client); err != nil {
		t.Fatalf("the call is not shown: %v: %s", err, eval(`document.querySelector("#calls").innerText`))
	}
	lag := time.Since(started)
	t.Logf("the call was shown %v after the box started it", lag.Round(time.Millisecond))
	if lag > time.Second {
		t.Errorf("the page showed the call %v after it started, want within a second", lag)
	}
	d := <-dialDone
	if d.err != nil {
		t.Fatalf("the demo's call: %v", d.err)
	}
	sess := d.s
	remoteAddr := sess.PPP.Local().String() // the client's address, the session's "remote"
	if err := waitText("#sessions", 3*time.Second, "ttyUSB0", remoteAddr); err != nil {
		t.Errorf("the PPP session is not shown: %v: %s", err, eval(`document.querySelector("#sessions").innerText`))
	}
	// Who called: the session's caller (and the line's caller ID, when
	// the modem got one) as the status JSON has them.
	var js struct {
		Lines []struct {
			Name     string `json:"name"`
			CallerID string `json:"caller_id"`
		} `json:"lines"`
		Sessions []struct {
			Line   string `json:"line"`
			Caller string `json:"caller"`
		} `json:"sessions"`
	}
	if err := getJSON(ctx, page+"status", &js); err != nil {
		t.Fatal(err)
	}
	var sessCaller, lineCaller string
	for _, s := range js.Sessions {
		if s.Line == "ttyUSB0" {
			sessCaller = s.Caller
		}
	}
	for _, l := range js.Lines {
		if l.Name == "ttyUSB0" {
			lineCaller = l.CallerID
		}
	}
	t.Logf("status: session caller %q, line caller ID %q", sessCaller, lineCaller)
	if sessCaller == "" {
		t.Errorf("the status has no caller for the session on ttyUSB0: %+v", js.Sessions)
	} else if err := waitText("#sessions", 3*time.Second, sessCaller); err != nil {
		t.Errorf("the session's caller %q is not shown: %v: %s", sessCaller, err, eval(`document.querySelector("#sessions").innerText`))
	}
	if lineCaller != "" {
		if err := waitText("#lines", 3*time.Second, lineCaller); err != nil {
			t.Errorf("the line's caller ID %q is not shown: %v: %s", lineCaller, err, eval(`document.querySelector("#lines").innerText`))
		}
	}
	callerWidths := `[...document.querySelectorAll("#sessions th, #lines th")].filter(e => e.textContent === "caller").map(e => Math.round(e.getBoundingClientRect().width)).join(",")`
	if w := eval(callerWidths); len(strings.Split(w, ",")) != 2 || strings.Contains(w, ",0") || strings.HasPrefix(w, "0") {
		t.Errorf("caller columns (sessions, lines) on the desktop are %q px wide, want two shown", w)
	}
	if err := waitText("#calls", 3*time.Second, "up"); err != nil {
		t.Errorf("the call is not shown up: %v: %s", err, eval(`document.querySelector("#calls").innerText`))
	}
	if err := waitText("#lines", 3*time.Second, "connected", "CONNECT"); err != nil {
		t.Errorf("the line is not shown connected with its CONNECT: %v: %s", err, eval(`document.querySelector("#lines").innerText`))
	}
	// Traffic: the page refreshes at least every 5 s, so the bytes show.
	for range 5 {
		if _, err := sess.Net.Ping(ctx, sess.PPP.Remote()); err != nil {
			t.Fatal(err)
		}
	}
	bytesShown := `(() => { const r = document.querySelectorAll("#sessions tr")[1]; if (!r) return false;
		const c = r.querySelectorAll("td"); return +c[5].textContent > 0 && +c[6].textContent > 0; })()`
	sctx, scancel := context.WithTimeout(bctx, 15*time.Second)
	_, err = chromedp.Run(sctx, chromedp.Poll[chromedp.Void](bytesShown, chromedp.WithPollingTimeout(10*time.Second)))
	scancel()
	if err != nil {
		t.Errorf("the session's bytes are not shown after 5 pings: %v: %s", err, eval(`document.querySelector("#sessions").innerText`))
	}
	if ev := eval(`document.querySelector("#events").textContent`); !strings.Contains(ev, "call.started") || !strings.Contains(ev, "ppp.up") {
		t.Errorf("the events pane lacks the call's events: %.500s", ev)
	}
	shot("call-desktop.png", false)

	// A phone: 390x844 CSS pixels at 3x, touch. Nothing may need sideways
	// scrolling of the whole page (wide tables scroll in their box).
	run("phone viewport", 10*time.Second, chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(3), chromedp.EmulateMobile, chromedp.EmulatePortrait, chromedp.EmulateTouch))
	if wide := eval(`String(document.documentElement.scrollWidth) + "/" + String(window.innerWidth)`); func() bool {
		var sw, iw int
		fmt.Sscanf(wide, "%d/%d", &sw, &iw)
		return sw > iw || iw == 0
	}() {
		t.Errorf("on a phone the page is wider than the screen (scrollWidth/innerWidth %s)", wide)
	}
	// What a phone user looks for is on the screen without scrolling
	// sideways: the session's bytes, the line's state, the call's state.
	for _, sel := range []string{"#sessions tr:nth-child(2) td:last-child", "#lines tr:nth-child(2) td:nth-child(3)", "#calls tr:nth-child(2) td:last-child"} {
		if r := eval(fmt.Sprintf(`(() => { const e = document.querySelector(%q); if (!e) return "missing";
			const r = e.getBoundingClientRect(); return r.width > 0 && r.right <= window.innerWidth ? "ok" : r.left + ".." + r.right + " of " + window.innerWidth; })()`, sel)); r != "ok" {
			t.Errorf("on a phone %s is not on the screen: %s", sel, r)
		}
	}
	// The caller columns are secondary: a phone leaves them out.
	if w := eval(callerWidths); w != "0,0" {
		t.Errorf("caller columns (sessions, lines) on a phone are %q px wide, want hidden", w)
	}
	shot("call-phone.png", true)
	run("desktop viewport", 10*time.Second, chromedp.EmulateViewport(1280, 900))

	// Hang up: the call leaves the page within a second of its end.
	if err := sess.HangUp(ctx); err != nil {
		t.Fatal(err)
	}
	ended := nextEvent("call.ended")
	if err := waitText("#calls", 3*time.Second, "none"); err != nil {
		t.Fatalf("the call is still shown after it ended: %v: %s", err, eval(`document.querySelector("#calls").innerText`))
	}
	if lag := time.Since(ended); lag > time.Second {
		t.Errorf("the page dropped the call %v after it ended, want within a second", lag)
	}
	if err := waitText("#sessions", 3*time.Second, "none"); err != nil {
		t.Errorf("the session is still shown after hang-up: %v", err)
	}
	if err := waitText("#events", 3*time.Second, "call.ended", "ppp.down"); err != nil {
		t.Errorf("the events pane lacks the end: %v", err)
	}
	shot("after-call.png", false)

	// A line in trouble shows its last error (what to do about it), and
	// what the status carries is text, never markup: a peer or device
	// name with "<" in it does not become an element.
	bad := `<img id="injected" src="x">`
	st := console.Status{Version: "test", Started: time.Now(),
		Peers: []status.Peer{{Name: "p" + bad, Status: "UNKNOWN"}},
		Lines: []status.Line{{Name: "ttyUSB0", Device: "/dev/ttyUSB0" + bad, State: "opening", Errors: 1, CallerID: "5551234" + bad,
			LastError: "open /dev/ttyUSB0: permission denied (user isp-box is not allowed to open it: add it to group dialout)"}},
		Sessions: []console.Session{{Session: status.Session{ID: "s1", Line: "tcp1", CallerID: "192.0.2.7" + bad}}}}
	mux := http.NewServeMux()
	done := make(chan struct{})
	web.Register(mux, func() console.Status { return st }, bus.New(nil), done)
	srv := httptest.NewServer(mux)
	// The page's event stream ends with done, then the server closes.
	defer func() { close(done); srv.Close() }()
	sctx, scancel = context.WithTimeout(bctx, 20*time.Second)
	err = chromedp.Do(sctx, chromedp.Navigate(srv.URL+"/"))
	scancel()
	if err != nil {
		t.Fatalf("open the second page: %v", err)
	}
	if err := waitText("#lines", 5*time.Second, "opening", "add it to group dialout"); err != nil {
		t.Errorf("the line's last error is not shown: %v: %s", err, eval(`document.querySelector("#lines").innerText`))
	}
	if n := eval(`String(document.querySelectorAll("#injected").length)`); n != "0" {
		t.Errorf("markup in the status became %s element(s)", n)
	}
	if err := waitText("#peers", time.Second, "p"+bad); err != nil {
		t.Errorf("the peer's name is not shown as text: %v", err)
	}
	if err := waitText("#lines", time.Second, "5551234"+bad); err != nil {
		t.Errorf("the line's caller ID is not shown as text: %v", err)
	}
	if err := waitText("#sessions", time.Second, "192.0.2.7"+bad); err != nil {
		t.Errorf("the session's caller is not shown as text: %v", err)
	}
	shot("line-error.png", false)
}

// getJSON decodes what GET url answers into v.
func getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	return nil
}
