#!/bin/bash
# build.sh: builds the real-pppd test VM (a Debian kernel + an initramfs with
# pppd, chat and busybox) into a cache directory that is not committed.
#
# Everything comes from Debian packages fetched with `apt-get download`
# (nothing is installed on the host). The traps of running pppd in qemu
# are written down in internal/pppdvm/doc.go.
#
#   tools/pppd-vm/build.sh            # build (or confirm) the cache
#   ISPBOX_VM_CACHE=/some/dir build.sh
#   build.sh --print-cache            # print this build's directory and exit
#
# Outputs in builds/HASH/ of the cache, HASH being the inputs' stamp (this
# script and guest/): vmlinuz, initrd.cpio.gz (padded to 4 bytes so a
# per-test cpio can be appended), manifest.txt (package versions), stamp.
# Builds of different sources sit side by side, so checkouts of different
# commits sharing one cache (worktrees, a CI machine) do not rebuild over
# each other; the newest few are kept. Idempotent: a second run with the
# same inputs does nothing; downloaded .debs are kept under debs/ and reused.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

# The same rule as internal/pppdvm.CacheDir: $ISPBOX_VM_CACHE, else
# /var/cache/isp-box-vm for root (kept across CI runs on one machine), else
# .cache/pppd-vm in the repository (gitignored).
cache_dir() {
	if [[ -n "${ISPBOX_VM_CACHE:-}" ]]; then
		echo "$ISPBOX_VM_CACHE"
	elif [[ $(id -u) -eq 0 ]]; then
		echo /var/cache/isp-box-vm
	else
		echo "$repo/.cache/pppd-vm"
	fi
}
cache=$(cache_dir)

# The inputs that decide the output: this script and the guest's files.
inputs_hash=$( (cat "$here/build.sh"; find "$here/guest" -type f -print0 | LC_ALL=C sort -z | xargs -0 cat) | sha256sum | cut -d' ' -f1)
dest="$cache/builds/$inputs_hash"
if [[ "${1:-}" == "--print-cache" ]]; then
	echo "$dest"
	exit 0
fi

log() { echo "pppd-vm: $*" >&2; }
die() { echo "pppd-vm: error: $*" >&2; exit 1; }

for tool in apt-get apt-cache dpkg-deb cpio gzip find sha256sum; do
	command -v "$tool" >/dev/null || die "$tool is missing (Debian: apt-get install apt dpkg cpio gzip)"
done

mkdir -p "$cache/debs"

if [[ -f "$dest/stamp" && -f "$dest/vmlinuz" && -f "$dest/initrd.cpio.gz" ]] &&
	[[ "$(cat "$dest/stamp")" == "$inputs_hash" ]]; then
	log "up to date in $dest"
	touch "$dest"
	exit 0
fi

# --- 1. the packages ------------------------------------------------------
# The kernel package behind linux-image-amd64 (a versioned name that moves
# with Debian's kernel updates).
kernel_pkg() {
	apt-cache depends linux-image-amd64 2>/dev/null |
		awk '/Depends: linux-image-[0-9]/ {print $2; exit}'
}
kpkg=$(kernel_pkg || true)
if [[ -z "$kpkg" && $(id -u) -eq 0 ]]; then
	log "apt lists know no linux-image-amd64: apt-get update"
	apt-get update -qq
	kpkg=$(kernel_pkg || true)
fi
[[ -n "$kpkg" ]] || die "cannot resolve linux-image-amd64 (run apt-get update)"

# pppd and chat need these (checked below with the extracted loader).
libs=(libc6 libcrypt1 libpam0g libpcap0.8 libssl3 libsystemd0 libgcc-s1
	libaudit1 libdbus-1-3 libcap2 libgcrypt20 liblz4-1 liblzma5 libzstd1
	libaudit-common libcap-ng0 libgpg-error0)
pkgs=("$kpkg" ppp busybox-static "${libs[@]}")

