"""v2 ``cpuset`` controller: the same files and writes as v1. Unlike v1, an empty ``cpuset.cpus``
means "the parent's" (the kernel keeps ``cpuset.cpus.effective``), so v1's ``inherit`` copy at
create time is not needed here."""

from __future__ import annotations

from runtime.cgroups.v1.cpuset import CONTROLLER, CPUS, MEMS, apply, wanted

__all__ = ["CONTROLLER", "CPUS", "MEMS", "apply", "wanted"]
