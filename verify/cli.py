"""``isoproof verify`` / ``python -m verify.cli``: run the verification suite.

The suite's own options come first (``--help``); anything else pytest understands passes through
(``--pytest-help`` lists it). What can be checked before pytest starts is checked here, so a typo
or a runtime that is not there is one line and exit 2, with nothing started. Results go to
``.isoproof-results/`` unless told otherwise.
"""

from __future__ import annotations

import difflib
import os
import sys
from pathlib import Path
from typing import Any

USAGE_ERROR = 2
HELP = """\
usage: isoproof verify [--runtime LABEL]... [options] [pytest options]

Prove, from the host, that containers made by a runtime are isolated: namespaces, cgroup limits
under load, the security baseline, the lifecycle verbs. Exit 0 when every check passes (or
deviates as declared), 1 when one fails or the suite left something behind, 2 on bad input.

suite options:
  --runtime LABEL       runtime to verify (repeatable): oci:PATH (any runc-compatible binary),
                        isoproof, docker, podman; default $ISOPROOF_VERIFY_RUNTIMES or oci:runc
  --results DIR         results.json, junit.xml, allure/ and report.html go here
                        (default $ISOPROOF_RESULTS or .isoproof-results)
  --scenarios DIR       scenario TOML files for the limit checks (default: the shipped ones)
  --deviations DIR      known-deviation TOML files (default: the shipped verify/deviations/)
  --baseline PATH       an earlier results.json or matrix.json (or its directory): report.html
                        marks what regressed, was fixed or is new; exit 1 on a regression
  --workdir DIR         bundles and runtime state (default /var/tmp/isoproof-verify-<session>)
  -k EXPR               only the checks matching EXPR (e.g. -k uts, -k "cpu and not quota")
  -n N                  run on N processes (pytest-xdist); timing checks still run alone
  --list                print the checks (name, property, kind) and exit
  --version             print the suite's version and exit
  --pytest-help         pytest's own options, which all pass through
  -h, --help            this help

Each check prints one line as it finishes: [done/total] outcome, check, runtime, duration.
See verify/README.md for results.json, scenarios and known deviations.
"""
# Short spellings of the suite's options -> the plugin's own names.
ALIASES = {
    "--results": "--isoproof-results",
    "--scenarios": "--isoproof-scenarios",
    "--deviations": "--isoproof-deviations",
    "--workdir": "--isoproof-workdir",
    "--baseline": "--isoproof-baseline",
}


class BadInput(Exception):
    """One line for the user; exit 2."""


def build_argv(argv: list[str], progress: bool = True) -> list[str]:
    args = list(argv)
    if not any(a == "--isoproof-results" or a.startswith("--isoproof-results=") for a in args):
        args += ["--isoproof-results", os.environ.get("ISOPROOF_RESULTS", ".isoproof-results")]
    if progress:
        args = ["--isoproof-progress", "-o", "console_output_style=classic", *args]
    # Run from any directory: the checks are found as a package, with no project config files.
    return ["-p", "verify.plugin", "--rootdir", os.path.dirname(os.path.abspath(__file__)),
            "-c", os.devnull, "-p", "no:cacheprovider", "--pyargs", "verify.checks", *args]  # fmt: skip


def expand_aliases(argv: list[str]) -> list[str]:
    out = []
    for a in argv:
        name, eq, value = a.partition("=")
        out.append(ALIASES[name] + eq + value if name in ALIASES else a)
    return out


def runtime_labels(argv: list[str]) -> list[str]:
    labels = []
    for i, a in enumerate(argv):
        if a == "--runtime":
            if i + 1 >= len(argv) or argv[i + 1].startswith("-"):
                raise BadInput("--runtime needs a value (oci:PATH, isoproof, docker, podman)")
            labels.append(argv[i + 1])
        elif a.startswith("--runtime="):
            labels.append(a.partition("=")[2])
    return labels


def option_values(argv: list[str], name: str) -> list[str]:
    """The values given to option ``name`` (``name VALUE`` or ``name=VALUE``)."""
    values = []
    for i, a in enumerate(argv):
        if a == name:
            if i + 1 >= len(argv) or argv[i + 1].startswith("-"):
                raise BadInput(f"{name.replace('--isoproof-', '--')} needs a value")
            values.append(argv[i + 1])
        elif a.startswith(f"{name}="):
            values.append(a.partition("=")[2])
    return values


def check_baseline(path: str) -> None:
    """A baseline that is not there: refused before the run, not a warning after ten minutes."""
    p = Path(path)
    if not p.exists():
        raise BadInput(f"--baseline {path}: no such file or directory")


def check_runtime(label: str) -> None:
    """A label that names no runtime, or a runtime that is not there: refused before anything
    starts (the plugin alone would run the session and skip every check)."""
    from verify.drivers import make_driver
    from verify.drivers.base import find_binary

    try:
        make_driver(label, "x", Path("/nonexistent"), "x")
    except ValueError as e:
        raise BadInput(str(e)) from None
    binary = find_binary(label[4:] if label.startswith("oci:") else label)
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        where = f"no executable at {binary}" if "/" in binary else f"{binary} is not on PATH"
        raise BadInput(f"--runtime {label}: {where}")


