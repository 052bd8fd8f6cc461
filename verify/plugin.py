"""The isoproof verification suite as a pytest plugin.

Installed, it is registered through the ``pytest11`` entry point (as ``verify.plugin``, so an
explicit ``-p verify.plugin`` is the same plugin, not a second copy), and a runtime's own repository
runs the suite with::

    pytest -p no:cacheprovider --runtime oci:/usr/bin/crun --pyargs verify.checks

It stays inert in every other pytest run of the environment: it acts only when the suite's checks
are collected or one of its options is given. It parametrizes every check by ``--runtime``, applies the ``requires_*`` markers against host facts,
serialises timing-sensitive checks with a host-wide file lock, records evidence into
``DIR/results.json`` (plus JUnit XML and allure results), adds container state, runtime stderr and
cgroup files to failed reports, and fails the run if anything the suite made is left behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.errors import IsoproofError
from verify import host, snapshot
from verify.drivers import Driver, RuntimeFailure, Unavailable, label_id, make_driver

ENV_RUNTIMES = "ISOPROOF_VERIFY_RUNTIMES"  # comma-separated default for --runtime
ENV_RESULTS = "ISOPROOF_RESULTS"
ENV_WORKDIR = "ISOPROOF_VERIFY_WORKDIR"
DEFAULT_RUNTIME = "oci:runc"
LOCK_FILE = "/run/isoproof-verify.lock"
MEASUREMENT = "isoproof_measurement"
OUTCOME = "isoproof_outcome"
FINDING = "isoproof_finding"  # worth knowing, not a verdict (e.g. a conversion distorts a ratio)
LOCK_WAIT = "isoproof_lock_wait_s"  # seconds this check waited for the host-wide lock
DEVIATION = "isoproof_deviation"  # the declared deviation a check was run under
FAILURE_EVIDENCE = "isoproof_evidence"  # what the suite knew when a check failed
EVIDENCE_FILE = "isoproof_evidence_file"  # the same as a JSON file (DIR/evidence/), for JUnit
CHECKS_PACKAGE = "verify.checks"

MARKERS = [
    "requires_cgroup_v1: needs a host whose controllers are on cgroup v1 (legacy or hybrid)",
    "requires_cgroup_v2: needs a unified cgroup v2 host",
    "requires_controller(*names): needs these cgroup controllers",
    "requires_lifecycle: needs a driver with docker-like lifecycle verbs (stop, start, restart, logs)",
    "scenario_check(name): takes the scenarios of check `name` from scenarios/*.toml",
    "requires_block_device: needs a block device under the work directory for I/O throttling",
    "timing: measures time or throughput; holds the CPUs and the disk alone",
    "slow: takes more than a few seconds",
    "root: needs root",
]

# Cgroup files worth showing beside a failure (v1 name, v2 name).
REPORT_CGROUP_FILES = [
    ("memory", "memory.limit_in_bytes", "memory.max"),
    ("memory", "memory.usage_in_bytes", "memory.current"),
    ("memory", "memory.max_usage_in_bytes", "memory.peak"),
    ("memory", "memory.oom_control", "memory.events"),
    ("cpu", "cpu.shares", "cpu.weight"),
    ("cpu", "cpu.cfs_quota_us", "cpu.max"),
    ("cpuacct", "cpuacct.usage", "cpu.stat"),
    ("cpuset", "cpuset.cpus", "cpuset.cpus"),
    ("pids", "pids.max", "pids.max"),
    ("pids", "pids.current", "pids.current"),
    ("freezer", "freezer.state", "cgroup.freeze"),
    ("blkio", "blkio.throttle.write_bps_device", "io.max"),
    ("blkio", "blkio.throttle.read_bps_device", "io.stat"),
    ("blkio", "blkio.throttle.write_iops_device", "io.max"),
]


# --- options and configuration ------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("isoproof", "isoproof verification suite")
    g.addoption("--runtime", action="append", default=[], dest="isoproof_runtimes",
                help="runtime to verify: oci:PATH, isoproof, docker, podman (repeatable; default "
                     f"${ENV_RUNTIMES} or {DEFAULT_RUNTIME})")  # fmt: skip
    g.addoption("--isoproof-results", default=os.environ.get(ENV_RESULTS), metavar="DIR",
                help=f"write results.json, junit.xml and allure results here (${ENV_RESULTS})")  # fmt: skip
    g.addoption("--isoproof-scenarios", default=None, metavar="DIR",
                help="scenario directory (default $ISOPROOF_SCENARIOS or the scenarios isoproof ships)")  # fmt: skip
    g.addoption("--isoproof-workdir", default=os.environ.get(ENV_WORKDIR), metavar="DIR",
                help="where bundles and state go (default /var/tmp/isoproof-verify-<session>); must be "
                     "on a block device for the I/O checks")  # fmt: skip
    g.addoption("--isoproof-deviations", default=None, metavar="DIR",
                help="known-deviation files (default $ISOPROOF_DEVIATIONS or the ones isoproof "
                     "ships in verify/deviations/)")  # fmt: skip
    g.addoption("--isoproof-baseline", default=None, metavar="PATH",
                help="an earlier results.json or matrix.json (or its directory): the report "
                     "marks what regressed since, and a regression fails the run")  # fmt: skip
    g.addoption("--isoproof-progress", action="store_true", default=False,
                help="one line per check (outcome, name, runtime, duration, done/total) instead "
                     "of pytest's dots")  # fmt: skip


def active(config: pytest.Config) -> bool:
    """Whether this run is the suite's. Installed through pytest11, the plugin is loaded by every
    pytest run of its environment (the project's own unit tests too), where it must do nothing."""
    if config.getoption("isoproof_runtimes", None) or config.getoption("isoproof_results", None):
        return True
    args = [str(a) for a in config.invocation_params.args]
    return any(CHECKS_PACKAGE in a or "verify/checks" in a for a in args)


def is_check(item: pytest.Item) -> bool:
    module = getattr(item, "module", None)
    return module is not None and module.__name__.startswith(CHECKS_PACKAGE)


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def session_id(config: pytest.Config) -> str:
    if _is_worker(config):
        return str(config.workerinput["testrunuid"])[:8]  # type: ignore[attr-defined]
    return str(config.stash[_SESSION])


_SESSION = pytest.StashKey[str]()
_DRIVERS = pytest.StashKey[list[Driver]]()
_RESULTS = pytest.StashKey[list[dict[str, Any]]]()


def runtimes(config: pytest.Config) -> list[str]:
    labels = config.getoption("isoproof_runtimes") or [
        x.strip() for x in os.environ.get(ENV_RUNTIMES, DEFAULT_RUNTIME).split(",") if x.strip()
    ]
    return labels


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    for m in MARKERS:
        config.addinivalue_line("markers", m)
    if not active(config):
        return
    config.add_cleanup(interrupt_on_termination())  # the old handlers back at unconfigure
    base = config.getoption("isoproof_baseline")
    if base and not config.getoption("isoproof_results"):
        raise pytest.UsageError("--isoproof-baseline needs --isoproof-results (the run to compare)")
    if base and not Path(base).exists():  # refused now, not a warning after the whole run
        raise pytest.UsageError(f"--isoproof-baseline {base}: no such file or directory")
    _evidence_paths(config)
    if not _is_worker(config):
        uid = getattr(config.option, "testrunuid", None) or uuid.uuid4().hex
        if hasattr(config.option, "testrunuid"):
            config.option.testrunuid = uid  # the xdist workers get the same session id
        config.stash[_SESSION] = uid[:8]
        config.stash[_RESULTS] = []
        for label in runtimes(config):
            try:
                d = make_driver(label, "x", Path("/nonexistent"), "x")
            except ValueError as e:  # a bad label: one clear line, no traceback
                raise pytest.UsageError(str(e)) from None
            if d.kind == "oci":
                # A binary that is not there is a typo, not a reason to skip every check.
                # (An engine that is installed but not working still skips, with its reason.)
                try:
                    d.check_available()
                except Unavailable as e:
                    raise pytest.UsageError(f"--runtime {label}: {e}") from None
        _scenarios(config)  # a malformed scenario stops the run before anything is made
        _deviations(config)  # so does a malformed deviations file
    with contextlib.suppress(ImportError):
        from hypothesis.configuration import set_hypothesis_home_dir

        # Not a .hypothesis/ in the directory the suite was started from (a runtime's own
        # repository): the examples are derandomized and need no database.
        set_hypothesis_home_dir(str(workdir(config) / "isoproof-hypothesis"))


def interrupt_on_termination() -> Callable[[], None]:
    """Turn SIGTERM and SIGHUP into a KeyboardInterrupt; returns what puts the old handlers back.

    Why: a cancelled CI job, ``timeout`` or a closed terminal stop pytest with SIGTERM or SIGHUP,
    whose default action kills it on the spot: no finaliser runs, and containers, cgroups, netns
    and bridges stay on the host. A KeyboardInterrupt is pytest's orderly stop: every fixture is
    torn down, sessionfinish (the leak check) runs, exit status 2. Only the first signal counts, so
    that a second one cannot cut that teardown short (a handler, not SIG_IGN: children inherit it).
    """
    if getattr(signal.getsignal(signal.SIGTERM), "isoproof", False):
        return lambda: None  # installed already (tests/conftest.py and the plugin both ask)
    fired: list[int] = []

    def interrupt(signum: int, _frame: object) -> None:
        if not fired:
            fired.append(signum)
            raise KeyboardInterrupt(f"{signal.Signals(signum).name} received")

    interrupt.isoproof = True  # type: ignore[attr-defined]
    try:
        previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    except ValueError:  # pytest.main() from a thread: only the main thread may set handlers
        return lambda: None

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)

    return restore


