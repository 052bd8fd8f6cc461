"""``python -m reports`` / ``isoproof-report``: one HTML isolation report from result files.

    python -m reports                                        # .isoproof-results/results.json
    python -m reports --results .isoproof-results -o report.html
    python -m reports --matrix .isoproof-results/matrix/matrix.json --results vagrant/v1 \\
        --results vagrant/v2 -o report.html

``--results`` takes a results.json (schema isoproof-results/1) or the directory holding it,
``--matrix`` a matrix.json (isoproof-matrix/1) or its directory; both repeat. Without ``-o`` the
report goes next to the first input as ``report.html``. Bad input: one line on stderr, exit 2, and
no report file (it is written to a temporary file and renamed).
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

from reports import html, model
from reports.model import ReportError

PROG = "isoproof-report"
DEFAULT_RESULTS = ".isoproof-results"
REPORT_NAME = "report.html"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not argparse's usage block
        raise ReportError(f"{message} (see --help)")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = _Parser(
        prog=PROG, description="One HTML isolation report from results.json and matrix.json."
    )
    p.add_argument("--results", action="append", type=Path, default=[], metavar="DIR_OR_FILE",
                   help="results.json of a verification run, or its directory (repeatable)")  # fmt: skip
    p.add_argument("--matrix", action="append", type=Path, default=[], metavar="FILE",
                   help="matrix.json of a kernel matrix run, or its directory (repeatable)")  # fmt: skip
    p.add_argument("-o", "--output", type=Path, metavar="FILE",
                   help=f"where to write the report (default: {REPORT_NAME} next to the first input)")  # fmt: skip
    p.add_argument("--generated-at", metavar="TEXT",
                   help="the 'generated' line (default: now, UTC); pin it for identical output")  # fmt: skip
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


def write_report(
    results: list[Path], matrices: list[Path], out: Path, generated_at: str | None = None
) -> Path:
    """Load the inputs, render, write ``out``; raises ``ReportError`` on bad input."""
    report = model.load(results, matrices)
    stamp = generated_at or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    write_atomic(out, html.render(report, stamp))
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = parse_args(argv)
        results, matrices = args.results, args.matrix
        if not results and not matrices:
            results = [Path(DEFAULT_RESULTS)]
        first = (matrices or results)[0]
        out = args.output or (first if first.is_dir() else first.parent) / REPORT_NAME
        write_report(results, matrices, out, args.generated_at)
    except ReportError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    print(f"isolation report: {out}")
    return 0