def unknown_options(argv: list[str]) -> list[tuple[str, str | None]]:
    """Options neither pytest nor its plugins (this suite's included) know, each with the closest
    known one. Uses pytest's own parser with every installed plugin loaded; if that ever fails,
    nothing is reported here and pytest says it instead."""
    try:
        from _pytest.config import get_config

        args = build_argv(argv)
        config = get_config(args)
        pm = config.pluginmanager
        pm.consider_preparse(args, exclude_only=False)
        pm.load_setuptools_entrypoints("pytest11")
        parser: Any = config._parser
        _ns, unknown = parser.parse_known_and_unknown_args(args)
        names = [n for g in parser._groups for o in g.options for n in o.names()]
        names += [n for o in parser._anonymous.options for n in o.names()]
    except Exception:  # noqa: BLE001 - a private API changed: let pytest report it
        return []
    out = []
    for u in unknown:
        if u.startswith("-"):
            close = difflib.get_close_matches(u.split("=")[0], names, n=1)
            out.append((u, close[0] if close else None))
    return out


# --- --list ----------------------------------------------------------------------------------------

# (word of the check's name, property); the first match wins. A word with "_" matches as text.
PROPERTIES = [
    ("uts", "UTS namespace"), ("pids", "pids limit"), ("pid", "PID namespace"), ("pid1", "PID namespace"),
    ("mount", "mount namespace"), ("rootfs", "mount namespace"), ("ipc", "IPC namespace"),
    ("network", "network namespace"), ("user", "user namespace"), ("cgroup_namespace",
    "cgroup namespace"), ("cpu", "CPU"), ("memory", "memory limit"), ("page_cache",
    "memory limit"), ("io", "I/O throttle"), ("pause", "freezer"), ("seccomp", "seccomp"),
    ("lifecycle", "lifecycle verbs"),
]  # fmt: skip
MODULE_PROPERTIES = {"test_security": "security baseline", "test_lifecycle": "engine lifecycle",
                     "test_escapes": "container escapes", "test_seccomp": "seccomp"}  # fmt: skip


def property_of(module: str, check: str) -> str:
    short = module.rsplit(".", 1)[-1]
    if short in MODULE_PROPERTIES:
        return MODULE_PROPERTIES[short]
    words = check.split("_")
    for word, prop in PROPERTIES:
        if ("_" in word and word in check) or word in words:
            return prop
    return short.removeprefix("test_")


def kind_of(item: Any) -> str:
    if item.get_closest_marker("timing"):
        return "timing (measured alone)"
    if getattr(getattr(item, "obj", None), "is_hypothesis_test", False):
        return "generated (hypothesis)"
    if item.get_closest_marker("scenario_check"):
        return "scenario"
    return "behaviour"


class Lister:
    """A pytest plugin object that keeps the collected checks."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], tuple[str, str, set[str]]] = {}

    def pytest_collection_finish(self, session: Any) -> None:
        for item in session.items:
            module = item.module.__name__
            name = getattr(item, "originalname", item.name)
            prop, kind, params = self.rows.get((module, name), ("", "", set()))
            sc = getattr(getattr(item, "callspec", None), "params", {}).get("scenario")
            if sc is not None:
                params.add(sc.id)
            self.rows[(module, name)] = (property_of(module, name), kind_of(item), params)


def list_checks(argv: list[str]) -> int:
    import pytest

    lister = Lister()
    rc = pytest.main([*build_argv(argv, progress=False), "--collect-only", "-p", "no:terminal"],
                     plugins=[lister])  # fmt: skip
    if rc not in (0, 5):  # 5: nothing selected
        return int(rc)
    width = max([len(n) for _m, n in lister.rows] + [5])
    print(f"{'check':<{width}}  {'property':<18}  kind")
    for (_module, name), (prop, kind, params) in lister.rows.items():
        extra = f"  [{', '.join(sorted(params))}]" if params else ""
        print(f"{name:<{width}}  {prop:<18}  {kind}{extra}")
    print(f"{len(lister.rows)} checks, run once per --runtime")
    return 0


# --- main ------------------------------------------------------------------------------------------


def version_line() -> str:
    from importlib.metadata import PackageNotFoundError, version

    import pytest

    try:
        v = version("isoproof")
    except PackageNotFoundError:
        v = "(not installed)"
    return f"isoproof verify {v} (pytest {pytest.__version__})"


def main(argv: list[str] | None = None) -> int:
    ours = expand_aliases(sys.argv[1:] if argv is None else argv)
    # "--" (isoproof verify --runtime X -- -k uts) only separates ours from pytest's, which all
    # pass through anyway; pytest would take what follows it for file names.
    ours = [a for a in ours if a != "--"]
    if "-h" in ours or "--help" in ours:
        print(HELP, end="")
        return 0
    if "--version" in ours:
        print(version_line())
        return 0
    import pytest

    if "--pytest-help" in ours:
        return int(pytest.main(build_argv(["--help"], progress=False)))
    listing = "--list" in ours
    ours = [a for a in ours if a != "--list"]
    try:
        for label in runtime_labels(ours):
            check_runtime(label)
        for path in option_values(ours, "--isoproof-baseline"):
            check_baseline(path)
        bad = unknown_options(ours)
        if bad:
            opt, close = bad[0]
            hint = f" (did you mean {close}?)" if close else ""
            raise BadInput(f"unknown option {opt}{hint}; see isoproof verify --help")
    except BadInput as e:
        print(f"isoproof verify: {e}", file=sys.stderr)
        return USAGE_ERROR
    # The option check above imported the plugins already, so pytest cannot rewrite their asserts
    # (none of them judge anything: the checks' modules are imported, and rewritten, later).
    ours = ["-W", "ignore::pytest.PytestAssertRewriteWarning", *ours]
    if listing:
        return list_checks(ours)
    return int(pytest.main(build_argv(ours)))


if __name__ == "__main__":
    sys.exit(main())
