#!/usr/bin/env bash
# bench-compare.sh: isp-box and Kamailio side by side under the same sipp
# load, on loopback, alternated rate by rate in one run.
#
#   sipp UAC (pap2t-client, digest INVITE, hold, BYE)
#        -> isp-box (B2BUA)  or  Kamailio (auth + registrar + stateful proxy)
#        -> sipp UAS (pap2t-ispmodem, registered; answers INVITE and OPTIONS)
#
# Both servers run the seed's two subscribers (secret "password"): isp-box
# from an isp-box config, Kamailio from scripts/bench/kamailio.cfg. Per
# rate and server it prints achieved calls/s, failed calls,
# retransmissions, setup time (first INVITE to 200, the 401 round
# included) p50/p99, CPU (% of one core, and "ms/op": CPU ms per call or
# registration that succeeded) and peak memory (RSS of isp-box;
# PSS summed over Kamailio's processes, since they share memory), then the
# ratios isp-box/Kamailio. Then the same for REGISTER/s with digest.
# Two more columns say whether a server was short of CPU rather than slow:
# "wait%" is the time its threads were runnable but not running (the
# scheduler's run-queue wait, /proc/PID/task/*/schedstat), in % of one
# core -- on a loaded machine every runnable thread gets an equal share,
# so a server with fewer busy threads gets less CPU; "drop" is the
# datagrams the kernel dropped on its SIP socket and on sipp's two
# sockets (receive buffer full, /proc/net/udp).
#
# Environment: RATES, REG_RATES (space-separated), DURATION (s per rate,
# 10), HOLD (ms, 1000), SERVERS ("kamailio isp-box"; one of them alone for
# back-to-back runs of one server), KEEP=1 keeps the logs, PROFILE_DIR=DIR starts
# isp-box with ISPBOX_PPROF=1 and saves its CPU profile of each call rate and
# its block, mutex and allocation profiles there (go tool pprof). Kamailio comes from Debian's package, installed
# here if missing (root). Loopback only; every process started here is
# stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

RATES=${RATES-"250 500 1000"}
REG_RATES=${REG_RATES-"1000 2000 4000"}
DURATION=${DURATION:-10}
HOLD=${HOLD:-1000}
BOX_PORT=${BOX_PORT:-15160}
KAM_PORT=${KAM_PORT:-15260}
UAS_PORT=${UAS_PORT:-15170}
UAC_PORT=${UAC_PORT:-15180}
SERVERS=${SERVERS:-"kamailio isp-box"}
HZ=$(getconf CLK_TCK)

need() { # need COMMAND DEBIAN-PACKAGE
	command -v "$1" >/dev/null && return
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		echo "bench-compare: installing $2"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$2" >/dev/null
	fi
	command -v "$1" >/dev/null || { echo "bench-compare: $1 missing (apt-get install $2)"; exit 1; }
}
need sipp sip-tester
need kamailio kamailio

. scripts/lib.sh # $work, $pids, cleanup on exit

CGO_ENABLED=0 go build -trimpath -o "$work/isp-box" ./cmd/isp-box
cat >"$work/isp-box.conf" <<CONF
[general]
udpbindaddr=127.0.0.1:$BOX_PORT
context=default
; Kamailio has no cap on calls at once; the box's default (100, for a Pi)
; would refuse most calls above 100/s with a 1 s hold
maxcalls=0
[box]
console = $work/isp-box.sock
database = $work/isp-box.db
log-level = warn
network = userspace
; the same memory budget as Kamailio's (-m 256 below): at the default
; 96 MiB (sized for a Pi) the 32 s of sipgo transactions a REGISTER or
; call burst keeps (Timer J) push the heap over the soft limit and the
; GC runs back to back (up to half the CPU) -- profile of 2026-12-06
memory-limit = 256M
[network]
gateway = 192.168.32.1
pool = 192.168.32.0/24
[pap2t](!)
context=default
type=friend
secret=password
qualify=200
host=dynamic
directmedia=yes
nat=no
[pap2t-ispmodem](pap2t)
regexten=881
[pap2t-client](pap2t)
regexten=882
[default]
exten => _X!,1,Dial(SIP/pap2t-ispmodem, 20)
CONF
if [ -n "${PROFILE_DIR:-}" ]; then
	mkdir -p "$PROFILE_DIR"
	cp "$work/isp-box" "$PROFILE_DIR/isp-box"
	export ISPBOX_PPROF=1
