"""Measurement helpers: counters read from cgroup files (v1 or v2 picked from host facts), sampling
over time, and the tolerance rule the checks share."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from verify import host


def values_close(a: float, b: float, err_pct: float) -> bool:
    """kselftest cgroup_util.c semantics: |a - b| <= err% of (a + b)."""
    return abs(a - b) <= (a + b) * err_pct / 100.0


def rel_error(measured: float, expected: float) -> float:
    return abs(measured - expected) / expected if expected else float("inf")


def wait_for(cond: Callable[[], Any], timeout: float, interval: float = 0.02) -> Any:
    """Poll ``cond`` until it returns something truthy; return it, or the last falsy value."""
    deadline = time.monotonic() + timeout * host.slowdown()
    value = cond()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = cond()
    return value


# --- counters ------------------------------------------------------------------------------------


def parse_flat_keyed(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


def cpu_usage_ns(c: Any) -> int:
    """Total CPU time of a container's cgroup in nanoseconds."""
    if host.layout().version == 2:
        return parse_flat_keyed(c.read_cgroup("cpu", "cpu.stat"))["usage_usec"] * 1000
    return int(c.read_cgroup("cpuacct", "cpuacct.usage"))


def oom_kills(c: Any) -> int:
    if host.layout().version == 2:
        return parse_flat_keyed(c.read_cgroup("memory", "memory.events")).get("oom_kill", 0)
    return parse_flat_keyed(c.read_cgroup("memory", "memory.oom_control")).get("oom_kill", 0)


def memory_limit(c: Any) -> int | None:
    if host.layout().version == 2:
        v = c.read_cgroup("memory", "memory.max").strip()
        return None if v == "max" else int(v)
    v = int(c.read_cgroup("memory", "memory.limit_in_bytes"))
    return None if v >= 1 << 62 else v


def memory_peak(c: Any) -> int:
    if host.layout().version == 2:
        return int(c.read_cgroup("memory", "memory.peak"))
    return int(c.read_cgroup("memory", "memory.max_usage_in_bytes"))


def memory_usage_file() -> str:
    """The file that holds a cgroup's memory usage now: the series key in the evidence too."""
    return "memory.current" if host.layout().version == 2 else "memory.usage_in_bytes"


def memory_usage(c: Any) -> int:
    return int(c.read_cgroup("memory", memory_usage_file()))


def cpu_weight_written(c: Any) -> int:
    """The CPU weight the kernel was given (cpu.shares on v1, cpu.weight on v2)."""
    if host.layout().version == 2:
        return int(c.read_cgroup("cpu", "cpu.weight"))
    return int(c.read_cgroup("cpu", "cpu.shares"))


def cpu_quota_written(c: Any) -> tuple[int | None, int]:
    if host.layout().version == 2:
        q, p = c.read_cgroup("cpu", "cpu.max").split()
        return (None if q == "max" else int(q)), int(p)
    q = int(c.read_cgroup("cpu", "cpu.cfs_quota_us"))
    p = int(c.read_cgroup("cpu", "cpu.cfs_period_us"))
    return (None if q < 0 else q), p


def throttle_stats(c: Any) -> tuple[int, int]:
    """(nr_periods, nr_throttled) of the CFS bandwidth controller (same keys on v1 and v2)."""
    st = parse_flat_keyed(c.read_cgroup("cpu", "cpu.stat"))
    return st.get("nr_periods", 0), st.get("nr_throttled", 0)


def io_bytes(c: Any, major: int, minor: int) -> dict[str, int]:
    """Bytes and I/Os read/written by the container on one device, from the cgroup's own counters."""
    dev = f"{major}:{minor}"
    if host.layout().version == 2:
        for line in c.read_cgroup("io", "io.stat").splitlines():
            parts = line.split()
            if parts and parts[0] == dev:
                kv = dict(p.split("=", 1) for p in parts[1:])
                return {"read": int(kv.get("rbytes", 0)), "write": int(kv.get("wbytes", 0)),
                        "read_ios": int(kv.get("rios", 0)), "write_ios": int(kv.get("wios", 0))}  # fmt: skip
        return {"read": 0, "write": 0, "read_ios": 0, "write_ios": 0}
    out = {"read": 0, "write": 0, "read_ios": 0, "write_ios": 0}
    for fname, suffix in (
        ("blkio.throttle.io_service_bytes", ""),
        ("blkio.throttle.io_serviced", "_ios"),
    ):
        for line in c.read_cgroup("blkio", fname).splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == dev and parts[1] in ("Read", "Write"):
                out[parts[1].lower() + suffix] = int(parts[2])
    return out


