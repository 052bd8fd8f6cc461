"""The cgroup v2 (unified) driver. One module per controller."""

from runtime.cgroups.v2.manager import V2Manager

__all__ = ["V2Manager"]
