"""``isoproof-report`` / ``python -m reports``: one HTML isolation report from result files.

    isoproof-report                                          # .isoproof-results/results.json
    isoproof-report --results .isoproof-results -o report.html
    isoproof-report --matrix .isoproof-results/matrix/matrix.json --results vagrant/v1 \\
        --results vagrant/v2 -o report.html
    isoproof-report --baseline main-results.json             # exit 1 if anything regressed

``--results`` takes a results.json (schema isoproof-results/1) or the directory holding it,
``--matrix`` a matrix.json (isoproof-matrix/1) or its directory; both repeat. ``--baseline`` is
an earlier results.json or matrix.json (or its directory): the page says what regressed, was
fixed or is new, and the exit status is 1 when anything regressed. Without ``-o`` the report goes
next to the first input as ``report.html``. Bad input: one line on stderr, exit 2, and no report
file (it is written to a temporary file and renamed).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import NoReturn

from reports import allure, html, model
from reports.compare import Comparison, compare
from reports.model import ReportError

PROG = "isoproof-report"
DEFAULT_RESULTS = ".isoproof-results"
REPORT_NAME = "report.html"
EXIT_REGRESSED = 1
EXIT_BAD_INPUT = 2
EPILOG = """\
examples:
  isoproof-report                                   report on .isoproof-results/results.json
  isoproof-report --results DIR -o report.html      a results.json (or its directory)
  isoproof-report --matrix .isoproof-results/matrix the kernel matrix's matrix.json
  isoproof-report --baseline OLD.json               compare with an earlier run

exit status: 0 report written; 1 report written, something regressed since --baseline;
2 bad input (one line on stderr, no report written).
The results come from a run of the suite: isoproof verify (or ./scripts/tox -e verify)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not argparse's usage block
        raise ReportError(f"{message} (see --help)")


def version() -> str:
    try:
        from importlib.metadata import version as dist_version

        return dist_version("isoproof")
    except Exception:  # not installed (run from a checkout): the source's own number
        return "0.1.0"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = _Parser(
        prog=PROG,
        description="Make the HTML isolation report from the results of a verification run "
        "(results.json) or a kernel matrix run (matrix.json).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--results", action="append", type=Path, default=[], metavar="PATH",
                   help="results.json of a verification run, or its directory (repeatable; "
                        f"default: {DEFAULT_RESULTS}/results.json)")  # fmt: skip
    p.add_argument("--matrix", action="append", type=Path, default=[], metavar="PATH",
                   help="matrix.json of a kernel matrix run, or its directory (repeatable)")  # fmt: skip
    p.add_argument("--baseline", type=Path, metavar="PATH",
                   help="an earlier results.json or matrix.json (or its directory) to compare "
                        "with; exit 1 if a property or check regressed")  # fmt: skip
    p.add_argument("-o", "--output", type=Path, metavar="FILE",
                   help=f"where to write the report (default: {REPORT_NAME} next to the first input)")  # fmt: skip
    p.add_argument("--generated-at", metavar="TEXT",
                   help="the 'generated' line (default: now, UTC); pin it for identical output")  # fmt: skip
    p.add_argument("--version", action="version", version=f"{PROG} {version()}")
    return p.parse_args(argv)


