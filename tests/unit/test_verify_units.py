"""Pure parts of the verification suite: scenario parsing, OCI config translation, host parsing,
measurement arithmetic. No root needed."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from verify import host, measure, scenarios
from verify.drivers import label_id, make_driver
from verify.drivers.oci import veth_names
from verify.spec import ContainerSpec, oci_config

HYBRID_MOUNTINFO = (
    Path(__file__).parent / "data" / "hybrid-cpu-cpuacct-apart.mountinfo"
).read_text()
V2_MOUNTINFO = "25 1 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
V1_MOUNTINFO = "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"


# --- host facts ----------------------------------------------------------------------------------


def test_layout_hybrid() -> None:
    lay = host.layout_from_mountinfo(HYBRID_MOUNTINFO)
    assert lay.mode == "hybrid" and lay.version == 1
    assert lay.v1["cpu"] == "/sys/fs/cgroup/cpu" and lay.v1["cpuacct"] == "/sys/fs/cgroup/cpuacct"
    assert lay.v2 == "/sys/fs/cgroup/unified"
    assert lay.controllers() == ["cpu", "cpuacct", "memory"]


def test_layout_v2_and_v1() -> None:
    assert host.layout_from_mountinfo(V2_MOUNTINFO).mode == "v2"
    lay = host.layout_from_mountinfo(V1_MOUNTINFO)
    assert lay.mode == "v1" and lay.v1["cpu"] == lay.v1["cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct"


def test_parse_proc_cgroup() -> None:
    text = "4:memory:/isoproof/a\n2:cpu,cpuacct:/isoproof/a\n0::/\n"
    assert host.parse_proc_cgroup(text) == {
        "memory": "/isoproof/a",
        "cpu": "/isoproof/a",
        "cpuacct": "/isoproof/a",
        "": "/",
    }


def test_mountinfo_fields() -> None:
    (m,) = host.parse_mountinfo(
        "36 25 0:33 / /my\\040dir rw,relatime shared:5 - tmpfs isoproof rw,size=64k"
    )
    assert m["mountpoint"] == "/my dir" and m["fstype"] == "tmpfs" and m["source"] == "isoproof"


# --- measurement ---------------------------------------------------------------------------------


def test_values_close_is_kselftest_rule() -> None:
    assert measure.values_close(100, 110, 5)  # |10| <= 5% of 210
    assert not measure.values_close(100, 120, 5)  # |20| > 11


@given(st.floats(1, 1e9), st.floats(0, 50))
def test_values_close_symmetric(a: float, err: float) -> None:
    assert measure.values_close(a, a, err)
    assert measure.values_close(a, a * 1.01, err) == measure.values_close(a * 1.01, a, err)


def test_slope_of_a_straight_counter() -> None:
    times = [i * 0.1 for i in range(31)]
    values = [int(1_000_000 * t) for t in times]
    assert abs(measure.slope(times, values) - 1_000_000) < 1_000


def test_flat_keyed() -> None:
    assert (
        measure.parse_flat_keyed("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")["oom_kill"] == 3
    )


# --- scenarios -----------------------------------------------------------------------------------


def test_shipped_scenarios_are_valid() -> None:
    found = scenarios.load_all()
    checks = {s.check for s in found}
    assert checks == set(scenarios.CHECKS), (
        f"every check has a scenario; missing {set(scenarios.CHECKS) - checks}"
    )
    assert any(len(s.containers) == 3 for s in found if s.check == "cpu_shares")


def test_wheel_carries_the_scenarios(tmp_path: Path) -> None:
    """``pip install isoproof`` (and tox -e matrix, which installs a wheel) must find the same
    scenarios as a checkout; before they were packaged, the suite imported from site-packages found
    none (seen in a 6.12-v2 leg)."""
    import shutil
    import subprocess
    import sys
    import zipfile

    repo = Path(__file__).resolve().parents[2]
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(repo / name, src / name)
    for tree in ("runtime", "verify", "reports", "scenarios"):
        shutil.copytree(repo / tree, src / tree, ignore=shutil.ignore_patterns("__pycache__"))
    # pip builds it the way tox and users do (isolated, with the build backend pyproject names).
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                        "--disable-pip-version-check", "-w", str(tmp_path / "dist"), str(src)],
                       capture_output=True, text=True, timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    site = tmp_path / "site"
    (wheel,) = (tmp_path / "dist").glob("isoproof-*.whl")
    with zipfile.ZipFile(wheel) as whl:
        whl.extractall(site)
    shipped = sorted(p.name for p in (repo / "scenarios").glob("*.toml"))
    assert sorted(p.name for p in (site / "scenarios").glob("*.toml")) == shipped
    # The suite run from the installed copy (not the checkout) loads them all by default.
    probe = "from verify import scenarios as s; print(s.default_dir(), len(s.load_all()))"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site)}
    r = subprocess.run([sys.executable, "-S", "-c", probe], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr
    where, count = r.stdout.split()
    assert Path(where) == site / "scenarios" and int(count) == len(shipped)


GOOD = """
check = "cpu_shares"
[[container]]
limits = { cpu_shares = 512 }
[[container]]
limits = { cpu_shares = 1024 }
"""


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("check = 'nope'", "check"),
        (GOOD.replace("512", "'512'"), "container[0].limits.cpu_shares"),
        (GOOD.replace("512", "-5"), "container[0].limits.cpu_shares"),
        (GOOD.replace("cpu_shares = 512", "cpu_sharez = 512"), "container[0].limits.cpu_sharez"),
        (GOOD.replace("cpu_shares = 1024", "memory = 1"), "container[1].limits.cpu_shares"),
        ("tolerance_pct = 0\n" + GOOD, "tolerance_pct"),
        ("duration_s = 'long'\n" + GOOD, "duration_s"),
        ("colour = 1\n" + GOOD, "colour"),
        ("check = 'cpu_shares'\n[[container]]\nlimits = { cpu_shares = 1 }\n", "container"),
        (
            "check = 'pids'\n[[container]]\nworkload = 'dance'\nlimits = { pids = 4 }\n",
            "container[0].workload",
        ),
        (
            "check = 'io_throttle'\n[[container]]\nlimits = { read_bps = 1, write_bps = 2 }\n",
            "container[0].limits",
        ),
        (
            "check = 'memory_oom'\n[[container]]\nlimits = { memory = 1 }\n[expect]\nbanana = 1\n",
            "expect.banana",
        ),
    ],
)
def test_bad_scenario_names_file_and_field(text: str, field: str) -> None:
    with pytest.raises(scenarios.ScenarioError) as e:
        scenarios.parse(Path("scenarios/bad.toml"), text)
    msg = str(e.value)
    assert msg.startswith(f"scenarios/bad.toml: {field}: "), msg
    assert "\n" not in msg


def test_bad_toml() -> None:
    with pytest.raises(scenarios.ScenarioError, match=r"^x.toml: not valid TOML"):
        scenarios.parse(Path("x.toml"), "check = ")


def test_resources_translation() -> None:
    r = scenarios.resources(
        {"cpu_shares": 512, "cpus": "0", "memory": 1 << 25, "pids": 9, "write_bps": 100}, (254, 0)
    )
    assert r["cpu"] == {"shares": 512}  # "cpus" is container_spec's: ContainerSpec.pinned
    assert r["memory"] == {"limit": 1 << 25, "swap": 1 << 25}  # OCI swap is memory+swap: none
    assert r["pids"] == {"limit": 9}
    assert r["blockIO"]["throttleWriteBpsDevice"] == [{"major": 254, "minor": 0, "rate": 100}]
    with pytest.raises(ValueError):
        scenarios.resources({"read_bps": 1})


# --- OCI config ------------------------------------------------------------------------------------


def test_oci_config_namespaces_and_limits() -> None:
    spec = ContainerSpec(hostname="h", resources={"pids": {"limit": 5}})
    spec.namespaces["ipc"] = "host"
    cfg = oci_config(spec, "/r", "/isoproof-x/c", {"net": "/run/netns/n"})
    types = {n["type"]: n.get("path") for n in cfg["linux"]["namespaces"]}
    assert "ipc" not in types and types["network"] == "/run/netns/n" and types["pid"] is None
    assert cfg["hostname"] == "h" and cfg["linux"]["resources"]["pids"] == {"limit": 5}
    assert cfg["process"]["noNewPrivileges"] is True
    assert "/dev/mqueue" not in [m["destination"] for m in cfg["mounts"]]  # host IPC: no new mqueue


def test_oci_config_user_namespace() -> None:
    cfg = oci_config(ContainerSpec().with_user_ns(100000, 65536), "/r", "/p")
    assert cfg["linux"]["uidMappings"] == [{"containerID": 0, "hostID": 100000, "size": 65536}]
    assert {"type": "user"} in cfg["linux"]["namespaces"]


def test_oci_config_unresolved_join() -> None:
    spec = ContainerSpec()
    spec.namespaces["ipc"] = "container:x"
    with pytest.raises(ValueError, match="ipc"):
        oci_config(spec, "/r", "/p")


# --- drivers -------------------------------------------------------------------------------------


def test_labels() -> None:
    assert label_id("oci:/usr/sbin/runc") == "oci-runc"
    with pytest.raises(ValueError, match="unknown runtime"):
        make_driver("rkt", "p", Path("/tmp"), "x")
    with pytest.raises(ValueError, match="oci:PATH"):
        make_driver("oci:", "p", Path("/tmp"), "x")


def test_veth_names_fit_ifnamsiz() -> None:
    a, b = veth_names("isoproof-0123abcd-gw1-99-1")
    assert len(a) <= 15 and len(b) <= 15 and a.startswith("isoproof") and a != b


@pytest.mark.parametrize(
    ("env", "want"), [(None, 1.0), ("5", 5.0), ("0.2", 1.0), ("fast", 1.0), ("2.5", 2.5)]
)
def test_slowdown_scales_waits_never_below_one(monkeypatch, env, want):
    from verify import host

    if env is None:
        monkeypatch.delenv("ISOPROOF_TIMEOUT_SCALE", raising=False)
    else:
        monkeypatch.setenv("ISOPROOF_TIMEOUT_SCALE", env)
    assert host.slowdown() == want


def test_v2_freezer_is_core_not_a_listed_controller(monkeypatch) -> None:
    # cgroup.controllers never lists "freezer" on v2; the check must not skip pause/resume there.
    lay = host.layout_from_mountinfo(V2_MOUNTINFO)
    monkeypatch.setattr(host.platform, "release", lambda: "6.12.117+deb12-amd64")
    assert lay.has_controller("freezer")
    monkeypatch.setattr(host.platform, "release", lambda: "4.19.0-21-amd64")
    assert not lay.has_controller("freezer")
    assert host.kernel_at_least(5, 2, "5.2.0") and not host.kernel_at_least(5, 2, "5.1.21")


def test_engine_driver_remove_names_a_survivor(tmp_path: Path, monkeypatch) -> None:
    """A container still running after `rm -f` is reported by name when it is removed, not left
    for the session's anonymous leak check (or, worse, marked removed and forgotten)."""
    import subprocess

    from verify.drivers.base import Container, RuntimeFailure

    driver = make_driver("isoproof", "isoproof-t", tmp_path, "isoproof-t")
    calls = []
    monkeypatch.setattr(driver, "_cli", lambda *a, **kw: calls.append(a))  # rm -f does nothing
    monkeypatch.setattr(host, "slowdown", lambda: 0.01)  # a 0.1 s wait
    survivor = subprocess.Popen(["sleep", "30"])
    try:
        c = Container(driver=driver, name="isoproof-t-1", spec=ContainerSpec(), pid=survivor.pid)
        driver.containers.append(c)
        with pytest.raises(RuntimeFailure, match=f"isoproof-t-1 .pid {survivor.pid}. survived"):
            driver.remove(c)
        assert calls == [("rm", "-f", "isoproof-t-1")] and c not in driver.containers
    finally:
        survivor.kill()
        survivor.wait()


