"""One typed model of what the verification suite found, from either result format.

Two inputs, both written by this project:

- ``results.json`` (schema ``isoproof-results/1``, ``verify/plugin.py`` ``write_results``): one run
  of the suite on one host, every runtime; each entry names its check, parameters and outcome and
  carries the check's measurements as a list.
- ``matrix.json`` (schema ``isoproof-matrix/1``, ``verify/matrix/merge.py``): legs (kernel x cgroup
  mode) with facts and status, and one record per test; the suite's measurements arrive there as
  pytest user properties, so they sit under ``isoproof_measurement`` (one dict, or a list of them).

Both become ``Report``: legs (a results.json is one leg), and per (leg, runtime, check) one
``CheckResult``. Loading is pure apart from reading the named files; anything unreadable or of the
wrong shape is a ``ReportError`` whose message is one line naming the file.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from runtime.errors import IsoproofError
from verify.matrix.merge import SCHEMA as MATRIX_SCHEMA
from verify.matrix.merge import label_id, runtime_from_id

RESULTS_SCHEMA = "isoproof-results/1"
# The plugin's user-property keys, as they reach matrix.json through verify.matrix.collect.
MEASUREMENT_KEY = "isoproof_measurement"
OUTCOME_KEY = "isoproof_outcome"
# Other user properties of the suite, and the results.json field each one becomes there.
EVIDENCE_KEYS = {"isoproof_evidence": "evidence", "isoproof_deviation": "deviation",
                 "isoproof_finding": "findings"}  # fmt: skip
NO_RUNTIME = "-"  # records of payloads that are not parametrised by runtime (the leg self-check)
# Exact outcomes folded into the four summary counts.
BUCKETS = {
    "passed": "passed",
    "xfailed": "passed",  # a known deviation, declared: not a failure of the gate
    "failed": "failed",
    "xpassed": "failed",
    "skipped": "skipped",
    "error": "error",
    "runtime_error": "error",
}
COUNT_KEYS = ("passed", "failed", "skipped", "error")
# Which of two outcomes of one test wins (as in verify.matrix.collect): the worse.
RANK = {"passed": 0, "xfailed": 1, "skipped": 1, "xpassed": 2, "failed": 3, "runtime_error": 3,
        "error": 4}  # fmt: skip
# A row of the grid: (module, check with its non-runtime parameters).
Row = tuple[str, str]
_MEASUREMENT_FIELDS = ("name", "expected", "measured", "tolerance", "unit", "ok", "series")
# Fields of a results.json entry / matrix record the model reads; any other field a newer suite
# writes (structured evidence on failure: cgroup files, command transcripts) is kept as evidence.
_ENTRY_FIELDS = {"nodeid", "check", "params", "when", "outcome", "duration_s", "measurements",
                 "reason", "message", "doc", "description", "leg", "kernel", "cgroup_mode",
                 "runtime", "phase", "test_id"}  # fmt: skip
# Top-level results.json fields the model reads; others (a host snapshot diff, ...) are kept.
_DOC_FIELDS = {"schema", "host", "runtimes", "session", "finished", "summary", "leak_check",
               "results"}  # fmt: skip


def bucket_of(outcome: str) -> str:
    """The summary count an outcome falls in; unknown outcomes are errors, except the spellings
    of a declared deviation, which a newer suite may use instead of xfailed."""
    if outcome in BUCKETS:
        return BUCKETS[outcome]
    return "passed" if "deviat" in outcome else "error"


def is_deviation(outcome: str) -> bool:
    return outcome == "xfailed" or "deviat" in outcome


class ReportError(IsoproofError):
    """Input the report cannot be made from; the message is one line and names the file."""


@dataclass(frozen=True)
class Measurement:
    name: str
    expected: Any = None
    measured: Any = None
    tolerance: Any = None
    unit: str = ""
    ok: bool | None = None
    # Check-specific values beside the main ones (requested/written/measured ratios, totals, ...).
    extra: dict[str, Any] = field(default_factory=dict)
    # Time series: "t" (seconds) and one list per sampled quantity.
    series: dict[str, list[float]] = field(default_factory=dict)


@dataclass(frozen=True)
class CheckResult:
    leg: str
    runtime: str
    row: str  # the check with its non-runtime parameters: the same row in every column
    module: str
    test_id: str
    outcome: str
    duration_s: float | None
    message: str | None  # skip reason or failure message
    doc: str | None
    measurements: tuple[Measurement, ...]
    # Fields of the entry beyond the ones above, as written (evidence on failure and the like).
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> Row:
        return (self.module, self.row)

    @property
    def bucket(self) -> str:
        return bucket_of(self.outcome)

    @property
    def check(self) -> str:
        """The check's function name (``test_io_throttle``)."""
        return self.row.partition("[")[0]


