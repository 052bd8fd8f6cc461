"""The suite as a gate: CPU weights judged against the request (cgroup v2 with fake cgroup reads),
known deviations, failure evidence in results.json, the verify CLI's front door. No root needed."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime.cgroups.convert import shares_to_weight
from verify import cli as verify_cli
from verify import deviations, host, measure, plugin

V2_MOUNTINFO = "25 1 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
HYBRID = (Path(__file__).parent / "data" / "hybrid-cpu-cpuacct-apart.mountinfo").read_text()
RUNC_11 = "runc version 1.1.5+ds1"
RUNC_14 = "runc version 1.4.0"
CRUN_18 = "crun version 1.8.1"


# --- CPU weights, judged against the requested shares ---------------------------------------------


class FakeCgroup:
    """A container whose cgroup files are a dict: what a runtime wrote, without a kernel."""

    def __init__(self, files: dict[str, str]) -> None:
        self.files = files

    def read_cgroup(self, controller: str, name: str) -> str:
        return self.files[name]


class FakeRuntime:
    def __init__(self, version: str) -> None:
        self._version = version

    def version(self) -> str:
        return self._version


class FakeEvidence:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.findings: list[str] = []

    def record(self, name: str, **kw: Any) -> None:
        self.records.append({"name": name, **kw})

    def finding(self, text: str, **kw: Any) -> None:
        self.findings.append(text)


@pytest.fixture
def v2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(host, "layout", lambda: host.layout_from_mountinfo(V2_MOUNTINFO))


def _judge_v2(version: str, requested: list[int], weights: list[int]) -> tuple[Any, FakeEvidence]:
    """The CPU checks' judgement on a v2 host whose cgroups hold ``weights``."""
    cs = [FakeCgroup({"cpu.weight": f"{w}\n"}) for w in weights]
    written = [measure.cpu_weight_written(c) for c in cs]
    ev = FakeEvidence()
    try:
        return measure.judge_weights(FakeRuntime(version), requested, written, ev), ev  # type: ignore[arg-type]
    except AssertionError as e:
        return e, ev


@pytest.mark.parametrize("version", [RUNC_11, RUNC_14, CRUN_18, "isoproof-oci 0.1.0", "youki 0.3"])
@pytest.mark.parametrize("requested", [[2048, 1024], [256, 1024], [512, 1024, 3072]])
def test_v2_default_weight_everywhere_fails(v2: None, version: str, requested: list[int]) -> None:
    """A runtime that drops linux.resources.cpu.shares (or sets every share to 1024) leaves the
    default weight 100 in every cgroup: the kernel splits evenly, and the check must fail."""
    got, ev = _judge_v2(version, requested, [100] * len(requested))
    assert isinstance(got, AssertionError), f"accepted weights [100...] for shares {requested}"
    assert f"requested shares {requested}" in str(got) and "cpu.weight written" in str(got)
    (rec,) = ev.records
    assert rec["ok"] is False and rec["measured"] == [100] * len(requested)


@pytest.mark.parametrize(
    ("version", "weights", "conversion"),
    [(RUNC_11, [79, 39], "linear"), (CRUN_18, [79, 39], "linear"), (RUNC_14, [174, 100], "log"),
     ("isoproof-oci 0.1.0", [174, 100], "log"), ("youki 0.3", [174, 100], "log"),
     ("youki 0.3", [79, 39], "linear")],
)  # fmt: skip
def test_v2_written_weights_match_the_claimed_conversion(
    v2: None, version: str, weights: list[int], conversion: str
) -> None:
    got, ev = _judge_v2(version, [2048, 1024], weights)
    assert got == weights
    assert ev.records[0]["conversion"] == conversion and ev.records[0]["ok"] is True


def test_v2_the_wrong_conversion_for_the_version_fails(v2: None) -> None:
    """runc 1.1 uses the linear formula: log-scale weights from it are not what it claims."""
    got, _ = _judge_v2(RUNC_11, [2048, 1024], [174, 100])
    assert isinstance(got, AssertionError) and "linear" in str(got)


def test_v1_is_the_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(host, "layout", lambda: host.layout_from_mountinfo(HYBRID))
    cs = [FakeCgroup({"cpu.shares": "1024\n"}), FakeCgroup({"cpu.shares": "1024\n"})]
    written = [measure.cpu_weight_written(c) for c in cs]
    with pytest.raises(AssertionError, match=r"cpu.shares written \[1024, 1024\]"):
        measure.judge_weights(FakeRuntime(RUNC_11), [2048, 1024], written, FakeEvidence())  # type: ignore[arg-type]
    assert (
        measure.judge_weights(FakeRuntime(RUNC_11), [1024, 1024], written, FakeEvidence())
        == written
    )  # type: ignore[arg-type]