def write_atomic(out: Path, text: str) -> None:
    """Write ``out`` whole or not at all: a temporary file beside it, renamed over it."""
    try:
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    except OSError as e:
        raise ReportError(f"{out}: cannot write: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; a report is meant to be read
        os.replace(tmp, out)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise ReportError(f"{out}: cannot write: {e.strerror or e}") from None


def load_baseline(path: Path) -> model.Report:
    """A baseline is either format: read the schema to know which."""
    target = path
    if path.is_dir():
        target = model.results_path(path)
        if not target.exists() and model.matrix_path(path).exists():
            target = model.matrix_path(path)
    doc = model.read_json(target)
    schema = doc.get("schema") if isinstance(doc, dict) else None
    if schema == model.MATRIX_SCHEMA:
        return model.load([], [target])
    return model.load([target], [])


def write_report(
    results: list[Path],
    matrices: list[Path],
    out: Path,
    generated_at: str | None = None,
    baseline: Path | None = None,
) -> Path:
    """Load the inputs, render, write ``out``; raises ``ReportError`` on bad input. (The suite
    and the matrix call this after their runs.)"""
    make_report(results, matrices, out, generated_at, baseline)
    return out


def make_report(
    results: list[Path],
    matrices: list[Path],
    out: Path,
    generated_at: str | None = None,
    baseline: Path | None = None,
) -> Comparison | None:
    """``write_report``, returning the comparison with the baseline when there is one.

    A results.json with an ``allure/`` directory beside it (the suite writes one) gets allure's
    environment, categories and readable parameters there (``reports/allure.py``)."""
    report = model.load(results, matrices)
    comparison = None
    if baseline is not None:
        comparison = compare(report, load_baseline(baseline), str(baseline))
    stamp = generated_at or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    write_atomic(out, html.render(report, stamp, comparison))
    for p in results:
        allure_dir = model.results_path(p).parent / "allure"
        if allure_dir.is_dir():
            try:
                allure.write_extras(allure_dir, model.load([p], []))
            except OSError as e:
                raise ReportError(f"{allure_dir}: cannot write allure extras: {e}") from None
    return comparison


def _first_run_hint(results: list[Path], matrices: list[Path], defaulted: bool) -> None:
    """Nothing given and nothing at the default place: say how results come to be. A named
    directory without a results.json: say what writes one."""
    if defaulted and not model.results_path(results[0]).exists():
        raise ReportError(
            f"no results in {DEFAULT_RESULTS}/ (no results.json there yet): run the suite first "
            "with `isoproof verify` (or ./scripts/tox -e verify), or name a results.json with "
            "--results / a matrix.json with --matrix"
        )
    for p in results:
        path = model.results_path(p)
        if p.is_dir() and not path.exists():
            raise ReportError(
                f"{path}: no such file (`isoproof verify --results {p}` writes one there)"
            )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = parse_args(argv)
        results, matrices = args.results, args.matrix
        defaulted = not results and not matrices
        if defaulted:
            results = [Path(DEFAULT_RESULTS)]
        _first_run_hint(results, matrices, defaulted)
        first = (matrices or results)[0]
        out = args.output or (first if first.is_dir() else first.parent) / REPORT_NAME
        comparison = make_report(results, matrices, out, args.generated_at, args.baseline)
    except ReportError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"isolation report: {out}")
    if comparison is not None:
        checks, props = comparison.counts("checks"), comparison.counts("properties")
        print(f"since {args.baseline}: properties {props['regressed']} regressed, "
              f"{props['fixed']} fixed; checks {checks['regressed']} regressed, {checks['fixed']} "
              f"fixed, {checks['new']} new, {checks['gone']} gone")  # fmt: skip
        if comparison.regressed:
            return EXIT_REGRESSED
    return 0


def suite_hook(results_json: Path, baseline: Path | None = None) -> tuple[str, bool]:
    """For the suite (``verify/plugin.py``, ``isoproof verify --baseline``): write report.html
    beside results.json, compared with ``baseline`` if given; return the line to print at the end
    of the run and whether anything regressed. A report that cannot be made is one warning line
    and never a regression: the run's own verdict stands."""
    out = results_json.parent / REPORT_NAME
    try:
        comparison = make_report([results_json], [], out, baseline=baseline)
    except Exception as e:  # a bug in the report too: it is named, the run's verdict stands
        why = str(e) if isinstance(e, ReportError) else repr(e)
        return f"isoproof: warning: no HTML report: {why}", False
    line = f"isoproof isolation report: {out}"
    if comparison is None:
        return line, False
    checks, props = comparison.counts("checks"), comparison.counts("properties")
    line += (f"\nisoproof: since {baseline}: properties {props['regressed']} regressed, "
             f"{props['fixed']} fixed; checks {checks['regressed']} regressed, {checks['fixed']} "
             f"fixed, {checks['new']} new")  # fmt: skip
    return line, comparison.regressed
