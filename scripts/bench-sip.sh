#!/usr/bin/env bash
# bench-sip.sh: load the PBX with sipp on loopback only.
#   sipp UAC (bench-uac, digest-authenticated INVITE) -> isp-box pbx -> sipp UAS
# 1. calls: the highest rate (calls/s, each held HOLD ms) sustained for
#    DURATION s with no failed call;
# 2. REGISTER/s with digest (401 then 200), same criterion.
# Environment: RATES, REG_RATES (space-separated steps), DURATION (20),
# HOLD (1000), RELAY=1 to anchor media in the box, KEEP=1 keeps the logs.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v sipp >/dev/null || { echo "bench-sip: sipp not installed (apt-get install sip-tester)"; exit 1; }
DURATION=${DURATION:-20}
HOLD=${HOLD:-1000}
RATES=${RATES:-"50 100 150 200 250 300 400 600"}
REG_RATES=${REG_RATES:-"400 800 1600 2400 3200 4000 5000 6400"}
BOX=127.0.0.1:${BOX_PORT:-15060}
UAS_PORT=${UAS_PORT:-15070}
UAC_PORT=${UAC_PORT:-15080}
. scripts/lib.sh # $work, $pids, cleanup on exit

go test -c -o "$work/pbx.test" ./pbx
PBX_BENCH_ADDR=$BOX PBX_BENCH_UAS=127.0.0.1:$UAS_PORT PBX_BENCH_RELAY=${RELAY:-0} \
	"$work/pbx.test" -test.run '^TestBenchServe$' -test.timeout 0 >"$work/pbx.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q READY "$work/pbx.log" && break; sleep 0.1; done
grep -q READY "$work/pbx.log" || { cat "$work/pbx.log"; exit 1; }

sipp -sf test/sipp/bench_uas.xml -i 127.0.0.1 -p "$UAS_PORT" -nostdin \
	-trace_err -error_file "$work/uas_err.log" </dev/null >/dev/null 2>&1 &
pids+=($!)
sleep 0.5

# run SCENARIO RATE N [extra sipp args]: 0 when all N calls succeeded.
run() {
	local scen=$1 rate=$2 n=$3
	shift 3
	timeout $((DURATION * 3 + 60)) sipp -sf "$scen" -i 127.0.0.1 -p "$UAC_PORT" -nostdin \
		-r "$rate" -m "$n" -l $((rate * (HOLD / 1000 + 2) + 100)) \
		-s 88567682 -au bench-uac -ap bench -timeout $((DURATION * 2 + 30))s -timeout_error \
		-trace_err -error_file "$work/uac_err.log" "$@" "$BOX" >"$work/sipp.out" 2>&1
}

best_calls=0
for r in $RATES; do
	n=$((r * DURATION))
	if run test/sipp/bench_uac.xml "$r" "$n" -d "$HOLD"; then
		echo "calls: $r/s for ${DURATION}s ($n calls, hold ${HOLD} ms): all succeeded"
		best_calls=$r
	else
		echo "calls: $r/s: failures (sipp exit $?); stopping"
		grep -E "Failed call|Retransmissions|Timeout" "$work/sipp.out" | tail -3 || true
		grep -v '^$' "$work/uac_err.log" 2>/dev/null | head -3 || true
		break
	fi
done

best_reg=0
for r in $REG_RATES; do
	n=$((r * DURATION / 2))
	if run test/sipp/bench_register.xml "$r" "$n"; then
		echo "register: $r/s ($n REGISTER+auth, $((n / r)) s): all succeeded"
		best_reg=$r
	else
		echo "register: $r/s: failures; stopping"
		break
	fi
done

echo "RESULT highest call rate with no failure: ${best_calls} calls/s (${DURATION} s, hold ${HOLD} ms, media $([ "${RELAY:-0}" = 1 ] && echo relay || echo direct))"
echo "RESULT highest REGISTER rate with digest and no failure: ${best_reg}/s"