@dataclass(frozen=True)
class Leg:
    name: str
    kernel: str
    cgroup_mode: str
    source: str  # the input file it came from
    status: str | None = None  # matrix legs: passed, failed or error
    reason: str | None = None
    accel: str | None = None
    wall_s: float | None = None
    boot_s: float | None = None
    console_log: str | None = None  # as a path from where the report was made
    runtimes: tuple[str, ...] = ()
    leaks: tuple[str, ...] | None = None  # None: no leak check in this input
    facts: dict[str, Any] = field(default_factory=dict)  # everything else worth showing
    # Top-level results.json fields the model does not know (a host snapshot diff, ...), as written.
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class Report:
    sources: list[str] = field(default_factory=list)
    hosts: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (source, facts)
    runtime_versions: dict[str, str] = field(default_factory=dict)
    legs: list[Leg] = field(default_factory=list)
    results: list[CheckResult] = field(default_factory=list)

    def columns(self) -> list[tuple[str, str]]:
        """(leg, runtime) pairs in leg order, runtimes sorted; only pairs that have results."""
        seen = {(r.leg, r.runtime) for r in self.results}
        order = {leg.name: i for i, leg in enumerate(self.legs)}
        return sorted(seen, key=lambda c: (order.get(c[0], len(order)), c[1]))

    def rows(self) -> list[Row]:
        """The checks of the grid, sorted by module and name."""
        return sorted({r.key for r in self.results})

    def cell(self, leg: str, runtime: str, row: Row) -> CheckResult | None:
        return self._index.get((leg, runtime, row))

    @cached_property  # built on first use, after loading has finished
    def _index(self) -> dict[tuple[str, str, Row], CheckResult]:
        return {(r.leg, r.runtime, r.key): r for r in self.results}

    def counts(self, leg: str, runtime: str) -> dict[str, int]:
        c = dict.fromkeys(COUNT_KEYS, 0)
        for r in self.results:
            if r.leg == leg and r.runtime == runtime:
                c[r.bucket] += 1
        return c

    def leg(self, name: str) -> Leg | None:
        return next((leg for leg in self.legs if leg.name == name), None)


# --- reading ---------------------------------------------------------------------------------------


def read_json(path: Path) -> Any:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ReportError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ReportError(f"{path}: is a directory") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ReportError(f"{path}: cannot read: {e}") from None
    try:
        return json.loads(text)
    except ValueError as e:
        raise ReportError(f"{path}: not JSON ({e})") from None


def _check_schema(path: Path, doc: Any, want: str, flag: str) -> None:
    got = doc.get("schema") if isinstance(doc, dict) else None
    if got == want:
        return
    other = {RESULTS_SCHEMA: "--results", MATRIX_SCHEMA: "--matrix"}.get(str(got))
    hint = f"; pass it with {other}" if other and other != flag else ""
    raise ReportError(f"{path}: schema {got!r}, expected {want!r}{hint}")


