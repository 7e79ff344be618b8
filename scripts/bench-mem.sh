#!/usr/bin/env bash
# bench-mem.sh: memory per line, at 1,000 and 10,000 (MEM_COUNTS).
#
#  1. Each component alone, in-process (Go's live heap + goroutine stacks
#     after GC, divided by N): pbx TestMemoryPerPeer (peers configured,
#     registered with digest by 64 gateways that answer OPTIONS, and
#     after sipgo's transactions expire), ppp TestIdleSessionMemory
#     (server sessions up, clients in another process), netstack
#     TestSessionMemory (sessions attached to the userspace stack).
#  2. The isp-box binary as shipped (`isp-box serve`, SQLite store,
#     console, every part running): a config with N SIP lines, tools/regload
#     registers them all and answers OPTIONS; the daemon's live heap and
#     stacks (ISPBOX_PPROF=1, /debug/pprof/heap?gc=1) and RSS before, right
#     after, and SETTLE seconds after.
#
# Environment: MEM_COUNTS ("1000 10000"), SETTLE (33: sipgo's Timer J is
# 32 s), PROFILE_DIR=DIR keeps heap profiles, COMPONENTS=0 skips part 1, KEEP=1
# keeps the logs. Loopback only; every process
# started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
MEM_COUNTS=${MEM_COUNTS:-"1000 10000"}
SETTLE=${SETTLE:-33}
BOX_PORT=${BOX_PORT:-15360}
list=$(echo "$MEM_COUNTS" | tr ' ' ',')
prof=()
if [ -n "${PROFILE_DIR:-}" ]; then
	mkdir -p "$PROFILE_DIR"
	prof=(ISPBOX_MEMBENCH_PROFILE="$PROFILE_DIR")
fi

if [ "${COMPONENTS:-1}" = 1 ]; then
echo "== components in-process ($(date -u '+%F %H:%M UTC'))"
env ISPBOX_MEMBENCH="$list" ISPBOX_MEMBENCH_SETTLE="${SETTLE}s" "${prof[@]}" go test -count=1 -run '^TestMemoryPerPeer$' -v -timeout 15m ./pbx/ | grep '^|'
env ISPBOX_MEMBENCH="$list" "${prof[@]}" go test -count=1 -run '^TestIdleSessionMemory$' -v -timeout 15m ./ppp/ | grep '^|'
env ISPBOX_MEMBENCH="$list" go test -count=1 -run '^TestSessionMemory$' -v -timeout 5m ./netstack/ | grep '^|'
fi

. scripts/lib.sh # $work, $pids, cleanup on exit
CGO_ENABLED=0 go build -trimpath -o "$work/isp-box" ./cmd/isp-box
go build -o "$work/regload" ./tools/regload

heap() { # live heap + stacks of the daemon in KB, after a GC
	curl -s --unix-socket "$work/isp-box.sock" 'http://isp-box/debug/pprof/heap?gc=1&debug=1' |
		awk '/^# HeapAlloc =/ {h=$4} /^# Stack =/ {split($4, a, "/"); s=a[1]} END {printf "%d\n", (h+s)/1024}'
}
rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
goroutines() {
	curl -s --unix-socket "$work/isp-box.sock" 'http://isp-box/debug/pprof/goroutine?debug=1' | awk 'NR==1 {print $4}'
}

echo
echo "== the isp-box binary (isp-box serve), SIP lines registered by tools/regload"
echo "| lines | idle box: heap+stacks KB, RSS KB | configured: heap+stacks KB/line | registered: heap+stacks KB/line, RSS KB/line | after ${SETTLE} s: heap+stacks KB/line, RSS KB/line | goroutines | register time |"
echo "|---|---|---|---|---|---|---|"
for n in $MEM_COUNTS; do
	for cfgN in 0 "$n"; do
		{
			cat <<CONF
[general]
udpbindaddr=127.0.0.1:$BOX_PORT
context=default
[box]
console = $work/isp-box.sock
database = $work/isp-box-$cfgN.db
log-level = warn
network = userspace
[network]
gateway = 192.168.32.1
pool = 192.168.32.0/24
CONF
			for ((i = 0; i < cfgN; i++)); do
				printf '[line%05d]\ncontext=default\ntype=friend\nsecret=password\nqualify=yes\nhost=dynamic\nnat=no\n' "$i"
			done
			printf '[default]\nexten => _X!,1,Hangup()\n'
		} >"$work/isp-box-$cfgN.conf"
		ISPBOX_PPROF=1 "$work/isp-box" serve -c "$work/isp-box-$cfgN.conf" >"$work/isp-box.log" 2>&1 &
		box=$!
		pids+=("$box")
		for _ in $(seq 100); do [ -S "$work/isp-box.sock" ] && heap >/dev/null 2>&1 && break; sleep 0.1; done
		sleep 1
		if [ "$cfgN" = 0 ]; then
			h_empty=$(heap)
			r_empty=$(rss "$box")
			kill "$box"
			wait "$box" 2>/dev/null || true
			rm -f "$work/isp-box.sock"
			continue
		fi
		h_cfg=$(heap)
		t0=$(date +%s.%N)
		"$work/regload" -box "127.0.0.1:$BOX_PORT" -n "$n" -secret password >"$work/regload.out" 2>&1 &
		rl=$!
		pids+=("$rl")
		until grep -q '^registered' "$work/regload.out"; do
			kill -0 "$rl" 2>/dev/null || { cat "$work/regload.out"; tail "$work/isp-box.log"; exit 1; }
			sleep 0.2
		done
		took=$(awk '{print $4}' "$work/regload.out")
		h_reg=$(heap)
		r_reg=$(rss "$box")
		if [ -n "${PROFILE_DIR:-}" ]; then
			curl -s --unix-socket "$work/isp-box.sock" -o "$PROFILE_DIR/box-$n-registered.pprof" 'http://isp-box/debug/pprof/heap?gc=1'
		fi
		sleep "$SETTLE"
		h_idle=$(heap)
		r_idle=$(rss "$box")
		g=$(goroutines)
		if [ -n "${PROFILE_DIR:-}" ]; then
			curl -s --unix-socket "$work/isp-box.sock" -o "$PROFILE_DIR/box-$n-idle.pprof" 'http://isp-box/debug/pprof/heap?gc=1'
			cp "$work/isp-box" "$PROFILE_DIR/isp-box"
		fi
		awk -v n="$n" -v he="$h_empty" -v re="$r_empty" -v hc="$h_cfg" -v hr="$h_reg" -v rr="$r_reg" -v hi="$h_idle" -v ri="$r_idle" -v g="$g" -v took="$took" \
			'BEGIN {printf "| %d | %d, %d | %.2f | %.2f, %.2f | %.2f, %.2f | %d | %s |\n", n, he, re, (hc-he)/n, (hr-he)/n, (rr-re)/n, (hi-he)/n, (ri-re)/n, g, took}'
		kill "$rl" "$box"
		wait "$rl" "$box" 2>/dev/null || true
		rm -f "$work/isp-box.sock"
	done
done
