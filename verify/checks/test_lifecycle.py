"""The docker-like lifecycle verbs of the engine: stop = SIGTERM then SIGKILL, kill = SIGKILL,
start, restart, logs, exec. Observed from the host: the init process and its exit, not the engine's
word."""

from __future__ import annotations

import os
import time

import pytest

from verify import host, probes
from verify.drivers import Driver
from verify.measure import wait_for
from verify.spec import ContainerSpec

pytestmark = pytest.mark.root


@pytest.fixture
def engine(runtime: Driver) -> Driver:
    if not runtime.lifecycle_verbs:
        pytest.skip(
            f"needs docker-like lifecycle verbs (stop, start, restart, logs); {runtime.label} is an OCI runtime"
        )
    return runtime


def _exit_code(d: Driver, c) -> int:  # type: ignore[no-untyped-def]
    return int(d.inspect(c)["State"]["ExitCode"])  # type: ignore[attr-defined]


def test_stop_sends_term_first(engine: Driver, evidence) -> None:
    c = engine.create(
        ContainerSpec(
            args=[
                "sh",
                "-c",
                "trap 'echo isoproof-got-term; exit 3' TERM; while :; do sleep 0.1; done",
            ]
        )
    )
    pid = c.pid
    # What must not happen is stop sitting out its timeout although the container is gone. The
    # timeout is long against the CLI's own cost (seconds in an emulated matrix guest), so "well
    # before the timeout" means the same thing on the host and in a TCG guest.
    grace = 10 * host.slowdown()
    t0 = time.monotonic()
    engine.stop(c, timeout=round(grace))  # type: ignore[attr-defined]
    took = time.monotonic() - t0
    code = _exit_code(engine, c)
    evidence.record("exit code after stop", expected=3, measured=code)
    evidence.record("stop took", expected=f"< {0.8 * grace:.1f}", measured=round(took, 2), unit="s")
    assert not os.path.exists(f"/proc/{pid}") or not c.alive(), "the container survived stop"
    assert code == 3, f"the container's TERM handler did not run (exit {code})"
    assert took < 0.8 * grace, (
        f"stop took {took:.1f}s of its {grace:.0f}s timeout although the container exits on TERM"
    )
    assert "isoproof-got-term" in engine.logs(c), "the TERM handler's output is not in the logs"  # type: ignore[attr-defined]


def test_stop_kills_after_timeout(engine: Driver, evidence) -> None:
    c = engine.create(ContainerSpec(args=["sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"]))
    t0 = time.monotonic()
    engine.stop(c, timeout=1)  # type: ignore[attr-defined]
    took = time.monotonic() - t0
    code = _exit_code(engine, c)
    evidence.record("exit code after stop", expected=137, measured=code)
    evidence.record("stop took", expected=f"1 s to {1 + 9 * host.slowdown():.0f} s",
                    measured=round(took, 2), unit="s")  # fmt: skip
    assert not c.alive(), "the container survived stop"
    assert code == 137, f"after the timeout, stop must SIGKILL (exit {code})"
    # Not before the timeout (that would be a kill without the grace period); soon after it, where
    # "soon" allows for the CLI's own start-up, slower in an emulated guest.
    assert 0.9 <= took < 1 + 9 * host.slowdown(), (
        f"stop returned after {took:.1f}s with a 1 s timeout"
    )


def test_kill_is_sigkill(engine: Driver, evidence) -> None:
    c = engine.create(
        ContainerSpec(args=["sh", "-c", "trap 'exit 3' TERM; while :; do sleep 0.1; done"])
    )
    engine.kill(c)
    assert wait_for(lambda: not c.alive(), 10), "the container survived kill"
    code = _exit_code(engine, c)
    evidence.record("exit code after kill", expected=137, measured=code)
    assert code == 137, f"kill did not SIGKILL (exit {code}; 3 means TERM)"


def test_start_and_restart(engine: Driver, evidence) -> None:
    c = engine.create(ContainerSpec(args=["sleep", "3600"]))
    first = c.pid
    engine.kill(c)
    assert wait_for(lambda: not c.alive(), 10), "the container survived kill"
    engine.start(c)  # type: ignore[attr-defined]
    evidence.record("init pid after start", expected=f"a new one (was {first})", measured=c.pid)
    assert c.pid and c.pid != first and c.alive(), "start did not run the container again"
    assert probes.nspid(c.pid)[-1] == 1, "the restarted init is not PID 1 in its namespace"
    second = c.pid
    engine.restart(c)  # type: ignore[attr-defined]
    evidence.record("init pid after restart", expected=f"a new one (was {second})", measured=c.pid)
    assert c.pid != second and c.alive(), "restart did not replace the init process"
    assert not os.path.exists(f"/proc/{second}") or not probes.status_fields(second).get(
        "State", ""
    ).startswith("S"), "the old init still runs after restart"


def test_logs_and_exec(engine: Driver, evidence) -> None:
    c = engine.create(
        ContainerSpec(
            hostname="isoproof-logs", args=["sh", "-c", "echo isoproof-hello; sleep 3600"]
        )
    )
    logs = engine.logs  # type: ignore[attr-defined]
    assert wait_for(lambda: "isoproof-hello" in logs(c), 10), (
        "logs do not show the container's output"
    )
    rc, out, _ = engine.exec(c, ["hostname"])
    evidence.record(
        "hostname through exec", expected="isoproof-logs", measured=out.strip(), exit=rc
    )
    assert rc == 0 and out.strip() == "isoproof-logs", f"exec ran hostname: exit {rc}, {out!r}"
    rc, out, _ = engine.exec(c, ["sh", "-c", "echo $$; cat /proc/self/status | grep NSpid"])
    assert rc == 0 and len(out.split("\n")[1].split()) == 2, (
        "exec did not join the container's pid namespace"
    )