fi
"$work/isp-box" serve -c "$work/isp-box.conf" >"$work/isp-box.log" 2>&1 &
unset ISPBOX_PPROF
box_pid=$!
pids+=("$box_pid")

sed "s/@PORT@/$KAM_PORT/g" scripts/bench/kamailio.cfg >"$work/kamailio.cfg"
kamailio -f "$work/kamailio.cfg" -DD -E -m 256 -M 16 -P "$work/kamailio.pid" >"$work/kamailio.log" 2>&1 &
kam_pid=$!
pids+=("$kam_pid")
sleep 2
kill -0 "$box_pid" 2>/dev/null || { cat "$work/isp-box.log"; exit 1; }
kill -0 "$kam_pid" 2>/dev/null || { cat "$work/kamailio.log"; exit 1; }

# procs NAME: the pids whose CPU and memory count for that server.
procs() {
	case $1 in
	isp-box) echo "$box_pid" ;;
	kamailio) echo "$kam_pid" $(pgrep -P "$kam_pid" || true) ;;
	esac
}
ticks() { # utime+stime of the processes, in clock ticks
	local t=0 p
	for p in $(procs "$1"); do
		[ -r "/proc/$p/stat" ] || continue
		t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
	done
	echo "$t"
}
waitns() { # run-queue wait of all the processes' threads, in ns
	local w=0 p t
	for p in $(procs "$1"); do
		for t in /proc/"$p"/task/*/schedstat; do
			[ -r "$t" ] && w=$((w + $(awk '{print $2}' "$t" 2>/dev/null || echo 0)))
		done
	done
	echo "$w"
}
drops() { # drops PORT...: datagrams the kernel dropped on the UDP sockets bound to these ports
	local hex=""
	for p in "$@"; do hex="$hex $(printf '%04X' "$p")"; done
	awk -v ports="$hex" 'BEGIN { n = split(ports, a, " "); for (i = 1; i <= n; i++) want[a[i]] = 1 }
		NR > 1 { split($2, l, ":"); if (l[2] in want) d += $NF } END { print d + 0 }' /proc/net/udp
}
mem_kb() { # RSS of isp-box; PSS summed over Kamailio's processes
	local m=0 p
	for p in $(procs "$1"); do
		if [ "$1" = isp-box ]; then
			m=$((m + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)))
		else
			m=$((m + $(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)))
		fi
	done
	echo "$m"
}
# sample NAME FILE: the peak of mem_kb, every 100 ms, until killed.
sample() {
	local peak=0 m
	while :; do
		m=$(mem_kb "$1")
		[ "$m" -gt "$peak" ] && peak=$m && echo "$peak" >"$2"
		sleep 0.1
	done
}
port_of() { [ "$1" = isp-box ] && echo "$BOX_PORT" || echo "$KAM_PORT"; }
# callee_ok: isp-box's qualify has the callee line reachable ("OK (N ms)").
# With qualify=200 (the seed's), a line whose OPTIONS took longer, or went
# unanswered, is LAGGED/UNREACHABLE and calls to it get 503 until the next
# poke 10 s later (chan_sip's DEFAULT_FREQ_NOTOK): Kamailio has no such
# check, so the table says when it happened.
callee_ok() {
	"$work/isp-box" peers -s "$work/isp-box.sock" 2>/dev/null | grep -Eq '^pap2t-ispmodem.*OK \('
}
# lagged FILE: counts the half seconds the box said the callee line was
# not OK (a status request that failed counts for nothing), until killed.
lagged() {
	local n=0 out
	while :; do
		if out=$("$work/isp-box" peers -s "$work/isp-box.sock" 2>/dev/null) &&
			! grep -Eq '^pap2t-ispmodem.*OK \(' <<<"$out"; then
			n=$((n + 1))
			echo "$n" >"$1"
		fi
		sleep 0.5
	done
}

# Both ATA lines register with both servers, as the seed's PAP2T does: the
# callee from the port where it then answers, the caller from the port the
# load comes from (isp-box rate-limits addresses that are no peer's).
for s in isp-box kamailio; do
	for line in pap2t-ispmodem:$UAS_PORT pap2t-client:$UAC_PORT; do
		(cd "$work" && sipp -sf "$repo/test/sipp/compare_register.xml" -i 127.0.0.1 -p "${line#*:}" -nostdin \
			-key user "${line%:*}" -au "${line%:*}" -ap password -m 1 -timeout 10s -timeout_error \
			"127.0.0.1:$(port_of $s)" >"$work/reg-$s.out" 2>&1) ||
			{ echo "bench-compare: ${line%:*} could not register with $s"; cat "$work/reg-$s.out"; exit 1; }
	done
done
sipp -sf test/sipp/compare_uas.xml -i 127.0.0.1 -p "$UAS_PORT" -nostdin \
	-trace_err -error_file "$work/uas_err.log" </dev/null >/dev/null 2>&1 &
pids+=($!)
sleep 1
# The box qualified the callee line when it registered, from the port
# where the UAS was not listening yet: wait for a poke the UAS answers.
for _ in $(seq 60); do callee_ok && break; sleep 0.5; done
callee_ok || echo "bench-compare: isp-box does not see the callee line reachable (qualify); its calls will fail"

# col FILE NAME: the last value of a column of sipp's ;-separated stat file.
col() {
	awk -F';' -v n="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == n) c = i; next } { v = $c } END { print v + 0 }' "$1"
}
# pct FILE P: the P-th percentile of sipp's response times (ms).
pct() {
	awk -F';' 'NR > 1 && $2 != "" { print $2 }' "$1" | sort -n |
		awk -v p="$2" '{ v[NR] = $1 } END { if (NR == 0) { print "-"; exit } i = int(NR * p / 100 + 0.999); if (i < 1) i = 1; printf "%.1f", v[i] }'
}

# load SERVER SCENARIO RATE N [sipp args]: one run; sets R_* globals.
load() {
	local srv=$1 scen=$2 rate=$3 n=$4
	shift 4
	local dir="$work/run-$srv-$(basename "$scen" .xml)-$rate"
	mkdir -p "$dir"
	sample "$srv" "$dir/peak" &
	local spid=$! lpid=""
	if [ "$srv" = isp-box ]; then
		lagged "$dir/lagged" &
		lpid=$!
	fi
	local t0 c0 t1 c1 w0 w1 d0 d1 prof=""
	if [ -n "${PROFILE_DIR:-}" ] && [ "$srv" = isp-box ]; then
		curl -s --unix-socket "$work/isp-box.sock" -o "$PROFILE_DIR/cpu-$(basename "$scen" .xml)-$rate.pprof" \
			"http://isp-box/debug/pprof/profile?seconds=$DURATION" &
		prof=$!
	fi
	c0=$(ticks "$srv")
	w0=$(waitns "$srv")
	d0=$(drops "$(port_of "$srv")" "$UAC_PORT" "$UAS_PORT")
	t0=$(date +%s.%N)
	(cd "$dir" && timeout $((DURATION * 3 + 60)) sipp -sf "$repo/$scen" -i 127.0.0.1 -p "$UAC_PORT" -nostdin \
		-r "$rate" -m "$n" -l $((rate * (HOLD / 1000 + 2) + 100)) \
		-key user pap2t-client -s 88567682 -au pap2t-client -ap password \
		-timeout $((DURATION * 2 + 30))s -timeout_error -max_recv_loops 10000 \
		-trace_stat -stf stat.csv -fd 1 -trace_rtt -rtt_freq 1 "$@" \
		"127.0.0.1:$(port_of "$srv")" >sipp.out 2>&1) || true
	t1=$(date +%s.%N)
	c1=$(ticks "$srv")
	w1=$(waitns "$srv")
	d1=$(drops "$(port_of "$srv")" "$UAC_PORT" "$UAS_PORT")
	kill "$spid" $lpid 2>/dev/null
	wait "$spid" $lpid 2>/dev/null || true
	R_LAG=$(awk '{ printf "%.1f", $1 / 2 }' "$dir/lagged" 2>/dev/null || echo 0)
	if [ -n "$prof" ]; then
		wait "$prof" || true
		for p in block mutex allocs; do
			curl -s --unix-socket "$work/isp-box.sock" -o "$PROFILE_DIR/$p-$(basename "$scen" .xml)-$rate.pprof" "http://isp-box/debug/pprof/$p" || true
		done
	fi
	local rtt
	rtt=$(ls "$dir"/*_rtt.csv 2>/dev/null | head -1)
	R_OK=$(col "$dir/stat.csv" "SuccessfulCall(C)")
	R_FAIL=$(col "$dir/stat.csv" "FailedCall(C)")
	R_RETR=$(col "$dir/stat.csv" "Retransmissions(C)")
	R_P50=$( [ -n "$rtt" ] && pct "$rtt" 50 || echo -)
	R_P99=$( [ -n "$rtt" ] && pct "$rtt" 99 || echo -)
	# the calls were offered over n/rate seconds; achieved = succeeded per that
	R_RATE=$(awk -v ok="$R_OK" -v n="$n" -v r="$rate" 'BEGIN { printf "%.0f", ok / (n / r) }')
	R_CPU=$(awk -v c=$((c1 - c0)) -v hz="$HZ" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", 100 * c / hz / (b - a) }')
	# CPU per call (or registration) that succeeded: what a server needs,
	# whatever share of the machine it got
	R_MSOP=$(awk -v c=$((c1 - c0)) -v hz="$HZ" -v ok="$R_OK" 'BEGIN { if (ok > 0) printf "%.2f", 1000 * c / hz / ok; else print "-" }')
	R_WAIT=$(awk -v w=$((w1 - w0)) -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", 100 * w / 1e9 / (b - a) }')
	R_DROP=$((d1 - d0))
	R_MB=$(awk -v k="$(cat "$dir/peak" 2>/dev/null || echo 0)" 'BEGIN { printf "%.0f", k / 1024 }')
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0 || a == "-" || b == "-") print "-"; else printf "%.2f", a / b }'; }

table() { # table KIND RATES SCENARIO N-PER-RATE-FACTOR [sipp args]
	local kind=$1 rates=$2 scen=$3 fac=$4
	shift 4
	printf '\n%s (%s s per rate, alternated; CPU and wait = %% of one core; memory: isp-box RSS, Kamailio PSS)\n' "$kind" "$DURATION"
	local hdr='%-9s %6s %5s %6s %7s %7s %5s %6s %5s %5s %6s'
	# shellcheck disable=SC2059
	printf "%-6s | $hdr | $hdr | %s\n" rate server "/s" fail retr p50ms p99ms cpu% ms/op wait% drop MB \
		server "/s" fail retr p50ms p99ms cpu% ms/op wait% drop MB "box/kam: /s cpu ms/op MB p99"
	local r order=0 s
	for r in $rates; do
		local n=$((r * DURATION * fac / 10))
		local servers=$SERVERS
		if [ $((order % 2)) = 1 ]; then servers=$(echo "$SERVERS" | awk '{ for (i = NF; i > 0; i--) printf "%s ", $i }'); fi
		order=$((order + 1))
		declare -A res
		for s in $servers; do
			load "$s" "$scen" "$r" "$n" "$@"
			res[$s]="$R_RATE $R_FAIL $R_RETR $R_P50 $R_P99 $R_CPU $R_MSOP $R_WAIT $R_DROP $R_MB"
			[ "$s" = isp-box ] && lag=$R_LAG
			sleep 2
		done
		local kr kf kt k5 k9 kc ko kw kd km br bf bt b5 b9 bc bo bw bd bm
		read -r kr kf kt k5 k9 kc ko kw kd km <<<"${res[kamailio]:-- - - - - - - - - -}"
		read -r br bf bt b5 b9 bc bo bw bd bm <<<"${res[isp-box]:-- - - - - - - - - -}"
		# shellcheck disable=SC2059
		printf "%-6s | $hdr | $hdr | %s %s %s %s %s\n" \
			"$r" kamailio "$kr" "$kf" "$kt" "$k5" "$k9" "$kc" "$ko" "$kw" "$kd" "$km" isp-box "$br" "$bf" "$bt" "$b5" "$b9" "$bc" "$bo" "$bw" "$bd" "$bm" \
			"$(ratio "$br" "$kr")" "$(ratio "$bc" "$kc")" "$(ratio "$bo" "$ko")" "$(ratio "$bm" "$km")" "$(ratio "$b9" "$k9")"
		if [ -n "${lag:-}" ] && [ "$lag" != 0 ]; then
			echo "       (isp-box saw the callee line LAGGED/UNREACHABLE by qualify for ${lag} s of this run: calls to it got 503 meanwhile)"
		fi
		unset res lag
	done
}

echo "bench-compare: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at start; kamailio $(kamailio -v | awk 'NR == 1 { print $3 }'), isp-box $(git describe --always --dirty 2>/dev/null)"
table "INVITE calls/s (digest, hold ${HOLD} ms, BYE)" "$RATES" test/sipp/compare_uac.xml 10 -d "$HOLD"
table "REGISTER/s (digest: 401 then 200)" "$REG_RATES" test/sipp/compare_register.xml 5
echo
echo "bench-compare: load average $(cut -d' ' -f1-3 /proc/loadavg) at end"