def io_throttle_written(c: Any, dev: tuple[int, int], kind: str) -> int | None:
    """The throttle the kernel was given for one device: ``kind`` is read_bps, write_bps,
    read_iops or write_iops; None when there is no rule for the device."""
    where = f"{dev[0]}:{dev[1]}"
    if host.layout().version == 2:
        key = {"read_bps": "rbps", "write_bps": "wbps", "read_iops": "riops", "write_iops": "wiops"}
        for line in c.read_cgroup("io", "io.max").splitlines():
            parts = line.split()
            if parts and parts[0] == where:
                kv = dict(p.split("=", 1) for p in parts[1:])
                v = kv.get(key[kind], "max")
                return None if v == "max" else int(v)
        return None
    direction, unit = kind.split("_")
    for line in c.read_cgroup("blkio", f"blkio.throttle.{direction}_{unit}_device").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == where:
            return int(parts[1])
    return None


def freezer_state(c: Any) -> str:
    if host.layout().version == 2:
        frozen = parse_flat_keyed(c.read_cgroup("freezer", "cgroup.events")).get("frozen", 0)
        return "FROZEN" if frozen else "THAWED"
    return c.read_cgroup("freezer", "freezer.state").strip()


def pids_events_max(c: Any) -> int:
    return parse_flat_keyed(c.read_cgroup("pids", "pids.events")).get("max", 0)


def until_all_advance(
    read: Callable[[], list[int]], min_s: float = 0.5, timeout: float = 10.0, interval: float = 0.1
) -> list[int]:
    """Warm-up before a contention window: wait at least ``min_s``, then until one ``interval`` in
    which every counter of ``read()`` (e.g. each container's CPU usage) grew, i.e. all of them are
    running. A fixed pause was not enough in an emulated guest: a container started while its
    neighbour had run alone for seconds got no CPU for the next ~0.5 s (6.1, crun, shares 1:4),
    which a 3 s window cannot average away. Gives up after ``timeout`` (scaled) and returns the last
    reading; the check then judges what it sees."""
    time.sleep(min_s)
    deadline = time.monotonic() + timeout * host.slowdown()
    prev = read()
    while True:
        time.sleep(interval)
        cur = read()
        if all(b > a for a, b in zip(prev, cur, strict=True)) or time.monotonic() >= deadline:
            return cur
        prev = cur


class Sampler:
    """Sample ``fn()`` every ``interval`` seconds: a time series for the evidence."""

    def __init__(self, fn: Callable[[], Any], interval: float = 0.25) -> None:
        self.fn, self.interval = fn, interval
        self.t0 = time.monotonic()
        self.times: list[float] = []
        self.values: list[Any] = []

    def sample(self) -> Any:
        v = self.fn()
        self.times.append(round(time.monotonic() - self.t0, 3))
        self.values.append(v)
        return v

    def run_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        self.sample()
        while time.monotonic() < end:
            time.sleep(min(self.interval, max(0.0, end - time.monotonic())))
            self.sample()


@contextlib.contextmanager
def sampling(sampler: Sampler) -> Iterator[Sampler]:
    """Run ``sampler`` in a thread for the length of the with-block (a check that pauses and
    resumes cannot sample between its own steps), and take one last sample at the end. A read
    that fails (the cgroup went with the container) ends the sampling; what was gathered stays."""
    stop = threading.Event()

    def loop() -> None:
        while True:
            try:
                sampler.sample()
            except (OSError, KeyError, ValueError):
                return
            if stop.wait(sampler.interval):
                return

    worker = threading.Thread(target=loop, name="isoproof-sampler", daemon=True)
    worker.start()
    try:
        yield sampler
    finally:
        stop.set()
        worker.join(5)
        if not worker.is_alive():  # never two writers to the lists
            with contextlib.suppress(OSError, KeyError, ValueError):
                sampler.sample()


def slope(times: list[float], values: list[int], lo: float = 0.1, hi: float = 0.9) -> float:
    """Rate of a cumulative counter, by least squares over the samples between lo and hi of its
    total (skips the start-up and the tail, where the workload is not running at full speed)."""
    v0, v1 = values[0], values[-1]
    pts = [
        (t, v)
        for t, v in zip(times, values, strict=True)
        if v0 + lo * (v1 - v0) <= v <= v0 + hi * (v1 - v0)
    ]
    if len(pts) < 3:
        return (v1 - v0) / (times[-1] - times[0]) if times[-1] > times[0] else 0.0
    n = len(pts)
    mt = sum(t for t, _ in pts) / n
    mv = sum(v for _, v in pts) / n
    den = sum((t - mt) ** 2 for t, _ in pts)
    return sum((t - mt) * (v - mv) for t, v in pts) / den if den else 0.0


