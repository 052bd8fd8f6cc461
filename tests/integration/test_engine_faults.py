"""The engine under faults: damaged records, vanished directories, kill -9 of the client at a
random moment, and many homes on one bridge. Each test ends with the leak check of
``test_engine`` (no container dir, mount, netns, veth, lease, cgroup, runtime state or monitor).

The figures over hundreds of trials are ``bench/bench_faults.py``'s; these are the few trials
that keep every fault path under test.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.test_engine import Eng, _free_octet, _runtimes, _teardown_env

pytestmark = pytest.mark.root


@pytest.fixture(scope="module", params=_runtimes(), ids=lambda p: Path(p).name)
def fenv(request: pytest.FixtureRequest) -> Iterator[Eng]:
    runtime = request.param
    if not os.path.exists(runtime):
        pytest.skip(f"needs the OCI runtime {runtime}; it is not installed")
    eng = Eng(runtime, uuid.uuid4().hex[:8], _free_octet())
    yield eng
    _teardown_env(eng)


@pytest.fixture
def feng(fenv: Eng) -> Iterator[Eng]:
    yield fenv
    fenv.clean()
    fenv.run("system", "prune", "-f")
    leaks = fenv.leaks()
    assert not leaks, f"left behind: {leaks}"


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for the host's init to reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def one_line_or_ok(cp: subprocess.CompletedProcess[str], what: str) -> None:
    """A correct answer (exit 0), or one line of error and a non-zero exit; never a traceback."""
    assert "Traceback" not in cp.stderr, f"{what}: {cp.stderr}"
    if cp.returncode != 0:
        assert cp.stderr.count("\n") == 1, f"{what}: {cp.stderr!r}"


# -- the damaged-state matrix ---------------------------------------------------------------------


def _write(rel: str, data: str) -> Callable[[Eng, str], None]:
    def damage(eng: Eng, cid: str) -> None:
        (eng.home / "containers" / cid / rel).write_text(data)

    return damage


def _unlink(rel: str) -> Callable[[Eng, str], None]:
    def damage(eng: Eng, cid: str) -> None:
        (eng.home / "containers" / cid / rel).unlink()

    return damage


def _no_cgroup(eng: Eng, cid: str) -> None:
    """Its cgroups vanish under it: the processes moved to the parent, the directories removed."""
    for ctrl in Path("/sys/fs/cgroup").iterdir():
        d = ctrl / eng.cgroup_parent / cid
        if not d.is_dir():
            continue
        for pid in (d / "cgroup.procs").read_text().split():
            (d.parent / "cgroup.procs").write_text(pid)
        d.rmdir()


DAMAGE = {
    "state-empty": _write("state.json", ""),
    "state-{}": _write("state.json", "{}"),
    "state-garbage": _write("state.json", "\x00\x17 not json at all"),
    "state-truncated": _write("state.json", '{"isoproofFormat": 1, "Status": "runn'),
    "state-unknown-version": _write("state.json", '{"isoproofFormat": 7, "Status": "running"}'),
    "state-missing": _unlink("state.json"),
    "config-truncated": _write("config.json", '{"isoproofFormat": 1, "Id": '),
    "config-{}": _write("config.json", "{}"),
    "missing-cgroup": _no_cgroup,
}

VERBS = [  # `wait` is left out: on a running container whose config is damaged it rightly blocks
    ["ps", "-a"],
    ["inspect", "{ref}"],
    ["exec", "{ref}", "true"],
    ["logs", "{ref}"],
    ["top", "{ref}"],
    ["pause", "{ref}"],
    ["stop", "-t", "1", "{ref}"],
    ["start", "{ref}"],
    ["kill", "{ref}"],
    ["rm", "{ref}"],
]


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_every_verb_survives_a_damaged_container(feng: Eng, kind: str) -> None:
    cid = feng.ok("run", "-d", "busybox", "sleep", "300").strip()
    healthy = feng.ok("run", "-d", "--name", "healthy", "busybox", "sleep", "300").strip()
    init = int(feng.state(cid)["Pid"])
    DAMAGE[kind](feng, cid)
    for verb in VERBS:
        argv = [a.format(ref=cid[:12]) for a in verb]
        cp = feng.run(*argv, timeout=60)
        one_line_or_ok(cp, f"{kind}: isoproof {' '.join(argv)}")
        if verb[0] == "stop" and cp.returncode == 0:
            # A stop that says it worked ended the container. With its cgroup gone, `kill --all`
            # found no process (isoproof-oci: signalled none, exit 0; runc: failed), and stop
            # waited out its 1 + 30 + 15 s and left the container running.
            assert not alive(init), f"{kind}: stop exited 0 and the init {init} still runs"
    listing = feng.ok("ps", "-a", "--no-trunc")
    assert healthy in listing  # one damaged container does not take ps down for the others
    if kind.startswith(("state", "config")):
        row = next(ln for ln in listing.splitlines() if ln.startswith(cid))
        assert "Dead (damaged: " in row, row
        assert feng.inspect(cid[:12], "{{.State.Status}} {{.State.Dead}}") == "dead true"
    cp = feng.run("rm", "-f", cid[:12])
    if (cp.returncode, cp.stderr) != (0, ""):  # the plain rm of the list removed it already
        assert cp.stderr == f"Error response from daemon: No such container: {cid[:12]}\n"
        assert kind == "missing-cgroup"
    assert not (feng.home / "containers" / cid).exists()
    assert not alive(init)
    assert feng.inspect("healthy", "{{.State.Status}}") == "running"


def _vanish(eng: Eng, cid: str) -> None:
    """Its directory is deleted under a running container (rootfs unmounted first, as a careful
    `rm -rf` would have to)."""
    d = eng.home / "containers" / cid
    subprocess.run(["umount", "-l", str(d / "bundle" / "rootfs")], check=True)
    shutil.rmtree(d)


@pytest.mark.parametrize("how", ["system prune", "rm -f ID"])
def test_a_vanished_directory_leaves_nothing_after_prune_or_rm(feng: Eng, how: str) -> None:
    cid = feng.ok("run", "-d", "busybox", "sleep", "300").strip()
    init = int(feng.state(cid)["Pid"])
    _vanish(feng, cid)
    assert feng.ok("ps", "-aq") == ""  # invisible to ps: the directory was its record
    assert feng.leaks(), "the test's premise: cgroups, netns, monitor, lease are still there"
    if how == "system prune":
        out = feng.ok("system", "prune", "-f")
        assert f"{cid}: " in out, out
    else:
        assert feng.ok("rm", "-f", cid) == f"{cid}\n"
    assert not alive(init)
    assert feng.leaks() == []


def test_system_prune_asks_first_and_keeps_running_containers(feng: Eng) -> None:
    feng.ok("run", "-d", "--name", "keep", "busybox", "sleep", "300")
    gone = feng.ok("create", "busybox", "true").strip()
    cp = feng.run("system", "prune", input="n\n")
    assert cp.returncode == 0 and "[y/N]" in cp.stdout
    assert gone in feng.ok("ps", "-aq", "--no-trunc")
    out = feng.ok("system", "prune", "-f")
    assert out.startswith("Deleted Containers:\n") and gone in out
    assert feng.ok("ps", "-aq", "--no-trunc").split() == [feng.inspect("keep", "{{.Id}}")]


# -- kill -9 of the client at random moments --------------------------------------------------


def _kill_at(eng: Eng, delay: float, *args: str) -> None:
    p = eng.popen(*args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    p.send_signal(signal.SIGKILL)
    p.wait()


def _settle(eng: Eng, timeout: float = 20) -> list[str]:
    """Leaks once monitors that are still winding their container up are done."""
    deadline = time.monotonic() + timeout
    while True:
        leaks = eng.leaks()
        if not leaks or time.monotonic() > deadline:
            return leaks
        time.sleep(0.1)


TRIALS = 4


def test_killed_run_rm_converges(feng: Eng) -> None:
    """--rm is honoured by whoever survives: the monitor, or the next command."""
    rng = random.Random(14)
    for _ in range(TRIALS):
        _kill_at(feng, rng.uniform(0.0, 0.8), "run", "--rm", "busybox", "true")
        one_line_or_ok(feng.run("ps", "-a"), "ps -a")  # the next command
        assert _settle(feng) == []


def test_killed_run_detached_then_rm_f_leaves_nothing(feng: Eng) -> None:
    rng = random.Random(15)
    for _ in range(TRIALS):
        _kill_at(feng, rng.uniform(0.0, 0.8), "run", "-d", "busybox", "sleep", "300")
        ids = feng.ok("ps", "-aq", "--no-trunc").split()
        for cid in ids:  # each is created, running or exited: a consistent state either way
            status = feng.inspect(cid, "{{.State.Status}}")
            assert status in ("created", "running", "exited"), status
        if ids:
            feng.ok("rm", "-f", *ids)
        assert _settle(feng) == []


def test_killed_rm_then_rm_f_leaves_nothing(feng: Eng) -> None:
    rng = random.Random(16)
    for _ in range(TRIALS):
        cid = feng.ok("run", "-d", "busybox", "sleep", "300").strip()
        _kill_at(feng, rng.uniform(0.0, 0.5), "rm", "-f", cid)
        cp = feng.run("rm", "-f", cid)
        one_line_or_ok(cp, "rm -f after a killed rm")
        if cp.returncode != 0:
            assert "No such container" in cp.stderr
        assert _settle(feng) == []


def test_killed_stop_then_next_command_is_consistent(feng: Eng) -> None:
    rng = random.Random(17)
    for _ in range(TRIALS):
        cid = feng.ok("run", "-d", "busybox", "sleep", "300").strip()
        _kill_at(feng, rng.uniform(0.0, 0.3), "stop", "-t", "1", cid)
        status = feng.inspect(cid, "{{.State.Status}}")
        assert status in ("running", "exited"), status
        feng.ok("rm", "-f", cid)
        assert _settle(feng) == []


# -- one allocator per bridge ---------------------------------------------------------------------


def _remove_concurrently(homes: list[Eng], ways: int = 2) -> None:
    """rm -f every container of each home, ``ways`` removals per home at a time: one rm removes
    its arguments one after the other, waiting for each monitor to wind its container up (40 took
    17 s at load 7). A plain clean() after it, in case a removal failed."""
    procs = []
    for e in homes:
        ids = e.run("ps", "-aq", "--no-trunc").stdout.split()
        procs += [e.popen("rm", "-f", "-v", *ids[k::ways]) for k in range(ways) if ids[k::ways]]
    for p in procs:
        p.communicate(timeout=120)
    for e in homes:
        e.clean()


def test_two_homes_on_one_bridge_never_share_an_address(fenv: Eng) -> None:
    """20 bridged containers from each of two homes, started concurrently: 40 addresses, 40 MACs."""
    second = Eng(fenv.runtime, uuid.uuid4().hex[:8], 0)
    second.home = Path(tempfile.gettempdir()) / f"isoproof-home-{uuid.uuid4().hex[:8]}"
    second.env = {**fenv.env, "ISOPROOF_HOME": str(second.home)}
    second.bridge, second.subnet = fenv.bridge, fenv.subnet
    homes = [fenv, second]
    try:
        procs = [
            e.popen("run", "-d", "--name", f"many{i}", "busybox", "sleep", "300")
            for i in range(20)
            for e in homes
        ]
        outs = [p.communicate(timeout=300) for p in procs]
        assert all(p.returncode == 0 for p in procs), [err for _o, err in outs if err][:3]
        seen = []
        for e in homes:  # one inspect of the 20 (40 inspects took 3.6 s)
            e.note_ids()
            fmt = "{{.NetworkSettings.IPAddress}} {{.NetworkSettings.MacAddress}}"
            out = e.ok("inspect", "-f", fmt, *(f"many{i}" for i in range(20)))
            seen += [ln.split() for ln in out.splitlines()]
        ips, macs = {s[0] for s in seen}, {s[1] for s in seen}
        assert len(seen) == 40 and len(ips) == 40 and len(macs) == 40, seen
        table = json.loads(fenv.lease_file().read_text())
        assert sum(len(net) for net in table.values()) == 40
    finally:
        _remove_concurrently(homes)
        leaks = fenv.leaks() + second.leaks()
        shutil.rmtree(second.home, ignore_errors=True)
        assert leaks == []
