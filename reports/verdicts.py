"""Verdicts per isolation property and leg x runtime, from the checks' outcomes.

One property is proven by several checks (PID 1: init is PID 1, its death ends the container, the
host's processes are invisible); its verdict in one column is the worst of theirs:

- ``fail``: a check failed or errored (the runtime itself failing counts: it did not isolate);
- ``deviates``: nothing failed, and a check deviates as declared for this runtime (an xfail);
- ``pass``: nothing failed and at least one check passed;
- ``inconclusive``: every check skipped, one because the host was too busy to measure;
- ``skip``: every check skipped (the reasons say what the host lacks);
- ``absent``: no check of this property ran in the column.

The ``host`` property is per leg: the leak check and any other host-state check the suite
writes at the top of results.json (``{"ok": false, ...}``), the same for every runtime of the leg.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reports.model import CheckResult, Leg, Report, is_deviation
from reports.properties import OTHER, PROPERTIES, Property, property_of

ORDER = ("fail", "deviates", "pass", "inconclusive", "skip", "absent")
BAD = ("fail",)


@dataclass(frozen=True)
class Cell:
    verdict: str
    checks: tuple[CheckResult, ...]  # the property's checks in this column, worst first
    note: str = ""  # for the host property: what was found

    @property
    def worst(self) -> CheckResult | None:
        return self.checks[0] if self.checks else None

    def tally(self) -> str:
        """``2/3 passed`` style text for the cell."""
        if not self.checks:
            return ""
        ok = sum(1 for c in self.checks if c.bucket == "passed")
        return f"{ok}/{len(self.checks)}"


def _rank(r: CheckResult) -> int:
    if r.bucket in ("failed", "error"):
        return 0
    if is_deviation(r.outcome):
        return 1
    return 2 if r.bucket == "passed" else 3


def verdict_of(checks: list[CheckResult]) -> str:
    if not checks:
        return "absent"
    if any(c.bucket in ("failed", "error") for c in checks):
        return "fail"
    if any(is_deviation(c.outcome) for c in checks):
        return "deviates"
    if any(c.bucket == "passed" for c in checks):
        return "pass"
    if any("inconclusive" in (c.message or "") for c in checks):
        return "inconclusive"
    return "skip"


def host_state(leg: Leg | None) -> tuple[str, str]:
    """(verdict, note) of the ``host`` property for a leg: leaks and any top-level ``ok: false``."""
    if leg is None:
        return "absent", ""
    problems = []
    known = False
    if leg.leaks is not None:
        known = True
        if leg.leaks:
            problems.append(f"left behind: {'; '.join(leg.leaks)}")
    for key, value in sorted(leg.extras.items()):
        # A check that did not run (``"skipped": why``, e.g. not root) proves nothing either way.
        if (
            isinstance(value, dict)
            and isinstance(value.get("ok"), bool)
            and not value.get("skipped")
        ):
            known = True
            if not value["ok"]:
                problems.append(f"{key}: {_describe(value)}")
    if not known:
        return "absent", ""
    return ("fail", "; ".join(problems)) if problems else ("pass", "")


def _describe(value: dict[str, Any]) -> str:
    for k in ("changes", "changed", "diff", "differences", "leaks", "message"):
        v = value.get(k)
        if v:
            return v if isinstance(v, str) else "; ".join(str(x) for x in v)[:300]
    return "not ok"


class Verdicts:
    """Property x column verdicts of one report, computed once."""

    def __init__(self, report: Report) -> None:
        self.report = report
        self.columns = report.columns()
        self.by_cell: dict[tuple[str, str, str], list[CheckResult]] = {}
        for r in report.results:
            prop = property_of(r.module, r.row)
            self.by_cell.setdefault((prop.id, r.leg, r.runtime), []).append(r)
        # Every property the suite knows, in the table's order; "other" when a check has none.
        self.properties: list[Property] = list(PROPERTIES)
        if any(key[0] == OTHER.id for key in self.by_cell):
            self.properties.append(OTHER)

    def cell(self, prop: str, leg: str, runtime: str) -> Cell:
        if prop == "host":
            verdict, note = host_state(self.report.leg(leg))
            return Cell(verdict, (), note)
        checks = sorted(self.by_cell.get((prop, leg, runtime), []), key=_rank)
        return Cell(verdict_of(checks), tuple(checks))

    def row(self, prop: str) -> list[Cell]:
        return [self.cell(prop, leg, rt) for leg, rt in self.columns]

    def holds(self, prop: str) -> tuple[int, int]:
        """(columns where it passed or deviates as declared, columns where it was judged)."""
        cells = [c for c in self.row(prop) if c.verdict in ("pass", "deviates", "fail")]
        return sum(1 for c in cells if c.verdict != "fail"), len(cells)