def vmstat_oom_kills() -> int:
    with open("/proc/vmstat") as f:
        for line in f:
            if line.startswith("oom_kill "):
                return int(line.split()[1])
    return 0


def oom_kills_after_exit(c: Any, vmstat_before: int) -> tuple[int, str]:
    """The cgroup's own OOM-kill counter, read before removal. An engine that deletes the cgroup
    as soon as the container exits leaves only the host-wide counter (which other workloads on the
    host can raise too, so it can only err towards a pass on an OOM; recorded as such)."""
    try:
        return oom_kills(c), "cgroup counter"
    except (FileNotFoundError, KeyError):
        return vmstat_oom_kills() - vmstat_before, "host /proc/vmstat (cgroup removed on exit)"


@dataclasses.dataclass
class MemoryRun:
    """The container's memory usage sampled until its workload exited (``memory_while_running``).
    Times are seconds from the start of sampling; ``oom_at_s`` is the first sample at which the
    cgroup's own OOM-kill counter had risen (None: it did not, or it could not be read)."""

    key: str  # the usage file sampled: memory.current (v2) or memory.usage_in_bytes (v1)
    times: list[float]
    usage: list[int]
    peak: int  # the kernel's own high-water mark (memory.peak / max_usage_in_bytes), as before
    oom_at_s: float | None
    exited_at_s: float | None  # when the init was first seen gone (None: still running at timeout)

    def series(self) -> dict[str, list[Any]]:
        return {"t": self.times, self.key: self.usage}


