"""Hypothesis where it finds bugs: generated memory limits, generated share sets, and a stateful
model of the OCI lifecycle verbs checked against the real runtime."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from verify import measure
from verify.drivers import Driver, RuntimeFailure
from verify.spec import ContainerSpec

pytestmark = pytest.mark.root

FEW = settings(max_examples=4, deadline=None, derandomize=True, database=None,
               suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
MiB = 1 << 20


@pytest.mark.requires_controller("memory")
@FEW
@given(limit_mb=st.integers(16, 96), factor=st.sampled_from([0.25, 0.5, 2.0, 3.0]))
def test_memory_limit_generated(runtime: Driver, evidence, limit_mb: int, factor: float) -> None:
    """OOM above the limit, never well below it."""
    limit = limit_mb * MiB
    alloc_mb = max(1, int(limit_mb * factor))
    # No pause before the allocation: the drivers hold the workload until the host has found the
    # container's cgroup (OCI create/start; the engine driver's start gate), so the event waited
    # for is the workload's exit, not a fixed time.
    spec = ContainerSpec(args=["dd", "if=/dev/zero", "of=/dev/null", f"bs={alloc_mb}M", "count=1"],
                         resources={"memory": {"limit": limit, "swap": limit}})  # fmt: skip
    # Read the host-wide counter before the container exists: the workload may be OOM-killed
    # before create returns, and an engine that removes the cgroup on exit leaves only this
    # counter to read.
    before = measure.vmstat_oom_kills()
    c = runtime.create(spec)
    try:
        status = c.wait_exit(60)
        kills, _ = measure.oom_kills_after_exit(c, before)
        if status is None and hasattr(runtime, "inspect"):
            status = int(runtime.inspect(c)["State"]["ExitCode"])
    finally:
        runtime.remove(c)
    evidence.record(f"limit {limit_mb} MiB, alloc {alloc_mb} MiB", expected="oom" if factor >= 2 else "no oom",
                    measured={"exit": status, "oom_kill": kills})  # fmt: skip
    if factor >= 2:
        assert kills >= 1 and status in (137, None), (
            f"{alloc_mb} MiB under {limit_mb} MiB: exit {status}, {kills} OOM kills"
        )
    else:
        assert kills == 0 and status in (0, None), (
            f"{alloc_mb} MiB under {limit_mb} MiB was killed (exit {status})"
        )


@pytest.mark.timing
@pytest.mark.requires_controller("cpu")
# No shrinking: a weight that is not the request fails every example alike, and a smaller split
# proves nothing more on a busy host; shrinking cost 5 minutes of container starts per failure.
@settings(max_examples=3, deadline=None, derandomize=True, database=None,
          phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
# Scope: every container gets at least 5% of the CPU. Below that, CFS group weights do not hold a
# proportion within a few seconds (hypothesis found [3319, 129, 1834]: 1.6-2.0% measured against
# 2.4% expected), which is a property of the scheduler, not of the runtime under test.
@given(
    shares=st.lists(st.integers(128, 4096), min_size=2, max_size=3).filter(
        lambda s: min(s) / sum(s) >= 0.05
    )
)
def test_cpu_shares_generated(runtime: Driver, evidence, shares: list[int]) -> None:
    tol = 10
    cs = [runtime.create(ContainerSpec(args=["sh", "-c", "while :; do :; done"],
                                       resources={"cpu": {"shares": s}}).pinned("0")) for s in shares]  # fmt: skip
    try:
        # Judged against the request: the weights must be the shares through the runtime's
        # conversion (fails here, before any CPU is measured, when the request was ignored).
        weights = measure.judge_weights(
            runtime, shares, [measure.cpu_weight_written(c) for c in cs], evidence
        )
        a = measure.until_all_advance(lambda: [measure.cpu_usage_ns(c) for c in cs])
        # 2 s, kept: the split scenarios (shares >= 20%) err by up to 2.4% of values_close in
        # 1.5 s and 1.35% in 2 s; the error is an absolute share, so for the 5% shares generated
        # here it is ~4x larger relative to the share: ~5% of the 10% tolerance at 2 s.
        time.sleep(2.0)
        used = [measure.cpu_usage_ns(c) - x for c, x in zip(cs, a, strict=True)]
    finally:
        for c in cs:
            runtime.remove(c)
    total = sum(used)
    expected = [total * w / sum(weights) for w in weights]
    ok = all(measure.values_close(u, e, tol) for u, e in zip(used, expected, strict=True))
    evidence.record(f"split for shares {shares}", expected=[round(e / total, 3) for e in expected],
                    measured=[round(u / total, 3) for u in used], tolerance=f"values_close {tol}%",
                    ok=ok, weights=weights)  # fmt: skip
    assert ok, (
        f"shares {shares}: the CPU split was {measure.fmt_split(used)}, the weights {weights} ask "
        f"for {measure.fmt_split(weights)} (within {tol}%)"
    )


# --- the lifecycle as a state machine --------------------------------------------------------------


class OciLifecycle(RuleBasedStateMachine):
    """Model: created -> running <-> paused -> stopped -> deleted. Every verb is tried in every
    state; the runtime must succeed exactly when the model allows it, and ``state`` must agree.

    The model is the OCI runtime spec: "attempting to delete a container that is not stopped MUST
    have no effect on the container and MUST generate an error" (runc 1.1 deletes a *created*
    container without --force, and this check says so)."""

    driver: Driver

    def __init__(self) -> None:
        super().__init__()
        self.c = self.driver.create(ContainerSpec(args=["sleep", "3600"]), start=False)  # type: ignore[call-arg]
        self.model = "created"
        # Verbs tried, and how many of them the state was last compared after: an ``observe``
        # step changes nothing, so the state is not asked again (one runtime call in ~5 steps).
        self.acted, self.checked = 1, 0

    def _try(self, allowed: bool, verb, *args) -> bool:  # type: ignore[no-untyped-def]
        self.acted += 1
        try:
            verb(self.c, *args)
        except RuntimeFailure as e:
            assert not allowed, f"{verb.__name__} failed in state {self.model}: {e}"
            return False
        assert allowed, f"{verb.__name__} succeeded in state {self.model}"
        return True

    @precondition(lambda self: self.model != "deleted")
    @rule()
    def start(self) -> None:
        if self._try(self.model == "created", self.driver.start):  # type: ignore[attr-defined]
            self.model = "running"

    @precondition(lambda self: self.model in ("running", "paused"))
    @rule()
    def pause(self) -> None:
        if self._try(self.model == "running", self.driver.pause):
            self.model = "paused"

    @precondition(lambda self: self.model in ("running", "paused"))
    @rule()
    def resume(self) -> None:
        if self._try(self.model == "paused", self.driver.resume):
            self.model = "running"

    @precondition(lambda self: self.model in ("created", "running"))
    @rule()
    def kill(self) -> None:
        self._try(True, self.driver.kill, "KILL")
        self.c.wait_exit(10)
        self.model = "stopped"

    @precondition(lambda self: self.model != "deleted")
    @rule()
    def delete(self) -> None:
        if self._try(self.model == "stopped", self.driver.delete):  # type: ignore[attr-defined]
            self.model = "deleted"

    @rule()
    def observe(self) -> None:
        """Always possible, so a deleted container still lets the machine take steps."""

    @invariant()
    def state_agrees(self) -> None:
        if self.checked == self.acted:
            return  # nothing was tried since the state was last compared
        self.checked = self.acted
        if self.model == "deleted":
            try:
                self.driver.state(self.c)
            except RuntimeFailure:
                return
            raise AssertionError("state of a deleted container succeeded")
        assert self.driver.state(self.c) == self.model

    def teardown(self) -> None:
        self.c.removed = self.model == "deleted" and self.c.removed
        self.driver.remove(self.c)


def test_lifecycle_state_machine(runtime: Driver) -> None:
    if not hasattr(runtime, "delete"):
        pytest.skip(f"needs OCI create/start/delete verbs; driver {runtime.label} is docker-like")
    machine = type("Lifecycle", (OciLifecycle,), {"driver": runtime})
    # No shrinking: a failing run stops at its first failing example, whose steps are printed
    # as they were (at most 8 verbs); shrinking runc 1.1's declared deviation ran the machine 12
    # times instead of <= 6 (4-5 s of every runc leg) to print the same two-step sequence.
    run_state_machine_as_test(machine, settings=settings(max_examples=6, stateful_step_count=8, deadline=None,
                                                         derandomize=True, database=None,
                                                         phases=[Phase.explicit, Phase.reuse, Phase.generate]))  # fmt: skip
