"""The shell script a VM leg's guest runs (``vng --exec "sh <leg dir>/guest.sh"``).

The guest's root is the host's filesystem (read-only 9p, with tmpfs overlays on /etc, /var, /tmp...),
so the host venv's interpreter and the repo are visible at their host paths. The leg directory is
shared read-write at the same path, and everything the host needs comes back through it as files:
the console is not reliable without ``--verbose`` and mixes kernel messages into the output.

Files the guest writes into the leg directory:

- ``booted``: ``/proc/uptime`` as soon as the script starts (its mtime is the host's boot mark);
- ``guest.log``: everything the script and the payload print;
- ``cgroup-layout.txt``: the cgroup mounts the payload ran under;
- ``selfcheck.json`` / ``payload.json``: one record per test (``verify.matrix.collect``);
- ``exit-status``: ``selfcheck=<rc> payload=<rc>``, written last: its absence means the guest never
  finished (panic, hang, kill) and the leg is reported as an error.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from verify.matrix.legs import CgroupMode

GUEST_SCRIPT = "guest.sh"
DISK_MOUNT = "/run/isoproof-disk"
SELFCHECK_MODULE = "verify/matrix/selfcheck.py"

# Mount the v1 hierarchies before anything enables a v2 controller: a controller that is enabled
# in any cgroup2 subtree_control stays bound to v2 and cannot be mounted as v1 (EBUSY). The guest
# boots with every controller available on cgroup2, nothing enabled below the root, so we disable
# whatever might be enabled at the root, unmount cgroup2 and mount one hierarchy per controller (as
# the host does: cpu and cpuacct separately).
_CGROUP_V1 = r"""
setup_cgroups() {
    for c in $(cat /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null); do
        echo "-$c" > /sys/fs/cgroup/cgroup.subtree_control || return 1
    done
    umount /sys/fs/cgroup || return 1
    mount -t tmpfs -o mode=755,nosuid,nodev,noexec isoproof-cgroup /sys/fs/cgroup || return 1
    for c in $(awk '!/^#/ && $4 == 1 { print $1 }' /proc/cgroups); do
        mkdir -p "/sys/fs/cgroup/$c"
        mount -t cgroup -o "$c" "$c" "/sys/fs/cgroup/$c" || echo "isoproof-guest: cannot mount v1 $c"
    done
}
"""

# A v2 leg keeps the unified hierarchy the kernel booted with; make sure it is there.
_CGROUP_V2 = r"""
setup_cgroups() {
    grep -q '^[^ ]* /sys/fs/cgroup cgroup2 ' /proc/mounts && return 0
    mount -t cgroup2 cgroup2 /sys/fs/cgroup
}
"""

# ``vng --disk IMG`` attaches the image over virtio-blk: the guest's only /dev/vd* device (the root
# is 9p). The host formats the image (ext4), so the guest only mounts it.
_DISK = r"""
setup_disk() {
    modprobe virtio_blk  # no udev in the guest: nothing loads drivers by modalias for us
    for i in 1 2 3 4 5 6 7 8 9 10; do ls /dev/vd[a-z] >/dev/null 2>&1 && break; sleep 0.5; done
    dev=$(ls /dev/vd[a-z] /dev/sd[a-z] 2>/dev/null | head -n 1)
    [ -n "$dev" ] && [ -b "$dev" ] || { echo "isoproof-guest: no disk"; return 1; }
    dev=$(readlink -f "$dev")
    mkdir -p @DISK_MOUNT@ && mount -t ext4 "$dev" @DISK_MOUNT@ || return 1
    mkdir -p @DISK_MOUNT@/tmp && chmod 1777 @DISK_MOUNT@/tmp
    export ISOPROOF_DISK_DEV="$dev" ISOPROOF_SCRATCH=@DISK_MOUNT@ TMPDIR=@DISK_MOUNT@/tmp
}
"""


# virtme-ng hides /var/cache (and a few other /var paths) behind a tmpfs in the guest, which would
# hide our cache: the kernel's modules (virtme links /lib/modules/<release> to them) and the busybox
# rootfs. The host shares the cache read-only at CACHE_SHARE; the guest puts it back at its host path
# under a tmpfs-backed overlay, so the payload may write there without touching the host's copy.
CACHE_SHARE = "/run/isoproof-cache-share"
_CACHE = r"""
setup_cache() {
    [ -d @SHARE@ ] || return 0
    mkdir -p /run/isoproof-cache-rw && mount -t tmpfs isoproof-cache-rw /run/isoproof-cache-rw
    mkdir -p /run/isoproof-cache-rw/upper /run/isoproof-cache-rw/work @CACHE@
    mount -t overlay -o lowerdir=@SHARE@,upperdir=/run/isoproof-cache-rw/upper,workdir=/run/isoproof-cache-rw/work isoproof-cache @CACHE@
}
"""


# The guest's root is the host's filesystem over 9p without a page cache (virtme-ng mounts it
# cache=none): every exec re-reads its binary and libraries through the emulated virtio queue, every
# import is a string of 9p round trips. Measured under TCG (6.12 guest): `python -c pass` 2.8 s,
# `import pytest` 9.4 s, reading libpython (23 MB) 1.8 s every time. So the host's root is shared a
# second time (``--rodir``), remounted in the guest with cache=loose, and the directories the payload
# executes from (the interpreter, its venv, the repo, /usr for runc/crun/busybox/libc) are bound from
# it over their host paths: the same files, read once. With that: 0.74 s, 2.9 s and 0.19 s. Loose
# caching is safe because the guest's view is read-only and the host does not change these files
# mid-leg. One share, not one per directory: each share costs three kernel boot arguments and the
# kernel panics past 32 of them ("Too many boot env vars").
FAST_SHARE = "/run/isoproof-fast"

# ``bind_views SHARE PATH...``: bind SHARE/PATH over each PATH. Mounts below a PATH (the leg
# directory under the repo, virtme's /lib/modules tmpfs under /usr) would be hidden by the bind: keep
# a bind of each outermost one, bind the view, then bind them back on top (not mount --move: it fails
# under a shared parent mount). Paths may hold spaces: /proc/mounts writes them as octal escapes
# (\040), which awk decodes (the path reaches awk through the environment: -v would mangle a
# backslash), and the lists go through files read line by line, never word-split.
# Separate from the 9p remount so that a root test can run it on the host.
BIND_VIEWS = r"""
bind_views() {
    share=$1; shift
    keep=/run/isoproof-keep; mkdir -p $keep; : > $keep/kept; n=0
    for p in "$@"; do
        P="$p/" awk '
            function unescape(s,  out, i) {
                out = ""
                for (i = 1; i <= length(s); i++)
                    if (substr(s, i, 1) == "\\" && substr(s, i + 1, 3) ~ /^[0-7][0-7][0-7]$/) {
                        out = out sprintf("%c", substr(s, i + 1, 1) * 64 + substr(s, i + 2, 1) * 8 + substr(s, i + 3, 1))
                        i += 3
                    } else out = out substr(s, i, 1)
                return out
            }
            { m = unescape($2); if (index(m, ENVIRON["P"]) == 1) print m }' /proc/mounts > $keep/below
        while IFS= read -r m; do
            inner=0
            while read -r k km; do case "$m/" in "$km/"*) inner=1 ;; esac; done < $keep/kept
            [ $inner = 1 ] && continue
            n=$((n + 1)); mkdir -p $keep/$n
            mount --rbind "$m" $keep/$n && printf '%s %s\n' $n "$m" >> $keep/kept
        done < $keep/below
        mount --bind "$share$p" "$p" || echo "isoproof-guest: no page-cached view of $p"
    done
    while read -r k km; do mount --rbind $keep/$k "$km" || return 1; done < $keep/kept
}
"""
_FAST = r"""
setup_fast() {
    tag=$(awk -v m=@SHARE@ '$2 == m { print $1 }' /proc/mounts)
    umount @SHARE@ && mount -t 9p -o ro,trans=virtio,version=9p2000.L,msize=524288,cache=loose "$tag" @SHARE@ \
        || return 1
    bind_views @SHARE@ @PATHS@
}
"""


def fast_paths(paths: list[Path]) -> list[Path]:
    """The directories to share with a page cache: absolute, existing, not ``/``, none inside another
    (a venv under the repo rides along with the repo), no ``:`` (the list reaches the self-check
    ``$PATH``-style; such a directory is simply read without the cache)."""
    out: list[Path] = []
    for p in sorted({Path(x) for x in paths if Path(x).is_absolute() and Path(x) != Path("/")}):
        if p.is_dir() and ":" not in str(p) and not any(p.is_relative_to(o) for o in out):
            out.append(p)
    return out


@dataclass
class GuestPlan:
    """Everything the guest script needs; paths are the same in the guest and on the host."""

    leg: str
    mode: CgroupMode
    leg_dir: Path
    repo: Path
    python: str
    payload: list[str]  # argv, run from ``repo``; may use $ISOPROOF_LEG_DIR etc.
    disk: bool = True
    cache: Path | None = None  # host cache root shared at CACHE_SHARE, or None when not shared
    env: dict[str, str] = field(default_factory=dict)
    fast: list[Path] = field(default_factory=list)  # host dirs seen through FAST_SHARE


def pytest_argv(python: str, args: list[str], json_out: str) -> list[str]:
    """A pytest run that records every test into ``json_out`` through our collector plugin."""
    return [
        python,
        "-m",
        "pytest",
        "-p",
        "verify.matrix.collect",
        "--isoproof-matrix-json",
        json_out,
        *args,
    ]


def render(plan: GuestPlan) -> str:
    """The POSIX shell script for ``plan`` (pure: unit tests read it)."""
    q = shlex.quote
    out = str(plan.leg_dir)
    env = {
        "ISOPROOF_LEG": plan.leg,
        "ISOPROOF_LEG_DIR": out,
        "ISOPROOF_CGROUP_MODE": str(plan.mode),
        "ISOPROOF_IN_MATRIX_GUEST": "1",
        "PYTHONDONTWRITEBYTECODE": "1",  # the repo and venv are read-only in the guest
        "PYTHONUNBUFFERED": "1",  # guest.log shows progress while the leg runs
        "PATH": f"{Path(plan.python).parent}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
        "ISOPROOF_FAST_PATHS": ":".join(str(p) for p in plan.fast),  # like $PATH: may hold spaces
    } | plan.env
    # Without the entry-point plugins (hypothesis, allure, xdist...) pytest starts in a third of the
    # time under TCG; the self-check needs none of them.
    selfcheck = ["env", "PYTEST_DISABLE_PLUGIN_AUTOLOAD=1"] + pytest_argv(
        plan.python, ["-q", SELFCHECK_MODULE], f"{out}/selfcheck.json"
    )
    lines = [
        "#!/bin/sh",
        f"# isoproof matrix leg {plan.leg} (cgroup {plan.mode}): generated, do not edit",
        "set -u",
        f"OUT={q(out)}",
        'exec >"$OUT/guest.log" 2>&1',
        'cat /proc/uptime > "$OUT/booted"',
        'echo "isoproof-guest: kernel $(uname -r) up $(cut -d" " -f1 /proc/uptime)s"',
    ]
    lines += [f"export {k}={q(v)}" for k, v in env.items()]
    if plan.fast:
        paths = " ".join(q(str(p)) for p in plan.fast)
        lines.append(BIND_VIEWS)
        lines.append(_FAST.replace("@PATHS@", paths).replace("@SHARE@", FAST_SHARE))
        lines.append('setup_fast || echo "isoproof-guest: page-cached shares failed"')
    if plan.cache is not None:
        lines.append(_CACHE.replace("@SHARE@", CACHE_SHARE).replace("@CACHE@", q(str(plan.cache))))
        lines.append('setup_cache || echo "isoproof-guest: cache setup failed"')
    lines.append(_CGROUP_V1 if plan.mode is CgroupMode.V1 else _CGROUP_V2)
    if plan.disk:
        lines.append(_DISK.replace("@DISK_MOUNT@", DISK_MOUNT))
    lines += [
        'setup_cgroups || echo "isoproof-guest: cgroup setup failed"',
        'grep cgroup /proc/mounts > "$OUT/cgroup-layout.txt"',
    ]
    if plan.disk:
        lines.append('setup_disk || echo "isoproof-guest: disk setup failed"')
    lines += [
        f"cd {q(str(plan.repo))} || exit 1",
        'echo "isoproof-guest: selfcheck"',
        " ".join(q(a) for a in selfcheck),
        "selfcheck_rc=$?",
        'echo "isoproof-guest: payload"',
        " ".join(q(a) for a in plan.payload),
        "payload_rc=$?",
        'echo "isoproof-guest: done selfcheck=$selfcheck_rc payload=$payload_rc"',
        'echo "selfcheck=$selfcheck_rc payload=$payload_rc" > "$OUT/exit-status.tmp"',
        'mv "$OUT/exit-status.tmp" "$OUT/exit-status"',
        "sync",
        "",
    ]
    return "\n".join(lines)


def write(plan: GuestPlan) -> Path:
    plan.leg_dir.mkdir(parents=True, exist_ok=True)
    path = plan.leg_dir / GUEST_SCRIPT
    path.write_text(render(plan))
    return path