def test_distorting_conversion_is_a_finding_not_a_failure(v2: None) -> None:
    got, ev = _judge_v2(RUNC_14, [512, 1024], [59, 100])
    assert got == [59, 100]
    (finding,) = ev.findings
    assert "33:67" in finding and "37:63" in finding
    _, ev = _judge_v2(RUNC_11, [2048, 1024], [79, 39])  # linear keeps 2:1 within a point
    assert ev.findings == []


def test_conversion_figures() -> None:
    assert [measure.weight_log(s) for s in (2, 512, 1024, 2048, 262144)] == [1, 59, 100, 174, 10000]
    assert [measure.weight_linear(s) for s in (2, 512, 1024, 2048, 262144)] == [
        1,
        20,
        39,
        79,
        10000,
    ]
    assert measure.claimed_conversion(RUNC_11) == "linear"
    assert measure.claimed_conversion("runc version 1.3.2") == "log"
    assert measure.claimed_conversion("crun version 1.23") == "log"
    assert measure.claimed_conversion("Docker version 20.10.24") is None


@given(st.integers(1, 300000))
def test_suite_log_formula_agrees_with_the_runtime(shares: int) -> None:
    # The suite keeps its own copy (an oracle must not share code with what it judges).
    assert measure.weight_log(shares) == shares_to_weight(shares)


# --- known deviations -------------------------------------------------------------------------------


def test_shipped_deviations_cover_runc_11_and_crun_18() -> None:
    found = deviations.load_all()
    for line in (RUNC_11, CRUN_18):
        dev = deviations.matching(found, line)["test_lifecycle_state_machine"]
        assert "MUST" in dev.quote and dev.spec.startswith("https://")
    race = deviations.matching(found, RUNC_11)["test_mount_destination_race"]
    assert race.strict is False and "CVE-2024-45310" in race.why  # a race need not show every run
    assert "test_mount_destination_race" not in deviations.matching(found, "runc version 1.1.14")
    assert deviations.matching(found, "runc version 1.2.0") == {}
    assert deviations.matching(found, "isoproof-oci 0.1.0 (OCI runtime-spec 1.0.2)") == {}


@pytest.mark.parametrize(
    ("version", "spec", "want"),
    [((1, 1, 5), ">=1.1, <1.2", True), ((1, 2), ">=1.1, <1.2", False), ((1, 1), "==1.1.0", True),
     ((0, 9), ">0.9", False), ((2,), "<=2.0.0", True)],
)  # fmt: skip
def test_version_ranges(version: tuple[int, ...], spec: str, want: bool) -> None:
    assert deviations.in_range(version, spec) is want


GOOD_DEV = """
runtime = "runc"
versions = ">=1.1"
[[deviation]]
check = "test_x"
why = "because"
spec = "https://example.invalid/spec"
"""


@pytest.mark.parametrize(
    ("text", "field"),
    [(GOOD_DEV.replace('runtime = "runc"', ""), "runtime"),
     (GOOD_DEV.replace(">=1.1", "about 1.1"), "versions"),
     (GOOD_DEV.replace('why = "because"', ""), "deviation[0].why"),
     (GOOD_DEV.replace('spec = "https://example.invalid/spec"', ""), "deviation[0]"),
     (GOOD_DEV + 'colour = "red"\n', "deviation[0].colour"),
     (GOOD_DEV + 'strict = "no"\n', "deviation[0].strict"),
     ("flavour = 1\n" + GOOD_DEV, "flavour")],
)  # fmt: skip
def test_bad_deviation_file_names_file_and_field(text: str, field: str) -> None:
    with pytest.raises(deviations.DeviationError) as e:
        deviations.parse(Path("dev/bad.toml"), text)
    assert str(e.value).startswith(f"dev/bad.toml: {field}: "), str(e.value)
    assert "\n" not in str(e.value)


# --- results.json from recorded reports -------------------------------------------------------------

