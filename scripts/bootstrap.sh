#!/bin/sh
# Install the system packages isoproof needs, from Debian's archive. Idempotent and quick when
# everything is present, so tox calls it before every run. Nothing is fetched from image registries:
# the busybox rootfs is built from busybox-static (see runtime/busybox.py).
set -eu

PKGS="python3-venv busybox-static runc crun iproute2 util-linux kmod e2fsprogs procps libseccomp2"
# What only the tests need (tox's py env sets ISOPROOF_BOOTSTRAP_TESTS=1): the real clients of
# tests/clients (podman and docker drive isoproof-oci as their runtime there) and the tools that
# build a fresh root for the newcomer's-path job, and chromium for the HTML report's browser test
# (tests/integration/test_report_browser.py). The main job (tox -e verify) needs none of them.
if [ "${ISOPROOF_BOOTSTRAP_TESTS:-0}" = 1 ]; then
    PKGS="$PKGS podman docker.io debootstrap chromium"
fi
# The kernel matrix needs qemu; ask for it with ISOPROOF_BOOTSTRAP_VM=1 (tox -e matrix does).
if [ "${ISOPROOF_BOOTSTRAP_VM:-0}" = 1 ]; then
    PKGS="$PKGS qemu-system-x86 busybox-static cpio zstd"
fi

missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "isoproof bootstrap: needs root to install:$missing" >&2
    exit 1
fi
echo "isoproof bootstrap: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
