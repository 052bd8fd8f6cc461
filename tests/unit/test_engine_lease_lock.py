"""The bridge's lease lock file may be unlinked by ``prune`` while another process waits on it."""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.engine import network


@pytest.fixture
def lease_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setattr(network, "LEASE_DIR", str(tmp_path))
    monkeypatch.setenv(network.ENV_BRIDGE, "isoproofTlock0")
    yield tmp_path


def _try_lock(path: Path) -> bool:
    """Whether a newcomer would get the lock now (the file the path names, made if missing)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def test_a_waiter_on_an_unlinked_lock_file_locks_the_new_one(
    lease_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A waits on the lock file that prune (holding it) unlinks; once A holds "the lock", a
    newcomer must still be kept out: A's lock must be on the file the path names."""
    path = network.lease_paths()[1]
    waiting, inside, leave = threading.Event(), threading.Event(), threading.Event()
    real_flock = fcntl.flock

    def flock(fd: int, op: int) -> None:
        if threading.current_thread().name == "A":
            waiting.set()  # A opened the old file and is about to wait for it
        real_flock(fd, op)

    monkeypatch.setattr(fcntl, "flock", flock)  # the module attribute: whoever locks calls it

    def a() -> None:
        with network._lock():
            inside.set()
            leave.wait(10)

    holder = network._lock()
    holder.__enter__()
    t = threading.Thread(target=a, name="A")
    t.start()
    try:
        assert waiting.wait(10)
        path.unlink()  # what prune does while it holds the lock
        holder.__exit__(None, None, None)
        assert inside.wait(10)
        assert path.exists(), "A holds a lock on a file nobody else can find"
        assert not _try_lock(path), "a newcomer got the lock while A held it"
    finally:
        leave.set()
        t.join(10)
    assert _try_lock(path)  # and A let go of it


def test_the_lock_keeps_newcomers_out_until_released(lease_dir: Path) -> None:
    path = network.lease_paths()[1]
    with network._lock():
        assert not _try_lock(path)
    assert _try_lock(path)


def _table(cid: str, home: Path) -> str:
    """A lease table with one lease: ``cid`` of ``home`` (live while its directory exists)."""
    return json.dumps({"10.0.0.0/24": {"10.0.0.2": {"id": cid, "home": str(home)}}})


def test_sweep_removes_lease_files_of_gone_bridges_without_a_live_lease(
    lease_dir: Path,
) -> None:
    gone = lease_dir / "isoproofTgone01.leases.lock"  # no such interface on any host
    leasing = lease_dir / "isoproofTused01.leases.lock"
    stale = lease_dir / "isoproofTdead01.leases.lock"  # its leases' homes are gone
    others = [lease_dir / "homes.lock", lease_dir / "docker0.leases.lock"]
    for p in [gone, leasing, stale, *others]:
        p.write_text("")
    home = lease_dir / "isoproof-home"
    (home / "containers" / "live").mkdir(parents=True)
    (lease_dir / "isoproofTused01.leases.json").write_text(_table("live", home))
    (lease_dir / "isoproofTdead01.leases.json").write_text(_table("dead", lease_dir / "gone"))
    assert network.sweep_lease_locks() == ["isoproofTdead01", "isoproofTgone01"]
    assert not gone.exists() and not stale.exists()
    assert not (lease_dir / "isoproofTdead01.leases.json").exists()
    assert leasing.exists() and (lease_dir / "isoproofTused01.leases.json").exists()
    assert all(p.exists() for p in others)
    assert network.sweep_lease_locks() == []


def test_sweep_waits_for_the_lock_and_spares_a_bridge_that_leased_meanwhile(
    lease_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run takes the lock and writes its first lease while the sweep waits for that lock."""
    monkeypatch.setenv(network.ENV_BRIDGE, "isoproofTrace01")
    table, lock = network.lease_paths()
    lock.write_text("")
    waiting = threading.Event()
    real_flock = fcntl.flock
    found: list[list[str]] = []

    def flock(fd: int, op: int) -> None:
        if threading.current_thread().name == "sweep":
            waiting.set()
        real_flock(fd, op)

    monkeypatch.setattr(fcntl, "flock", flock)
    with network._lock():
        t = threading.Thread(target=lambda: found.append(network.sweep_lease_locks()), name="sweep")
        t.start()
        assert waiting.wait(10)
        (lease_dir / "h" / "containers" / "x").mkdir(parents=True)
        table.write_text(_table("x", lease_dir / "h"))
    t.join(10)
    assert found == [[]] and lock.exists()
