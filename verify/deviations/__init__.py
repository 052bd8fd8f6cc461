"""Known deviations: what a runtime is known to do differently from what a check requires.

One TOML file per runtime and version range (``verify/deviations/*.toml``, or ``--isoproof-
deviations DIR``)::

    runtime = "runc"                # the first word of the runtime's --version output
    versions = ">=1.1, <1.2"        # comparisons on the version number found in that output
    [[deviation]]
    check = "test_lifecycle_state_machine"
    why = "runc deletes a created container without --force"
    spec = "https://github.com/opencontainers/runtime-spec/blob/v1.0.2/runtime.md#delete"
    quote = "Attempting to delete a container that is not stopped MUST ..."
    strict = true                   # optional; false for a race that need not show every run

A matching check still runs. It is reported as "deviates as declared" (a strict xfail: only an
assertion failing counts, a runtime error is still an error), and if it passes, the run fails and
says the file is out of date. A deviation that only a race brings out (a known vulnerability of
that version, say) is declared ``strict = false``: a run in which it did not show passes, and says
the declared deviation was not observed. A malformed file stops the run with ``<file>: <field>: <problem>``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from pathlib import Path

ENV_DEVIATIONS = "ISOPROOF_DEVIATIONS"
TOP_KEYS = {"runtime", "versions", "deviation"}
DEVIATION_KEYS = {"check", "why", "spec", "quote", "strict"}
_CMP = re.compile(r"^\s*(>=|<=|==|>|<)\s*(\d+(?:\.\d+)*)\s*$")


class DeviationError(ValueError):
    """A malformed deviations file; the message names the file and the field."""


@dataclasses.dataclass(frozen=True)
class Deviation:
    file: str
    runtime: str
    versions: str
    check: str
    why: str
    spec: str
    quote: str
    strict: bool = True

    def as_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


def version_of(text: str) -> tuple[str, tuple[int, ...] | None]:
    """(name, version) from a ``--version`` line: ``runc version 1.1.5+ds1`` -> ("runc", (1, 1, 5))."""
    words = text.split()
    m = re.search(r"\d+(?:\.\d+)+", text)
    return (words[0] if words else ""), (
        tuple(int(x) for x in m.group(0).split(".")) if m else None
    )


def _pad(v: tuple[int, ...], n: int) -> tuple[int, ...]:
    return v + (0,) * (n - len(v))


def in_range(version: tuple[int, ...], spec: str) -> bool:
    """Every comma-separated comparison holds (``>=1.1, <1.2``); missing parts count as 0."""
    for part in spec.split(","):
        m = _CMP.match(part)
        if m is None:
            raise ValueError(f"{part.strip()!r} is not a comparison like >=1.1")
        want = tuple(int(x) for x in m.group(2).split("."))
        n = max(len(want), len(version))
        a, b = _pad(version, n), _pad(want, n)
        ok = {">=": a >= b, "<=": a <= b, "==": a == b, ">": a > b, "<": a < b}[m.group(1)]
        if not ok:
            return False
    return True


def parse(path: Path, text: str | None = None) -> list[Deviation]:
    where = str(path)

    def bad(field: str, problem: str) -> DeviationError:
        return DeviationError(f"{where}: {field}: {problem}")

    try:
        doc = tomllib.loads(path.read_text() if text is None else text)
    except tomllib.TOMLDecodeError as e:
        raise DeviationError(f"{where}: not valid TOML: {e}") from None
    except OSError as e:
        raise DeviationError(f"{where}: cannot read: {e.strerror}") from None
    for k in doc:
        if k not in TOP_KEYS:
            raise bad(k, f"unknown field (known: {', '.join(sorted(TOP_KEYS))})")
    runtime, versions = doc.get("runtime"), doc.get("versions", ">=0")
    if not isinstance(runtime, str) or not runtime:
        raise bad("runtime", "must be the runtime's name, as the first word of its --version")
    if not isinstance(versions, str):
        raise bad("versions", f"must be a string like '>=1.1, <1.2', got {versions!r}")
    try:
        in_range((0,), versions)
    except ValueError as e:
        raise bad("versions", str(e)) from None
    raw = doc.get("deviation")
    if not isinstance(raw, list) or not raw:
        raise bad("deviation", "needs at least one [[deviation]] table")
    out = []
    for i, d in enumerate(raw):
        f = f"deviation[{i}]"
        if not isinstance(d, dict):
            raise bad(f, "must be a table")
        for k in d:
            if k not in DEVIATION_KEYS:
                raise bad(f"{f}.{k}", f"unknown field (known: {', '.join(sorted(DEVIATION_KEYS))})")
        for k in ("check", "why"):
            if not isinstance(d.get(k), str) or not d[k].strip():
                raise bad(f"{f}.{k}", "required, a non-empty string")
        if not (d.get("spec") or d.get("quote")):
            raise bad(f, "needs spec (a link) or quote (the text it departs from), or both")
        if not isinstance(d.get("strict", True), bool):
            raise bad(f"{f}.strict", "must be true or false")
        out.append(Deviation(file=where, runtime=runtime, versions=versions, check=d["check"],
                             why=d["why"].strip(), spec=str(d.get("spec", "")),
                             quote=" ".join(str(d.get("quote", "")).split()),
                             strict=d.get("strict", True)))  # fmt: skip
    return out


def default_dir() -> Path:
    return Path(os.environ.get(ENV_DEVIATIONS) or Path(__file__).resolve().parent)


def load_all(directory: Path | None = None) -> list[Deviation]:
    d = directory or default_dir()
    if not d.is_dir():
        raise DeviationError(f"{d}: deviations directory not found (set ${ENV_DEVIATIONS})")
    return [x for p in sorted(d.glob("*.toml")) for x in parse(p)]


def matching(deviations: list[Deviation], version_line: str) -> dict[str, Deviation]:
    """check name -> the deviation declared for the runtime that printed ``version_line``."""
    name, version = version_of(version_line)
    out = {}
    for d in deviations:
        if d.runtime == name and version is not None and in_range(version, d.versions):
            out[d.check] = d
    return out
