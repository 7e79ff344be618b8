#!/bin/sh
# Runs every FuzzXxx target of the module for FUZZTIME each, FUZZJOBS
# targets at a time. With more than one job each target gets one fuzzing
# worker, so a 2-core machine fuzzes two targets side by side instead of one
# target on two workers. Targets are found with `go test -list`, so new ones
# need no edit here. A failing target does not stop the others; failures
# are listed at the end, and the input that failed is saved under the
# package's testdata/fuzz/ by `go test`, to be committed as a regression case.
set -u
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-30s}
FUZZJOBS=${FUZZJOBS:-1}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for pkg in $($GO list ./...); do
	for f in $($GO test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
		echo "$pkg $f"
	done
done >"$tmp/targets"
echo "fuzz: $(wc -l <"$tmp/targets") targets, $FUZZTIME each, $FUZZJOBS at a time"

par=""
[ "$FUZZJOBS" -gt 1 ] && par="-parallel 1"
export GO FUZZTIME par tmp
xargs -P "$FUZZJOBS" -L 1 sh -c '
	log="$tmp/$(echo "$0" | tr / _).$1.log"
	if $GO test -run "^\$" -fuzz "^$1\$" -fuzztime "$FUZZTIME" $par "$0" >"$log" 2>&1; then
		# Go prints no progress line for a run shorter than its 3 s tick.
		echo "== $0 $1: $(grep "execs:" "$log" | tail -n 1 || tail -n 1 "$log")"
	else
		echo "== $0 $1: FAILED"; cat "$log"; echo "$0.$1" >>"$tmp/failed"
	fi' <"$tmp/targets"

if [ -s "$tmp/failed" ]; then
	echo "fuzz failures:"; cat "$tmp/failed"; exit 1
fi
