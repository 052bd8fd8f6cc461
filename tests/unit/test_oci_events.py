"""``events --stats`` data in runc's shape, from the fake v1 and v2 trees, and read by the engine."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from test_cgroup_fake import make_v1, make_v2

from runtime.engine.verbs import query as engine_query
from runtime.oci.events import NO_LIMIT, runc_stats


@pytest.fixture
def stats_of(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    made = []

    def stats(version: str) -> dict[str, Any]:
        tree = (make_v1 if version == "v1" else make_v2)(tmp_path, monkeypatch)
        mgr = tree.manager()
        mgr.create()
        made.append((tree, mgr))
        return runc_stats(mgr.stats())

    yield stats
    for tree, mgr in made:
        mgr.destroy()
        assert tree.leftovers() == []


def test_v1_in_runcs_shape(stats_of) -> None:
    tick = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    d = stats_of("v1")
    assert d["cpu"] == {
        "usage": {"total": 123456, "percpu": [100000, 23456], "kernel": tick, "user": 3 * tick},
        "throttling": {"periods": 7, "throttledPeriods": 2, "throttledTime": 5000},
    }
    assert d["memory"] == {
        "usage": {"limit": NO_LIMIT, "usage": 4096, "max": 8192, "failcnt": 1},
        "cache": 8192,  # v1: total_cache
        "raw": {"cache": 8192, "rss": 4096, "total_cache": 8192, "total_inactive_file": 1024},
    }
    assert d["pids"] == {"current": 2}  # no limit: left out, as runc does
    assert d["blkio"] == {
        "ioServiceBytesRecursive": [
            {"major": 254, "minor": 0, "op": "Read", "value": 10},
            {"major": 254, "minor": 0, "op": "Write", "value": 20},
        ],
        "ioServicedRecursive": [
            {"major": 254, "minor": 0, "op": "Read", "value": 1},
            {"major": 254, "minor": 0, "op": "Write", "value": 2},
        ],
    }
    assert d["isoproof"] == {
        "version": 1, "mode": "hybrid", "frozen": False, "warnings": [], "unenforced": [],
        "oom_kill": 3, "under_oom": 0,
    }  # fmt: skip


def test_v2_in_runcs_shape(stats_of) -> None:
    d = stats_of("v2")
    assert d["cpu"] == {
        "usage": {"total": 42000, "kernel": 12000, "user": 30000},  # v2 has no per-CPU usage
        "throttling": {"periods": 3, "throttledPeriods": 1, "throttledTime": 7000},
    }
    assert d["memory"]["usage"] == {"limit": NO_LIMIT, "usage": 4096, "max": 8192, "failcnt": 5}
    assert d["memory"]["cache"] == 1024  # v2: file
    assert d["pids"] == {"current": 1}
    assert [e["value"] for e in d["blkio"]["ioServiceBytesRecursive"]] == [10, 20]
    assert d["isoproof"]["oom_kill"] == 1 and d["isoproof"]["unenforced"] == ["devices"]


def test_limits_and_zeros_as_runc_prints_them() -> None:
    d = runc_stats({"cpu": {"usage_ns": 0}, "memory": {"limit": 64 << 20, "usage": 0},
                    "pids": {"current": 3, "limit": 10}, "blkio": {"devices": {}}})  # fmt: skip
    assert d["cpu"] == {"usage": {"kernel": 0, "user": 0}, "throttling": {}}
    assert d["memory"] == {"usage": {"limit": 64 << 20, "failcnt": 0}}
    assert d["pids"] == {"current": 3, "limit": 10}
    assert d["blkio"] == {}


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_engine_stats_reads_our_events(stats_of, version: str) -> None:
    data = stats_of(version)
    e = SimpleNamespace(
        store=SimpleNamespace(state=lambda cid: {"Status": "running"}),
        runtime=lambda cid: SimpleNamespace(stats=lambda cid: data),
    )
    sample = engine_query._sample(e, "c1")  # type: ignore[arg-type]
    inactive = 1024 if version == "v1" else 512  # not counted, as in docker stats
    assert sample == {
        "cpu": 123456 if version == "v1" else 42000,
        "mem": 4096 - inactive,
        "limit": NO_LIMIT,
        "pids": 2 if version == "v1" else 1,
        "blk_r": 10,
        "blk_w": 20,
    }
