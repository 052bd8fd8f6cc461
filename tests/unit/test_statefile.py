"""runtime.statefile: atomic, versioned JSON records and the one reader that never raises a
JSONDecodeError."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from runtime import statefile
from runtime.errors import StateError


def test_round_trip_leaves_no_temp_file(tmp_path: Path):
    p = tmp_path / "state.json"
    statefile.write(p, {"a": 1}, sync_dir=True)
    statefile.write(p, {"a": 2})
    assert os.listdir(tmp_path) == ["state.json"]
    assert json.loads(p.read_text()) == {"isoproofFormat": 1, "a": 2}
    assert statefile.read(p) == {"a": 2}


def test_missing_file_is_not_damage(tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        statefile.read(tmp_path / "nothing.json")


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"", "empty"),
        (b"  \n", "empty"),
        (b"{}", "no format version"),
        (b"\xff\xfe garbage", "torn or not JSON"),
        (b'{"isoproofFormat": 1, "a": [1, 2', "torn or not JSON"),
        (b'{"isoproofFormat": 2, "a": 1}', "unknown format version 2"),
        (b'{"isoproofFormat": "1"}', "unknown format version '1'"),
        (b"null", "not a JSON object"),
    ],
)
def test_damage_is_one_typed_line(tmp_path: Path, raw: bytes, reason: str):
    p = tmp_path / "state.json"
    p.write_bytes(raw)
    with pytest.raises(statefile.Damaged) as e:
        statefile.read(p)
    assert e.value.reason == reason
    assert isinstance(e.value, StateError)
    assert str(e.value) == f"{p}: {reason}"


def test_a_failed_rename_removes_the_temp_file(tmp_path: Path):
    target = tmp_path / "dir-in-the-way"
    (target / "x").mkdir(parents=True)  # rename over a non-empty directory fails
    with pytest.raises(OSError):
        statefile.write(target, {"a": 1})
    assert sorted(os.listdir(tmp_path)) == ["dir-in-the-way"]


def test_tmp_owner_reads_the_writer_pid():
    assert statefile.tmp_owner(".state.json.1234.tmp") == 1234
    assert statefile.tmp_owner("state.json") == 0
    assert statefile.tmp_owner(".x.tmp") == 0


def test_not_durable_skips_every_fsync_and_stays_atomic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    synced: list[int] = []
    monkeypatch.setattr(statefile.os, "fsync", synced.append)
    p = tmp_path / "state.json"
    statefile.write(p, {"a": 1}, sync_dir=True, durable=False)
    assert synced == [] and statefile.read(p) == {"a": 1} and os.listdir(tmp_path) == ["state.json"]
    statefile.write(p, {"a": 2}, sync_dir=True)
    assert len(synced) == 2  # the file and its directory