@pytest.mark.parametrize("shell", [["sh"], ["busybox", "sh"]])
def test_engine_start_gate_holds_the_workload_until_the_host_has_looked(
    tmp_path: Path, shell: list[str]
) -> None:
    """The docker-like driver's start gate: the workload does not run until the driver opens the
    gate, and opening it waits for the shell's trap (an early SIGUSR1 would kill the shell)."""
    import shutil
    import subprocess
    import time

    from verify.drivers.base import Container
    from verify.drivers.cli import GATE_MARK, DockerLikeDriver, gated

    if not shutil.which(shell[0]):
        pytest.skip(f"needs {shell[0]}; not installed here")
    marker = tmp_path / "ran"
    argv = gated(["sh", "-c", f"echo ran > {marker}"], max_s=30)
    assert argv[:2] == ["sh", "-c"] and argv[3] == GATE_MARK
    proc = subprocess.Popen([*shell, *argv[1:]])
    try:
        c = Container(driver=None, name="isoproof-gate-t", spec=ContainerSpec(), pid=proc.pid)  # type: ignore[arg-type]
        time.sleep(0.5)
        assert not marker.exists(), "the workload ran before the gate was opened"
        DockerLikeDriver._open_gate(c)
        assert proc.wait(10) == 0 and marker.read_text() == "ran\n"
    finally:
        proc.kill()
        proc.wait()


