# lib.sh: what the bench scripts share. Source it from the repository root:
#   . scripts/lib.sh
# It makes $work, a temporary directory, and $pids, the processes a script
# starts in the background (pids+=($!)). On exit, however the script ends,
# those processes are killed and waited for, and $work is removed, or kept
# and named when KEEP is set (to read the logs).
# shellcheck shell=bash
work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	if [ -n "${KEEP:-}" ]; then echo "$(basename "$0" .sh): logs kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
