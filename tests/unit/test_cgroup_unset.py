"""Zero "unset" values (what docker sends for every field it was not given) and update's journal
that makes a failed update leave the old values in place."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.cgroups import fs
from runtime.cgroups.convert import drop_unset
from runtime.errors import CgroupError

DOCKER_UPDATE_M_100M = {  # `docker update -m 100m` of a container made without limits (20.10)
    "blockIO": {"weight": 0},
    "cpu": {"shares": 0, "cpus": "", "mems": "", "period": 0, "quota": 0},
    "memory": {"limit": 104857600, "reservation": 0, "kernel": 0},
}


def test_docker_zeros_are_dropped_real_values_kept():
    assert drop_unset(DOCKER_UPDATE_M_100M) == {
        "blockIO": {}, "cpu": {}, "memory": {"limit": 104857600}}  # fmt: skip


def test_zeros_that_are_real_values_stay():
    res = {"pids": {"limit": 0}, "cpu": {"burst": 0, "shares": 2}, "memory": {"swappiness": 0},
           "blockIO": {"weightDevice": [{"major": 8, "minor": 0, "weight": 0, "leafWeight": 5}]}}  # fmt: skip
    out = drop_unset(res)
    assert out["pids"] == {"limit": 0}  # the OCI spec: 0 is a limit
    assert out["cpu"] == {"burst": 0, "shares": 2}
    assert out["memory"] == {"swappiness": 0}
    assert out["blockIO"]["weightDevice"] == [{"major": 8, "minor": 0, "leafWeight": 5}]
    assert drop_unset({"memory": {"swappiness": -1}}) == {"memory": {}}
    assert res["cpu"] == {"burst": 0, "shares": 2}  # the input is not changed


def test_journal_rollback_restores_the_old_values(tmp_path: Path):
    (tmp_path / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    (tmp_path / "cpu.shares").write_text("1024\n")
    (tmp_path / "blkio.throttle.read_bps_device").write_text("8:0 100\n8:16 200\n")
    fs.journal_start()
    try:
        fs.write(str(tmp_path), "memory.limit_in_bytes", 104857600)
        fs.write(str(tmp_path), "cpu.shares", 512)
        fs.write(str(tmp_path), "blkio.throttle.read_bps_device", "8:0 5")  # a list: not kept
        with pytest.raises(CgroupError):
            fs.write(str(tmp_path), "no.such.file", 1)
        assert fs.journal_rollback() == []
    finally:
        fs.journal_stop()
    assert (tmp_path / "memory.limit_in_bytes").read_text() == "9223372036854771712"
    assert (tmp_path / "cpu.shares").read_text() == "1024"
    fs.write(str(tmp_path), "cpu.shares", 2)  # no journal any more: nothing is kept
    assert fs._journal is None