def test_engine_start_gate_opens_by_itself(tmp_path: Path) -> None:
    """A restart runs the gate again with no one to open it: it must not hang."""
    import subprocess

    from verify.drivers.cli import gated

    argv = gated(["true"], max_s=0.2)
    assert subprocess.run(argv, timeout=10).returncode == 0


def test_warm_up_waits_until_every_counter_grows() -> None:
    # The second container gets no CPU for its first three readings (seen in a TCG guest).
    readings = iter([[10, 5], [20, 5], [30, 5], [40, 5], [50, 9], [60, 12]])
    got = measure.until_all_advance(lambda: next(readings), min_s=0, interval=0)
    assert got == [50, 9]
    assert next(readings) == [60, 12]  # it stopped at the first interval where both grew


def test_warm_up_gives_up_on_a_stalled_counter() -> None:
    calls = []

    def read() -> list[int]:
        calls.append(1)
        return [len(calls), 0]  # the second never runs

    got = measure.until_all_advance(read, min_s=0, timeout=0.2, interval=0.01)
    assert got[1] == 0 and len(calls) >= 2  # returned (the check judges what it sees), no hang


def test_pinning_uses_cpuset_where_there_is_one_else_affinity() -> None:
    busy = ["sh", "-c", "while :; do :; done"]
    with_cpuset = ContainerSpec(args=list(busy), resources={"cpu": {"shares": 512}}).pinned(
        "0", True
    )
    assert with_cpuset.resources["cpu"] == {"shares": 512, "cpus": "0"} and with_cpuset.args == busy
    # Debian 6.12 in v1 mode has no cpuset controller: a cpuset limit would make every runtime
    # refuse the container (seen in the 6.12-v1 leg); the workload pins itself instead.
    without = ContainerSpec(args=list(busy), resources={"cpu": {"shares": 512}}).pinned("0", False)
    assert without.resources["cpu"] == {"shares": 512}
    assert without.args == ["taskset", "-c", "0", *busy]


