#!/bin/bash
# run.sh: boots the real-pppd VM (built by build.sh) by hand, its console on
# stdout, for trying the box with Debian's pppd without writing a test.
#
#   tools/pppd-vm/run.sh --pty /dev/pts/7 isp_mode=chat isp_auth=pap
#       ttyS1 is that pty (e.g. the virtual ATA's client-line modem, printed
#       by `isp-box sim-ata`); qemu puts it in raw mode itself.
#   tools/pppd-vm/run.sh --tcp 127.0.0.1:2323 isp_auth=pap
#       ttyS1 is a TCP connection qemu opens to that address (a TCP line of
#       the box), as an emulator's serial port would.
#   tools/pppd-vm/run.sh --socket /tmp/vm.sock isp_auth=chap
#       ttyS1 is a unix socket; the VM boots when you connect, e.g.
#       socat UNIX-CONNECT:/tmp/vm.sock PTY,link=/tmp/vm-tty,raw,echo=0
#
# key=value settings (see guest/init): isp_mode direct|chat, isp_user,
# isp_password, isp_auth pap|chap|mschap|mschapv2|any, isp_ping, isp_timeout,
# isp_http (a URL to fetch once IPCP is up).
# They go on the kernel command line: no spaces or quotes in values.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=$("$here/build.sh" --print-cache)
[[ -f "$cache/vmlinuz" && -f "$cache/initrd.cpio.gz" ]] || {
	echo "run.sh: no VM in $cache: run tools/pppd-vm/build.sh (make pppd-vm)" >&2
	exit 1
}
serial=""
settings=()
while (($#)); do
	case "$1" in
	--pty) serial="tty,id=s1,path=$2"; shift 2 ;;
	--tcp) serial="socket,id=s1,host=${2%:*},port=${2##*:},server=off"; shift 2 ;;
	--socket) serial="socket,id=s1,path=$2,server=on,wait=on"; shift 2 ;;
	*=*) settings+=("$1"); shift ;;
	*) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done
[[ -n "$serial" ]] || { echo "usage: run.sh --pty PATH|--tcp HOST:PORT|--socket PATH [key=value...]" >&2; exit 2; }
exec qemu-system-x86_64 -accel tcg -cpu max -m 192 \
	-nodefaults -no-user-config -display none -nic none -no-reboot \
	-kernel "$cache/vmlinuz" -initrd "$cache/initrd.cpio.gz" \
	-append "console=ttyS0,115200 panic=-1 loglevel=5 ${settings[*]}" \
	-serial stdio -chardev "$serial" -serial chardev:s1 </dev/null