def _evidence_paths(config: pytest.Config) -> None:
    results = config.getoption("isoproof_results")
    if not results:
        return
    d = Path(results).absolute()
    d.mkdir(parents=True, exist_ok=True)
    # Set before the junitxml/allure plugins read them (this hook runs first). Allure writes from
    # each xdist worker, JUnit from the controller only.
    if not _is_worker(config) and not getattr(config.option, "xmlpath", None):
        config.option.xmlpath = str(d / "junit.xml")
    if hasattr(config.option, "allure_report_dir") and not config.option.allure_report_dir:
        config.option.allure_report_dir = str(d / "allure")


def workdir(config: pytest.Config) -> Path:
    w = config.getoption("isoproof_workdir")
    # Not /run: on a real machine it is a tmpfs, where the page-cache check's file is unreclaimable
    # shmem (the writer is OOM-killed) and the I/O checks find no block device (seen in a fresh
    # Debian root). /var/tmp is on disk on Debian and Ubuntu.
    return Path(w) if w else Path(f"/var/tmp/isoproof-verify-{session_id(config)}")


def cgroup_parent(config: pytest.Config) -> str:
    return f"isoproof-verify-{session_id(config)}"


def pytest_report_header(config: pytest.Config) -> list[str]:
    if not active(config):
        return []
    f = host.facts()
    lines = [
        f"isoproof: kernel {f['kernel']} ({f['machine']}), {f['cpus']} CPUs, cgroup mode "
        f"{f['cgroup_mode']}, controllers: {' '.join(f['controllers'])}",  # type: ignore[arg-type]
    ]
    for label in runtimes(config):
        d = make_driver(label, "isoproof-hdr", workdir(config), cgroup_parent(config))
        try:
            d.check_available()
            lines.append(f"isoproof: runtime {label}: {d.version()}")
        except Unavailable as e:
            lines.append(f"isoproof: runtime {label}: unavailable ({e})")
    lines.append(f"isoproof: session {session_id(config)}, work dir {workdir(config)}")
    return lines


