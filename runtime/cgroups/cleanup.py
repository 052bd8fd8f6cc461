"""Find and remove leftover cgroups: the OCI CLI's cleanup after crashes (``isoproof-oci`` calls
:func:`cleanup_stale` with the ids it still has state for)."""

from __future__ import annotations

import os

from runtime.cgroups import fs
from runtime.cgroups.base import DEFAULT_ROOT, FOREIGN, find_mounts, remove_cgroup
from runtime.errors import CgroupError

TYPE_CHECKING = False  # True for mypy only: importing typing costs ~3 ms on every CLI call
if TYPE_CHECKING:
    from collections.abc import Iterable


def cleanup_stale(
    parent: str = "isoproof",
    keep: Iterable[str] = (),
    root: str = DEFAULT_ROOT,
    mountinfo: str | None = None,
) -> list[str]:
    """Remove every *empty* cgroup ``<hierarchy>/<parent>/<name>`` whose name is not in ``keep``,
    in every hierarchy, then ``parent`` itself if nothing is left in it. A cgroup that still has
    tasks (anywhere below it) is left alone: it belongs to something alive. Returns what was removed.
    """
    if not parent.startswith("isoproof") or "/" in parent.strip("/") or parent in FOREIGN:
        raise CgroupError(f"cleanup_stale only works on our own isoproof* parents, not {parent!r}")
    mounts = find_mounts(root, mountinfo)
    hierarchies = sorted(
        set(mounts.v1.values()) | ({mounts.v2} if mounts.v2 and not mounts.v1 else set())
    )
    keep = set(keep)
    # A name is busy if its cgroup holds a task in *any* hierarchy: a v1 container is one cgroup
    # per hierarchy, and removing it from some hierarchies only would split it.
    candidates: dict[str, list[tuple[str, str]]] = {}
    busy: set[str] = set()
    for mount in hierarchies:
        top = os.path.join(mount, parent.strip("/"))
        if not os.path.isdir(top):
            continue
        for entry in os.scandir(top):
            if not entry.is_dir(follow_symlinks=False) or entry.name in keep:
                continue
            candidates.setdefault(entry.name, []).append((entry.path, mount))
            if any(fs.read_pids(d) for d in [*fs.child_dirs(entry.path), entry.path]):
                busy.add(entry.name)
    removed: list[str] = []
    for name in sorted(set(candidates) - busy):
        for path, mount in candidates[name]:
            try:
                remove_cgroup(path, mount, timeout=0.5)
                removed.append(path)
            except CgroupError:
                continue
    for mount in hierarchies:
        top = os.path.join(mount, parent.strip("/"))
        if os.path.isdir(top) and fs.rmdir(top):
            removed.append(top)
    return removed
