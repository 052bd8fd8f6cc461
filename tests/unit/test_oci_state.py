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
    with pytest.raises(StateError, match="unreadable"):
        st.load(str(tmp_path), "c2")


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