RECORDED_EVIDENCE = {
    "containers": [{
        "name": "isoproof-1-gw0-3-1", "runtime": "oci:/usr/sbin/runc", "init_pid": 4242,
        "state": "running",
        "cgroup_files": {"/sys/fs/cgroup/memory/isoproof-verify-1/isoproof-1-gw0-3-1/memory.limit_in_bytes": "134217728"},
        "init_status": {"Name": "sleep", "NSpid": "4242\t1", "CapEff": "00000000a80425fb"},
        "namespaces": {"uts": {"container": 4026531838, "host": 4026531838, "shared_with_host": True}},
    }],
    "transcript": [{"runtime": "oci:/usr/sbin/runc", "argv": ["/usr/sbin/runc", "create", "x"],
                    "exit": 1, "stderr": "cannot set memory limit", "duration_s": 0.07}],
}  # fmt: skip


def _report(
    outcome: str, when: str = "call", longrepr: Any = None, **extra: Any
) -> pytest.TestReport:
    props = extra.pop("props", [])
    return pytest.TestReport(
        nodeid="checks/test_namespaces.py::test_uts_isolated[oci-runc]", location=("x", 0, "x"),
        keywords={}, outcome=outcome, longrepr=longrepr, when=when, user_properties=props,
        duration=1.25, **extra)  # fmt: skip


def test_failure_entry_carries_the_evidence_as_data() -> None:
    text = ("AssertionError: uts namespace is the host's (inode 4026531838)\n"
            "assert 4026531838 != 4026531838\n +  where 4026531838 = <function ns_inode at 0x7f>(1, 'uts')")  # fmt: skip
    r = _report("failed", longrepr=text, props=[(plugin.FAILURE_EVIDENCE, RECORDED_EVIDENCE)])
    e = plugin.result_entry(r)
    assert e["outcome"] == "failed" and e["check"] == "test_uts_isolated"
    assert e["message"] == "uts namespace is the host's (inode 4026531838)"
    (c,) = e["evidence"]["containers"]
    assert c["cgroup_files"] and c["namespaces"]["uts"]["shared_with_host"] is True
    assert e["evidence"]["transcript"][0]["exit"] == 1
    json.dumps(e)  # results.json is JSON: nothing in the entry needs a repr


def test_plain_message_drops_pytest_introspection() -> None:
    assert (
        plugin.plain_message("AssertionError: assert 1 != 1\n +  where 1 = <function f at 0x1>()")
        == "assert 1 != 1"
    )
    assert (
        plugin.plain_message("runtime create failed (exit 1): boom")
        == "runtime create failed (exit 1): boom"
    )
    failure = "verify.drivers.base.RuntimeFailure: runtime create failed (exit 1): boom"
    assert plugin.plain_message(failure) == "runtime create failed (exit 1): boom"


def test_xfailed_and_stale_deviation_entries() -> None:
    dev = deviations.parse(Path("runc-1.1.toml"), GOOD_DEV)[0].as_dict()
    r = _report("skipped", longrepr="AssertionError: delete succeeded in state created",
                props=[(plugin.DEVIATION, dev)], wasxfail="deviates as declared")  # fmt: skip
    e = plugin.result_entry(r)
    assert e["outcome"] == "xfailed" and e["deviation"]["why"] == "because"
    stale = plugin.result_entry(_report("failed", longrepr="[XPASS(strict)] deviates as declared",
                                        props=[(plugin.DEVIATION, dev)]))  # fmt: skip
    assert stale["outcome"] == "xpassed" and "runc-1.1.toml" in stale["message"]
    race = deviations.parse(Path("r.toml"), GOOD_DEV + "strict = false\n")[0].as_dict()
    unseen = plugin.result_entry(_report("passed", props=[(plugin.DEVIATION, race)]))
    assert unseen["outcome"] == "passed" and "not observed" in unseen["message"]


def test_findings_are_listed_apart() -> None:
    r = _report("passed", props=[(plugin.FINDING, {"text": "the conversion distorts the ratio"})])
    assert plugin.result_entry(r)["findings"] == [{"text": "the conversion distorts the ratio"}]


# --- the front door --------------------------------------------------------------------------------


def _main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = verify_cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize(
    ("argv", "says"),
    [(["--runtim", "oci:/usr/sbin/runc"], "unknown option --runtim (did you mean --runtime?)"),
     (["--runtime", "oci:/nope/runc"], "--runtime oci:/nope/runc: no executable at /nope/runc"),
     (["--runtime", "rkt"], "unknown runtime 'rkt'"), (["--runtime"], "--runtime needs a value"),
     (["--runtime", "oci:"], "oci:PATH needs a path"),
     (["--baseline", "/nope/results.json"], "--baseline /nope/results.json: no such file"),
     (["--baseline"], "--baseline needs a value")],
)  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(capsys, argv: list[str], says: str) -> None:
    rc, out, err = _main(capsys, *argv)
    assert rc == 2 and out == ""
    assert err.startswith("isoproof verify: ") and says in err and err.count("\n") == 1, err


