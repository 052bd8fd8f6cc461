"""What the ``isoproof`` CLI says: docker-shaped errors and exit codes, tables, Go-like templates.

Pure functions over records (no engine, no I/O beyond printing), so they are unit-tested alone.
"""

from __future__ import annotations

import re
import sys
import time

from runtime import cjson
from runtime.engine import units
from runtime.engine.home import parse_time
from runtime.errors import IsoproofError

TYPE_CHECKING = False  # True for mypy only: importing typing costs ~3 ms on every CLI call
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


class Fail(IsoproofError):
    """A one-line error with an explicit exit code."""

    def __init__(self, msg: str, code: int = 1) -> None:
        super().__init__(msg)
        self.exit_code = code


def daemon(msg: str, code: int = 1) -> Fail:
    return Fail(f"Error response from daemon: {msg}", code)


def exec_code(msg: str) -> int:
    low = msg.lower()
    if any(
        k in low
        for k in (
            "executable file not found",
            "no such file or directory",
            "no such executable",
            "command not found",
        )
    ):
        return 127
    if "permission denied" in low:
        return 126
    return 125


def each(refs: list[str], fn: Callable[[str], None]) -> int:
    """docker's multi-target verbs: act on each, report errors, exit 1 if any failed."""
    rc = 0
    for ref in refs:
        try:
            fn(ref)
        except IsoproofError as e:
            print(str(e), file=sys.stderr)
            rc = 1
    return rc


def status_text(st: dict[str, Any]) -> str:
    s = st["Status"]
    if s == "dead":
        return f"Dead ({st.get('Error') or 'damaged'})"
    if s == "created":
        return "Created"
    if s in ("running", "paused"):
        up = units.human_duration(time.time() - parse_time(st["StartedAt"]))
        return f"Up {up}" + (" (Paused)" if s == "paused" else "")
    if s == "restarting":
        ago = units.human_duration(time.time() - parse_time(st["FinishedAt"]))
        return f"Restarting ({st['ExitCode']}) {ago} ago"
    if st["FinishedAt"] and parse_time(st["FinishedAt"]):
        ago = units.human_duration(time.time() - parse_time(st["FinishedAt"]))
        return f"Exited ({st['ExitCode']}) {ago} ago"
    return "Exited ({})".format(st["ExitCode"])


def render(template: str, obj: Any) -> str:
    """A tiny subset of Go templates: ``{{.A.B}}``, ``{{json .A}}``, ``{{.A}}`` with \\t and \\n."""

    def value(path: str) -> Any:
        cur = obj
        for part in [p for p in path.strip().lstrip(".").split(".") if p]:
            if isinstance(cur, dict) and part in cur:
                cur = cur[part]
            else:
                raise Fail(
                    f'template: :1: executing "" at <.{path.strip().lstrip(".")}>: map has no entry for key "{part}"'
                )
        return cur

    def sub(m: re.Match[str]) -> str:
        expr = m.group(1).strip()
        if expr.startswith("json "):
            return cjson.dumps(value(expr[5:]))
        v = value(expr)
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (dict, list)):
            return cjson.dumps(v)
        return str(v)

    return re.sub(r"\{\{(.*?)\}\}", sub, template.replace("\\t", "\t").replace("\\n", "\n"))


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for r in [header, *rows]:
        cells = [str(c).ljust(widths[i]) for i, c in enumerate(r)]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines)
