# isp-box: one binary replacing Asterisk + mgetty + pppd.
#
#   make build    the binary ./isp-box (cgo-free)
#   make test     what CI runs: vet, gofmt check, every test under -race,
#                 then the list of skipped tests and why
#   make bench    benchmarks
#   make lint     gofmt, go vet, golangci-lint (.golangci.yml)
#   make cross    cgo-free binaries for linux amd64, arm64, armv7, armv6 in dist/
#   make demo     build, then run the simulated dial-up setup
#   make fuzz     every FuzzXxx target for FUZZTIME each, FUZZJOBS at a time
#   make deb      Debian packages for amd64, arm64, armhf, armel in dist/ (nfpm)
#   make install  binary, unit, config, man page, completions, service user (root)

GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS  := -s -w -X main.version=$(VERSION)
FUZZTIME ?= 30s
# golangci-lint is built from the Go module proxy into .cache/tools on first
# use (a pinned version, so every machine lints alike).
GOLANGCI_VERSION ?= v2.15.0
GOLANGCI_LINT    ?= $(CURDIR)/.cache/tools/golangci-lint-$(GOLANGCI_VERSION)/golangci-lint
# Go files to check with gofmt: all but testdata.
GOFILES   = $(shell find . -name '*.go' -not -path './.git/*' -not -path '*/testdata/*' -not -path './dist/*')

# pipefail: `go test -json | testreport` fails when either does.
SHELL       := /bin/bash
.SHELLFLAGS := -o pipefail -c

.PHONY: deb docs install uninstall all build test cross-check vet fmt-check lint bench bench-softmodem cross demo fuzz bench-sip bench-scale bench-flood bench-lines pppd-vm e2e-pppd e2e-kernel clean bench-compare bench-rtp bench-mem

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o isp-box ./cmd/isp-box

# The README's test command. Tests that need root (netns, nftables, TUN)
# or an external program (sipp, pppd, qemu) skip with a message when it is
# missing; .ci/run installs them and runs as root. Every test runs once,
# under the race detector (which needs cgo; the shipped binary does not:
# cross-check and vet build it without). tools/testreport prints each
# package's result, the output of failed tests, and at the end every
# skipped test with its reason, so a missing tool cannot hide.
test: vet fmt-check cross-check
	@mkdir -p .cache
	$(GO) build -o .cache/testreport ./tools/testreport
	CGO_ENABLED=1 $(GO) test -count=1 -race -timeout 25m -json ./... 2>&1 | .cache/testreport

# The Raspberry Pi of the seed setup: a 32-bit armv6 build must keep working.
cross-check:
	CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=6 $(GO) build -o /dev/null ./cmd/isp-box

vet:
	$(GO) vet ./...

fmt-check:
	@out="$$(gofmt -l $(GOFILES))"; \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

lint: fmt-check vet $(GOLANGCI_LINT)
	$(GOLANGCI_LINT) run ./...

$(GOLANGCI_LINT):
	GOBIN=$(dir $@) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_VERSION)

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# The software modem's CPU cost: ns per 8 kHz sample per line, by modulation.
bench-softmodem:
	$(GO) test -run '^$$' -bench BenchmarkLine -benchtime 4000x ./softmodem

cross:
	@mkdir -p dist
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64         $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/isp-box-linux-amd64 ./cmd/isp-box
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64         $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/isp-box-linux-arm64 ./cmd/isp-box
	CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=7   $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/isp-box-linux-armv7 ./cmd/isp-box
	CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=6   $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/isp-box-linux-armv6 ./cmd/isp-box

demo: build
	./isp-box demo

# Every fuzz target for FUZZTIME each, FUZZJOBS targets at a time
# (scripts/fuzz.sh says how; `make fuzz FUZZTIME=10m FUZZJOBS=2`).
FUZZJOBS ?= 1
fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) FUZZJOBS=$(FUZZJOBS) ./scripts/fuzz.sh

# SIP load test against a running box with sipp (filled in by the PBX work).
bench-sip: build
	scripts/bench-sip.sh

# isp-box against Kamailio (Debian's package, installed if missing when
# root) under the same sipp load on loopback, alternated rate by rate:
# calls/s and REGISTER/s with digest, failures, retransmissions, setup
# p50/p99, CPU and peak memory of each, and the ratios. Under 10 minutes.
bench-compare:
	flock /tmp/isp-box-bench.lock scripts/bench-compare.sh

# Memory per line at 1,000 and 10,000 (MEM_COUNTS): registered SIP lines
# and idle PPP sessions, per component in-process and in the isp-box
# binary (scripts/bench-mem.sh). About 5 minutes.
bench-mem:
	flock /tmp/isp-box-bench.lock scripts/bench-mem.sh

# The RTP relay against Debian's rtpengine (userspace, its own config on
# loopback; rtpengine-daemon installed if missing when root): the
# internal/rtpload generator through each at RTPBENCH calls, alternated,
# loss, latency, jitter, CPU and memory of each. About 2 minutes.
RTPBENCH ?= 100,500,1000
RTPBENCH_DURATION ?= 10s
bench-rtp:
	@command -v rtpengine >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y rtpengine-daemon; } || { echo "bench-rtp needs rtpengine (apt-get install rtpengine-daemon)"; exit 1; }
	flock /tmp/isp-box-bench.lock env ISPBOX_RTPBENCH=$(RTPBENCH) ISPBOX_RTPBENCH_DURATION=$(RTPBENCH_DURATION) \
		$(GO) test -count=1 -run '^TestRTPCompare$$' -v -timeout 15m ./pbx/