def test_help_is_the_suites_own(capsys) -> None:
    rc, out, _ = _main(capsys, "--help")
    lines = out.splitlines()
    assert rc == 0 and lines[0].startswith("usage: isoproof verify")
    options = [x.split()[0] for x in lines if x.startswith("  -")]
    assert options[0] == "--runtime" and "--pytest-help" in options and "--list" in options
    assert len(lines) < 40


def test_version(capsys) -> None:
    rc, out, _ = _main(capsys, "--version")
    assert rc == 0 and out.startswith("isoproof verify ") and "pytest" in out


@pytest.mark.parametrize(
    ("module", "check", "prop"),
    [("verify.checks.test_namespaces", "test_user_root_is_unprivileged_outside", "user namespace"),
     ("verify.checks.test_resources", "test_pids_limit", "pids limit"),
     ("verify.checks.test_namespaces", "test_pid1_death_ends_container", "PID namespace"),
     ("verify.checks.test_resources", "test_io_throttle", "I/O throttle"),
     ("verify.checks.test_security", "test_cannot_mount", "security baseline")],
)  # fmt: skip
def test_list_names_the_property(module: str, check: str, prop: str) -> None:
    assert verify_cli.property_of(module, check) == prop


def test_plugin_is_registered_for_pytest_and_named_like_its_module() -> None:
    import tomllib

    doc = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    # The same name as -p verify.plugin, so both ways load one plugin, not two.
    assert doc["project"]["entry-points"]["pytest11"] == {"verify.plugin": "verify.plugin"}
    assert "verify.deviations" in doc["tool"]["setuptools"]["package-data"]
    assert {"verify", "reports"} <= set(doc["tool"]["mypy"]["packages"])


def test_plugin_is_inert_outside_the_suite(pytestconfig: pytest.Config) -> None:
    """This very run (the project's unit tests) is not the suite's: loaded through pytest11, the
    plugin must not skip, lock, or leak-check it."""
    assert not plugin.active(pytestconfig)


def test_io_throttle_written_v1_and_v2(v2: None, monkeypatch: pytest.MonkeyPatch) -> None:
    c = FakeCgroup(
        {
            "io.max": "8:0 rbps=max wbps=10485760 riops=max wiops=max\n254:0 rbps=5 wbps=max riops=max wiops=max\n"
        }
    )
    assert measure.io_throttle_written(c, (8, 0), "write_bps") == 10485760
    assert measure.io_throttle_written(c, (8, 0), "read_bps") is None  # "max": no limit
    assert measure.io_throttle_written(c, (254, 0), "read_bps") == 5
    assert measure.io_throttle_written(c, (9, 9), "read_bps") is None
    monkeypatch.setattr(host, "layout", lambda: host.layout_from_mountinfo(HYBRID))
    c = FakeCgroup({"blkio.throttle.write_iops_device": "254:0 100\n"})
    assert measure.io_throttle_written(c, (254, 0), "write_iops") == 100
    assert measure.io_throttle_written(c, (8, 0), "write_iops") is None


