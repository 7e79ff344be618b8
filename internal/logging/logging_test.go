package logging

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

func TestDebugPerPart(t *testing.T) {
	var buf bytes.Buffer
	log := New(&buf, Options{Level: slog.LevelInfo, NoTime: true}).With("comp", "modem")
	line := Debug(log.With("line", "ttyS0"), true)
	quiet := Debug(log.With("line", "ttyS1"), false)

	log.Debug("box debug")
	quiet.Debug("ttyS1 debug")
	line.Debug("ttyS0 debug")
	line.Info("ttyS0 info")

	got := buf.String()
	for _, want := range []string{`level=DEBUG msg="ttyS0 debug" comp=modem line=ttyS0`, `level=INFO msg="ttyS0 info" comp=modem line=ttyS0`} {
		if !strings.Contains(got, want+"\n") {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
	for _, no := range []string{"box debug", "ttyS1 debug", "time="} {
		if strings.Contains(got, no) {
			t.Errorf("%q logged:\n%s", no, got)
		}
	}
}

func TestDebugOnForeignLogger(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}))
	Debug(log, true).Info("x")
	if buf.Len() != 0 {
		t.Errorf("a foreign logger's level must stand: %s", buf.String())
	}
}

func TestErrorOneRecordPerLine(t *testing.T) {
	var buf bytes.Buffer
	Error(New(&buf, Options{NoTime: true}), "config refused", errors.New("a.conf:3: bad\na.conf:9: worse\n"))
	want := "level=ERROR msg=\"config refused\" err=\"a.conf:3: bad\"\nlevel=ERROR msg=\"config refused\" err=\"a.conf:9: worse\"\n"
	if buf.String() != want {
		t.Errorf("got\n%s\nwant\n%s", buf.String(), want)
	}
}
