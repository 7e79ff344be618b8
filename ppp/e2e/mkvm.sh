#!/bin/bash
# mkvm.sh OUT: builds a tiny VM (Debian's kernel + initramfs with busybox,
# pppd and chat from Debian's packages) that runs a real pppd 2.4.9 on its
# second serial port, for TestRealPppd. Everything comes from Debian's
# archive through apt; nothing else is downloaded. See
# shared/reference/real-pppd.md for the facts this relies on.
#
# Output: OUT/vm/vmlinuz, OUT/vm/initrd (gzip cpio). Idempotent: an existing
# OUT/vm/initrd is kept unless FORCE=1.
set -euo pipefail
OUT=${1:-/var/cache/isp-box-e2e}
VM=$OUT/vm
if [[ -s $VM/initrd && -s $VM/vmlinuz && ${FORCE:-0} != 1 ]]; then
	echo "mkvm: $VM already built"
	exit 0
fi
for t in qemu-system-x86_64 cpio dpkg-deb apt-get gzip; do
	command -v $t >/dev/null || { echo "mkvm: $t missing (apt-get install qemu-system-x86 cpio)" >&2; exit 1; }
done
mkdir -p "$OUT/debs" "$VM"
cd "$OUT/debs"
KPKG=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
[[ -n $KPKG ]] || { apt-get update -qq; KPKG=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}'); }
PKGS="$KPKG ppp busybox-static libc6 libcrypt1 libpam0g libpcap0.8 libssl3 libsystemd0 libgcc-s1 libaudit1 libdbus-1-3 libcap2 libgcrypt20 liblz4-1 liblzma5 libzstd1 libaudit-common libcap-ng0 libgpg-error0"
need=""
for p in $PKGS; do ls ${p}_*.deb >/dev/null 2>&1 || need="$need $p"; done
if [[ -n $need ]]; then apt-get download -q $need; fi

X=$(mktemp -d)
trap 'rm -rf "$X"' EXIT
for d in *.deb; do dpkg-deb -x "$d" "$X/x"; done
R=$X/root
mkdir -p $R/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,etc/ppp,tmp,var/run,var/lock,lib/modules,lib64,lib/x86_64-linux-gnu}
cp "$X/x/bin/busybox" $R/bin/busybox
for a in sh mount mkdir insmod cat echo sleep ping poweroff kill ls ip ifconfig grep dmesg; do ln -sf busybox $R/bin/$a; done
cp "$X/x/usr/sbin/pppd" "$X/x/usr/sbin/chat" $R/usr/sbin/
# Shared libraries, resolved with the extracted loader so that nothing
# comes from the host.
LD=$X/x/lib64/ld-linux-x86-64.so.2
[[ -e $LD ]] || LD=$X/x/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
LP=$X/x/lib/x86_64-linux-gnu:$X/x/usr/lib/x86_64-linux-gnu
for bin in $R/usr/sbin/pppd $R/usr/sbin/chat; do
	"$LD" --list --library-path "$LP" "$bin" | awk '/=>/{print $3}' | while read -r lib; do
		case $lib in "$X"/*) cp -L "$lib" $R/lib/x86_64-linux-gnu/ ;; *) echo "mkvm: $lib resolved outside the packages" >&2; exit 1 ;; esac
	done
done
cp -L "$LD" $R/lib64/ld-linux-x86-64.so.2
# pppd's plugins are not needed; its CHAP/MS-CHAP are built in.
KVER=$(ls "$X/x/lib/modules" | head -1)
for m in slhc ppp_generic ppp_async; do
	f=$(find "$X/x/lib/modules/$KVER" -name "$m.ko*" | head -1)
	case $f in
	*.xz) xz -dc "$f" >$R/lib/modules/$m.ko ;;
	*.zst) zstd -dc "$f" >$R/lib/modules/$m.ko ;;
	*) cp "$f" $R/lib/modules/$m.ko ;;
	esac
done
cp "$X/x/boot/vmlinuz-$KVER" "$VM/vmlinuz"

cat >$R/init <<'INIT'
#!/bin/sh
# Kernel command line key=value pairs arrive as environment: auth, ping.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
for m in slhc ppp_generic ppp_async; do insmod /lib/modules/$m.ko; done
ip link set lo up
cat >/etc/ppp/ip-up <<'UP'
#!/bin/sh
echo "E2E IPUP local=$4 remote=$5 dns1=$DNS1 dns2=$DNS2" >/dev/console
ping -c 3 -W 3 "$5" >/tmp/ping.txt 2>&1
echo "E2E PING rc=$?" >/dev/console
cat /tmp/ping.txt >/dev/console
kill -TERM "$PPPD_PID"
UP
chmod +x /etc/ppp/ip-up
echo "E2E START auth=$auth" >/dev/console
pppd /dev/ttyS1 115200 user dial password "${password:-dial}" noauth local nodetach debug logfd 2 \
	usepeerdns noipdefault nodefaultroute 2>/dev/console
echo "E2E PPPD_EXIT rc=$?" >/dev/console
poweroff -f
INIT
chmod +x $R/init
echo "root:x:0:0:root:/:/bin/sh" >$R/etc/passwd
(cd $R && find . | cpio -o -H newc --quiet | gzip -9) >"$VM/initrd"
echo "mkvm: built $VM (kernel $KVER, initrd $(du -h "$VM/initrd" | cut -f1))"