def test_plugin_refuses_a_missing_oci_binary(tmp_path: Path) -> None:
    """Run through pytest directly (no CLI): one usage-error line, no session of skips."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "pytest", "-p", "verify.plugin", "-p", "no:cacheprovider",
           "--pyargs", "verify.checks", "--runtime", "oci:/nope/runc"]  # fmt: skip
    r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == pytest.ExitCode.USAGE_ERROR, r.stdout + r.stderr
    assert "--runtime oci:/nope/runc: needs an OCI runtime binary at '/nope/runc'" in r.stderr
    assert "collected" not in r.stdout and os.listdir(tmp_path) == []


# --- --baseline: a regression since an earlier run fails the gate ---------------------------------

DATA = Path(__file__).parent / "data"
RECORDED_PASS = DATA / "reports-host-pass.json"  # runc: test_memory_limit_oom[...] passed
RECORDED_FAILURES = DATA / "reports-host-failures.json"  # the same check failed


class FakeSession:
    def __init__(self, options: dict[str, Any]) -> None:
        self.exitstatus: int = pytest.ExitCode.OK
        self.config = self
        self.stash = pytest.Stash()
        self.pluginmanager = self
        self._options = options

    def getoption(self, name: str, default: Any = None) -> Any:
        return self._options.get(name, default)

    def get_plugin(self, name: str) -> None:
        return None


def _finish(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, run: Path, baseline: Path | None
) -> FakeSession:
    """The suite's session end, on a recorded results.json instead of a live run: the host parts
    (leak check, cleanup, host snapshot) are what the gate needs from a real session, not here."""
    out = tmp_path / "results.json"

    def recorded_results(config: Any, d: Path, leaks: list[str]) -> Path:
        out.write_bytes(run.read_bytes())
        return out

    monkeypatch.setattr(plugin, "active", lambda config: True)
    monkeypatch.setattr(plugin, "_is_worker", lambda config: False)
    monkeypatch.setattr(plugin, "_reap_zombies", lambda: None)
    monkeypatch.setattr(plugin, "find_leaks", lambda config: [])
    monkeypatch.setattr(plugin, "clean_session", lambda config: None)
    monkeypatch.setattr(plugin.snapshot, "end", lambda session, keep: None)
    monkeypatch.setattr(plugin, "session_id", lambda config: "1")
    monkeypatch.setattr(plugin, "write_results", recorded_results)
    s = FakeSession({"isoproof_results": str(tmp_path),
                     "isoproof_baseline": str(baseline) if baseline else None})  # fmt: skip
    plugin.pytest_sessionfinish(s, 0)  # type: ignore[arg-type]
    return s


def test_baseline_regression_fails_the_run_and_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    s = _finish(monkeypatch, tmp_path, RECORDED_FAILURES, RECORDED_PASS)
    assert s.exitstatus == pytest.ExitCode.TESTS_FAILED
    line = s.stash[plugin._REPORT_LINE]
    assert line.startswith(f"isoproof isolation report: {tmp_path / 'report.html'}")
    assert f"since {RECORDED_PASS}: properties 2 regressed" in line
    assert "checks 2 regressed" in line
    page = (tmp_path / "report.html").read_text()
    assert "REGRESSED since the baseline" in page and "test_memory_limit_oom" in page


def test_baseline_without_regression_leaves_the_verdict(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    s = _finish(monkeypatch, tmp_path, RECORDED_PASS, RECORDED_FAILURES)  # only fixes
    assert s.exitstatus == pytest.ExitCode.OK
    assert "properties 0 regressed, 2 fixed" in s.stash[plugin._REPORT_LINE]
    s = _finish(monkeypatch, tmp_path, RECORDED_FAILURES, None)  # no baseline: no comparison
    assert s.exitstatus == pytest.ExitCode.OK
    assert s.stash[plugin._REPORT_LINE] == f"isoproof isolation report: {tmp_path / 'report.html'}"


def test_baseline_passes_through_the_front_door(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ran: list[list[str]] = []
    monkeypatch.setattr(pytest, "main", lambda args, plugins=None: ran.append(args) or 0)
    old = tmp_path / "old.json"
    old.write_text("{}")
    # "--" only separates the suite's options from pytest's: dropped, not taken for a file name.
    assert verify_cli.main(["--baseline", str(old), "--", "-k", "uts"]) == 0
    (argv,) = ran
    assert argv[argv.index("--isoproof-baseline") + 1] == str(old)
    assert "--" not in argv and argv[argv.index("-k") + 1] == "uts"


@pytest.mark.parametrize(
    ("extra", "says"),
    [(["--isoproof-baseline", "/nope/old.json"], "needs --isoproof-results"),
     (["--isoproof-results", "r", "--isoproof-baseline", "/nope/old.json"],
      "--isoproof-baseline /nope/old.json: no such file or directory")],
)  # fmt: skip
def test_plugin_refuses_a_baseline_it_cannot_use(
    tmp_path: Path, extra: list[str], says: str
) -> None:
    """Through pytest directly: one usage-error line before the run, no results dir left."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "pytest", "-p", "verify.plugin", "-p", "no:cacheprovider",
           "--pyargs", "verify.checks", "--runtime", "oci:/bin/true", *extra]  # fmt: skip
    r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == pytest.ExitCode.USAGE_ERROR, r.stdout + r.stderr
    assert says in r.stderr and "collected" not in r.stdout
    assert os.listdir(tmp_path) == []
