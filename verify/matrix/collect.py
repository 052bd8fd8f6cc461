"""A tiny pytest plugin: one JSON record per test, written where the matrix can collect it.

Loaded with ``-p verify.matrix.collect --isoproof-matrix-json FILE``. It works with any pytest run
(the verification suite, the repo's own root tests, the leg self-check), so a leg always reports in
the same shape whatever its payload. Each record::

    {"test_id": nodeid, "outcome": "passed"|"failed"|"skipped"|"error"|"xfailed"|"xpassed",
     "duration_s": float, "runtime": str|None, "message": str|None, "measurements": {...}}

``runtime`` comes from a ``runtime`` parameter of the test (``@pytest.mark.parametrize("runtime",
...)`` or a parametrised fixture of that name) or a ``runtime`` user property; ``measurements`` are
the test's other ``record_property`` values (JSON-serialisable ones as they are, others as ``str``).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

OPTION = "--isoproof-matrix-json"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(OPTION, default=None, help="write one JSON record per test into this file")


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return str(value)


def _measurements(props: list[tuple[str, object]]) -> dict[str, Any]:
    """Properties as a dict; a key recorded more than once keeps all its values, in order."""
    grouped: dict[str, list[Any]] = {}
    for key, value in props:
        if key != "runtime":
            grouped.setdefault(key, []).append(_jsonable(value))
    return {k: v[0] if len(v) == 1 else v for k, v in grouped.items()}


def _runtime_of(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    if callspec is not None and "runtime" in callspec.params:
        return str(callspec.params["runtime"])
    return None


class Collector:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: dict[str, dict[str, Any]] = {}
        self.runtimes: dict[str, str | None] = {}
        self.started = time.time()

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        self.runtimes[item.nodeid] = _runtime_of(item)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        rec = self.records.setdefault(
            report.nodeid,
            {
                "test_id": report.nodeid,
                "outcome": "passed",
                "duration_s": 0.0,
                "runtime": self.runtimes.get(report.nodeid),
                "message": None,
                "measurements": {},
            },
        )
        rec["duration_s"] = round(rec["duration_s"] + report.duration, 6)
        # Every phase's report carries the item's properties so far: rebuild, do not accumulate.
        rec["measurements"] = _measurements(report.user_properties)
        for key, value in report.user_properties:
            if key == "runtime":
                rec["runtime"] = str(value)
        outcome = _outcome(report)
        # The worst phase wins: an error in teardown turns a passed call into an error.
        if _RANK[outcome] > _RANK[rec["outcome"]]:
            rec["outcome"] = outcome
            rec["message"] = _message(report)
        if report.when == "teardown":
            # Written after every test: when the VM dies mid-run, what finished is still reported.
            self.write(exit_status=None)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.records[report.nodeid or "<collection>"] = {
                "test_id": report.nodeid or "<collection>",
                "outcome": "error",
                "duration_s": 0.0,
                "runtime": None,
                "message": _message(report),
                "measurements": {},
            }

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        self.write(int(exitstatus))

    def write(self, exit_status: int | None) -> None:
        data = {
            "schema": "isoproof-matrix-tests/1",
            "exit_status": exit_status,  # None while the session is still running
            "wall_s": round(time.time() - self.started, 3),
            "tests": list(self.records.values()),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        os.replace(tmp, self.path)


_RANK = {"passed": 0, "xfailed": 1, "skipped": 1, "xpassed": 2, "failed": 3, "error": 4}


def _outcome(report: pytest.TestReport) -> str:
    if hasattr(report, "wasxfail"):
        return "xfailed" if report.skipped else "xpassed"
    if report.when != "call" and report.failed:
        return "error"
    return str(report.outcome)


def _message(report: pytest.TestReport | pytest.CollectReport) -> str | None:
    if report.passed:
        return None
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2])
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:  # the exception line, e.g. "AssertionError: ratio 1.2 not within 10%"
        return str(crash.message)[:500]
    text = str(report.longrepr or "")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1][:500] if lines else None


def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption(OPTION)
    if path and not hasattr(config, "workerinput"):  # xdist workers report through the controller
        config.pluginmanager.register(Collector(Path(path)), "isoproof-matrix-collector")
