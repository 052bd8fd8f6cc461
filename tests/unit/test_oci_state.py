"""State on disk and the status derived from kernel facts (with fakes for the kernel)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runtime.errors import NotFoundError, StateError
from runtime.oci import state as st


def sample(pid: int = 100, start: int = 5000) -> st.State:
    return st.State(id="c1", pid=pid, bundle="/b", rootfs="/b/rootfs", created="now",
                    start_time=start, cgroups_path=None, annotations={"a": "b"})  # fmt: skip


def proc(table: dict[int, tuple[str, int]]):
    return lambda pid: table.get(pid)


@pytest.mark.parametrize(
    "table, fifo, frozen, want",
    [
        ({}, True, False, st.STOPPED),  # init gone
        ({100: ("S", 5001)}, True, False, st.STOPPED),  # pid reused: start time differs
        ({100: ("Z", 5000)}, False, False, st.STOPPED),  # zombie
        ({100: ("S", 5000)}, True, False, st.CREATED),
        ({100: ("S", 5000)}, True, True, st.CREATED),  # fifo wins: start has not happened
        ({100: ("D", 5000)}, False, True, st.PAUSED),
        ({100: ("R", 5000)}, False, False, st.RUNNING),
    ],
)
def test_derive_status(table, fifo, frozen, want):
    assert st.derive_status(sample(), proc(table), fifo, lambda: frozen) == want


def test_creating_when_no_state_file_yet():
    assert st.derive_status(None, proc({}), True, lambda: False) == st.CREATING


def test_save_is_atomic_and_load_round_trips(tmp_path: Path):
    (tmp_path / "c1").mkdir()
    st.save(str(tmp_path), sample())
    assert sorted(os.listdir(tmp_path / "c1")) == ["state.json"]  # no temp file left
    assert st.load(str(tmp_path), "c1") == sample()
    (tmp_path / "c2").mkdir()
    assert st.load(str(tmp_path), "c2") is None  # being created
    with pytest.raises(NotFoundError):
        st.load(str(tmp_path), "c3")
    (tmp_path / "c2" / "state.json").write_text("{")
    with pytest.raises(StateError, match=r"^container c2: damaged state \(torn or not JSON\)$"):
        st.load(str(tmp_path), "c2")


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", "empty"),
        ("{}", "no format version"),
        ("\x00\x17garbage", "torn or not JSON"),
        ('{"isoproofFormat": 1, "id": "c1", "pid": 1', "torn or not JSON"),
        ('{"isoproofFormat": 99, "id": "c1"}', "unknown format version 99"),
        ("[1, 2]", "not a JSON object"),
        ('{"isoproofFormat": 1, "bogus": 1}', "unexpected fields"),
    ],
)
def test_damaged_state_is_one_typed_error(tmp_path: Path, text: str, reason: str):
    (tmp_path / "c1").mkdir()
    (tmp_path / "c1" / "state.json").write_text(text)
    with pytest.raises(st.Damaged) as e:
        st.load(str(tmp_path), "c1")
    assert str(e.value) == f"container c1: damaged state ({reason})"
    assert isinstance(e.value, StateError) and "\n" not in str(e.value)


def test_saved_state_carries_the_format_version(tmp_path: Path):
    import json

    (tmp_path / "c1").mkdir()
    st.save(str(tmp_path), sample())
    assert json.loads((tmp_path / "c1" / "state.json").read_text())["isoproofFormat"] == 1


# -- the creator record of an OCI create (runtime/oci/container.py) -------------------------------


def test_creator_record_is_atomic_and_names_a_live_creator(tmp_path: Path):
    from runtime.oci import container as ct

    ct._write_creator(str(tmp_path), "/isoproof-x/c1")
    assert sorted(os.listdir(tmp_path)) == ["creator.json"]
    assert ct._abandoned_create(str(tmp_path)) is None  # we are alive: a create at work
    assert ct._abandoned_create(str(tmp_path), force=True) is None  # even with --force


@pytest.mark.parametrize("text", ["", "{", "{}", '{"isoproofFormat": 1}'])
def test_an_empty_or_torn_creator_record_is_abandoned_with_force(tmp_path: Path, text: str):
    """A create killed before its record was complete: delete --force may remove it."""
    from runtime.oci import container as ct

    (tmp_path / "creator.json").write_text(text)
    assert ct._abandoned_create(str(tmp_path)) is None
    assert ct._abandoned_create(str(tmp_path), force=True) == {}


def test_a_dead_creators_record_is_abandoned(tmp_path: Path):
    from runtime import statefile
    from runtime.oci import container as ct

    rec = {"pid": 999999999, "start_time": 1, "cgroups_path": "/isoproof-x/c1"}
    statefile.write(tmp_path / "creator.json", rec)
    assert ct._abandoned_create(str(tmp_path)) == rec


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "a b", "x\n"])
def test_bad_ids(bad: str):
    with pytest.raises(StateError):
        st.check_id(bad)


def test_read_proc_stat_handles_parens_in_comm(tmp_path: Path):
    d = tmp_path / "7"
    d.mkdir()
    fields = ["S"] + [str(i) for i in range(4, 40)]
    fields[19] = "123456"  # field 22
    (d / "stat").write_text("7 (a) b (c)) " + " ".join(fields))
    assert st.read_proc_stat(7, str(tmp_path)) == ("S", 123456)
    assert st.read_proc_stat(8, str(tmp_path)) is None
    me = st.read_proc_stat(os.getpid())
    assert me is not None and me[0] == "R"


def test_oci_state_document():
    doc = st.oci_state(sample(), st.RUNNING)
    assert {k: doc[k] for k in ("ociVersion", "id", "status", "pid", "bundle")} == {
        "ociVersion": "1.0.2",
        "id": "c1",
        "status": "running",
        "pid": 100,
        "bundle": "/b",
    }
    assert doc["annotations"] == {"a": "b"}
    assert st.oci_state(sample(), st.STOPPED)["pid"] == 0


def test_save_is_atomic_without_fsync(tmp_path, monkeypatch):
    # the OCI state dies with the machine (its root is /run): rename only, as runc
    import os as _os

    from runtime import statefile as _sf
    from runtime.oci import state as _st

    synced: list[int] = []
    monkeypatch.setattr(_sf.os, "fsync", synced.append)
    (tmp_path / "c9").mkdir()
    s = _st.State(id="c9", pid=1, bundle="/b", rootfs="/b/r", created="now", start_time=5,
                  cgroups_path=None)  # fmt: skip
    _st.save(str(tmp_path), s)
    assert synced == [] and _st.load(str(tmp_path), "c9") == s
    assert _os.listdir(tmp_path / "c9") == ["state.json"]
