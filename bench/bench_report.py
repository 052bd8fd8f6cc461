"""The HTML report at matrix size: time to make it from a 5-leg x 3-runtime result set, and the
size of the page. Targets (issue 16): under 2 s and under 2 MB. Prints; asserts nothing.

    python bench/bench_report.py [--runs 5]

The result set is the test suite's synthesised matrix (tests/unit/data/reports_synth.py: real
recorded runs re-labelled to 5 legs x 3 runtimes, every leg alive), so the page carries the same
measurements and time series a real matrix does. The peer, measured in the same run, is one
recorded host run (one leg, one runtime): the ratio says how the cost grows with the columns.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reports import cli  # noqa: E402

DATA = ROOT / "tests" / "unit" / "data"
TARGET_S = 2.0
TARGET_BYTES = 2 << 20


def synth() -> object:
    spec = importlib.util.spec_from_file_location("reports_synth", DATA / "reports_synth.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def timed(argv: list[str], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        with contextlib.redirect_stdout(io.StringIO()):  # the CLI's own "report: path" line
            t0 = time.perf_counter()
            rc = cli.main(argv)
            out.append(time.perf_counter() - t0)
        if rc not in (0, 1):
            raise SystemExit(f"isoproof-report exited {rc}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="isoproof-bench-report-") as tmp:
        d = Path(tmp)
        matrix = synth().write(d / "matrix.json", dead_leg=None)  # type: ignore[attr-defined]
        page = d / "matrix.html"
        big = timed(["--matrix", str(matrix), "-o", str(page)], a.runs)
        one = d / "host.html"
        small = timed(["--results", str(DATA / "reports-host-pass.json"), "-o", str(one)], a.runs)
        base = timed(["--matrix", str(matrix), "--baseline", str(matrix), "-o", str(page)], a.runs)
        size, in_size = page.stat().st_size, matrix.stat().st_size
        html = page.read_text()
    med, peer, cmp_med = statistics.median(big), statistics.median(small), statistics.median(base)
    charts = html.count('<svg class="chart"')
    print(f"input: 5 legs x 3 runtimes, {in_size / 1e6:.2f} MB matrix.json")
    print(f"report: median {med:.3f} s over {a.runs} runs (min {min(big):.3f}, max {max(big):.3f});"
          f" {size / 1e6:.2f} MB ({size / (1 << 20):.2f} MiB), {charts} charts")  # fmt: skip
    print(f"  with --baseline (the same set): median {cmp_med:.3f} s")
    print(f"peer: one host run (1 leg x 1 runtime): median {peer:.3f} s; "
          f"matrix/peer {med / peer:.1f}x for 15x the columns")  # fmt: skip
    met_t = "met" if med < TARGET_S else "MISSED"
    met_s = "met" if size < TARGET_BYTES else "MISSED"
    print(f"targets: < {TARGET_S:.0f} s {met_t}; < 2 MiB {met_s}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