# The qemu VM with Debian's kernel, pppd and chat (tools/pppd-vm/build.sh:
# apt-get download into $$ISPBOX_VM_CACHE, default /var/cache/isp-box-vm as
# root). make test runs the VM tests when the cache is there.
pppd-vm:
	tools/pppd-vm/build.sh

# Interoperability with a real pppd: PAP, CHAP-MD5, MS-CHAPv1/v2 on a direct
# line, and chat dialling through the virtual ATA and the box.
e2e-pppd: pppd-vm
	ISPBOX_REQUIRE_PPPD_VM=1 $(GO) test -count=1 -timeout 15m ./e2e/... -run 'PPPD|Pppd|ChatDialIn|FirstFrame|Bridge'

# Dial-in at scale through the virtual ATA: N lines at once against the
# isp-box binary in its own process (time to all up, CPU and memory per line).
bench-scale:
	ISPBOX_SCALE=$${ISPBOX_SCALE:-100,500,1000} $(GO) test -count=1 -run '^TestScale$$' -v -timeout 60m ./e2e/

# Floods of unauthenticated INVITEs, wrong-password REGISTERs and OPTIONS
# (60 s each, then all at once, from 256 loopback addresses) against the
# isp-box binary while its ATA registers and calls; then calls below and
# above maxcalls. Reports peak RSS per flood and calls lost.
bench-flood:
	flock /tmp/isp-box-bench.lock env ISPBOX_FLOOD=$${ISPBOX_FLOOD:-60s} $(GO) test -count=1 -run '^TestFlood$$' -v -timeout 30m ./e2e/

# Line kinds: memory and goroutines per idle TCP-line connection.
bench-lines:
	flock /tmp/isp-box-bench.lock $(GO) test -count=1 -run '^$$' -bench 'TCPIdleConnMemory' -benchtime 3x -timeout 5m ./modem/

# The kernel network mode through the whole chain, in network namespaces
# (root): masquerade, MSS clamp, anti-spoofing, crash leftovers removed.
e2e-kernel:
	ISPBOX_REQUIRE_ROOT=1 $(GO) test -count=1 -timeout 5m ./e2e -run '^TestKernelDialIn$$'

clean:
	rm -rf isp-box dist

# ---- packages ----
# nfpm (a Go program, fetched and built by `go run` from the module proxy
# at this version; nothing is added to go.mod). Debian arch -> GOARCH/GOARM:
# armhf is built for ARMv6 so the same package runs on Debian's armhf
# (ARMv7) and on Raspberry Pi OS's (ARMv6, Pi Zero/1); armel is ARMv5.
NFPM      ?= $(GO) run github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.48.0
DEB_ARCHS ?= amd64 arm64 armhf armel
# A Debian version must start with a digit.
DEB_VERSION ?= $(shell git describe --tags --always 2>/dev/null | sed -e 's/^v//' -e 's/^\([^0-9]\)/0.0~git\1/' -e 's/-/~/g')
goarch_amd64 = GOARCH=amd64
goarch_arm64 = GOARCH=arm64
goarch_armhf = GOARCH=arm GOARM=6
goarch_armel = GOARCH=arm GOARM=5

docs: build
	@mkdir -p dist/man dist/completion
	./isp-box man | gzip -9n > dist/man/isp-box.1.gz
	./isp-box completion bash > dist/completion/isp-box.bash
	./isp-box completion zsh > dist/completion/_isp-box

deb: docs
	@mkdir -p dist
	@for a in $(DEB_ARCHS); do \
		echo "== isp-box $(DEB_VERSION) $$a"; \
		case $$a in amd64) ge="$(goarch_amd64)";; arm64) ge="$(goarch_arm64)";; armhf) ge="$(goarch_armhf)";; armel) ge="$(goarch_armel)";; \
			*) echo "unknown arch $$a" >&2; exit 1;; esac; \
		env CGO_ENABLED=0 GOOS=linux $$ge \
			$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/isp-box-linux-$$a ./cmd/isp-box || exit 1; \
		ARCH=$$a GOARCH_DIR=$$a VERSION=$(DEB_VERSION) $(NFPM) package --packager deb --config packaging/nfpm.yaml --target dist/ || exit 1; \
	done

# For machines without the package: the same files in /usr/local, and the
# package's postinst for the user, directories and unit (root).
PREFIX ?= /usr/local
install: docs
	install -D -m 0755 isp-box $(DESTDIR)$(PREFIX)/bin/isp-box
	install -D -m 0644 dist/man/isp-box.1.gz $(DESTDIR)$(PREFIX)/share/man/man1/isp-box.1.gz
	install -D -m 0644 dist/completion/isp-box.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/isp-box
	install -D -m 0644 dist/completion/_isp-box $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_isp-box
	sed 's|/usr/bin/isp-box|$(PREFIX)/bin/isp-box|g' examples/isp-box.service > isp-box.service.tmp
	install -D -m 0644 isp-box.service.tmp $(DESTDIR)/etc/systemd/system/isp-box.service
	rm -f isp-box.service.tmp
	test -e $(DESTDIR)/etc/isp-box/isp-box.conf || install -D -m 0640 examples/pap2t.conf $(DESTDIR)/etc/isp-box/isp-box.conf
	test -n "$(DESTDIR)" || packaging/postinst configure

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/isp-box $(DESTDIR)$(PREFIX)/share/man/man1/isp-box.1.gz \
		$(DESTDIR)$(PREFIX)/share/bash-completion/completions/isp-box $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_isp-box \
		$(DESTDIR)/etc/systemd/system/isp-box.service