def test_engine_probe_runs_once_per_binary(tmp_path: Path) -> None:
    """Every check makes a fresh driver; the engine's `version` probe must not run for each one
    (a CLI start costs about a second in an emulated guest). Its verdict, good or bad, is kept."""
    from verify.drivers.base import Unavailable
    from verify.drivers.cli import DockerLikeDriver

    def fake(name: str, rc: int) -> Path:
        exe = tmp_path / name
        exe.write_text(
            f'#!/bin/sh\necho "$@" >> {tmp_path}/{name}.calls\necho "no daemon" >&2\nexit {rc}\n'
        )
        exe.chmod(0o755)
        return exe

    good, bad = fake("good-engine", 0), fake("bad-engine", 1)
    for _ in range(3):
        DockerLikeDriver("podman", str(good), "isoproof-t", tmp_path, "x").check_available()
        with pytest.raises(Unavailable, match="says: no daemon"):
            DockerLikeDriver("podman", str(bad), "isoproof-t", tmp_path, "x").check_available()
    assert (tmp_path / "good-engine.calls").read_text() == "version\n"
    assert (tmp_path / "bad-engine.calls").read_text() == "version\n"


# --- memory and freezer series (fake cgroup readers, a fake clock) -------------------------------


class ScriptedContainer:
    """A container whose cgroup files and liveness follow a script, one step per sample: what the
    kernel would show while a workload allocates and is OOM-killed."""

    def __init__(self, steps: list[dict[str, str | bool]], clock: list[float]) -> None:
        self.steps, self.clock, self.i = steps, clock, 0

    def _step(self) -> dict[str, str | bool]:
        return self.steps[min(self.i, len(self.steps) - 1)]

    def alive(self) -> bool:
        return bool(self._step()["alive"])

    def read_cgroup(self, controller: str, name: str) -> str:
        v = self._step().get(name)
        if v is None:
            raise FileNotFoundError(name)
        return str(v)

    def sleep(self, s: float) -> None:  # the sampler's sleep: time passes, the next step comes
        self.clock[0] += s
        self.i += 1


