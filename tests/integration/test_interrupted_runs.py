"""A pytest run stopped by SIGTERM or SIGHUP (a cancelled CI job, ``timeout``, a closed terminal)
still runs its fixture finalisers: our own test run (tests/conftest.py) and the verification suite
(verify/plugin.py, what ``isoproof verify`` and a runtime's CI gate run).

Each case starts pytest in a subprocess on a small test file whose session fixture makes an
isoproof-prefixed cgroup holding a process, signals it while the test sleeps, and looks whether the
cgroup is still there; one case runs a container of our engine instead and sends SIGTERM to the
whole process group, as ``timeout`` does. The control case, without our handler, shows what the
signal's default action leaves behind (and so that this check can see a leak).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_engine import Eng, _teardown_env

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]
OCI = str(Path(sys.executable).parent / "isoproof-oci")

INNER = """
import os, pathlib, subprocess, time
import pytest

CG = pathlib.Path(os.environ["ISOPROOF_SIG_CGROUP"])


@pytest.fixture(scope="session")
def resource():
    CG.mkdir()
    p = subprocess.Popen(["sleep", "600"])
    (CG / "cgroup.procs").write_text(str(p.pid))
    yield
    p.kill()
    p.wait()
    CG.rmdir()


def test_sleeps(resource):
    pathlib.Path(os.environ["ISOPROOF_SIG_READY"]).write_text("")
    time.sleep(120)
"""


def _hierarchy() -> Path:
    """Where a cgroup with a process can be made: v1's pids hierarchy, else the v2 root."""
    pids = Path("/sys/fs/cgroup/pids")
    return pids if (pids / "cgroup.procs").exists() else Path("/sys/fs/cgroup")


@pytest.fixture
def cgroup() -> Iterator[Path]:
    cg = _hierarchy() / f"isoproof-tsig-{uuid.uuid4().hex[:8]}"
    yield cg
    if cg.is_dir():  # what an interrupted run left: its process, then the cgroup
        for pid in (cg / "cgroup.procs").read_text().split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        for _ in range(100):
            with contextlib.suppress(OSError):
                cg.rmdir()
            if not cg.exists():
                break
            time.sleep(0.05)


def _interrupt(
    tmp_path: Path,
    cg: Path,
    sig: int,
    plugin_args: list[str],
    inner: str = INNER,
    env: dict[str, str] | None = None,
    group: bool = False,
) -> tuple[int, str]:
    """Run the ``inner`` test file with ``plugin_args``, send ``sig`` (to its whole process group
    with ``group``, as ``timeout`` does) while its test sleeps; return pytest's status and output."""
    (tmp_path / "test_inner.py").write_text(inner)
    ready = tmp_path / "ready"
    env = {
        **(env or os.environ),
        "PYTHONPATH": str(REPO),
        "ISOPROOF_SIG_CGROUP": str(cg),
        "ISOPROOF_SIG_READY": str(ready),
    }
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "test_inner.py"]
    p = subprocess.Popen(
        [*argv, *plugin_args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own group: what it leaves cannot be confused with ours
    )
    try:
        deadline = time.monotonic() + 120
        while not ready.exists() and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), f"the inner test never started: {p.communicate(timeout=60)[0]}"
        if inner == INNER:
            assert (cg / "cgroup.procs").read_text().split(), "the premise: a process in the cgroup"
        if group:
            os.killpg(p.pid, sig)
        else:
            p.send_signal(sig)
        out, _ = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    return p.returncode, out


SIGNALS = [signal.SIGTERM, signal.SIGHUP]


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_our_test_run_finalises_fixtures_when_signalled(
    tmp_path: Path, cgroup: Path, sig: int
) -> None:
    rc, out = _interrupt(tmp_path, cgroup, sig, ["-p", "tests.conftest"])
    assert rc != 0, out
    assert f"{signal.Signals(sig).name} received" in out, out  # pytest's interruption, named
    assert not cgroup.exists(), f"the session fixture was not finalised: {out}"


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_the_verification_suite_finalises_fixtures_when_signalled(
    tmp_path: Path, cgroup: Path, sig: int
) -> None:
    if not os.path.exists(OCI):
        pytest.skip(f"needs the isoproof-oci console script; {OCI} is not there")
    results = tmp_path / "results"
    args = ["-p", "verify.plugin", "--runtime", f"oci:{OCI}", "--isoproof-results", str(results)]
    rc, out = _interrupt(tmp_path, cgroup, sig, args)
    assert rc != 0, out
    assert f"{signal.Signals(sig).name} received" in out, out
    assert not cgroup.exists(), f"the session fixture was not finalised: {out}"
    assert (results / "results.json").exists(), out  # sessionfinish ran: the leak check too


def test_without_the_handler_a_signal_leaves_the_fixture_behind(
    tmp_path: Path, cgroup: Path
) -> None:
    """The control: pytest alone dies by SIGTERM and its finaliser never runs."""
    rc, out = _interrupt(tmp_path, cgroup, signal.SIGTERM, [])
    assert rc == -signal.SIGTERM, out
    assert cgroup.is_dir(), "pytest finalised on SIGTERM by itself: the handler may be obsolete"


INNER_ENGINE = """
import os, pathlib, subprocess, time
import pytest

ISOPROOF = os.environ["ISOPROOF_SIG_ENGINE"]


@pytest.fixture(scope="session")
def container():
    run = [ISOPROOF, "run", "-d", "--network", "none", "busybox", "sleep", "600"]
    cid = subprocess.run(run, check=True, capture_output=True, text=True).stdout.strip()
    yield cid
    subprocess.run([ISOPROOF, "rm", "-f", cid], check=True, capture_output=True)


def test_sleeps(container):
    pathlib.Path(os.environ["ISOPROOF_SIG_READY"]).write_text(container)
    time.sleep(120)
"""


def test_a_job_cancelled_with_timeout_leaves_no_engine_container(tmp_path: Path) -> None:
    """As ``timeout`` cancels a job: SIGTERM to pytest's whole process group, while a container
    of our engine (with our runtime) runs. Its finaliser removes it: nothing of it stays."""
    if not os.path.exists(OCI):
        pytest.skip(f"needs the isoproof-oci console script; {OCI} is not there")
    eng = Eng(OCI, uuid.uuid4().hex[:8], 100)
    env = {**eng.env, "ISOPROOF_SIG_ENGINE": str(Path(sys.executable).parent / "isoproof")}
    try:
        rc, out = _interrupt(
            tmp_path, Path("/nonexistent"), signal.SIGTERM, ["-p", "tests.conftest"],
            inner=INNER_ENGINE, env=env, group=True,
        )  # fmt: skip
        cid = (tmp_path / "ready").read_text()
        assert len(cid) == 64, f"the premise: a container was running: {out}"
        eng.seen.add(cid)  # leaks() looks for its veth, monitor, cgroup, state
        assert rc != 0, out
        assert eng.leaks() == [], out
    finally:
        with contextlib.suppress(AssertionError):
            _teardown_env(eng)  # what a failed case left; the verdict is the asserts above


def test_engine_test_homes_are_named_isoproof() -> None:
    eng = Eng("/usr/sbin/runc", uuid.uuid4().hex[:8], 100)
    assert eng.home.name.startswith("isoproof"), eng.home
