#!/usr/bin/env bash
# Lets this (amd64) kernel run ARCH's binaries through qemu-user-static, for
# the emulated systemd test: binfmt_misc mounted, and the qemu handler
# registered with the F ("fix binary") flag, so that the interpreter is opened
# once here and works inside a container or chroot that has no qemu of its own.
#   bash tests/systemd/binfmt.sh arm64
# Needs root and: apt-get install qemu-user-static binfmt-support
set -euo pipefail
ARCH=${1:?usage: binfmt.sh ARCH}
case $ARCH in
    arm64) qemu=aarch64 ;;
    armhf) qemu=arm ;;
    *) echo "binfmt.sh: no qemu handler known for '$ARCH'" >&2; exit 1 ;;
esac
BINFMT=/proc/sys/fs/binfmt_misc
[ -x /usr/bin/qemu-$qemu-static ] || { echo "binfmt.sh: /usr/bin/qemu-$qemu-static missing (apt-get install qemu-user-static binfmt-support)" >&2; exit 1; }
if [ ! -e $BINFMT/status ]; then
    mount -t binfmt_misc binfmt_misc $BINFMT || { echo "binfmt.sh: cannot mount binfmt_misc on $BINFMT (kernel without it?)" >&2; exit 1; }
fi
if ! grep -qx enabled $BINFMT/qemu-$qemu 2>/dev/null; then
    update-binfmts --enable qemu-$qemu >/dev/null || { echo "binfmt.sh: update-binfmts --enable qemu-$qemu failed" >&2; exit 1; }
fi
grep -q '^flags: .*F' $BINFMT/qemu-$qemu || {
    echo "binfmt.sh: qemu-$qemu is registered without the F flag: $(grep flags $BINFMT/qemu-$qemu)" >&2; exit 1; }
echo "binfmt.sh: $ARCH binaries run through $(sed -n 's/^interpreter //p' $BINFMT/qemu-$qemu) (flags $(sed -n 's/^flags: //p' $BINFMT/qemu-$qemu))" >&2
