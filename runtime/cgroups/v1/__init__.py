"""The cgroup v1 driver (also used on hybrid hosts). One module per controller."""

from runtime.cgroups.v1.manager import V1Manager

__all__ = ["V1Manager"]
