"""The HTML isolation report (reports/): model, rendering, CLI. No root, no VM.

Inputs are real-shaped: ``data/reports-results.json`` is a trimmed results.json of a real
``oci:isoproof-oci`` run on the hybrid host; the matrix.json is made by the matrix's own code
(``verify.matrix.collect`` records a real pytest session per leg, ``merge.read_leg`` and
``merge.result_set`` turn the leg directories into the result set).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import verify.checks as checks_pkg
from reports import allure, charts, cli, compare, html, model, properties, verdicts
from reports.model import ReportError
from verify import plugin
from verify.matrix import cli as matrix_cli
from verify.matrix import merge

DATA = Path(__file__).parent / "data"
RESULTS = DATA / "reports-results.json"
# A real matrix.json whose only leg died before running anything (the matrix's own bug, since fixed).
ERRORED_MATRIX = DATA / "reports-matrix-errored-leg.json"
HOSTILE = "<script>alert('pwned')</script>"
CPU = ("resources", "test_cpu_shares_split[cpu-shares-2-to-1]")
OOM = ("resources", "test_memory_limit_oom")
UTS = ("namespaces", "test_uts_isolated")

# A payload shaped like the suite: the same module names, parametrised by runtime with the suite's
# ids, measurements recorded as the plugin's Evidence does (user property "isoproof_measurement").
HEAD = """
import os
import pytest

RT = pytest.mark.parametrize("runtime", ["oci:runc", "isoproof"], ids=["oci-runc", "isoproof"])
M = "isoproof_measurement"
"""
PAYLOAD = {
    "test_namespaces.py": """
@RT
def test_uts_isolated(runtime):
    pass
""",
    "test_resources.py": """
@RT
@pytest.mark.parametrize("scenario", ["cpu-shares-2-to-1"])
def test_cpu_shares_split(runtime, scenario, record_property):
    record_property(M, {"name": "cpu time of high", "expected": 1.98, "measured": 1.97,
                        "tolerance": "values_close 10.0%", "unit": "s", "ok": True,
                        "requested_ratio": 0.6667, "written_ratio": 0.6667,
                        "measured_ratio": 0.665})
    record_property(M, {"name": "cpu time of low", "expected": 0.99, "measured": 1.0,
                        "tolerance": "values_close 10.0%", "unit": "s", "ok": True})
    record_property(M, {"name": "cpu usage over time", "unit": "ns",
                        "series": {"t": [0.0, 0.5, 1.0, 1.5], "high": [0, 3e8, 7e8, 1e9],
                                   "low": [0, 2e8, 3e8, 5e8]}})


@RT
def test_memory_limit_oom(runtime, record_property):
    kills = int(os.environ["OOM_KILLS"])
    record_property(M, {"name": "oom_kill count", "expected": ">=1", "measured": kills,
                        "tolerance": None, "unit": "", "ok": kills >= 1})
    assert kills >= 1, os.environ["MESSAGE"]
