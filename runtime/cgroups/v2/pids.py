"""v2 ``pids`` controller.

The pids controller kept its interface file names and formats (``pids.max``, ``pids.current``) when
it moved to cgroup v2, so the v2 driver uses the v1 module as is; it is re-exported here so that
each version still has one module per controller.
"""

from runtime.cgroups.v1.pids import CONTROLLER, CURRENT, MAX, apply, stats, wanted

__all__ = ["CONTROLLER", "CURRENT", "MAX", "apply", "stats", "wanted"]