def _need(path: Path, where: str, value: Any, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ReportError(f"{path}: {where}: expected {names}, got {type(value).__name__}")
    return value


def _measurement(path: Path, where: str, raw: Any) -> Measurement:
    m = _need(path, where, raw, dict)
    series = m.get("series") or {}
    series = _need(path, f"{where}.series", series, dict)
    clean: dict[str, list[float]] = {}
    for key in sorted(series):
        values = _need(path, f"{where}.series.{key}", series[key], list)
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            clean[str(key)] = [float(v) for v in values]
    ok = m.get("ok")
    return Measurement(
        name=str(m.get("name", "")),
        expected=m.get("expected"),
        measured=m.get("measured"),
        tolerance=m.get("tolerance"),
        unit=str(m.get("unit") or ""),
        ok=ok if isinstance(ok, bool) else None,
        extra={k: v for k, v in sorted(m.items()) if k not in _MEASUREMENT_FIELDS},
        series=clean,
    )


def _module(test_id: str) -> str:
    """``checks/test_resources.py::test_x[...]`` -> ``resources``."""
    stem = Path(test_id.split("::")[0]).stem
    return stem.removeprefix("test_") or stem


def _row(test_id: str, runtime: str | None) -> str:
    """The test's name with the runtime taken out of its parameters, so that the same check on
    every runtime and leg lands in the same row (``test_io[io-10m-oci-runc]`` -> ``test_io[io-10m]``)."""
    name = test_id.split("::")[-1]
    base, _, params = name.partition("[")
    params = params.removesuffix("]")
    if runtime is not None and params:
        for token in dict.fromkeys((label_id(runtime), runtime)):
            params, n = re.subn(rf"(^|-){re.escape(token)}(-|$)", _join_dash, params, count=1)
            if n:
                break
    return f"{base}[{params}]" if params else base


def _join_dash(m: re.Match[str]) -> str:
    return "-" if m.group(1) and m.group(2) else ""


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _duration(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


# --- results.json ----------------------------------------------------------------------------------


def load_results(path: Path, leg_name: str) -> Report:
    """One results.json as a one-leg report."""
    doc = read_json(path)
    _check_schema(path, doc, RESULTS_SCHEMA, "--results")
    host = _need(path, "host", doc.get("host", {}), dict)
    versions = _need(path, "runtimes", doc.get("runtimes", {}), dict)
    entries = _need(path, "results", doc.get("results", []), list)
    leak = doc.get("leak_check")
    leaks = None
    if isinstance(leak, dict):
        leaks = tuple(str(x) for x in leak.get("leaks") or ())
    report = Report(sources=[str(path)])
    report.runtime_versions = {str(k): str(v) for k, v in versions.items()}
    facts = {k: v for k, v in host.items() if k not in ("kernel", "cgroup_mode")}
    facts |= {k: doc[k] for k in ("session", "finished") if k in doc}
    report.hosts.append((str(path), dict(host)))
    report.legs.append(
        Leg(
            name=leg_name,
            kernel=str(host.get("kernel", "?")),
            cgroup_mode=str(host.get("cgroup_mode", "?")),
            source=str(path),
            runtimes=tuple(sorted(report.runtime_versions)),
            leaks=leaks,
            facts=facts,
            extras={k: v for k, v in doc.items() if k not in _DOC_FIELDS},
        )
    )
    labels = list(report.runtime_versions)
    by_id: dict[str, CheckResult] = {}
    for i, raw in enumerate(entries):
        where = f"results[{i}]"
        e = _need(path, where, raw, dict)
        test_id = _need(path, f"{where}.nodeid", e.get("nodeid"), str)
        outcome = _need(path, f"{where}.outcome", e.get("outcome"), str)
        ms = _need(path, f"{where}.measurements", e.get("measurements") or [], list)
        runtime = runtime_from_id(test_id, labels)
        result = CheckResult(
            leg=leg_name,
            runtime=runtime or NO_RUNTIME,
            row=_row(test_id, runtime),
            module=_module(test_id),
            test_id=test_id,
            outcome=outcome,
            duration_s=_duration(e.get("duration_s")),
            message=_text(e.get("reason") or e.get("message")),
            doc=_text(e.get("doc") or e.get("description")),
            measurements=tuple(
                _measurement(path, f"{where}.measurements[{j}]", m) for j, m in enumerate(ms)
            ),
            evidence={k: v for k, v in e.items() if k not in _ENTRY_FIELDS},
        )
        by_id[test_id] = _worse(by_id.get(test_id), result)
    report.results = list(by_id.values())
    return report


def _worse(old: CheckResult | None, new: CheckResult) -> CheckResult:
    """The suite writes a second entry for a test whose teardown failed after its call passed: one
    result per test, the worse outcome with its message. Each entry carries every measurement the
    test had recorded by then, so the longer list is all of them."""
    if old is None:
        return new
    worst = new if RANK.get(new.outcome, 4) > RANK.get(old.outcome, 4) else old
    return replace(
        worst,
        evidence=old.evidence | new.evidence,
        duration_s=(old.duration_s or 0.0) + (new.duration_s or 0.0),
        measurements=max(old.measurements, new.measurements, key=len),
    )


# --- matrix.json -----------------------------------------------------------------------------------


def _matrix_measurements(
    path: Path, where: str, raw: Any
) -> tuple[str | None, list[Measurement], dict[str, Any]]:
    """(outcome override, measurements, evidence) from a matrix record's property dict."""
    props = _need(path, where, raw or {}, dict)
    out: list[Measurement] = []
    evidence: dict[str, Any] = {}
    override = None
    for key in sorted(props):
        value = props[key]
        if key == OUTCOME_KEY:
            override = str(value[-1] if isinstance(value, list) else value)
        elif key in EVIDENCE_KEYS:  # as results.json has them: findings a list, the rest the last
            many = value if isinstance(value, list) else [value]
            name = EVIDENCE_KEYS[key]
            evidence[name] = many if name == "findings" else many[-1]
        elif key == MEASUREMENT_KEY:
            items = value if isinstance(value, list) else [value]
            out += [_measurement(path, f"{where}.{key}", m) for m in items]
        else:  # a plain record_property of any other pytest payload
            out.append(Measurement(name=str(key), measured=value))
    return override, out, evidence


def _suite_extras(
    base: Path, paths: list[Any]
) -> tuple[dict[str, str], tuple[str, ...] | None, dict[str, Any]]:
    """Runtime versions, the leak check and other top-level checks (the host snapshot) from the
    suite's own results.json files of a leg, which matrix.json lists but does not copy. They are
    extras: a file that is gone (the result set was moved without its legs/ directory) or
    unreadable is passed over."""
    versions: dict[str, str] = {}
    leaks: list[str] | None = None
    extras: dict[str, Any] = {}
    for rel in paths:
        try:
            doc = json.loads((base / str(rel)).read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(doc, dict) or doc.get("schema") != RESULTS_SCHEMA:
            continue
        if isinstance(doc.get("runtimes"), dict):
            versions |= {str(k): str(v) for k, v in doc["runtimes"].items()}
        leak = doc.get("leak_check")
        if isinstance(leak, dict):
            leaks = (leaks or []) + [str(x) for x in leak.get("leaks") or ()]
        for key, value in doc.items():
            if key not in _DOC_FIELDS and (key not in extras or value_is_bad(value)):
                extras[key] = value  # several runs of a leg: a failed check wins
    return versions, None if leaks is None else tuple(leaks), extras


def value_is_bad(value: Any) -> bool:
    return isinstance(value, dict) and value.get("ok") is False


def load_matrix(path: Path) -> Report:
    return load_matrix_doc(read_json(path), path)


def load_matrix_doc(doc: Any, path: Path = Path("matrix.json")) -> Report:
    """A matrix result set already read (``path`` names it in errors and finds its legs)."""
    _check_schema(path, doc, MATRIX_SCHEMA, "--matrix")
    host = _need(path, "host", doc.get("host", {}), dict)
    legs = _need(path, "legs", doc.get("legs", []), list)
    records = _need(path, "results", doc.get("results", []), list)
    base = path.parent
    report = Report(sources=[str(path)])
    report.hosts.append(
        (str(path), dict(host) | {k: doc[k] for k in ("created", "wall_s", "jobs") if k in doc})
    )
    for i, raw in enumerate(legs):
        s = _need(path, f"legs[{i}]", raw, dict)
        name = _need(path, f"legs[{i}].leg", s.get("leg"), str)
        console = s.get("console_log") or None
        versions, leaks, extras = _suite_extras(base, s.get("suite_results") or [])
        for label, version in versions.items():
            report.runtime_versions.setdefault(label, version)
        facts = {
            k: s[k]
            for k in ("kernel_package", "kernel_version", "kernel_sha256", "v1_unavailable", "dir")
            if s.get(k)
        }
        report.legs.append(
            Leg(
                name=name,
                kernel=str(s.get("kernel", "?")),
                cgroup_mode=str(s.get("cgroup_mode", "?")),
                source=str(path),
                status=_text(s.get("status")),
                reason=_text(s.get("reason")),
                accel=_text(s.get("accel")),
                wall_s=_duration(s.get("wall_s")),
                boot_s=_duration(s.get("boot_s")),
                console_log=str(base / console) if console else None,
                runtimes=tuple(str(r) for r in s.get("runtimes") or ()),
                leaks=leaks,
                facts=facts,
                extras=extras,
            )
        )
    for i, raw in enumerate(records):
        where = f"results[{i}]"
        r = _need(path, where, raw, dict)
        leg = _need(path, f"{where}.leg", r.get("leg"), str)
        test_id = _need(path, f"{where}.test_id", r.get("test_id"), str)
        outcome = _need(path, f"{where}.outcome", r.get("outcome"), str)
        runtime = _need(path, f"{where}.runtime", r.get("runtime"), (str, type(None)))
        override, ms, found = _matrix_measurements(
            path, f"{where}.measurements", r.get("measurements")
        )
        report.results.append(
            CheckResult(
                leg=leg,
                runtime=runtime or NO_RUNTIME,
                row=_row(test_id, runtime),
                module=_module(test_id),
                test_id=test_id,
                outcome=override or outcome,
                duration_s=_duration(r.get("duration_s")),
                message=_text(r.get("message")),
                doc=_text(r.get("doc") or r.get("description")),
                measurements=tuple(ms),
                evidence={k: v for k, v in r.items() if k not in _ENTRY_FIELDS} | found,
            )
        )
    return report


# --- several inputs --------------------------------------------------------------------------------


def results_path(arg: Path) -> Path:
    return arg / "results.json" if arg.is_dir() else arg


def matrix_path(arg: Path) -> Path:
    return arg / "matrix.json" if arg.is_dir() else arg


def _results_leg_name(path: Path, several: bool) -> str:
    """A results.json is the suite run on one host: "host", or with several of them the name of
    the directory each sits in (Vagrant's boxes: ``vagrant/v1/results.json`` -> ``v1``)."""
    return (path.parent.name or "host") if several else "host"


def load(results: list[Path], matrices: list[Path]) -> Report:
    """Every input as one report; leg names stay unique (a repeated results leg gets ``-2``...)."""
    parts = [load_matrix(matrix_path(p)) for p in matrices]
    taken: dict[str, str] = {}
    for part in parts:
        for leg in part.legs:
            if leg.name in taken:
                raise ReportError(
                    f"{leg.source}: leg {leg.name!r} is also in {taken[leg.name]}; "
                    "report each run separately"
                )
            taken[leg.name] = leg.source
    for p in results:
        path = results_path(p)
        name = base = _results_leg_name(path, len(results) > 1)
        n = 1
        while name in taken:
            n += 1
            name = f"{base}-{n}"
        part = load_results(path, name)
        taken[name] = str(path)
        parts.append(part)
    report = Report()
    for part in parts:
        report.sources += part.sources
        report.hosts += part.hosts
        report.legs += part.legs
        report.results += part.results
        for label, version in part.runtime_versions.items():
            report.runtime_versions.setdefault(label, version)
    return report