def _scenarios(config: pytest.Config) -> list[Any]:
    from verify.scenarios import ScenarioError, load_all

    d = config.getoption("isoproof_scenarios")
    try:
        return load_all(Path(d) if d else None)
    except ScenarioError as e:
        raise pytest.UsageError(f"bad scenario: {e}") from None


def _deviations(config: pytest.Config) -> list[Any]:
    from verify.deviations import DeviationError, load_all

    d = config.getoption("isoproof_deviations")
    try:
        return load_all(Path(d) if d else None)
    except DeviationError as e:
        raise pytest.UsageError(f"bad deviations file: {e}") from None


_VERSIONS: dict[str, str] = {}  # label -> the runtime's version line, asked once per process


def runtime_version(config: pytest.Config, label: str) -> str:
    if label not in _VERSIONS:
        _VERSIONS[label] = _version_of(config, label)
    return _VERSIONS[label]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Checks a runtime is declared to fail (verify/deviations/*.toml) run as strict xfails: only an
    assertion failing is the declared deviation (a runtime error stays an error), and a pass
    fails the run, so a stale declaration is noticed."""
    if not active(config):
        return
    declared = _deviations(config)
    if not declared:
        return
    from verify.deviations import matching

    for item in items:
        label = getattr(getattr(item, "callspec", None), "params", {}).get("runtime")
        if not is_check(item) or label is None:
            continue
        name = getattr(item, "originalname", None) or item.name.split("[")[0]
        dev = matching(declared, runtime_version(config, label)).get(name)
        if dev is None:
            continue
        item.add_marker(pytest.mark.xfail(
            reason=f"deviates as declared in {Path(dev.file).name}: {dev.why}", strict=dev.strict,
            raises=AssertionError))  # fmt: skip
        item.user_properties.append((DEVIATION, dev.as_dict()))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if not metafunc.module.__name__.startswith(CHECKS_PACKAGE):
        return
    if "scenario" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("scenario_check")
        if marker is None:
            raise pytest.UsageError(
                f"{metafunc.function.__name__} takes a scenario but has no scenario_check marker"
            )
        found = [s for s in _scenarios(metafunc.config) if s.check == marker.args[0]]
        metafunc.parametrize("scenario", found, ids=[s.id for s in found])
    if "runtime" in metafunc.fixturenames:
        labels = runtimes(metafunc.config)
        metafunc.parametrize("runtime", labels, ids=[label_id(x) for x in labels], indirect=True)


# --- skips from host facts ----------------------------------------------------------------------


def skip_reason(item: pytest.Item) -> str | None:
    lay = host.layout()
    if item.get_closest_marker("requires_cgroup_v1") and lay.version != 1:
        return f"needs cgroup v1 controllers; host is {lay.mode}"
    if item.get_closest_marker("requires_cgroup_v2") and lay.version != 2:
        return f"needs unified cgroup v2; host is {lay.mode}"
    for m in item.iter_markers("requires_controller"):
        missing = [c for c in m.args if not lay.has_controller(c)]
        if missing:
            return (f"needs cgroup controller(s) {', '.join(missing)}; host ({lay.mode}) has "
                    f"{' '.join(lay.controllers())}")  # fmt: skip
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    if not is_check(item):
        return
    reason = skip_reason(item)
    if reason:
        pytest.skip(reason)
    if os.geteuid() != 0:
        pytest.skip(f"needs root (namespaces, cgroups); running as uid {os.geteuid()}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, Any, None]:
    """Timing checks hold the CPUs and the disk alone: they take a host-wide file lock
    exclusively, every other check takes it shared. So no other xdist worker (or concurrent suite)
    creates containers or burns CPU while a CPU split or a throughput is measured."""
    if item.get_closest_marker("root") is None or not is_check(item):
        yield
        return
    mode = fcntl.LOCK_EX if item.get_closest_marker("timing") else fcntl.LOCK_SH
    with open(LOCK_FILE, "a") as lock:
        t0 = time.monotonic()
        fcntl.flock(lock, mode)
        # Time spent waiting for other suites' timing checks: not this check's own cost (bench).
        item.user_properties.append((LOCK_WAIT, round(time.monotonic() - t0, 3)))
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, None]:
    """A driver that cannot express what a check asks for (Unavailable) skips it, with its reason."""
    outcome = yield
    exc = outcome.exception
    if isinstance(exc, Unavailable):
        outcome.force_exception(pytest.skip.Exception(str(exc), _use_item_location=True))


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture
def runtime(request: pytest.FixtureRequest) -> Iterator[Driver]:
    """A driver for the runtime under test; everything it made is removed afterwards, pass or fail."""
    label = request.param
    config = request.config
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw")
    n = len(request.node.stash.get(_DRIVERS, []))
    prefix = f"isoproof-{session_id(config)}-{worker}-{_test_counter()}{n}"
    d = make_driver(label, prefix, workdir(config), cgroup_parent(config))
    try:
        d.check_available()
    except Unavailable as e:
        pytest.skip(str(e))
    request.node.stash.setdefault(_DRIVERS, []).append(d)
    yield d
    d.cleanup()
    left = d.leftovers()
    if left:
        pytest.fail("left behind after the test: " + "; ".join(left), pytrace=False)


_counter = 0


def _test_counter() -> int:
    global _counter
    _counter += 1
    return _counter


class Evidence:
    """What a check measured; goes into results.json, the JUnit properties and the allure report."""

    def __init__(self, item: pytest.Item) -> None:
        self.item = item

    def __repr__(self) -> str:  # hypothesis prints the arguments of a failing example
        return "<evidence>"

    def record(self, name: str, *, expected: Any = None, measured: Any = None,
               tolerance: Any = None, unit: str = "", ok: bool | None = None,
               series: dict[str, list[Any]] | None = None, **extra: Any) -> dict[str, Any]:  # fmt: skip
        m = {"name": name, "expected": expected, "measured": measured, "tolerance": tolerance,
             "unit": unit, "ok": ok, **extra}  # fmt: skip
        if series:
            m["series"] = series
        self.item.user_properties.append((MEASUREMENT, m))
        return m

    def finding(self, text: str, **data: Any) -> None:
        """Something worth knowing beside the verdict, which it does not change: a plain sentence
        plus the numbers behind it. Listed under ``findings`` in results.json."""
        self.item.user_properties.append((FINDING, {"text": text, **data}))


@pytest.fixture
def evidence(request: pytest.FixtureRequest) -> Evidence:
    return Evidence(request.node)


# --- reports --------------------------------------------------------------------------------------

# /proc/PID/status fields of the init worth keeping beside a failure.
STATUS_FIELDS = ("Name", "State", "Pid", "PPid", "NSpid", "Uid", "Gid", "Groups", "CapInh", "CapPrm",
                 "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp", "Cpus_allowed_list",
                 "VmRSS", "Threads")  # fmt: skip


def cgroup_files(c: Any) -> dict[str, str]:
    """The container's cgroup files that bear on limits, by path (absent ones left out)."""
    out = {}
    v2 = host.layout().version == 2
    for ctrl, v1name, v2name in REPORT_CGROUP_FILES:
        try:
            p = c.cgroup_file(ctrl, v2name if v2 else v1name)
            out[str(p)] = p.read_text().strip()
        except (KeyError, OSError):
            continue
    return out


def init_status(pid: int) -> dict[str, str]:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError as e:
        return {"error": f"/proc/{pid}/status: {e.strerror}"}
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {k: fields[k].strip() for k in STATUS_FIELDS if k in fields}


def namespaces_compared(pid: int) -> dict[str, dict[str, Any]]:
    """Each namespace of the init against the suite's own (the host's): inode numbers and whether
    they are the same namespace."""
    out: dict[str, dict[str, Any]] = {}
    for ns in ("cgroup", "ipc", "mnt", "net", "pid", "user", "uts"):
        try:
            mine = os.stat(f"/proc/{pid}/ns/{ns}").st_ino
            hosts = os.stat(f"/proc/self/ns/{ns}").st_ino
        except OSError:
            continue
        out[ns] = {"container": mine, "host": hosts, "shared_with_host": mine == hosts}
    return out


def failure_evidence(drivers: list[Driver]) -> dict[str, Any]:
    """What the suite knows at a failure, as data: per container its state, the cgroup files, the
    init's /proc status and namespaces against the host's; per runtime the command transcript."""
    containers = []
    transcript = []
    for d in drivers:
        for c in d.containers:
            entry: dict[str, Any] = {"name": c.name, "runtime": d.label, "init_pid": c.pid,
                                     "state": d.describe(c), "cgroup_files": cgroup_files(c)}  # fmt: skip
            if c.pid and c.alive():
                entry["init_status"] = init_status(c.pid)
                entry["namespaces"] = namespaces_compared(c.pid)
            containers.append(entry)
        transcript += [{"runtime": d.label, **x} for x in d.log[-20:]]
    return {"containers": containers, "transcript": transcript}


def _text_of(evidence: dict[str, Any]) -> list[tuple[str, str]]:
    """The same evidence as console sections."""
    out = []
    for c in evidence["containers"]:
        out.append((f"container {c['name']} state", str(c["state"])))
        files = "\n".join(f"{k}: {v}" for k, v in c["cgroup_files"].items())
        out.append((f"container {c['name']} cgroup files", files or "(no cgroup files readable)"))
        if "namespaces" in c:
            shared = [ns for ns, v in c["namespaces"].items() if v["shared_with_host"]]
            out.append((f"container {c['name']} namespaces",
                        f"shared with the host: {', '.join(shared) or 'none'}"))  # fmt: skip
    if evidence["transcript"]:
        out.append(
            ("runtime commands", "\n".join(format_command(x) for x in evidence["transcript"]))
        )
    return out


def format_command(x: dict[str, Any]) -> str:
    rc = "timed out" if x.get("exit") is None else f"exit {x['exit']}"
    head = f"$ {' '.join(x.get('argv', []))}  ({rc}, {x.get('duration_s', '?')}s)"
    return head + (f"\n  {x['stderr']}" if x.get("stderr") else "")


def plain_message(text: str) -> str:
    """A failure message as a sentence: the check's own words, without pytest's assertion
    introspection (``assert 1 != 1`` + ``where 1 = <function ns_inode at 0x...>``)."""
    # "AssertionError: " or "verify.drivers.base.RuntimeFailure: ": the words matter, not the class.
    text = re.sub(r"^[\w.]*(Error|Failure|Exception): ", "", text.strip())
    lines = text.splitlines()
    keep = [lines[0]] if lines else []
    for line in lines[1:]:
        if line.startswith(("assert ", "+", " +", "where ")) or line.strip().startswith("+"):
            break
        keep.append(line)
    return "\n".join(keep).strip()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if not is_check(item):
        return
    # Travels with the report to an xdist controller (extra attributes are serialised with it).
    report.isoproof_check = True  # type: ignore[attr-defined]
    if call.excinfo is not None and call.excinfo.errisinstance(RuntimeFailure):
        report.user_properties.append((OUTCOME, "runtime_error"))
        report.sections.append(
            ("runtime error", str(getattr(call.excinfo.value, "stderr", "") or call.excinfo.value))
        )
    deviated = call.when == "call" and hasattr(report, "wasxfail")
    if (report.failed or deviated) and call.when == "call":
        ev = failure_evidence(item.stash.get(_DRIVERS, []))
        report.user_properties.append((FAILURE_EVIDENCE, ev))
        report.sections += _text_of(ev)
        _attach_allure_evidence(ev)
        results = item.config.getoption("isoproof_results")
        if results:
            # JUnit has no attachments of its own: the evidence as a file beside it, named in a
            # property of the test case.
            name = re.sub(r"[^\w.-]+", "_", item.nodeid.split("::", 1)[-1]) + ".json"
            path = Path(results).absolute() / "evidence" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(ev, indent=2, default=str))
            report.user_properties.append((EVIDENCE_FILE, str(path)))
            # The item's own list reaches JUnit (written from the teardown report).
            item.user_properties.append((EVIDENCE_FILE, str(path)))
    if report.failed or report.when == "call":
        _attach_allure(item, report)


def _attach_allure(item: pytest.Item, report: pytest.TestReport) -> None:
    try:
        import allure
    except ImportError:
        return
    ms = [v for k, v in item.user_properties if k == MEASUREMENT]
    if ms:
        with contextlib.suppress(Exception):  # allure may not be active for this run
            allure.attach(json.dumps(ms, indent=2, default=str), name="isoproof measurements",
                          attachment_type=allure.attachment_type.JSON)  # fmt: skip


def _attach_allure_evidence(ev: dict[str, Any]) -> None:
    try:
        import allure
    except ImportError:
        return
    with contextlib.suppress(Exception):  # allure may not be active for this run
        allure.attach(json.dumps(ev, indent=2, default=str), name="isoproof failure evidence",
                      attachment_type=allure.attachment_type.JSON)  # fmt: skip
        for c in ev["containers"]:
            files = "\n".join(f"{k}: {v}" for k, v in c["cgroup_files"].items())
            allure.attach(files, name=f"cgroup files of {c['name']}",
                          attachment_type=allure.attachment_type.TEXT)  # fmt: skip
        if ev["transcript"]:
            allure.attach("\n".join(format_command(x) for x in ev["transcript"]),
                          name="runtime commands", attachment_type=allure.attachment_type.TEXT)  # fmt: skip


def _props(report: pytest.TestReport, key: str) -> list[Any]:
    return [v for k, v in report.user_properties if k == key]


def result_entry(report: pytest.TestReport) -> dict[str, Any]:
    """One check's record in results.json (pure: unit tests build it from a recorded report)."""
    outcome = (_props(report, OUTCOME) or [report.outcome])[-1]
    deviation = (_props(report, DEVIATION) or [None])[-1]
    xpassed = (report.failed and deviation is not None
               and str(report.longrepr).startswith("[XPASS(strict)]"))  # fmt: skip
    if report.when == "teardown" and report.failed:
        outcome = "error"
    elif hasattr(report, "wasxfail") and report.skipped:
        outcome = "xfailed"
    elif xpassed:
        outcome = "xpassed"
    entry: dict[str, Any] = {
        "nodeid": report.nodeid,
        "check": report.nodeid.split("::")[-1].split("[")[0],
        "params": report.nodeid.partition("[")[2].rstrip("]"),
        "when": report.when,
        "outcome": outcome,
        "duration_s": round(report.duration, 3),
        "measurements": _props(report, MEASUREMENT),
    }
    if _props(report, FINDING):
        entry["findings"] = _props(report, FINDING)
    if _props(report, LOCK_WAIT):
        entry["lock_wait_s"] = _props(report, LOCK_WAIT)[-1]
    if deviation is not None:
        entry["deviation"] = deviation
    if _props(report, FAILURE_EVIDENCE):
        entry["evidence"] = _props(report, FAILURE_EVIDENCE)[-1]
    if _props(report, EVIDENCE_FILE):
        entry["evidence_file"] = _props(report, EVIDENCE_FILE)[-1]
    if xpassed:
        entry["message"] = (f"declared deviation did not happen: the check passed; remove it from "
                            f"{deviation['file']}")  # fmt: skip
    elif deviation is not None and report.passed:  # a race declared strict = false
        entry["message"] = ("the declared deviation was not observed in this run (a race: it need "
                            "not show every time)")  # fmt: skip
    elif report.skipped and isinstance(report.longrepr, tuple):
        entry["reason"] = report.longrepr[2]
    elif report.failed or outcome == "xfailed":
        crash = getattr(report.longrepr, "reprcrash", None)
        text = crash.message if crash is not None else report.longreprtext.strip()
        entry["message"] = plain_message(text)[:800]
    return entry


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Collect one result per test (on the controller when running under xdist)."""
    config = _CONFIG.get("config")
    if config is None or _is_worker(config) or not _is_check_report(report):
        return
    if (
        report.when == "call"
        or (report.when == "setup" and not report.passed)
        or (report.when == "teardown" and report.failed)
    ):
        entry = result_entry(report)
        config.stash[_RESULTS].append(entry)
        if config.getoption("isoproof_progress"):
            _progress_line(config, report, entry)


def _is_check_report(report: pytest.TestReport) -> bool:
    return bool(getattr(report, "isoproof_check", False))


# --- progress ------------------------------------------------------------------------------------

_TOTAL = pytest.StashKey[int]()
_DONE = pytest.StashKey[int]()
PROGRESS_WORDS = {"passed": "PASSED", "failed": "FAILED", "skipped": "SKIPPED", "error": "ERROR",
                  "runtime_error": "RUNTIME-ERROR", "xfailed": "DEVIATES (declared)",
                  "xpassed": "FAILED (declared deviation did not happen)"}  # fmt: skip


def pytest_collection_finish(session: pytest.Session) -> None:
    session.config.stash[_TOTAL] = len(session.items)


def pytest_xdist_node_collection_finished(node: Any, ids: list[str]) -> None:
    config = _CONFIG.get("config")
    if config is not None:
        config.stash[_TOTAL] = max(config.stash.get(_TOTAL, 0), len(ids))


@pytest.hookimpl(hookwrapper=True)
def pytest_report_teststatus(
    report: pytest.TestReport, config: pytest.Config
) -> Generator[None, Any, None]:
    """With --isoproof-progress the suite writes its own line per check: pytest's letter goes (its
    word stays, for the short summary at the end)."""
    outcome = yield
    if config.getoption("isoproof_progress", False) and _is_check_report(report):
        category, _letter, word = outcome.get_result()
        outcome.force_result((category, "", word))


def _progress_line(config: pytest.Config, report: pytest.TestReport, entry: dict[str, Any]) -> None:
    tr = config.pluginmanager.get_plugin("terminalreporter")
    if tr is None:
        return
    if report.when != "teardown":
        config.stash[_DONE] = config.stash.get(_DONE, 0) + 1
    total = config.stash.get(_TOTAL, 0)
    done = config.stash.get(_DONE, 0)
    ids = {label_id(x): x for x in runtimes(config)}
    p = entry["params"]
    label = next((lab for i, lab in ids.items()
                  if p == i or p.startswith(i + "-") or p.endswith("-" + i)), "-")  # fmt: skip
    word = PROGRESS_WORDS.get(entry["outcome"], entry["outcome"])
    if report.when == "teardown":
        word = "ERROR at teardown"
    name = entry["nodeid"].split("::")[-1]
    line = f"[{done:>{len(str(total))}}/{total}] {word:<8} {name}  ({label}, {entry['duration_s']:.1f}s)"
    markup = {"passed": {"green": True}, "xfailed": {"yellow": True}, "skipped": {"yellow": True}}
    tr.write_line(line, **markup.get(entry["outcome"], {"red": True}))
    if entry["outcome"] in ("failed", "error", "runtime_error", "xpassed") and entry.get("message"):
        tr.write_line(f"      {entry['message'].splitlines()[0][:160]}")


_CONFIG: dict[str, pytest.Config] = {}


def pytest_sessionstart(session: pytest.Session) -> None:
    _CONFIG["config"] = session.config
    if not active(session.config):
        return
    tr = session.config.pluginmanager.get_plugin("terminalreporter")
    if tr is not None and session.config.getoption("isoproof_progress"):
        tr.showfspath = False  # the per-check lines name the check; no bare file names
    if not _is_worker(session.config) and os.geteuid() == 0:
        workdir(session.config).mkdir(parents=True, exist_ok=True)
        snapshot.begin(session.config)  # the host as it was (verify/snapshot.py)
    if os.geteuid() == 0:
        from verify.probes import set_child_subreaper

        set_child_subreaper()


# --- leak check ----------------------------------------------------------------------------------


def _hierarchies() -> list[str]:
    """Every cgroup mount, v2 included on a hybrid host: runc also makes its cgroup there."""
    lay = host.layout()
    return list(dict.fromkeys([*lay.v1.values(), *([lay.v2] if lay.v2 else [])]))


def find_leaks(config: pytest.Config) -> list[str]:
    """Everything the session made that still exists: processes, cgroups, mounts, netns, state."""
    leaks: list[str] = []
    parent = cgroup_parent(config)
    mounts = _hierarchies()
    for mnt in mounts:
        base = Path(mnt) / parent
        if not base.is_dir():
            continue
        for child in sorted(p for p in base.rglob("*") if p.is_dir()):
            procs = (
                (child / "cgroup.procs").read_text().split()
                if (child / "cgroup.procs").exists()
                else []
            )
            leaks.append(
                f"cgroup {child}" + (f" with processes {' '.join(procs)}" if procs else "")
            )
    wd = workdir(config)
    for m in host.parse_mountinfo(Path("/proc/self/mountinfo").read_text()):
        if m["mountpoint"].startswith(str(wd) + "/"):
            leaks.append(f"mount {m['mountpoint']} ({m['fstype']})")
    prefix = f"isoproof-{session_id(config)}-"
    netns = Path("/run/netns")
    if netns.is_dir():
        leaks += [f"netns {p}" for p in sorted(netns.iterdir()) if p.name.startswith(prefix)]
    if wd.is_dir():
        for st in sorted(wd.glob("state-*")):
            leaks += [f"runtime state {p}" for p in sorted(st.iterdir())]
        leaks += [f"bundle {p}" for p in sorted(wd.iterdir()) if p.name.startswith(prefix)]
    return leaks


def clean_session(config: pytest.Config) -> None:
    """Remove what find_leaks found (after reporting it), then the session's own parents."""
    parent = cgroup_parent(config)
    mounts = _hierarchies()
    for mnt in mounts:
        base = Path(mnt) / parent
        if not base.is_dir():
            continue
        for child in sorted(
            (p for p in base.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)
        ):
            for pid in (
                (child / "cgroup.procs").read_text().split()
                if (child / "cgroup.procs").exists()
                else []
            ):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), 9)
            _rmdir_retry(child)
        _rmdir_retry(base)
    prefix = f"isoproof-{session_id(config)}-"
    netns = Path("/run/netns")
    if netns.is_dir():
        for p in netns.iterdir():
            if p.name.startswith(prefix):
                os.system(f"ip netns del {p.name} 2>/dev/null")
    wd = workdir(config)
    for m in reversed(host.parse_mountinfo(Path("/proc/self/mountinfo").read_text())):
        if m["mountpoint"].startswith(str(wd) + "/"):
            os.system(f"umount -l '{m['mountpoint']}' 2>/dev/null")
    if wd.is_dir() and not config.getoption("isoproof_workdir"):
        shutil.rmtree(wd, ignore_errors=True)
    elif wd.is_dir():
        for p in wd.iterdir():
            if p.name.startswith(("isoproof-", "state-")):
                shutil.rmtree(p, ignore_errors=True)


def _rmdir_retry(p: Path) -> None:
    for _ in range(20):
        try:
            p.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.05)


def _reap_zombies() -> None:
    """Containers' inits were adopted by us (subreaper); reap any that a failed test left."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if not active(config):
        return
    if os.geteuid() == 0:
        _reap_zombies()
    if _is_worker(config):
        return
    leaks = find_leaks(config) if os.geteuid() == 0 else []
    if os.geteuid() == 0:
        clean_session(config)
    snapshot.end(session, [session_id(config), str(workdir(config))])  # differences fail the run
    if leaks:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        tr = config.pluginmanager.get_plugin("terminalreporter")
        if tr is not None:
            tr.write_sep("=", "isoproof leak check FAILED: left behind after the suite", red=True)
            for leak in leaks:
                tr.write_line(f"  {leak}")
    results = config.getoption("isoproof_results")
    if results:
        out = write_results(config, Path(results), leaks)
        base = config.getoption("isoproof_baseline")
        line, regressed = report_and_compare(out, Path(base) if base else None)
        config.stash[_REPORT_LINE] = line
        if regressed:  # a gate: something that held in the baseline fails now
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def write_results(config: pytest.Config, d: Path, leaks: list[str]) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    entries = config.stash[_RESULTS]
    summary: dict[str, int] = {}
    for e in entries:
        summary[e["outcome"]] = summary.get(e["outcome"], 0) + 1
    doc = {
        "schema": "isoproof-results/1",
        "host": host.facts(),
        "runtimes": {label: runtime_version(config, label) for label in runtimes(config)},
        "session": session_id(config),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "summary": summary,
        "leak_check": {"ok": not leaks, "leaks": leaks},
        "host_snapshot": snapshot.result(config),
        "results": entries,
    }
    out = d / "results.json"
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str))
    tmp.rename(out)
    return out


_REPORT_LINE = pytest.StashKey[str]()


def html_report(results_json: Path) -> str:
    """Write ``report.html`` beside results.json; return the line to show at the end of the run."""
    return report_and_compare(results_json)[0]


def report_and_compare(results_json: Path, baseline: Path | None = None) -> tuple[str, bool]:
    """Write ``report.html`` beside results.json, compared with ``baseline`` if given; return the
    line to show at the end of the run and whether anything regressed since the baseline.

    The report only presents the verdicts: whatever goes wrong making it is one warning line and
    never changes the suite's exit status; only a regression against the baseline does."""
    try:
        from reports.cli import suite_hook

        return suite_hook(results_json, baseline)
    except Exception as e:  # reports not importable: named, the run's verdict stands
        why = str(e) if isinstance(e, IsoproofError) else repr(e)
        return f"isoproof: warning: no HTML report: {why}", False


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if active(config) and not _is_worker(config):
        _summary_of_deviations(terminalreporter, config)
    # Called after our sessionfinish and before the final "N passed" line: the last thing read.
    line = config.stash.get(_REPORT_LINE, None)
    if line:
        terminalreporter.write_line(line)


def _summary_of_deviations(tr: Any, config: pytest.Config) -> None:
    """Declared deviations apart from failures: what deviated as declared, and which declarations
    no longer hold."""
    entries = config.stash.get(_RESULTS, [])
    seen = [e for e in entries if e["outcome"] == "xfailed"]
    stale = [e for e in entries if e["outcome"] == "xpassed"]
    if seen:
        tr.write_sep("-", f"isoproof: {len(seen)} check(s) deviate as declared", yellow=True)
        for e in seen:
            d = e["deviation"]
            tr.write_line(
                f"  {e['nodeid'].split('::')[-1]}: {d['why']} ({Path(d['file']).name}; {d['spec']})"
            )
    if stale:
        tr.write_sep("-", f"isoproof: {len(stale)} declared deviation(s) did not happen", red=True)
        for e in stale:
            tr.write_line(
                f"  {e['nodeid'].split('::')[-1]}: passed; remove it from {e['deviation']['file']}"
            )


def _version_of(config: pytest.Config, label: str) -> str:
    d = make_driver(label, "isoproof-v", workdir(config), cgroup_parent(config))
    try:
        d.check_available()
        return d.version()
    except Unavailable as e:
        return f"unavailable: {e}"
