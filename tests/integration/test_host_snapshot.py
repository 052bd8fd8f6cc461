"""The host snapshot (verify/snapshot.py) on the real host: it names a host sysctl that a test
changes on purpose, and finds nothing when nothing changed."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from verify import snapshot

pytestmark = pytest.mark.root

# IPC-namespaced, so this changes the host's IPC namespace only: the largest SysV message size,
# which nothing on this host depends on in the second it is changed.
KNOB = Path("/proc/sys/kernel/msgmax")


def test_snapshot_names_a_changed_host_sysctl() -> None:
    if os.geteuid() != 0:
        pytest.skip(f"needs root to write {KNOB}; running as uid {os.geteuid()}")
    before = snapshot.take()
    original = KNOB.read_text().strip()
    try:
        KNOB.write_text(str(int(original) + 1))
        after = snapshot.take()
    finally:
        KNOB.write_text(original)
    changed = [x for x in snapshot.diff(before, after) if x.startswith("sysctl ")]
    assert changed == [f"sysctl kernel.msgmax: {original} -> {int(original) + 1}"]
    restored = [x for x in snapshot.diff(before, snapshot.take()) if x.startswith("sysctl ")]
    assert restored == [], f"sysctls differ after the restore: {restored}"


def test_snapshot_of_an_unchanged_host_has_no_sysctl_or_uts_difference() -> None:
    """Two snapshots a second apart while containers come and go elsewhere: the volatile sysctls
    are the ones left out, so none differs."""
    if os.geteuid() != 0:
        pytest.skip(f"needs root to read every sysctl; running as uid {os.geteuid()}")
    before = snapshot.take()
    time.sleep(1)
    after = snapshot.take()
    diffs = [x for x in snapshot.diff(before, after) if x.startswith(("sysctl ", "uts "))]
    assert diffs == []