def _v1_step(usage: int, peak: int, ooms: int, alive: bool = True) -> dict[str, str | bool]:
    return {"memory.usage_in_bytes": str(usage), "memory.max_usage_in_bytes": str(peak),
            "memory.oom_control": f"oom_kill_disable 0\nunder_oom 0\noom_kill {ooms}\n",
            "alive": alive}  # fmt: skip


def test_memory_series_until_the_oom_kill(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(host, "layout", lambda: host.layout_from_mountinfo(HYBRID_MOUNTINFO))
    mib = 1 << 20
    clock = [100.0]
    steps = [_v1_step(1 * mib, 1 * mib, 0), _v1_step(20 * mib, 20 * mib, 0),
             _v1_step(32 * mib, 32 * mib, 0), _v1_step(2 * mib, 32 * mib, 1),
             _v1_step(0, 32 * mib, 1, alive=False)]  # fmt: skip
    c = ScriptedContainer(steps, clock)
    run = measure.memory_while_running(c, 60, 0.05, clock=lambda: clock[0], sleep=c.sleep)
    assert run.key == "memory.usage_in_bytes"
    assert run.times == [0.0, 0.05, 0.1, 0.15, 0.2]
    assert run.usage == [1 * mib, 20 * mib, 32 * mib, 2 * mib, 0]
    assert run.peak == 32 * mib  # the kernel's high-water mark, as the check judged before
    assert run.oom_at_s == 0.15 and run.exited_at_s == 0.2
    assert run.series() == {"t": run.times, "memory.usage_in_bytes": run.usage}


def test_memory_series_v2_no_oom_and_a_vanishing_cgroup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(host, "layout", lambda: host.layout_from_mountinfo(V2_MOUNTINFO))
    clock = [0.0]
    ok = {"memory.current": "4096", "memory.peak": "8192", "memory.events": "oom 0\noom_kill 0\n",
          "alive": True}  # fmt: skip
    c = ScriptedContainer([ok, ok, {"alive": False}], clock)  # the engine removed the cgroup
    run = measure.memory_while_running(c, 60, 0.05, clock=lambda: clock[0], sleep=c.sleep)
    assert run.series() == {"t": [0.0, 0.05], "memory.current": [4096, 4096]}
    assert run.peak == 8192 and run.oom_at_s is None and run.exited_at_s is None
    c = ScriptedContainer([ok], clock)  # runs forever: stops at the timeout
    run = measure.memory_while_running(c, 1.0, 0.25, clock=lambda: clock[0], sleep=c.sleep)
    assert len(run.times) == 5 and run.exited_at_s is None


def test_background_sampling_ends_with_the_block_and_keeps_what_it_got() -> None:
    reads = iter([10, 20, 30])

    def read() -> int:
        v = next(reads, None)
        if v is None:
            raise FileNotFoundError("cgroup.procs")  # the cgroup went
        return v

    sampler = measure.Sampler(read, interval=0.001)
    with measure.sampling(sampler):
        assert measure.wait_for(lambda: len(sampler.values) == 3, 5)
    assert sampler.values == [10, 20, 30] and len(sampler.times) == 3
    assert sampler.times == sorted(sampler.times)
    n = [0]

    def count() -> int:
        n[0] += 1
        return n[0]

    sampler = measure.Sampler(count, interval=60)  # one sample at the start, one at the end
    with measure.sampling(sampler):
        measure.wait_for(lambda: sampler.values, 5)
    assert sampler.values == [1, 2]


# --- the suite's own time (issue 17) -------------------------------------------------------------


def test_rootfs_copy_hard_links_applets_and_shares_nothing(tmp_path: Path) -> None:
    """Symlinks to a file of the rootfs become hard links to the copy's own file; every other
    symlink stays one; modes survive; nothing of the copy is the source's inode."""
    import os
    import stat

    from verify.drivers.oci import copy_rootfs

    src = tmp_path / "src"
    (src / "bin").mkdir(parents=True)
    (src / "usr" / "bin").mkdir(parents=True)
    (src / "tmp").mkdir()
    (src / "tmp").chmod(0o1777)
    (src / "bin" / "busybox").write_bytes(b"\x7fELF busybox")
    (src / "bin" / "busybox").chmod(0o755)
    (src / "bin" / "sh").symlink_to("busybox")
    (src / "usr" / "bin" / "seq").symlink_to("../../bin/busybox")
    (src / "linuxrc").symlink_to("bin/busybox")
    (src / "abs").symlink_to("/bin/busybox")  # absolute: the host's path, left a symlink
    (src / "lib").symlink_to("usr/bin")  # a directory
    (src / "dangling").symlink_to("nowhere")
    dst = tmp_path / "dst"
    copy_rootfs(src, dst)
    bb = (dst / "bin" / "busybox").stat()
    assert bb.st_ino != (src / "bin" / "busybox").stat().st_ino
    for applet in ("bin/sh", "usr/bin/seq", "linuxrc"):
        p = dst / applet
        assert not p.is_symlink() and p.stat().st_ino == bb.st_ino, applet
    assert {os.readlink(dst / n) for n in ("abs", "lib", "dangling")} == {
        "/bin/busybox",
        "usr/bin",
        "nowhere",
    }
    assert stat.S_IMODE((dst / "tmp").stat().st_mode) == 0o1777
    assert stat.S_IMODE(bb.st_mode) == 0o755
    assert (src / "bin" / "sh").is_symlink()  # the source is untouched
    copy_rootfs(src, tmp_path / "dst2")  # the cached plan makes the same copy again
    assert (tmp_path / "dst2" / "usr" / "bin" / "seq").read_bytes() == b"\x7fELF busybox"


def test_wait_exec_ends_when_the_init_has_exec_d_anything(tmp_path: Path) -> None:
    """``sh -c '...; exec sleep'`` shows argv[0] ``sleep``, never ``sh``: a changed command line
    ends the wait as the workload's own argv[0] does; an unchanged one waits out the timeout."""
    import subprocess
    import time

    from verify.drivers.base import Container
    from verify.drivers.oci import OciDriver

    proc = subprocess.Popen(["sleep", "30"])
    try:
        assert measure.wait_for(  # past the fork: the image whose command line is compared
            lambda: Path(f"/proc/{proc.pid}/cmdline").read_bytes() == b"sleep\x0030\x00", 5
        )
        d = OciDriver("oci:/bin/true", "/bin/true", "isoproof-t", tmp_path, "isoproof-t")
        c = Container(driver=d, name="c", spec=ContainerSpec(args=["sh", "-c", "exec sleep 30"]),
                      pid=proc.pid)  # fmt: skip
        t0 = time.monotonic()
        d._wait_exec(c, b"runc\0init\0", timeout=5)
        assert time.monotonic() - t0 < 2
        t0 = time.monotonic()
        d._wait_exec(c, Path(f"/proc/{proc.pid}/cmdline").read_bytes(), timeout=0.3)
        assert time.monotonic() - t0 >= 0.3  # still the same process image: not exec'd yet
    finally:
        proc.kill()
        proc.wait()


def test_self_ending_workloads_wait_for_the_hosts_go() -> None:
    for workload in ("alloc", "write_file"):
        args = scenarios.workload_args(scenarios.ContainerScenario("c", {}, workload, size_mb=8))
        assert args[:2] == ["sh", "-c"] and "sleep 2" not in args[2]
        assert args[2].startswith(f"until [ -e {scenarios.GO_FILE} ]") and "exec dd " in args[2]


def _bench_verify():  # type: ignore[no-untyped-def]
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "bench_verify", Path(__file__).resolve().parents[2] / "bench" / "bench_verify.py"
    )
    assert spec and spec.loader
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_bench_verify_subwindows_judge_like_the_check() -> None:
    """Weights 2:1; the usage follows them exactly for 1 s, then the low one gets nothing."""
    t = [0.0, 0.5, 1.0, 1.5]
    doc = {"results": [{"check": "test_cpu_shares_split", "measurements": [
        {"name": "cpu weights written", "expected": [2048, 1024]},
        {"name": "cpu usage over time", "series": {"t": t, "hi": [0, 2, 4, 8], "lo": [0, 1, 2, 2]}},
    ]}, {"check": "test_io_throttle", "measurements": []}]}  # fmt: skip
    errs = _bench_verify().subwindow_errors(doc, [0.5, 1.0])
    assert errs[1.0][0] == 0.0 and len(errs[1.0]) == 2
    # 0.5 s from t=1.0: all 4 units to "hi" (20% off) and none to "lo", expected 4/3: the worst
    # container's |0 - 4/3| / (0 + 4/3) = 100%
    assert errs[0.5] == [0.0, 0.0, 100.0]
    assert _bench_verify().subwindow_errors([{"not": "ours"}], [1.0]) == {}


def test_bench_verify_leg_figures() -> None:
    bench = _bench_verify()
    doc = {"summary": {"passed": 2, "skipped": 1},
           "results": [{"check": "test_a", "params": "oci-runc", "outcome": "passed", "duration_s": 1.5,
                        "lock_wait_s": 3.0},
                       {"check": "test_b", "params": "", "outcome": "passed", "duration_s": 9.25},
                       {"check": "test_c", "params": "x", "outcome": "skipped", "duration_s": 0.0}]}  # fmt: skip
    lines = bench.leg_figures(doc, 64.0, 2)
    assert "lock wait   3.0 s" in lines[0] and "own   61.0 s" in lines[0] and "NOT met" in lines[0]
    assert "2 passed, 1 skipped" in lines[1] and "10.8 s" in lines[1]
    assert lines[3].split() == ["9.25", "s", "passed", "test_b"]
    assert lines[4].split() == ["1.50", "s", "passed", "test_a[oci-runc]"] and len(lines) == 5
    assert bench.leg_figures(doc, 60.0, 2)[0].endswith("target <= 60 s: met")  # 57 s own
