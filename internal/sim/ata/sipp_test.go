package ata_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/isp-box/isp-box/internal/sim/ata"
	"github.com/isp-box/isp-box/internal/sim/phone"
	"github.com/isp-box/isp-box/internal/testutil"
)

// These tests put sipp (Debian package sip-tester) on the other end of
// the wire: a registrar, a qualifying PBX, a caller.

func needSipp(t *testing.T) string {
	t.Helper()
	return testutil.NeedProgram(t, "sip-tester", "sipp")
}

// sipp runs one sipp scenario to completion and returns its message log.
type sippRun struct {
	cmd    *exec.Cmd
	out    bytes.Buffer
	msgLog string
	done   chan error
}

func startSipp(t *testing.T, scenario string, args ...string) *sippRun {
	t.Helper()
	bin := needSipp(t)
	dir := t.TempDir()
	r := &sippRun{msgLog: filepath.Join(dir, "messages.log"), done: make(chan error, 1)}
	full := append([]string{"-sf", filepath.Join("testdata", "sipp", scenario),
		"-i", "127.0.0.1", "-m", "1", "-nostdin", "-timeout", "30s", "-timeout_error",
		"-trace_msg", "-message_file", r.msgLog,
		"-trace_err", "-error_file", filepath.Join(dir, "errors.log"),
	}, args...)
	r.cmd = exec.Command(bin, full...)
	r.cmd.Dir, _ = os.Getwd()
	r.cmd.Stdout, r.cmd.Stderr = &r.out, &r.out
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("sipp: %v", err)
	}
	go func() { r.done <- r.cmd.Wait() }()
	t.Cleanup(func() {
		if r.cmd.ProcessState == nil {
			r.cmd.Process.Kill()
			<-r.done
		}
	})
	return r
}

