"""Leg names and their meaning.

A leg name is ``host`` or ``KERNEL-MODE``:

- ``MODE`` is ``v1`` (the guest mounts one cgroup v1 hierarchy per controller) or ``v2`` (the guest
  stays on the unified hierarchy the kernel boots with).
- ``KERNEL`` is an alias (``6.1``, ``6.12``) for a Debian metapackage that tracks the newest kernel of
  that series, a Debian package name (``linux-image-6.1.0-50-amd64`` or another metapackage), or a
  local path: a ``vmlinuz`` file, or a directory holding ``boot/vmlinuz-*`` and ``lib/modules/<ver>``
  (what ``dpkg-deb -x`` of a ``linux-image`` package produces).

Parsing is pure so it can be unit-tested; resolving a kernel to files is ``kernels.py``'s job.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from runtime.errors import IsoproofError

HOST = "host"
DEFAULT_LEGS: tuple[str, ...] = ("host", "6.1-v1", "6.1-v2", "6.12-v1", "6.12-v2")

# Debian 12 metapackages: each depends on exactly one versioned linux-image package, the newest of
# its series in the archive, so resolving through them follows security updates automatically.
KERNEL_ALIASES: dict[str, str] = {
    "6.1": "linux-image-amd64",
    "6.12": "linux-image-6.12-amd64",
}

# The runtimes every leg checks unless the user names others. crun refuses hybrid hosts and v1
# ("cgroups in hybrid mode not supported"), so it is only a default where the guest is pure v2.
DEFAULT_RUNTIMES: tuple[str, ...] = ("isoproof", "oci:runc")
V2_ONLY_RUNTIMES: tuple[str, ...] = ("oci:crun",)


class MatrixError(IsoproofError):
    """A matrix request that cannot be carried out (bad leg name, kernel not found, ...)."""


class CgroupMode(enum.StrEnum):
    V1 = "v1"
    V2 = "v2"
    HYBRID = "hybrid"  # only the host can be hybrid: we do not build that layout in guests


class KernelKind(enum.StrEnum):
    HOST = "host"  # the running kernel, no VM
    PACKAGE = "package"  # a Debian package (or metapackage) resolved and downloaded with apt
    LOCAL = "local"  # a vmlinuz file or an extracted package tree on disk


@dataclass(frozen=True)
class LegSpec:
    name: str
    kind: KernelKind
    kernel: str  # package name, local path, or "host"
    mode: CgroupMode | None  # None for the host leg: detected at run time

    @property
    def is_vm(self) -> bool:
        return self.kind is not KernelKind.HOST


def parse_leg(name: str) -> LegSpec:
    """Turn a leg name into what it asks for; raise :class:`MatrixError` with a one-line reason."""
    name = name.strip()
    if not name:
        raise MatrixError("empty leg name")
    if name == HOST:
        return LegSpec(name=HOST, kind=KernelKind.HOST, kernel=HOST, mode=None)
    kernel, sep, mode_word = name.rpartition("-")
    if not sep or not kernel or mode_word not in (CgroupMode.V1, CgroupMode.V2):
        raise MatrixError(
            f"bad leg name {name!r}: expected 'host' or KERNEL-v1 / KERNEL-v2 "
            f"(KERNEL: {', '.join(KERNEL_ALIASES)}, a linux-image-* package, or a path)"
        )
    mode = CgroupMode(mode_word)
    if kernel in KERNEL_ALIASES:
        return LegSpec(name=name, kind=KernelKind.PACKAGE, kernel=KERNEL_ALIASES[kernel], mode=mode)
    if kernel.startswith(("/", "./", "../", "~")):
        return LegSpec(name=name, kind=KernelKind.LOCAL, kernel=kernel, mode=mode)
    if kernel.startswith("linux-image-"):
        return LegSpec(name=name, kind=KernelKind.PACKAGE, kernel=kernel, mode=mode)
    raise MatrixError(
        f"bad kernel {kernel!r} in leg {name!r}: use {', '.join(KERNEL_ALIASES)}, "
        "a linux-image-* package name, or a path starting with / or ./"
    )


def parse_legs(names: list[str] | None) -> list[LegSpec]:
    """Parse the requested legs (default: the five default legs), refusing duplicates."""
    specs = [parse_leg(n) for n in (names or DEFAULT_LEGS)]
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            raise MatrixError(f"leg {spec.name!r} named twice")
        seen.add(spec.name)
    return specs


def runtimes_for(mode: CgroupMode | None, requested: list[str] | None) -> list[str]:
    """The runtimes a leg checks: what the user asked for, else the defaults for its cgroup mode."""
    if requested:
        return list(dict.fromkeys(requested))
    runtimes = list(DEFAULT_RUNTIMES)
    if mode is CgroupMode.V2:
        runtimes += V2_ONLY_RUNTIMES
    return runtimes