# have PKG: a .deb for PKG is already in debs/ (any version: the cache is
# rebuilt from scratch by deleting it).
have() { compgen -G "$cache/debs/${1}_*.deb" >/dev/null; }
missing=()
for p in "${pkgs[@]}"; do have "$p" || missing+=("$p"); done
if ((${#missing[@]})); then
	log "apt-get download ${missing[*]}"
	# apt-get download writes to the current directory. As root it warns that
	# the _apt user cannot write there; that is harmless.
	if ! (cd "$cache/debs" && apt-get download -q "${missing[@]}" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2; exit "${PIPESTATUS[0]}"); then
		[[ $(id -u) -eq 0 ]] || die "apt-get download failed"
		log "apt-get download failed: apt-get update and retry"
		apt-get update -qq
		(cd "$cache/debs" && apt-get download -q "${missing[@]}")
	fi
fi
for p in "${pkgs[@]}"; do have "$p" || die "no .deb for $p after download"; done

deb() { ls "$cache"/debs/"${1}"_*.deb | tail -n1; }
# Drop .debs no longer used (an older kernel package after a Debian update).
declare -A keep=()
for p in "${pkgs[@]}"; do keep[$(deb "$p")]=1; done
for f in "$cache"/debs/*.deb; do
	[[ -n "${keep[$f]:-}" ]] || { log "removing unused $(basename "$f")"; rm -f "$f"; }
done

# --- 2. extraction --------------------------------------------------------
work="$cache/work.$$"
trap 'rm -rf "$work" "$cache/builds/.new.$$"' EXIT
rm -rf "$work"
mkdir -p "$work/libs" "$work/kernel" "$work/root"

for p in ppp busybox-static "${libs[@]}"; do
	dpkg-deb -x "$(deb "$p")" "$work/libs"
done
# Only the kernel image and the modules we need: the package is ~70 MB.
dpkg-deb --fsys-tarfile "$(deb "$kpkg")" |
	tar -x -C "$work/kernel" --wildcards \
		'./boot/vmlinuz-*' './lib/modules/*/modules.builtin' \
		'./lib/modules/*/kernel/drivers/net/ppp/*' \
		'./lib/modules/*/kernel/drivers/net/slip/*' \
		'./lib/modules/*/kernel/lib/*'
vmlinuz=$(ls "$work"/kernel/boot/vmlinuz-* | head -n1)
[[ -f "$vmlinuz" ]] || die "no vmlinuz in $kpkg"
kver=$(basename "$vmlinuz"); kver=${kver#vmlinuz-}
moddir="$work/kernel/lib/modules/$kver"

# --- 3. libraries, resolved with the extracted loader ----------------------
L="$work/libs"
loader=""
for cand in "$L/lib64/ld-linux-x86-64.so.2" "$L/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" \
	"$L/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" "$L/usr/lib64/ld-linux-x86-64.so.2"; do
	if [[ -e "$cand" ]]; then loader=$(readlink -f "$cand"); break; fi
done
[[ -n "$loader" && -f "$loader" ]] || die "no ld-linux-x86-64.so.2 in the extracted libc6"
libpath="$L/lib/x86_64-linux-gnu:$L/usr/lib/x86_64-linux-gnu"
R="$work/root"
mkdir -p "$R/bin" "$R/sbin" "$R/usr/sbin" "$R/lib/x86_64-linux-gnu" "$R/lib64" \
	"$R/lib/modules" "$R/etc/ppp" "$R/etc/isp-test" "$R/proc" "$R/sys" "$R/dev" \
	"$R/run" "$R/tmp" "$R/var/run" "$R/var/lock" "$R/root"

bins=()
for b in usr/sbin/pppd usr/sbin/chat; do
	[[ -x "$L/$b" ]] || die "no /$b in the ppp package"
	cp "$L/$b" "$R/usr/sbin/"
	bins+=("$L/$b")
done
declare -A seen=()
for b in "${bins[@]}"; do
	out=$("$loader" --list --library-path "$libpath" "$b") || die "loader failed on $b: $out"
	while read -r line; do
		case "$line" in
		*ld-linux-x86-64.so.2*) continue ;; # the loader itself: ours is copied below
		*"=> not found"*) die "$b: ${line%% =>*} not found in the extracted packages (add its package to libs)" ;;
		*"=> "*) path=$(echo "$line" | sed -E 's/.*=> ([^ ]+).*/\1/') ;;
		/*) path=${line%% *} ;;
		*) continue ;;
		esac
		case "$path" in
		"$L"/*) ;;
		*) die "$b: $line resolves to a host path, not the extracted packages" ;;
		esac
		[[ -n "${seen[$path]:-}" ]] && continue
		seen[$path]=1
		cp -L "$path" "$R/lib/x86_64-linux-gnu/$(basename "$path")"
	done <<<"$out"
done
cp -L "$loader" "$R/lib64/ld-linux-x86-64.so.2"
cp -L "$loader" "$R/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
cp "$L/bin/busybox" "$R/bin/busybox"

# --- 4. kernel modules, in depends= order -----------------------------------
# The .deb ships no modules.dep (depmod runs at install): read each module's
# depends= from its .modinfo section instead.
modfile() { # NAME -> path of its .ko (uncompressed into $work/ko)
	local n=$1 f
	f=$(find "$moddir/kernel" \( -name "$n.ko" -o -name "$n.ko.xz" -o -name "$n.ko.zst" \
		-o -name "${n//_/-}.ko" -o -name "${n//_/-}.ko.xz" -o -name "${n//_/-}.ko.zst" \) | head -n1)
	[[ -n "$f" ]] || return 1
	mkdir -p "$work/ko"
	case "$f" in
	*.xz) xz -dc "$f" >"$work/ko/$n.ko" ;;
	*.zst) zstd -qdc "$f" >"$work/ko/$n.ko" ;;
	*) cp "$f" "$work/ko/$n.ko" ;;
	esac
	echo "$work/ko/$n.ko"
}
builtin() { grep -Eq "/(${1}|${1//_/-}|${1//-/_})\.ko\$" "$moddir/modules.builtin" 2>/dev/null; }
order=()
declare -A done_mod=()
add_mod() { # NAME: add its dependencies, then itself
	local n=${1//-/_} f deps d
	[[ -n "${done_mod[$n]:-}" ]] && return 0
	done_mod[$n]=1
	if ! f=$(modfile "$1"); then
		builtin "$1" && return 0
		die "module $1 is neither a .ko in $kpkg nor built in"
	fi
	deps=$(tr '\0' '\n' <"$f" | sed -n 's/^depends=//p' | head -n1)
	for d in ${deps//,/ }; do add_mod "$d"; done
	order+=("$n")
	cp "$f" "$R/lib/modules/$n.ko"
}
for m in slhc ppp_generic ppp_async ppp_deflate bsd_comp; do add_mod "$m"; done
printf '%s\n' "${order[@]}" >"$R/lib/modules/order"

# --- 5. the guest's own files -----------------------------------------------
install -m 0755 "$here/guest/init" "$R/init"
install -m 0755 "$here/guest/ip-up" "$R/etc/ppp/ip-up"
install -m 0755 "$here/guest/ip-down" "$R/etc/ppp/ip-down"
install -m 0644 "$here/guest/chat-script" "$R/etc/ppp/chat-script"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$R/etc/passwd"
printf 'root:x:0:\n' >"$R/etc/group"
: >"$R/etc/ppp/pap-secrets"
: >"$R/etc/ppp/chap-secrets"
chmod 600 "$R/etc/ppp/pap-secrets" "$R/etc/ppp/chap-secrets"

# --- 6. the initramfs ------------------------------------------------------
# newc, owned by root, gzip. Padded to a 4-byte boundary: the kernel only
# finds an appended (uncompressed) cpio at an aligned offset.
# Everything goes into a new directory renamed into place at the end: a
# test reading the cache never sees half a build.
new="$cache/builds/.new.$$"
rm -rf "$new"
mkdir -p "$new"
(cd "$R" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -9n >"$new/initrd.cpio.gz"
size=$(stat -c %s "$new/initrd.cpio.gz")
pad=$(((4 - size % 4) % 4))
head -c "$pad" /dev/zero >>"$new/initrd.cpio.gz"
cp "$vmlinuz" "$new/vmlinuz"

{
	echo "kernel $kpkg $kver"
	for p in ppp busybox-static "${libs[@]}"; do basename "$(deb "$p")"; done
	echo "modules ${order[*]}"
} >"$new/manifest.txt"
echo "$inputs_hash" >"$new/stamp"
rm -rf "$dest"
mv "$new" "$dest"
# Keep the newest few builds (other checkouts may still use theirs).
ls -1dt "$cache"/builds/*/ 2>/dev/null | tail -n +5 | xargs -r rm -rf
log "built $dest: vmlinuz $(stat -c %s "$dest/vmlinuz") bytes, initrd $(stat -c %s "$dest/initrd.cpio.gz") bytes, modules: ${order[*]}"
