"""What a VM leg needs on the host, checked before any VM starts.

A leg that finds out late (virtme-ng's ``Could not find ['depmod']`` traceback in a console log,
minutes into a run) wastes the run; one line naming every missing tool and the Debian package that
brings it, before anything boots, is the newcomer's fix. ``tox -e matrix`` installs them all
(``ISOPROOF_BOOTSTRAP_VM=1 scripts/bootstrap.sh``); ``isoproof matrix`` run directly does not.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from verify.matrix.legs import MatrixError

# (program looked up on PATH, where it comes from). virtme-ng builds the guest's initramfs with a
# static busybox, cpio and zstd, and runs depmod over the modules copied out of the kernel package.
NEEDED: tuple[tuple[str, str], ...] = (
    ("qemu-system-x86_64", "Debian package qemu-system-x86"),
    ("depmod", "Debian package kmod"),
    ("busybox", "Debian package busybox-static"),
    ("cpio", "Debian package cpio"),
    ("zstd", "Debian package zstd"),
    ("vng", "PyPI virtme-ng: pip install 'isoproof[matrix]'"),
)

# depmod and friends live in sbin, which a non-login PATH may lack.
EXTRA_DIRS = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")


def missing(which: Callable[[str], str | None] | None = None) -> list[tuple[str, str]]:
    """The tools of :data:`NEEDED` that ``which`` cannot find, in order."""
    find = which or _which
    return [(tool, source) for tool, source in NEEDED if not find(tool)]


def _which(tool: str) -> str | None:
    beside = Path(sys.executable).parent / tool  # vng sits in the running venv
    if beside.exists():
        return str(beside)
    return shutil.which(tool) or shutil.which(tool, path=":".join(EXTRA_DIRS))


def check(which: Callable[[str], str | None] | None = None) -> None:
    """Raise one :class:`MatrixError` naming every missing tool and its package."""
    gone = missing(which)
    if gone:
        names = "; ".join(f"{tool} ({source})" for tool, source in gone)
        raise MatrixError(
            f"VM legs need tools this host lacks: {names}. "
            "`tox -e matrix` installs them (ISOPROOF_BOOTSTRAP_VM=1 sh scripts/bootstrap.sh)"
        )
