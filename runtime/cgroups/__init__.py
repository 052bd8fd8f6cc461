"""Cgroups: one manager interface, a v1 driver (also used on hybrid hosts) and a v2 driver.

Callers use only :func:`new_manager` and the :class:`Manager` methods; they never build cgroup
paths themselves. See ``base.py`` for the contract.
"""

from runtime.cgroups.base import Manager, Mode, detect_mode, new_manager
from runtime.cgroups.cleanup import cleanup_stale

__all__ = ["Manager", "Mode", "cleanup_stale", "detect_mode", "new_manager"]