""",
}


def _leg(base: Path, name: str, kernel: str, mode: str, env: dict[str, str]) -> merge.LegResult:
    d = base / "legs" / name
    d.mkdir(parents=True)
    checks = base / "payload" / "checks"
    checks.mkdir(parents=True, exist_ok=True)
    for file, body in PAYLOAD.items():
        (checks / file).write_text(HEAD + body)
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", os.devnull,
            "--rootdir", str(checks.parent), "-p", "verify.matrix.collect",
            "--isoproof-matrix-json", str(d / "payload.json"), "checks"]  # fmt: skip
    rc = subprocess.run(argv, cwd=checks.parent, env=os.environ | env, capture_output=True,
                        check=False).returncode  # fmt: skip
    (d / "booted").write_text("")
    (d / "exit-status").write_text(f"selfcheck=0 payload={rc}\n")
    res = merge.LegResult(leg=name, kernel=kernel, cgroup_mode=mode,
                          runtimes=["isoproof", "oci:runc"], accel="tcg", wall_s=300.0,
                          boot_s=20.0)  # fmt: skip
    merge.read_leg(res, d, base, timed_out=False, rc=0)
    return res


@pytest.fixture(scope="module")
def matrix_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("matrix")
    legs = [
        _leg(base, "6.1-v1", "6.1.0-40-amd64", "v1", {"OOM_KILLS": "1", "MESSAGE": "-"}),
        _leg(
            base,
            "6.12-v2",
            "6.12.57+deb12-amd64",
            "v2",
            {"OOM_KILLS": "0", "MESSAGE": f"no OOM kill {HOSTILE}"},
        ),  # fmt: skip
    ]
    dead = merge.LegResult(leg="6.1-v2", kernel="6.1.9-amd64", cgroup_mode="v2",
                           runtimes=["isoproof", "oci:runc"], wall_s=1500.0)  # fmt: skip
    (base / "legs" / "6.1-v2").mkdir()
    (base / "legs" / "6.1-v2" / "console.log").write_text("Kernel panic - not syncing: VFS\n")
    merge.read_leg(dead, base / "legs" / "6.1-v2", base, timed_out=False, rc=1)
    doc = merge.result_set(legs + [dead], {"kernel": "6.18.0", "cgroup_mode": "hybrid"})
    path = base / "matrix.json"
    path.write_text(json.dumps(doc, indent=1))
    return path


def _render(results: list[Path], matrices: list[Path]) -> str:
    return html.render(model.load(results, matrices), "PINNED")


# --- model -----------------------------------------------------------------------------------------


def test_results_json_becomes_one_leg_with_runtime_free_rows() -> None:
    r = model.load([RESULTS], [])
    assert [leg.name for leg in r.legs] == ["host"]
    leg = r.legs[0]
    assert (leg.kernel, leg.cgroup_mode, leg.leaks) == ("6.18.44-fc-v669", "hybrid", ())
    assert r.columns() == [("host", "oci:isoproof-oci")]
    assert ("namespaces", "test_ipc_isolated_both_ways[shm]") in r.rows()
    assert ("resources", "test_cpu_shares_split[cpu-shares-2-to-1]") in r.rows()
    assert ("namespaces", "test_uts_isolated") in r.rows()
    assert r.counts("host", "oci:isoproof-oci") == {
        "passed": 7,
        "failed": 0,
        "skipped": 1,
        "error": 0,
    }
    skip = r.cell("host", "oci:isoproof-oci", ("lifecycle", "test_stop_sends_term_first"))
    assert skip is not None and skip.outcome == "skipped"
    assert skip.message and "docker-like lifecycle verbs" in skip.message


def test_results_measurements_keep_ratios_and_series() -> None:
    r = model.load([RESULTS], [])
    c = r.cell("host", "oci:isoproof-oci", CPU)
    assert c is not None
    m = c.measurements[0]
    assert m.unit == "s" and m.ok is True and m.tolerance == "values_close 10.0%"
    assert {"requested_ratio", "written_ratio", "measured_ratio"} <= set(m.extra)
    assert "series" not in m.extra
    over_time = c.measurements[-1]
    assert set(over_time.series) == {"t", "high", "low"} and len(over_time.series["t"]) == 12
    io = r.cell("host", "oci:isoproof-oci", ("resources", "test_io_throttle[io-write-bps-10m]"))
    assert io is not None and io.measurements[0].unit == "B/s"


def test_matrix_json_records_legs_and_measurements(matrix_json: Path) -> None:
    r = model.load([], [matrix_json])
    assert [leg.name for leg in r.legs] == ["6.1-v1", "6.12-v2", "6.1-v2"]
    dead = r.leg("6.1-v2")
    assert dead is not None and dead.status == "error"
    assert dead.reason and "Kernel panic" in dead.reason
    assert dead.console_log == str(matrix_json.parent / "legs/6.1-v2/console.log")
    assert ("6.1-v1", "oci:runc") in r.columns() and ("6.12-v2", "isoproof") in r.columns()
    assert not any(leg == "6.1-v2" for leg, _ in r.columns())
    assert r.rows() == [UTS, CPU, OOM]
    ok = r.cell("6.1-v1", "oci:runc", OOM)
    bad = r.cell("6.12-v2", "oci:runc", OOM)
    assert ok is not None and ok.outcome == "passed"
    assert bad is not None and bad.outcome == "failed" and HOSTILE in (bad.message or "")
    cpu = r.cell("6.1-v1", "isoproof", CPU)
    assert cpu is not None
    names = [m.name for m in cpu.measurements]
    assert names == ["cpu time of high", "cpu time of low", "cpu usage over time"]
    assert cpu.measurements[0].extra["measured_ratio"] == 0.665
    assert cpu.measurements[2].series["high"] == [0.0, 3e8, 7e8, 1e9]


def test_a_failed_teardown_makes_the_test_an_error_once(tmp_path: Path) -> None:
    doc = json.loads(RESULTS.read_text())
    call = next(e for e in doc["results"] if "test_uts_isolated" in e["nodeid"])
    doc["results"].append(
        call | {"when": "teardown", "outcome": "error", "duration_s": 1.0,
                "message": "container left running"}
    )  # fmt: skip
    p = tmp_path / "results.json"
    p.write_text(json.dumps(doc))
    r = model.load([p], [])
    uts = r.cell("host", "oci:isoproof-oci", UTS)
    assert uts is not None and uts.outcome == "error" and uts.message == "container left running"
    assert uts.duration_s == pytest.approx(call["duration_s"] + 1.0)
    assert [m.name for m in uts.measurements] == [m["name"] for m in call["measurements"]]
    assert r.counts("host", "oci:isoproof-oci") == {"passed": 6, "failed": 0, "skipped": 1,
                                                     "error": 1}  # fmt: skip


def test_matrix_leg_takes_versions_and_leaks_from_its_suite_results(
    tmp_path: Path, matrix_json: Path
) -> None:
    doc = json.loads(matrix_json.read_text())
    suite = json.loads(RESULTS.read_text())
    suite["runtimes"] = {"oci:runc": "runc version 1.1.5"}
    suite["leak_check"] = {"ok": False, "leaks": ["cgroup /sys/fs/cgroup/isoproof-t1/x"]}
    suite["host_snapshot"] = {"ok": False, "differences": ["link isoproof-v1 added"]}
    (tmp_path / "legs" / "6.1-v1" / "suite").mkdir(parents=True)
    (tmp_path / "legs" / "6.1-v1" / "suite" / "results.json").write_text(json.dumps(suite))
    doc["legs"][0]["suite_results"] = ["legs/6.1-v1/suite/results.json"]
    doc["legs"][1]["suite_results"] = ["legs/6.12-v2/suite/gone.json"]  # moved away: passed over
    (tmp_path / "matrix.json").write_text(json.dumps(doc))
    r = model.load([], [tmp_path / "matrix.json"])
    assert r.runtime_versions == {"oci:runc": "runc version 1.1.5"}
    assert [leg.leaks for leg in r.legs] == [("cgroup /sys/fs/cgroup/isoproof-t1/x",), None, None]
    cls, sentence = html.overall(r)
    assert cls == "v-fail" and "left-behind resources in 6.1-v1" in sentence
    assert verdicts.host_state(r.legs[0])[1].endswith("host_snapshot: link isoproof-v1 added")


def test_matrix_outcome_override_and_plain_properties(tmp_path: Path) -> None:
    doc = {
        "schema": "isoproof-matrix/1",
        "host": {},
        "legs": [{"leg": "host", "kernel": "6.18", "cgroup_mode": "hybrid", "status": "failed"}],
        "results": [
            {"leg": "host", "runtime": "oci:runc", "test_id": "c/test_a.py::test_a[oci-runc]",
             "outcome": "failed", "measurements": {"isoproof_outcome": "runtime_error"}},
            {"leg": "host", "runtime": None, "test_id": "selfcheck.py::test_kernel",
             "outcome": "passed", "measurements": {"ratio": 1.94}},
        ],
    }  # fmt: skip
    p = tmp_path / "matrix.json"
    p.write_text(json.dumps(doc))
    r = model.load([], [p])
    a = r.cell("host", "oci:runc", ("a", "test_a"))
    assert a is not None and a.outcome == "runtime_error" and a.bucket == "error"
    k = r.cell("host", model.NO_RUNTIME, ("selfcheck", "test_kernel"))
    assert k is not None and k.measurements[0].name == "ratio"
    assert k.measurements[0].measured == 1.94


@pytest.mark.parametrize(
    ("test_id", "runtime", "row"),
    [
        ("checks/t.py::test_io[io-10m-oci-runc]", "oci:runc", "test_io[io-10m]"),
        ("checks/t.py::test_ipc[oci-isoproof-oci-shm]", "oci:isoproof-oci", "test_ipc[shm]"),
        ("checks/t.py::test_cpu[cpu-isoproof]", "isoproof", "test_cpu[cpu]"),
        ("checks/t.py::test_uts[isoproof]", "isoproof", "test_uts"),
        ("checks/t.py::test_uts[oci:/usr/sbin/runc]", "oci:/usr/sbin/runc", "test_uts"),
        ("selfcheck.py::test_kernel", None, "test_kernel"),
    ],
)
def test_row_takes_the_runtime_out(test_id: str, runtime: str | None, row: str) -> None:
    assert model._row(test_id, runtime) == row


def test_several_results_get_directory_names_and_unique_legs(tmp_path: Path) -> None:
    for box in ("v1", "v2"):
        (tmp_path / box).mkdir()
        (tmp_path / box / "results.json").write_bytes(RESULTS.read_bytes())
    r = model.load([tmp_path / "v1", tmp_path / "v2", tmp_path / "v2"], [])
    assert [leg.name for leg in r.legs] == ["v1", "v2", "v2-2"]


def test_same_matrix_leg_twice_is_an_error(matrix_json: Path) -> None:
    with pytest.raises(ReportError, match="leg '6.1-v1' is also in"):
        model.load([], [matrix_json, matrix_json])


# --- rendering -------------------------------------------------------------------------------------


def test_grid_has_verdict_cells_and_marks_leg_differences(matrix_json: Path) -> None:
    page = _render([], [matrix_json])
    assert '<div class="verdict v-fail" role="status">' in page
    assert (
        "failures in 6.12-v2 / isoproof, 6.12-v2 / oci:runc; legs that did not finish: 6.1-v2"
        in page
    )
    start = page.index('<table class="grid">')
    grid = page[start : page.index("</table>", start)]
    rows = {r.split('<a href="#', 1)[1].split(">", 1)[1].split("<", 1)[0]: r
            for r in grid.split("<tr")[1:] if 'class="r"' in r}  # fmt: skip
    memory = rows["test_memory_limit_oom"]
    assert memory.count('class="c o-failed"') == 2 and memory.count('class="c o-passed"') == 2
    assert 'data-legdiff="1"' in memory and 'data-bad="1"' in memory
    assert "differs between legs" in memory
    assert (
        '<b>Differ between legs (1):</b> <a href="#check-2">resources: test_memory_limit_oom</a>'
        in page
    )
    uts = rows["test_uts_isolated"]
    assert uts.count('class="c o-passed"') == 4
    assert 'data-legdiff="0"' in uts and 'data-bad="0"' in uts
    # The dead leg is in the summary with its reason, and its console log is named.
    assert "error: kernel panic/oops: Kernel panic - not syncing: VFS" in page
    assert esc_path(matrix_json.parent / "legs/6.1-v2/console.log") in page


def esc_path(p: Path) -> str:
    return html.esc(str(p))


def test_details_show_measurements_ratios_and_charts(matrix_json: Path) -> None:
    page = _render([RESULTS], [matrix_json])
    assert "measured_ratio: 0.665" in page
    assert '<svg class="chart" role="img"' in page and "<polyline" in page
    assert "10485760 (10.00 MiB/s)" in page  # the blkio limit, readable
    assert "reason: Skipped: needs docker-like lifecycle verbs" in page
    # The results.json host joined the matrix legs as one more leg.
    assert (
        '<th scope="colgroup" colspan="1">host<br><span class="meta">6.18.44-fc-v669 hybrid' in page
    )
    assert '<th scope="col">oci:isoproof-oci</th>' in page


def test_same_check_lines_up_across_inputs_and_failures_open_first(
    tmp_path: Path, matrix_json: Path
) -> None:
    doc = json.loads(RESULTS.read_text())
    for e in doc["results"]:
        if "test_uts_isolated" in e["nodeid"]:
            e["doc"] = "the hostname set inside is not the host's"
    p = tmp_path / "results.json"
    p.write_text(json.dumps(doc))
    r = model.load([p], [matrix_json])
    assert [c for c in r.columns() if r.cell(*c, UTS) is None] == []  # 4 matrix + 1 host column
    page = html.render(r, "PINNED")
    assert "property: the hostname set inside is not the host&#x27;s" in page
    assert '<details class="res o-failed" open><summary>6.12-v2 / isoproof: failed' in page
    assert '<details class="res o-passed"><summary>6.1-v1 / isoproof: passed' in page
    # The real host run: weights 2:1 on one CPU, drawn against the expected split.
    assert "high got 66.7% overall (expected 66.7%, requested 66.7%)" in page


def test_hostile_strings_are_escaped(tmp_path: Path, matrix_json: Path) -> None:
    doc = json.loads(RESULTS.read_text())
    entry = doc["results"][1]
    entry.update(outcome="failed", message=HOSTILE, nodeid=entry["nodeid"] + '"><img src=x>')
    entry["measurements"][0]["measured"] = HOSTILE
    doc["host"]["kernel"] = "<b>6.18</b>"
    p = tmp_path / "results.json"
    p.write_text(json.dumps(doc))
    page = _render([p], [matrix_json])
    assert page.count("<script") == 1  # the report's own filter script, nothing from the input
    assert "<img src=x>" not in page and "<b>6.18" not in page
    assert html.esc(HOSTILE) in page
    assert 'title="AssertionError: no OOM kill &lt;script&gt;alert(&#x27;pwned&#x27;)' in page


class _TagBalance(HTMLParser):
    VOID = {"meta", "br", "input"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if self.stack and self.stack[-1] == tag:
            self.stack.pop()
        else:
            self.errors.append(f"</{tag}> at {self.getpos()} inside {self.stack[-3:]}")


def test_page_is_well_formed(matrix_json: Path) -> None:
    compared = html.render(
        model.load([FAILURES], []),
        "X",
        compare.compare(model.load([FAILURES], []), model.load([PASS], []), "base"),
    )
    synth = html.render(model.load_matrix_doc(_synth().matrix()), "X")
    pages = (_render([RESULTS], [matrix_json]), _render([], [ERRORED_MATRIX]),
             _render([DEVIATIONS], []), compared, synth)  # fmt: skip
    for page in pages:
        p = _TagBalance()
        p.feed(page)
        assert p.errors == [] and p.stack == []


def test_render_is_deterministic(matrix_json: Path) -> None:
    a = _render([RESULTS], [matrix_json])
    b = _render([RESULTS], [matrix_json])
    assert a == b
    other = html.render(model.load([RESULTS], [matrix_json]), "OTHER")
    assert [x for x in zip(a.splitlines(), other.splitlines(), strict=True) if x[0] != x[1]] == [
        (x, x.replace("PINNED", "OTHER")) for x in a.splitlines() if "generated PINNED" in x
    ]


def test_all_passed_is_a_pass_verdict_with_skips_named() -> None:
    page = _render([RESULTS], [])
    assert (
        '<div class="verdict v-pass" role="status">Isolation holds: 7 checks passed in 1 '
        "leg/runtime " in page
    )
    assert "1 skipped (see reasons)" in page


def test_a_leg_that_never_ran_makes_the_report_incomplete() -> None:
    r = model.load([], [ERRORED_MATRIX])
    assert r.columns() == [] and [leg.status for leg in r.legs] == ["error"]
    page = html.render(r, "PINNED")
    assert (
        '<div class="verdict v-incomplete" role="status">Incomplete: legs that did not finish: '
        "6.12-v2" in page
    )
    assert "error: internal: BrokenPipeError(32, &#x27;Broken pipe&#x27;)" in page


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (10485760, "B/s", "10485760 (10.00 MiB/s)"),
        (0.66666, "", "0.6667"),
        (10362385.7, "", "10362386"),
        (2.0, "s", "2"),
        (None, "", "-"),
        (True, "", "yes"),
        ({"exit": 137, "oom_kill": 1}, "", '{"exit": 137, "oom_kill": 1}'),
        (list(range(200)), "", json.dumps(list(range(200)))[:300] + "..."),
    ],
)
def test_fmt_value(value: Any, unit: str, text: str) -> None:
    assert html.fmt_value(value, unit) == text


# --- CLI -------------------------------------------------------------------------------------------


def test_cli_writes_identical_reports(tmp_path: Path, matrix_json: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    outs = [tmp_path / "a.html", tmp_path / "b.html"]
    for out in outs:
        argv = ["--results", str(RESULTS), "--matrix", str(matrix_json), "-o", str(out),
                "--generated-at", "2026-01-01T00:00:00Z"]  # fmt: skip
        assert cli.main(argv) == 0
    assert outs[0].read_bytes() == outs[1].read_bytes()
    assert f"isolation report: {outs[1]}" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.html", "b.html"]


def test_cli_default_output_is_next_to_the_input(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_bytes(RESULTS.read_bytes())
    assert cli.main(["--results", str(tmp_path)]) == 0
    assert (tmp_path / "report.html").read_text().startswith("<!DOCTYPE html>")


def _bad_inputs(tmp_path: Path, matrix_json: Path) -> dict[str, tuple[list[str], str]]:
    (tmp_path / "notjson.json").write_text("{not json")
    (tmp_path / "old.json").write_text('{"schema": "isoproof-results/0", "results": []}')
    (tmp_path / "shape.json").write_text('{"schema": "isoproof-results/1", "results": {}}')
    (tmp_path / "entry.json").write_text('{"schema": "isoproof-results/1", "results": [{}]}')
    (tmp_path / "empty").mkdir()
    return {
        "missing": (["--results", str(tmp_path / "nope.json")], "nope.json: no such file"),
        "empty dir": (["--results", str(tmp_path / "empty")], "results.json: no such file"),
        "not json": (["--results", str(tmp_path / "notjson.json")], "not JSON"),
        "old schema": (["--matrix", str(tmp_path / "old.json")],
                       "schema 'isoproof-results/0', expected 'isoproof-matrix/1'"),
        "swapped": (["--results", str(matrix_json)], "pass it with --matrix"),
        "shape": (["--results", str(tmp_path / "shape.json")],
                  "results: expected list, got dict"),
        "entry": (["--results", str(tmp_path / "entry.json")],
                  "results[0].nodeid: expected str, got NoneType"),
        "bad flag": (["--resluts", "x"], "unrecognized arguments"),
    }  # fmt: skip


@pytest.mark.parametrize(
    "case",
    ["missing", "empty dir", "not json", "old schema", "swapped", "shape", "entry", "bad flag"],
)
def test_cli_bad_input_is_one_line_exit_2_and_no_file(
    case: str, tmp_path: Path, matrix_json: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv, expected = _bad_inputs(tmp_path, matrix_json)[case]
    out = tmp_path / "out" / "report.html"
    out.parent.mkdir()
    assert cli.main([*argv, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("isoproof-report: ") and err.count("\n") == 1
    assert expected in err
    assert list(out.parent.iterdir()) == []


def test_cli_bad_input_keeps_an_existing_report(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    out.write_text("previous report")
    assert cli.main(["--results", str(tmp_path / "nope"), "-o", str(out)]) == 2
    assert out.read_text() == "previous report"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_cli_unwritable_output_is_one_line(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    out = tmp_path / "no-such-dir" / "report.html"
    assert cli.main(["--results", str(RESULTS), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"isoproof-report: {out}: cannot write") and err.count("\n") == 1


def test_python_m_reports_has_no_traceback(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    p = subprocess.run([sys.executable, "-m", "reports", "--matrix", str(tmp_path / "x.json"),
                        "-o", str(out)], capture_output=True, text=True, check=False)  # fmt: skip
    assert p.returncode == 2
    assert p.stderr == f"isoproof-report: {tmp_path / 'x.json'}: no such file\n"
    assert not out.exists()


# --- the hooks in the suite and the matrix ---------------------------------------------------------


def test_suite_hook_writes_the_report_or_one_warning(tmp_path: Path) -> None:
    good = tmp_path / "results.json"
    good.write_bytes(RESULTS.read_bytes())
    assert plugin.html_report(good) == f"isoproof isolation report: {tmp_path / 'report.html'}"
    assert (tmp_path / "report.html").exists()
    bad = tmp_path / "bad" / "results.json"
    bad.parent.mkdir()
    bad.write_text("[]")
    line = plugin.html_report(bad)
    assert line.startswith("isoproof: warning: no HTML report: ") and "\n" not in line
    assert not (bad.parent / "report.html").exists()


def test_matrix_hook_writes_the_report_or_one_warning(
    tmp_path: Path, matrix_json: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "matrix.json"
    copy.write_bytes(matrix_json.read_bytes())
    matrix_cli.write_html_report(copy)
    assert capsys.readouterr().out == f"isolation report: {tmp_path / 'report.html'}\n"
    copy.write_text('{"schema": "other"}')
    (tmp_path / "report.html").unlink()
    matrix_cli.write_html_report(copy)
    err = capsys.readouterr().err
    assert err.startswith("isoproof matrix: warning: no HTML report: ") and err.count("\n") == 1
    assert not (tmp_path / "report.html").exists()


# --- recorded runs: properties, charts, comparison, allure, accessibility --------------------------
# reports-host-pass.json: a real run of the suite against runc on the hybrid host (all passed);
# reports-host-failures.json: a real run against runc and crun with scenarios made to fail
# (memory-fits-64m expecting an OOM kill, write-bps and 3-way shares at 0.5% tolerance): runc's
# write-bps and memory checks failed for real, crun refused every container (hybrid cgroups).
PASS = DATA / "reports-host-pass.json"
FAILURES = DATA / "reports-host-failures.json"
RUNC = "oci:/usr/sbin/runc"
CRUN = "oci:/usr/bin/crun"


def _synth() -> Any:
    spec = importlib.util.spec_from_file_location("reports_synth", DATA / "reports_synth.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _checks_in_suite() -> list[tuple[str, str]]:
    """(module as the report names it, check name) of every ``def test_`` in verify/checks."""
    found = []
    for path in sorted(Path(checks_pkg.__file__).parent.glob("*.py")):
        tree = ast.parse(path.read_text())
        module = path.stem.removeprefix("test_")
        found += [(module, n.name) for n in ast.walk(tree)
                  if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
                  and n.name.startswith("test_")]  # fmt: skip
    return found


def test_every_check_of_the_suite_maps_to_a_property() -> None:
    found = _checks_in_suite()
    assert len(found) >= 30  # the parse found the suite
    unmapped = [f"{m}::{n}" for m, n in found if properties.property_of(m, n).id == "other"]
    assert unmapped == []
    assert properties.property_of("escapes", "test_sysfs_readonly").id == "escapes"
    # Checks being written elsewhere land in their property by name.
    assert properties.property_of("escapes", "test_escape_proc_self_exe").id == "escapes"
    assert properties.property_of("security", "test_escapes_cwd_fd[runc]").id == "escapes"
    assert properties.property_of("security", "test_seccomp_default_profile").id == "seccomp"
    assert properties.property_of("whatever", "test_something_new").id == "other"
    # The table names only properties that exist, each once.
    ids = [p.id for p in properties.PROPERTIES]
    assert len(ids) == len(set(ids)) and set(properties.CHECKS.values()) <= set(ids)


def test_the_summary_lists_every_property_per_column_with_a_link_to_evidence() -> None:
    page = _render([FAILURES], [])
    start = page.index('<table class="props">')
    table = page[start : page.index("</table>", start)]
    for prop in properties.PROPERTIES:
        assert f'id="prop-{prop.id}"' in table
    row = _prop_row(table, "memory")
    # columns are crun, then runc: crun refused every container, runc's memory check failed
    assert row.count('class="c p-fail"') == 2 and "FAILS 0/2" in row and "FAILS 1/2" in row
    assert _prop_row(table, "pid").count("holds 3/3") == 1
    assert "not tested" in _prop_row(table, "seccomp")
    assert _prop_row(table, "host").count('class="c p-pass"') == 2  # the leak check was clean
    # The failing cell links to the failed check's evidence, which is in the page.
    href = re.search(r'href="#(ev-\d+-\d+)"', row.split("FAILS 1/2")[0].rsplit("<td", 1)[1])
    assert href is not None
    anchor = href.group(1)
    block = page[page.index(f'id="{anchor}"') - 400 : page.index(f'id="{anchor}"')]
    assert "<details" in block and "host / oci:/usr/sbin/runc: failed" in block


def _prop_row(table: str, prop: str) -> str:
    row = table.split(f'id="prop-{prop}"', 1)[1]
    return row.split("</tr>", 1)[0]


def test_every_link_in_the_page_has_its_target() -> None:
    synth = _synth()
    for page in (_render([FAILURES], []), html.render(model.load_matrix_doc(synth.matrix()), "X")):
        ids = set(re.findall(r'\bid="([^"]+)"', page))
        hrefs = set(re.findall(r'href="#([^"]+)"', page))
        assert hrefs and hrefs <= ids
        labelled = {
            x for ref in re.findall(r'aria-labelledby="([^"]+)"', page) for x in ref.split()
        }
        assert labelled <= ids


def test_charts_have_axes_titles_and_text_alternatives() -> None:
    page = _render([PASS], [])
    svgs = re.findall(r"<svg class=\"chart\".*?</svg>", page, re.S)
    # 3 CPU splits, quota, 2 memory, page cache, 4 I/O, pids, freezer
    assert len(svgs) == 13
    for svg in svgs:
        assert 'role="img"' in svg and "<title id=" in svg and "<desc id=" in svg
        assert 'class="al"' in svg  # an axis title with its unit
        assert len(re.findall(r'class="tk"', svg)) >= 3  # tick labels
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", page)
    assert len(captions) == 13 and all(len(c) > 40 for c in captions)
    assert not any("slope" in c for c in captions)


def _result(path: Path, check: str) -> model.CheckResult:
    r = model.load([path], [])
    return next(c for c in r.results if c.row.startswith(check) and c.runtime == RUNC)


def test_cpu_share_chart_draws_the_expected_and_requested_split() -> None:
    c = _result(PASS, "test_cpu_shares_split[cpu-shares-1-to-4]")
    (fig,) = charts.charts_for(c.check, c.measurements, "t")
    assert "share of CPU time (%)" in fig
    assert "big expected 80.0%" in fig and "small expected 20.0%" in fig
    # Requested equals written on v1: one line each, no separate requested line.
    assert "big requested" not in fig and "small requested" not in fig
    m = next(m for m in c.measurements if m.series)
    ratio = next(m for m in c.measurements if m.name == "cpu time of small")
    skewed = replace(ratio, extra=ratio.extra | {"requested_ratio": 0.25})
    fig2 = charts.charts_for(c.check, (skewed, m), "t")[0]
    assert "small requested 25.0%" in fig2  # drawn when it differs from the written split


def test_throughput_chart_is_a_rate_against_the_limit_not_cumulative_bytes() -> None:
    c = _result(PASS, "test_io_throttle[io-write-bps-10m]")
    (fig,) = charts.charts_for(c.check, c.measurements, "t")
    assert "throughput (MiB/s)" in fig and "limit 10 MiB/s" in fig
    m = c.measurements[0]
    t, ys = charts.active(m.series["t"], m.series["write"])
    xs, rates = charts.rates(t, ys, 0.5)
    assert len(rates) >= 4
    # Each point is a rate near the 10 MiB/s limit, not the running total (30 MiB at the end).
    assert all(5 < r / (1 << 20) < 15 for r in rates), [r / (1 << 20) for r in rates]


def test_pids_chart_says_peak_and_limit() -> None:
    c = _result(PASS, "test_pids_limit")
    (fig,) = charts.charts_for(c.check, c.measurements, "t")
    assert "pids.max 16" in fig
    assert re.search(r"pids.current peaked at 1[0-6] tasks [0-9.]+ s after the first sample "
                     r"\(limit 16\)", fig)  # fmt: skip
    assert "slope" not in fig


def test_memory_and_freezer_charts_from_what_the_checks_record() -> None:
    oom = _result(PASS, "test_memory_limit_oom[memory-oom-32m]")
    (fig,) = charts.charts_for(oom.check, oom.measurements, "t")
    assert "under a limit of 32 MiB; OOM kills: 1; the workload exited 137" in fig
    frz = _result(PASS, "test_pause_resume")
    (fig,) = charts.charts_for(frz.check, frz.measurements, "t")
    assert "while paused (1 s) 0 ms" in fig and "after resume" in fig
    # When the check records a usage series and the moment of the kill, both are drawn.
    series = model.Measurement(
        name="memory usage over time", unit="bytes", extra={"limit": 32 << 20, "oom_at_s": 1.2},
        series={"t": [0.0, 0.5, 1.0, 1.2], "memory.current": [0, 10 << 20, 30 << 20, 32 << 20]},
    )  # fmt: skip
    (fig,) = charts.charts_for("test_memory_limit_oom", (series,), "t")
    assert "limit 32 MiB" in fig and "OOM kill at 1.20 s" in fig
    frozen = model.Measurement(
        name="cpu over pause", unit="ns",
        series={"t": [0, 1, 2, 3], "usage_ns": [0, 9e8, 9e8, 1.8e9], "frozen": [0, 1, 1, 0]},
    )  # fmt: skip
    (fig,) = charts.charts_for("test_pause_resume", (frozen,), "t")
    assert "frozen 1.0-3.0 s" in fig and "<rect" in fig


def test_nice_ticks_and_rates() -> None:
    assert charts.nice_ticks(0, 97) == [0, 20, 40, 60, 80, 100]
    assert charts.nice_ticks(0, 0.13) == [0, 0.05, 0.1, 0.15]
    assert charts.fmt_tick(0.25, 0.25) == "0.25" and charts.fmt_tick(20.0, 20.0) == "20"
    assert charts.rates([0, 0.1, 0.2, 0.6], [0, 1, 2, 6], 0.2) == ([0.1, 0.4], [10.0, 10.0])
    assert charts.active([0, 1, 2, 3, 4], [5, 5, 6, 7, 7]) == ([1, 2, 3], [5, 6, 7])


def _luminance(hex_colour: str) -> float:
    def channel(c: int) -> float:
        v = c / 255
        return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4

    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(fg: str, bg: str) -> float:
    a, b = sorted((_luminance(fg), _luminance(bg)), reverse=True)
    return (a + 0.05) / (b + 0.05)


def test_colours_meet_wcag_aa_contrast() -> None:
    assert round(contrast("#999999", "#eeeeee"), 2) == 2.46  # the old "absent" cell: a failure
    low = [(name, fg, bg, round(contrast(fg, bg), 2))
           for name, fg, bg, need in html.CONTRAST_PAIRS if contrast(fg, bg) < need]  # fmt: skip
    assert low == []
    # Every colour the page's CSS and charts use is one of the checked ones.
    checked = {c.lower() for _, fg, bg, _ in html.CONTRAST_PAIRS for c in (fg, bg)}
    borders_and_grid = {"#cccccc", "#ccc", charts.GRID, "#7b3fa0"}
    used = set(re.findall(r"#[0-9a-fA-F]{6}\b|#[0-9a-fA-F]{3}\b", html.CSS))
    used |= set(re.findall(r"#[0-9a-fA-F]{6}\b", _render([PASS], []).split("</style>")[1]))
    assert {c.lower() for c in used} - checked - borders_and_grid == set()


def test_page_works_without_javascript_and_from_the_keyboard() -> None:
    page = _render([FAILURES], [])
    body = page.split("<script>")[0]
    # Nothing is hidden by default except the filter boxes, which need the script.
    assert body.count(" hidden>") == 1 and '<p class="filters" hidden>' in body
    assert 'style="display:none"' not in body
    # Interactive things are links, summaries and labelled checkboxes; no click-only elements.
    assert "onclick" not in body and "tabindex" not in body
    assert '<a class="skip" href="#properties">' in body and ":focus-visible" in page
    # Failures are open without a click.
    assert body.count('<details class="res o-failed" open>') == 2


def test_new_and_missing_fields_never_break_rendering(tmp_path: Path) -> None:
    doc = {
        "schema": "isoproof-results/1",
        # verify/snapshot.py's shape
        "host_snapshot": {"ok": False, "differences": ["sysctl net.ipv4.ip_forward 0 -> 1"],
                          "ignored_other_sessions": [], "sysctls_compared": 912},
        "another_check": {"ok": True, "skipped": "no snapshot at the start (not root)"},
        "results": [
            {"nodeid": "checks/test_escapes.py::test_escape_cwd_fd[oci-runc]", "outcome": "failed",
             "message": "the container's cwd is a host directory",
             "evidence": {"cgroup files": "memory.max: 33554432",
                          "transcript": "$ runc create x\nexit 0"},
             "transcript": ["$ runc start x", "exit 1"]},
            {"nodeid": "checks/test_seccomp.py::test_seccomp_profile[oci-runc]",
             "outcome": "xfailed", "reason": "deviates as declared: runc 1.1 (spec 1.0.2)"},
            {"nodeid": "checks/test_resources.py::test_io_throttle[io-oci-runc]",
             "outcome": "passed", "measurements": [{"name": "x", "series": {"t": [0, 1]}},
                                                   {"name": "y", "unit": "B/s"}]},
            {"nodeid": "checks/test_new.py::test_something_new", "outcome": "surprising"},
        ],
    }  # fmt: skip
    p = tmp_path / "results.json"
    p.write_text(json.dumps(doc))
    r = model.load([p], [])
    page = html.render(r, "PINNED")
    assert "sysctl net.ipv4.ip_forward 0 -&gt; 1" in page and "memory.max: 33554432" in page
    assert "$ runc start x\nexit 1" in page
    table = page[page.index('<table class="props">') :]
    assert 'class="c p-fail"' in _prop_row(table, "host")
    assert 'class="c p-fail"' in _prop_row(table, "escapes")
    assert "deviates as declared" in _prop_row(table, "seccomp")
    assert 'id="prop-other"' in table  # a check no property claims is still shown
    assert "host state changed in host" in page
    assert verdicts.host_state(r.legs[0]) == (
        "fail", "host_snapshot: sysctl net.ipv4.ip_forward 0 -> 1"
    )  # fmt: skip
    skipped_only = replace(r.legs[0], extras={"x": {"ok": True, "skipped": "not root"}})
    assert verdicts.host_state(skipped_only) == ("absent", "")


def test_baseline_marks_regressions_at_the_top_and_fails_the_exit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.html"
    argv = ["--results", str(FAILURES), "--baseline", str(PASS), "-o", str(out)]
    assert cli.main(argv) == 1
    printed = capsys.readouterr().out
    assert "properties 2 regressed" in printed and "checks 2 regressed" in printed
    page = out.read_text()
    top = page[: page.index('id="properties"')]
    assert "REGRESSED since the baseline: properties 2 regressed" in top
    assert "I/O throttles (bps, iops)</a> on host / oci:/usr/sbin/runc: pass &rarr; fail" in top
    assert page.count('<span class="chg chg-regressed">regressed</span>') >= 4
    # Fixed the other way round, and the same run against itself: no regression, exit 0.
    assert cli.main(["--results", str(PASS), "--baseline", str(FAILURES), "-o", str(out)]) == 0
    assert "No regression since the baseline: properties 0 regressed, 2 fixed" in out.read_text()
    assert cli.main(["--results", str(PASS), "--baseline", str(PASS), "-o", str(out)]) == 0
    c = compare.compare(model.load([PASS], []), model.load([PASS], []), "same")
    assert not c.regressed and c.counts("checks")["unchanged"] == len(c.checks) > 40


def test_baseline_can_be_a_matrix(tmp_path: Path) -> None:
    synth = _synth()
    base = synth.write(tmp_path / "base.json", dead_leg=None)
    doc = synth.matrix(dead_leg="6.12-v1")
    (tmp_path / "now.json").write_text(json.dumps(doc))
    c = compare.compare(model.load([], [tmp_path / "now.json"]), cli.load_baseline(base), "b")
    # The leg that died now has nothing: its results are gone, not regressed.
    assert c.counts("checks")["gone"] > 100 and not c.regressed


@pytest.mark.parametrize(
    ("before", "after", "kind"),
    [("passed", "failed", "regressed"), ("skipped", "error", "regressed"),
     ("failed", "passed", "fixed"), (None, "failed", "new"), ("passed", None, "gone"),
     ("failed", "error", "unchanged"), ("pass", "deviates", "unchanged"),
     ("deviates", "fail", "regressed")],
)  # fmt: skip
def test_classify(before: str | None, after: str | None, kind: str) -> None:
    assert compare.classify(before, after) == kind


ALLURE_RESULT = {
    "name": "test_cpu_shares_split[cpu-shares-1-to-4-oci-runc]", "status": "failed",
    "statusDetails": {"message": "AssertionError: CPU split [0.3, 0.7]"},
    "parameters": [
        {"name": "scenario", "value": "Scenario(path=PosixPath('/work/main/scenarios/"
                                      "cpu-shares-1-to-4.toml'), check='cpu_shares', ...)"},
        {"name": "runtime", "value": "'oci:/usr/sbin/runc'"}],
    "fullName": "checks.test_resources#test_cpu_shares_split",
    "labels": [{"name": "suite", "value": "test_resources"}],
}  # fmt: skip


def test_allure_environment_categories_and_readable_parameters(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "allure").mkdir(parents=True)
    (run / "results.json").write_bytes(PASS.read_bytes())
    (run / "allure" / "x-result.json").write_text(json.dumps(ALLURE_RESULT))
    assert cli.main(["--results", str(run)]) == 0
    env = (run / "allure" / "environment.properties").read_text()
    assert "kernel=6.18.44-fc-v1147\n" in env and "cgroup\\ mode=hybrid\n" in env
    assert "runtime\\ oci\\:/usr/sbin/runc=runc\\ version\\ 1.1.5" in env
    cats = json.loads((run / "allure" / "categories.json").read_text())
    names = [c["name"] for c in cats]
    assert names[:2] == ["deviates as declared", "inconclusive: host too busy"]
    assert "resources: isolation not shown to hold" in names
    doc = json.loads((run / "allure" / "x-result.json").read_text())
    assert doc["parameters"] == [{"name": "scenario", "value": "cpu-shares-1-to-4"},
                                 {"name": "runtime", "value": "oci:/usr/sbin/runc"}]  # fmt: skip
    labels = {(x["name"], x["value"]) for x in doc["labels"]}
    assert {("epic", "resources"), ("feature", "CPU weights under contention"),
            ("tag", "kernel 6.18.44-fc-v1147"), ("tag", "cgroup hybrid")} <= labels  # fmt: skip
    message = doc["statusDetails"]["message"]
    assert message == "CPU weights under contention: AssertionError: CPU split [0.3, 0.7]"
    resources = next(c for c in cats if c["name"].startswith("resources"))
    assert re.match(resources["messageRegex"], message)
    # The first category whose regex matches wins: a runtime failure before its family.
    failed = "lifecycle verbs: verify.drivers.base.RuntimeFailure: runtime create failed (exit 1)"
    first = next(c["name"] for c in cats if "failed" in c["matchedStatuses"]
                 and re.match(c.get("messageRegex", ".*"), failed))  # fmt: skip
    assert first == "runtime command failed"
    # A second run changes nothing more.
    assert allure.write_extras(run / "allure", model.load([run], [])) == 0


def test_first_run_without_results_says_what_to_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli.main([]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(
        "isoproof-report: no results in .isoproof-results"
    )
    assert "isoproof verify" in err and "--results" in err
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "run").mkdir()
    assert cli.main(["--results", "run"]) == 2
    err = capsys.readouterr().err
    assert err == ("isoproof-report: run/results.json: no such file (`isoproof verify --results "
                   "run` writes one there)\n")  # fmt: skip


def test_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    for flag in ("--help", "--version"):
        with pytest.raises(SystemExit) as e:
            cli.main([flag])
        assert e.value.code == 0
    out = capsys.readouterr().out
    assert "usage: isoproof-report" in out and "--baseline PATH" in out and "examples:" in out
    assert "exit status: 0 report written; 1" in out
    assert re.search(r"^isoproof-report \d+\.\d+", out, re.M)
    assert "`" not in out  # no reStructuredText markup


def test_matrix_with_a_dead_leg_shows_it_as_not_run() -> None:
    doc = _synth().matrix()
    page = html.render(model.load_matrix_doc(doc), "X")
    table = page[page.index('<table class="props">') : page.index("</table>")]
    assert table.count(">not run</a>") == len(properties.PROPERTIES)
    assert '6.12-v1<br><span class="meta">no results</span>' in table
    assert "legs that did not finish: 6.12-v1" in page
    # Each property says in words where it fails.
    assert "fails on 6.18-hybrid / oci:crun, 6.1-v1 / oci:crun, 6.12-v2 / isoproof<" in _prop_row(
        table, "io"
    )
    assert "fails on" not in _prop_row(table, "host")
    # isoproof's two recorded failures stand out on 6.12-v2, crun's refusals on the v1 legs.
    assert "failures in 6.18-hybrid / oci:crun, 6.1-v1 / oci:crun, 6.12-v2 / isoproof" in page


# A real run with the suite's newer fields (verify/plugin.py: "deviation", "evidence"): runc's
# lifecycle_state_machine deviates as declared (verify/deviations/runc-1.1.toml), crun refused
# every container on the hybrid host, with the runtime's command transcript as evidence.
DEVIATIONS = DATA / "reports-host-deviations.json"


def test_declared_deviations_and_failure_evidence_are_shown() -> None:
    r = model.load([DEVIATIONS], [])
    page = html.render(r, "PINNED")
    table = page[page.index('<table class="props">') :]
    lifecycle = _prop_row(table, "lifecycle")
    assert "deviates as declared 1/1" in lifecycle and "FAILS 0/1" in lifecycle
    assert "Isolation NOT shown to hold: failures in host / oci:/usr/bin/crun" in page
    assert "host / oci:/usr/sbin/runc" not in page.split("Isolation NOT shown to hold")[1][:80]
    assert "<b>deviates as declared</b>: runc deletes a container" in page
    assert "declared in " in page and "runc-1.1.toml" in page
    assert page.count("<b>evidence at the failure</b>") >= 5
    assert "cgroups in hybrid mode not supported" in page
    assert re.search(r"\$ /usr/bin/crun --root \S+ create --bundle .*\(exit 1, [0-9.]+ s\)", page)
    # The same fields reach a matrix as user properties, and land in the same place.
    entry = next(e for e in json.loads(DEVIATIONS.read_text())["results"]
                 if e["outcome"] == "xfailed")  # fmt: skip
    doc = {"schema": "isoproof-matrix/1", "legs": [{"leg": "6.1-v2", "kernel": "6.1", "cgroup_mode": "v2"}],
           "results": [{"leg": "6.1-v2", "runtime": "oci:runc", "test_id": entry["nodeid"],
                        "outcome": "xfailed", "message": entry["message"],
                        "measurements": {"isoproof_deviation": entry["deviation"],
                                         "isoproof_evidence": entry["evidence"],
                                         "isoproof_finding": {"text": "512:1024 asks 33:67"}}}]}  # fmt: skip
    m = model.load_matrix_doc(doc)
    (c,) = m.results
    assert c.measurements == () and set(c.evidence) == {"deviation", "evidence", "findings"}
    page = html.render(m, "PINNED")
    assert "<b>deviates as declared</b>: runc deletes" in page and "512:1024 asks 33:67" in page


def test_suite_hook_compares_with_a_baseline(tmp_path: Path) -> None:
    run = tmp_path / "results.json"
    run.write_bytes(FAILURES.read_bytes())
    line, regressed = cli.suite_hook(run, PASS)
    assert regressed and line.startswith(f"isoproof isolation report: {tmp_path / 'report.html'}")
    assert "properties 2 regressed, 0 fixed; checks 2 regressed" in line
    assert "REGRESSED since the baseline" in (tmp_path / "report.html").read_text()
    assert cli.suite_hook(run) == (f"isoproof isolation report: {tmp_path / 'report.html'}", False)
    line, regressed = cli.suite_hook(run, tmp_path / "missing.json")
    assert not regressed and line.startswith("isoproof: warning: no HTML report: ")
    assert "missing.json: no such file" in line


_numbers = st.one_of(st.integers(-(10**12), 10**12),
                     st.floats(allow_nan=True, allow_infinity=True), st.none(), st.text(max_size=3))  # fmt: skip


@given(
    check=st.sampled_from([*charts.BUILDERS, "test_other"]),
    names=st.lists(st.sampled_from(["t", "write", "read_ios", "pids.current", "usage_ns", "high",
                                    "low", "memory.current", "frozen"]), max_size=4, unique=True),
    n=st.integers(0, 6),
    data=st.data(),
)  # fmt: skip
@settings(max_examples=300, deadline=None)
def test_charts_never_break_the_page(check: str, names: list[str], n: int, data: Any) -> None:
    """Whatever shape a measurement has, drawing it never raises (a newer suite's or a broken
    counter's data): at worst a chart is left out and says so."""
    floats = st.floats(-1e12, 1e12, allow_nan=False)
    series = {k: data.draw(st.lists(floats, min_size=n, max_size=n)) for k in names}
    m = model.Measurement(
        name=data.draw(st.sampled_from(["peak usage", "cpu time of high", "cpu used while paused",
                                        "x"])),
        expected=data.draw(_numbers), measured=data.draw(_numbers), unit=data.draw(
            st.sampled_from(["", "s", "ns", "B/s", "IO/s", "bytes"])),
        extra={"limit": data.draw(_numbers), "oom_at_s": data.draw(_numbers),
               "written_ratio": data.draw(_numbers)},
        series=series,
    )  # fmt: skip
    sibling = model.Measurement(name="oom_kill count", measured=data.draw(_numbers))
    for fig in charts.charts_for(check, (m, sibling), "h"):
        assert fig.startswith(("<figure", '<p class="meta">chart of'))
