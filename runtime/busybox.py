"""Build a minimal root filesystem from Debian's ``busybox-static``.

The tests, the demo and the engine's built-in ``busybox`` image all use it, so nothing is ever pulled
from an image registry. The tree is built once into a cache directory (outside the repository) and
reused; a build goes to a temporary directory and is renamed into place, so a crash never leaves a
half-built rootfs behind.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from runtime.errors import IsoproofError

BUSYBOX = Path("/bin/busybox")
CACHE = Path(os.environ.get("ISOPROOF_CACHE", "/var/cache/isoproof"))

PASSWD = """root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
"""
GROUP = """root:x:0:
daemon:x:1:
nogroup:x:65534:
"""


def _is_static(binary: Path) -> bool:
    # A dynamically linked busybox would need the host's libc inside the rootfs.
    with open(binary, "rb") as f:
        head = f.read(4096)
    return b"/lib64/ld-linux" not in head and b"ld-linux" not in head


def build_rootfs(dest: Path, busybox: Path = BUSYBOX) -> Path:
    """Create a busybox rootfs at ``dest`` (which must not exist)."""
    if not busybox.exists():
        raise IsoproofError(f"{busybox} not found: install busybox-static (scripts/bootstrap.sh)")
    if not _is_static(busybox):
        raise IsoproofError(f"{busybox} is not statically linked: install busybox-static")
    dest.mkdir(parents=True)
    dirs = "bin sbin usr/bin usr/sbin etc proc sys dev tmp root var/tmp run mnt home"
    for d in dirs.split():
        (dest / d).mkdir(parents=True, exist_ok=True)
    os.chmod(dest / "tmp", 0o1777)
    shutil.copy2(busybox, dest / "bin" / "busybox")
    out = subprocess.run([str(busybox), "--list-full"], capture_output=True, text=True, check=True)
    for applet in out.stdout.split():
        link = dest / applet
        if applet == "bin/busybox" or link.exists():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        depth = len(Path(applet).parts) - 1
        link.symlink_to("../" * depth + "bin/busybox")
    (dest / "etc/passwd").write_text(PASSWD)
    (dest / "etc/group").write_text(GROUP)
    (dest / "etc/hostname").write_text("isoproof\n")
    (dest / "etc/hosts").write_text("127.0.0.1 localhost\n")
    return dest


def ensure_rootfs(cache: Path = CACHE) -> Path:
    """Return the cached busybox rootfs, building it on first use."""
    target = cache / "busybox-rootfs"
    if (target / "bin/busybox").exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".busybox-", dir=cache))
    try:
        build_rootfs(tmp / "rootfs")
        try:
            os.rename(tmp / "rootfs", target)
        except OSError:
            if not (target / "bin/busybox").exists():  # lost a race to a concurrent build: fine
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