// wait waits for sipp to end and fails the test unless it passed.
func (r *sippRun) wait(t *testing.T) {
	t.Helper()
	select {
	case err := <-r.done:
		if err != nil {
			errs, _ := os.ReadFile(strings.TrimSuffix(r.msgLog, "messages.log") + "errors.log")
			msgs, _ := os.ReadFile(r.msgLog)
			t.Fatalf("sipp failed: %v\nerrors:\n%s\nmessages:\n%s", err, errs, msgs)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("sipp did not finish")
	}
}

// waitBound waits until something listens on the UDP port.
func waitBound(t *testing.T, port int) {
	t.Helper()
	testutil.Until(t, 10*time.Second, "sipp listening", func() bool {
		c, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
}

// receivedRegisters pulls the REGISTER requests sipp logged.
func receivedRegisters(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, blk := range strings.Split(string(b), "----------------------------------------------- ") {
		if i := strings.Index(blk, "REGISTER sip:"); i >= 0 && strings.Contains(blk[:i], "received") {
			out = append(out, blk[i:])
		}
	}
	return out
}

func header(msg, name string) string {
	sc := bufio.NewScanner(strings.NewReader(msg))
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if line == "" {
			break
		}
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(k), name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

var digestParam = regexp.MustCompile(`(\w+)=(?:"([^"]*)"|([^,\s]+))`)

func md5hex(s string) string {
	h := md5.Sum([]byte(s))
	return hex.EncodeToString(h[:])
}

// TestRegisterDigest: against a sipp registrar that challenges (401), the
// line answers with a correct digest (RFC 2617 §3.2.2 without qop, checked
// here with our own MD5), is registered, renews before the granted 2 s run
// out with the same Call-ID and a higher CSeq, and unregisters on stop.
func TestRegisterDigest(t *testing.T) {
	port := testutil.FreeUDPPort(t)
	linePort := testutil.FreeUDPPort(t)
	contact := fmt.Sprintf("sip:pap2t-ispmodem@127.0.0.1:%d", linePort)
	s := startSipp(t, "register-uas.xml", "-p", strconv.Itoa(port), "-key", "contact", contact)
	waitBound(t, port)

	a, stop := runATA(t, ata.Options{Lines: []ata.LineConfig{{
		Name: "isp", User: "pap2t-ispmodem", Password: "password", Port: linePort,
		Registrar: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)),
	}}})
	testutil.Until(t, 10*time.Second, "registered", a.Line(0).Registered)
	s.wait(t) // sipp saw the refresh and its digest
	if li := a.Describe()[0]; !li.Registered || li.RegError != "" {
		t.Errorf("after refresh: %+v", li)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	regs := receivedRegisters(t, s.msgLog)
	if len(regs) != 4 {
		t.Fatalf("sipp logged %d REGISTERs, want 4:\n%s", len(regs), strings.Join(regs, "\n"))
	}
	nonces := []string{"", "5f3a9c1e", "", "7b21d04f"}
	var lastCSeq int
	for i, msg := range regs {
		reqURI := strings.Fields(msg)[1]
		if want := fmt.Sprintf("sip:127.0.0.1:%d", port); reqURI != want {
			t.Errorf("REGISTER %d: Request-URI %s, want %s", i, reqURI, want)
		}
		if ua := header(msg, "User-Agent"); ua != ata.DefaultUserAgent {
			t.Errorf("REGISTER %d: User-Agent %q", i, ua)
		}
		if ct := header(msg, "Contact"); ct != "<"+contact+">;expires=3600" {
			t.Errorf("REGISTER %d: Contact %q", i, ct)
		}
		if header(msg, "Call-ID") != header(regs[0], "Call-ID") {
			t.Errorf("REGISTER %d: Call-ID changed", i)
		}
		cseq, _ := strconv.Atoi(strings.Fields(header(msg, "CSeq"))[0])
		if cseq <= lastCSeq {
			t.Errorf("REGISTER %d: CSeq %d after %d", i, cseq, lastCSeq)
		}
		lastCSeq = cseq
		auth := header(msg, "Authorization")
		if nonces[i] == "" {
			if auth != "" {
				t.Errorf("REGISTER %d: unexpected Authorization %q", i, auth)
			}
			continue
		}
		p := map[string]string{}
		for _, m := range digestParam.FindAllStringSubmatch(strings.TrimPrefix(auth, "Digest "), -1) {
			p[m[1]] = m[2] + m[3]
		}
		if p["username"] != "pap2t-ispmodem" || p["realm"] != "asterisk" || p["nonce"] != nonces[i] || p["uri"] != reqURI {
			t.Errorf("REGISTER %d: Authorization %q", i, auth)
		}
		ha1 := md5hex("pap2t-ispmodem:asterisk:password")
		ha2 := md5hex("REGISTER:" + p["uri"])
		if want := md5hex(ha1 + ":" + nonces[i] + ":" + ha2); p["response"] != want {
			t.Errorf("REGISTER %d: digest response %s, want %s", i, p["response"], want)
		}
	}
}

// TestAnswersOptions: a qualify poke gets 200 with the PAP2T's Server header.
func TestAnswersOptions(t *testing.T) {
	a := startATA(t, ata.Options{Lines: []ata.LineConfig{{Name: "isp", User: "pap2t-ispmodem"}}})
	s := startSipp(t, "options-uac.xml", "-p", strconv.Itoa(testutil.FreeUDPPort(t)), "-s", "pap2t-ispmodem", a.Line(0).Addr().String())
	s.wait(t)
}

// echoModem answers every call, writes a greeting, and reports what came
// back and how the call ended.
type echoModem struct {
	got  chan []byte
	errs chan error
}

func (e *echoModem) Incoming(c phone.Call) {
	go func() {
		k, err := c.Answer(context.Background())
		if err != nil {
			e.got <- nil
			e.errs <- fmt.Errorf("answer: %w", err)
			return
		}
		greeting := []byte("CONNECT 28800\r\nlogin: ")
		if _, err := k.Write(greeting); err != nil {
			e.got <- nil
			e.errs <- fmt.Errorf("write: %w", err)
			return
		}
		buf, err := io.ReadAll(k) // until the caller's BYE
		e.got <- buf
		e.errs <- err // ReadAll's nil means io.EOF
	}()
}

// TestIncomingCall: a sipp caller offering PCMU, PCMA and CLEARMODE rings
// the modem; its answer is a 200 with CLEARMODE only (checked by sipp),
// RTP goes to the port in sipp's SDP (sipp echoes it back), and sipp's BYE
// ends the carrier with io.EOF.
func TestIncomingCall(t *testing.T) {
	a := startATA(t, ata.Options{Lines: []ata.LineConfig{{Name: "isp", User: "pap2t-ispmodem"}}})
	m := &echoModem{got: make(chan []byte, 1), errs: make(chan error, 2)}
	a.Line(0).Plug(m)
	mp := testutil.FreeUDPPort(t)
	s := startSipp(t, "invite-uac.xml", "-p", strconv.Itoa(testutil.FreeUDPPort(t)), "-mp", strconv.Itoa(mp), "-rtp_echo",
		"-s", "pap2t-ispmodem", a.Line(0).Addr().String())
	testutil.Until(t, 10*time.Second, "connected", func() bool { return a.Describe()[0].Call == ata.Connected })
	if li := a.Describe()[0]; li.RemoteRTP.Port() != uint16(mp) || li.Payload != "CLEARMODE" || li.Peer != "pap2t-client" {
		t.Errorf("call: remote RTP %v payload %s peer %q; want port %d CLEARMODE pap2t-client", li.RemoteRTP, li.Payload, li.Peer, mp)
	}
	s.wait(t)
	select {
	case got := <-m.got:
		if err := <-m.errs; err != nil {
			t.Errorf("carrier ended with %v, want io.EOF", err)
		}
		if want := "CONNECT 28800\r\nlogin: "; string(got) != want {
			t.Errorf("echoed back %q, want %q", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("carrier did not end after BYE")
	}
	testutil.Until(t, 5*time.Second, "idle", func() bool { return a.Describe()[0].Call == ata.Idle })
}

// TestCancelWhileRinging: the caller's CANCEL closes Gone; sipp checks the
// 200 to CANCEL and the 487.
func TestCancelWhileRinging(t *testing.T) {
	a := startATA(t, ata.Options{Lines: []ata.LineConfig{{Name: "isp", User: "pap2t-ispmodem"}}})
	r := newRinger()
	a.Line(0).Plug(r)
	s := startSipp(t, "cancel-uac.xml", "-p", strconv.Itoa(testutil.FreeUDPPort(t)), "-s", "pap2t-ispmodem", a.Line(0).Addr().String())
	in := r.next(t)
	select {
	case <-in.Gone():
	case <-time.After(15 * time.Second):
		t.Fatal("Gone not closed")
	}
	s.wait(t)
	testutil.Until(t, 5*time.Second, "idle", func() bool { return a.Describe()[0].Call == ata.Idle })
}