def memory_while_running(
    c: Any,
    timeout: float,
    interval: float = 0.05,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> MemoryRun:
    """Sample memory usage every ``interval`` s until the container's init exits (or the cgroup
    goes with it), with the kernel's peak and the moment the OOM killer struck. A last sample is
    taken after the exit: a kill between two samples is still counted, at the later one."""
    key = memory_usage_file()
    run = MemoryRun(key, [], [], 0, None, None)
    t0 = clock()
    while True:
        now = round(clock() - t0, 3)
        alive = c.alive()  # before the reads: an exit seen here still gets its last sample
        try:
            usage, peak = memory_usage(c), memory_peak(c)
        except (FileNotFoundError, KeyError, ValueError):  # the cgroup went with the container
            break
        run.times.append(now)
        run.usage.append(usage)
        run.peak = max(run.peak, peak)
        if run.oom_at_s is None:
            try:
                # The container's cgroup is its own, made for it: its counter starts at 0.
                if oom_kills(c) > 0:
                    run.oom_at_s = now
            except (FileNotFoundError, KeyError, ValueError):
                pass
        if not alive:
            run.exited_at_s = now
            break
        if now >= timeout:
            break
        sleep(interval)
    return run


# --- what a CPU weight request should become ----------------------------------------------------
#
# The suite's own copies of the shares -> weight conversions (GUIDE.md section 2), deliberately not
# imported from runtime/: the oracle must not share code with a runtime under test.


def weight_log(shares: int) -> int:
    """runc >= 1.3.2, crun >= 1.23 (and isoproof): l = log2(s), ceil(10^((l^2 + 125 l)/612 - 7/34)),
    clamped to 1..10000; 1024 -> 100 (v2's default), 2048 -> 174, 512 -> 59."""
    if shares <= 2:
        return 1
    if shares >= 262144:
        return 10000
    lg = math.log2(shares)
    return max(1, min(10000, math.ceil(10 ** ((lg * lg + 125 * lg) / 612.0 - 7.0 / 34.0))))


def weight_linear(shares: int) -> int:
    """runc <= 1.3.1, crun <= 1.22: 1 + (s - 2) * 9999 / 262142 (integer); 1024 -> 39."""
    shares = max(2, min(262144, shares))
    return 1 + (shares - 2) * 9999 // 262142


def shares_identity(shares: int) -> int:
    """cgroup v1: cpu.shares takes the request itself (the kernel clamps it to 2..262144)."""
    return max(2, min(262144, shares))


CONVERSIONS: dict[str, tuple[str, Callable[[int], int]]] = {
    "identity": ("cgroup v1, which takes the shares as they are", shares_identity),
    "log": ("the log-scale formula of runc >= 1.3.2 and crun >= 1.23", weight_log),
    "linear": ("the linear formula of runc <= 1.3.1 and crun <= 1.22", weight_linear),
}


def _version_tuple(text: str) -> tuple[int, ...] | None:
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    return tuple(int(x) for x in m.groups() if x is not None) if m else None


def claimed_conversion(version: str) -> str | None:
    """The v2 conversion a runtime's version says it uses, or None when the suite does not know
    (engines that delegate to some OCI runtime, runtimes it has no table for)."""
    words = version.split()
    name = words[0] if words else ""
    v = _version_tuple(version)
    if name.startswith("isoproof"):
        return "log"
    if v is None:
        return None
    if name == "runc":
        return "log" if v >= (1, 3, 2) else "linear"
    if name == "crun":
        return "log" if v >= (1, 23) else "linear"
    return None


def split(values: list[int] | list[float]) -> list[float]:
    total = sum(values)
    return [v / total for v in values] if total else [0.0 for _ in values]


def fmt_split(values: list[int] | list[float]) -> str:
    return ":".join(f"{round(100 * x)}" for x in split(values))


@dataclasses.dataclass
class WeightVerdict:
    """Whether the CPU weights the kernel was given are what was asked for."""

    ok: bool
    conversion: str | None  # key of CONVERSIONS that explains the written weights
    claimed: str | None  # what the runtime's version says it uses (v2)
    expected: list[int]  # the weights the request becomes through that conversion
    message: str  # one sentence: why it passed or failed
    finding: str | None  # the conversion itself distorts the requested ratio (not a failure)


def judge_cpu_weights(
    requested: list[int], written: list[int], cgroup_version: int, version: str = ""
) -> WeightVerdict:
    """Judge the written weights against the *requested* shares. v1 takes the shares themselves;
    v2 a conversion, the one the runtime's version claims when the suite knows it, else any known
    one. A runtime that ignores the request writes the default weight everywhere, which no
    conversion of an unequal request gives: it fails here, before any CPU is measured."""
    claimed = None
    if cgroup_version == 1:
        candidates = ["identity"]
    else:
        claimed = claimed_conversion(version)
        candidates = [claimed] if claimed else ["log", "linear"]
    tries = {k: [CONVERSIONS[k][1](s) for s in requested] for k in candidates}
    match = next((k for k, want in tries.items() if want == written), None)
    file = "cpu.shares" if cgroup_version == 1 else "cpu.weight"
    if match is None:
        options = " or ".join(f"{want} by {CONVERSIONS[k][0]}" for k, want in tries.items())
        msg = (f"{file} written {written} for requested shares {requested}: not what was asked "
               f"for, which is {options}")  # fmt: skip
        return WeightVerdict(False, None, claimed, tries[candidates[0]], msg, None)
    expected = tries[match]
    msg = f"{file} written {written} = requested shares {requested} by {CONVERSIONS[match][0]}"
    finding = None
    asked, given = split(requested), split(expected)
    # One percentage point of the split: what a user reading "33:67" would call a different ratio.
    if max(abs(a - g) for a, g in zip(asked, given, strict=True)) >= 0.01:
        finding = (f"the conversion distorts the ratio: shares {requested} ask for a split of "
                   f"{fmt_split(requested)}, the weights {expected} give the kernel "
                   f"{fmt_split(expected)}; the split is judged against the weights")  # fmt: skip
    return WeightVerdict(True, match, claimed, expected, msg, finding)


def judge_weights(
    runtime: Any, requested: list[int], written: list[int], evidence: Any
) -> list[int]:
    """Fail unless the weights written are the requested shares through the conversion the runtime
    claims; record which conversion it was, and say so when that conversion distorts the ratio.
    Returns the weights the request becomes: the expectation for the measured split."""
    v = judge_cpu_weights(requested, written, host.layout().version, runtime.version())
    evidence.record("cpu weights written", expected=v.expected, measured=written, ok=v.ok,
                    requested_shares=requested, conversion=v.conversion,
                    claimed_conversion=v.claimed, requested_split=fmt_split(requested),
                    kernel_split=fmt_split(v.expected))  # fmt: skip
    if v.finding:
        evidence.finding(v.finding, requested_shares=requested, weights=v.expected)
    if not v.ok:
        raise AssertionError(v.message)  # a failed check, in the check's own words
    return v.expected
