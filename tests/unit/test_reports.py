"""The HTML isolation report (reports/): model, rendering, CLI. No root, no VM.

Inputs are real-shaped: ``data/reports-results.json`` is a trimmed results.json of a real
``oci:isoproof-oci`` run on the hybrid host; the matrix.json is made by the matrix's own code
(``verify.matrix.collect`` records a real pytest session per leg, ``merge.read_leg`` and
``merge.result_set`` turn the leg directories into the result set).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from reports import cli, html, model
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
    assert '<div class="verdict v-fail">' in page
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


def test_details_show_measurements_ratios_and_sparklines(matrix_json: Path) -> None:
    page = _render([RESULTS], [matrix_json])
    assert "measured_ratio: 0.665" in page
    assert '<svg class="spark"' in page and "<polyline" in page
    assert "10485760 (10.00 MiB/s)" in page  # the blkio limit, readable
    assert "reason: Skipped: needs docker-like lifecycle verbs" in page
    # The results.json host joined the matrix legs as one more leg.
    assert "<th>host<br>oci:isoproof-oci<br>" in page


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
    assert "slope 0.667 CPUs" in page  # the real host run: weights 2:1 on one CPU


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
    for page in (_render([RESULTS], [matrix_json]), _render([], [ERRORED_MATRIX])):
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
    assert '<div class="verdict v-pass">Isolation holds: 7 checks passed in 1 leg/runtime ' in page
    assert "1 skipped (see reasons)" in page


def test_a_leg_that_never_ran_makes_the_report_incomplete() -> None:
    r = model.load([], [ERRORED_MATRIX])
    assert r.columns() == [] and [leg.status for leg in r.legs] == ["error"]
    page = html.render(r, "PINNED")
    assert '<div class="verdict v-incomplete">Incomplete: legs that did not finish: 6.12-v2' in page
    assert "error: internal: BrokenPipeError(32, &#x27;Broken pipe&#x27;)" in page


def test_sparkline() -> None:
    svg = html.sparkline([[0.0, 1.0, 4.0]], [0.0, 0.5, 1.0], width=100, height=20)
    assert svg.count("<polyline") == 1 and 'points="2.0,18.0 50.0,14.0 98.0,2.0"' in svg
    assert 'points="2.0,10.0 98.0,10.0"' in html.sparkline([[5.0, 5.0]], width=100, height=20)
    assert html.sparkline([[1.0]]) == ""


def test_series_recorded_together_share_one_scale() -> None:
    # Two containers under contention: the one with twice the weight climbs twice as steeply.
    svg = html.sparkline([[0.0, 2.0], [0.0, 1.0]], [0.0, 1.0], width=100, height=20)
    assert 'points="2.0,18.0 98.0,2.0"' in svg and 'points="2.0,18.0 98.0,10.0"' in svg
    assert html.PALETTE[0] in svg and html.PALETTE[1] in svg
    fig = html.series_figure(
        model.Measurement(
            name="cpu", unit="ns", series={"t": [0.0, 2.0], "high": [0, 4e9], "low": [0, 2e9]}
        )
    )
    assert fig.count("<svg") == 1
    assert "high: 0 to 4000000000, 2 samples over 2.00 s, slope 2.000 CPUs" in fig
    assert "low: 0 to 2000000000, 2 samples over 2.00 s, slope 1.000 CPUs" in fig


@pytest.mark.parametrize(
    ("slope", "key", "unit", "text"),
    [
        (5e8, "usage_ns", "s", "0.500 CPUs"),
        (10485760.0, "write", "B/s", "10.00 MiB/s"),
        (100.0, "write_ios", "IO/s", "100/s"),
    ],
)
def test_rate_is_in_the_unit_of_the_limit(slope: float, key: str, unit: str, text: str) -> None:
    assert html.rate(slope, key, unit) == text


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
