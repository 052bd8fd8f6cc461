"""A run against a baseline run: what regressed, what was fixed, what is new.

Both runs are ``Report``s (a results.json or a matrix.json, either side). Checks are matched by
(leg, runtime, check row), properties by (property, leg, runtime); a results.json is the leg
``host`` on both sides, so two host runs line up, and so do two matrix runs of the same legs.

- ``regressed``: failed or errored now, and did not before (passed, skipped or deviated);
- ``fixed``: failed or errored before, and does not now;
- ``new``: not in the baseline;
- ``gone``: in the baseline only (a check removed, a leg or runtime not run this time);
- ``unchanged``: everything else.

A gate fails on any regression (``isoproof-report --baseline`` exits 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reports.model import Report
from reports.verdicts import Verdicts

KINDS = ("regressed", "fixed", "new", "gone", "unchanged")
# Outcomes of a check (its bucket) and verdicts of a property that count as broken.
BROKEN = {"failed", "error", "fail"}


def classify(before: str | None, after: str | None) -> str:
    if after is None:
        return "gone"
    if before is None:
        return "new"
    if after in BROKEN and before not in BROKEN:
        return "regressed"
    if before in BROKEN and after not in BROKEN:
        return "fixed"
    return "unchanged"


@dataclass
class Comparison:
    baseline: str  # where the baseline came from, for the page
    # (leg, runtime, (module, row)) -> (kind, outcome before, outcome after)
    checks: dict[tuple[str, str, tuple[str, str]], tuple[str, str | None, str | None]] = field(
        default_factory=dict
    )
    # (property id, leg, runtime) -> (kind, verdict before, verdict after)
    properties: dict[tuple[str, str, str], tuple[str, str | None, str | None]] = field(
        default_factory=dict
    )

    def counts(self, level: str) -> dict[str, int]:
        table = self.checks if level == "checks" else self.properties
        out = dict.fromkeys(KINDS, 0)
        for kind, _, _ in table.values():
            out[kind] += 1
        return out

    @property
    def regressed(self) -> bool:
        return any(k == "regressed" for k, _, _ in self.checks.values()) or any(
            k == "regressed" for k, _, _ in self.properties.values()
        )

    def check_kind(self, leg: str, runtime: str, row: tuple[str, str]) -> str | None:
        got = self.checks.get((leg, runtime, row))
        return got[0] if got else None

    def property_kind(self, prop: str, leg: str, runtime: str) -> str | None:
        got = self.properties.get((prop, leg, runtime))
        return got[0] if got else None


def _outcomes(report: Report) -> dict[tuple[str, str, tuple[str, str]], str]:
    return {(r.leg, r.runtime, r.key): r.bucket for r in report.results}


def _verdicts(report: Report) -> dict[tuple[str, str, str], str]:
    v = Verdicts(report)
    out = {}
    for prop in v.properties:
        for leg, rt in v.columns:
            verdict = v.cell(prop.id, leg, rt).verdict
            if verdict != "absent":
                out[(prop.id, leg, rt)] = verdict
    return out


def compare(current: Report, baseline: Report, source: str) -> Comparison:
    result = Comparison(baseline=source)
    now, before = _outcomes(current), _outcomes(baseline)
    for key in sorted(now.keys() | before.keys()):
        a, b = before.get(key), now.get(key)
        result.checks[key] = (classify(a, b), a, b)
    vnow, vbefore = _verdicts(current), _verdicts(baseline)
    for pkey in sorted(vnow.keys() | vbefore.keys()):
        a, b = vbefore.get(pkey), vnow.get(pkey)
        result.properties[pkey] = (classify(a, b), a, b)
    return result
