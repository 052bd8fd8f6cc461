"""Engine benchmarks: prints figures, asserts nothing about time.

* ``isoproof run --rm busybox true`` median wall time (bridge network and ``--network none``), next to
  ``runc run`` of a plain busybox bundle measured in the same run (the floor an engine adds to) and,
  where podman is installed, ``podman run --rm --network none`` of the same rootfs on the same runc;
* the monitor's memory per detached container (private, PSS and RSS from ``/proc/PID/smaps_rollup``)
  beside conmon's (``podman run -d`` on runc, private storage), measured in the same run;
* the time to start 50 detached containers one after another, and to remove them with one ``rm -f``;
* single verbs, ``run -d``, ``ps``, ``inspect`` and ``rm -f``, beside podman's (on runc, private
  storage) in the same rounds, printed as a table with the ratio to podman; the interpreter's own
  start (``python -c pass`` with and without ``site``) and the imports ``ps`` and ``inspect`` pay
  after site (``-X importtime``), to tell the engine's cost from the launcher's; with
  ``--baseline DIR`` (e.g. ``git archive OLD runtime | tar -x -C DIR``) that tree's engine too;
* one verification check's engine work, ``run -d busybox sleep 60; inspect; rm -f``: median wall
  time and the number of Python interpreter starts (counted with ``strace -f -e execve``), for
  isoproof-oci forked by the engine (the default), the same exec'd (``ISOPROOF_OCI_FORK=0``, the
  peer) and runc, interleaved in the same run. Interpreter starts are what TCG makes expensive.

Each figure is measured for every OCI runtime given (default: runc and isoproof-oci). Private home,
bridge, subnet and cgroup parent, all removed at the end.

    /work/venv/bin/python bench/bench_engine.py [--runs 20] [--many 50] [--runtime PATH ...]
                                                [--check-only] [--check-runs 10] [--memory-only]
                                                [--verbs-only] [--verb-runs 15] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path

ISOPROOF = str(Path(sys.executable).parent / "isoproof")


def env_for(runtime: str, tag: str, octet: int = 250) -> dict[str, str]:
    """A private engine; engines that exist at the same time need different ``octet``s (each has
    its own bridge, and two bridges must not hold the same subnet)."""
    return {
        **os.environ,
        "ISOPROOF_HOME": os.path.join(tempfile.gettempdir(), f"ipb-{tag}"),
        "ISOPROOF_OCI_RUNTIME": runtime,
        "ISOPROOF_BRIDGE": f"isoproofB{tag[:6]}",
        "ISOPROOF_SUBNET": f"172.31.{octet}.0/24",
        "ISOPROOF_CGROUP_PARENT": f"isoproof-b{tag}",
    }


def iso(env: dict[str, str], *args: str) -> str:
    cp = subprocess.run(
        [ISOPROOF, *args], env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    if cp.returncode != 0:
        raise SystemExit(f"isoproof {' '.join(args)} failed: {cp.stderr.strip()}")
    return cp.stdout


def timed(fn: object, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        out.append(time.perf_counter() - t0)
    return out


def runc_floor(runs: int) -> list[float]:
    from runtime.busybox import ensure_rootfs

    bundle = Path(tempfile.mkdtemp(prefix="isoproof-bench-"))
    root = bundle / "state"
    subprocess.run(["runc", "spec", "--bundle", str(bundle)], check=True)
    spec = json.loads((bundle / "config.json").read_text())
    spec["root"] = {"path": str(ensure_rootfs()), "readonly": True}
    spec["process"]["terminal"] = False
    spec["process"]["args"] = ["true"]
    spec["linux"]["cgroupsPath"] = f"/isoproof-bench-{uuid.uuid4().hex[:6]}/floor"
    (bundle / "config.json").write_text(json.dumps(spec))
    try:
        return timed(
            lambda: subprocess.run(
                [
                    "runc",
                    "--root",
                    str(root),
                    "run",
                    "--bundle",
                    str(bundle),
                    f"isoproof-floor-{uuid.uuid4().hex[:6]}",
                ],
                check=True,
                stdin=subprocess.DEVNULL,
            ),
            runs,
        )
    finally:
        shutil.rmtree(bundle, ignore_errors=True)
        parent = spec["linux"]["cgroupsPath"].split("/")[1]
        for ctrl in Path("/sys/fs/cgroup").iterdir():
            p = ctrl / parent
            if p.is_dir():
                with contextlib.suppress(OSError):
                    p.rmdir()


PODMAN_IMAGE = "localhost/isoproof-bench-busybox:latest"


def podman_latency(runs: int) -> float | None:
    """podman on the same rootfs and the same runc, if podman is installed.

    Always ``--network none``: podman's default CNI bridge would enable ip_forward and add
    iptables chains on this host, which the project never does. The rlimits are given explicitly
    because podman's defaults exceed this host's hard limits.
    """
    podman = shutil.which("podman")
    if not podman:
        return None
    from runtime.busybox import ensure_rootfs

    base = [
        podman,
        "--runtime",
        shutil.which("runc") or "runc",
        "--cgroup-manager",
        "cgroupfs",
        "--events-backend",
        "none",
    ]
    with tempfile.TemporaryDirectory(prefix="isoproof-bench-") as tmp:
        tar = Path(tmp) / "rootfs.tar"
        subprocess.run(["tar", "-C", str(ensure_rootfs()), "-cf", str(tar), "."], check=True)
        subprocess.run([*base, "import", str(tar), PODMAN_IMAGE], check=True, capture_output=True)
    argv = [
        *base,
        "run",
        "--rm",
        "--network",
        "none",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        PODMAN_IMAGE,
        "true",
    ]
    try:
        subprocess.run(argv, check=True, capture_output=True)  # warm
        return (
            statistics.median(
                timed(lambda: subprocess.run(argv, check=True, capture_output=True), runs)
            )
            * 1000
        )
    finally:
        subprocess.run([*base, "rmi", "-f", PODMAN_IMAGE], capture_output=True)


def smaps(pid: int) -> dict[str, float]:
    """A process's memory in MiB from ``/proc/PID/smaps_rollup``: Rss, Pss and Private (clean +
    dirty: what the process alone holds, what a hundred of them cost a hundred times)."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        k, v = line.split(":", 1)
        fields[k] = int(v.split()[0]) / 1024
    fields["Private"] = fields["Private_Clean"] + fields["Private_Dirty"]
    return fields


def medians(samples: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(s[k] for s in samples) for k in ("Rss", "Pss", "Private")}


def monitor_memory(env: dict[str, str], count: int) -> dict[str, float]:
    """The median monitor's memory over ``count`` detached containers."""
    ids = [iso(env, "run", "-d", "busybox", "sleep", "300").strip() for _ in range(count)]
    try:
        time.sleep(0.5)
        samples = []
        for cid in ids:
            st = json.loads(
                (Path(env["ISOPROOF_HOME"]) / "containers" / cid / "state.json").read_text()
            )
            samples.append(smaps(st["MonitorPid"]))
        return medians(samples)
    finally:
        iso(env, "rm", "-f", *ids)


class PrivatePodman:
    """podman on runc with a private --root/--runroot, the busybox rootfs imported as an image,
    a cgroup parent of its own and a containers.conf whose default_ulimits stay under this host's
    hard nofile limit (as tests/clients/conftest.py sets podman up); no network namespace setup
    (``netns = "none"``: podman's CNI bridge would change iptables and ip_forward). Everything
    is removed on exit. ``PrivatePodman.available()`` is False without podman."""

    IMAGE = "localhost/isoproof-bench-podman:latest"

    @staticmethod
    def available() -> bool:
        return shutil.which("podman") is not None

    def __enter__(self) -> PrivatePodman:
        from runtime.busybox import ensure_rootfs

        self.base = Path(tempfile.mkdtemp(prefix="isoproof-bench-podman-"))
        conf = self.base / "containers.conf"
        conf.write_text(
            '[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]\n'
            'netns = "none"\n[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "none"\n'
        )
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf)}
        base = self.base
        self.argv = [shutil.which("podman") or "podman", "--root", f"{base}/root",
                     "--runroot", f"{base}/runroot", "--tmpdir", f"{base}/tmp",
                     "--storage-driver", "vfs", "--runtime", shutil.which("runc") or "runc"]  # fmt: skip
        self.parent = f"/isoproof-bench-podman-{uuid.uuid4().hex[:6]}"
        self.ids: list[str] = []
        try:
            tar = base / "rootfs.tar"
            subprocess.run(["tar", "-C", str(ensure_rootfs()), "-cf", str(tar), "."], check=True)
            self("import", str(tar), self.IMAGE)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __call__(self, *args: str) -> str:
        cp = subprocess.run([*self.argv, *args], env=self.env, capture_output=True, text=True)
        if cp.returncode != 0:
            raise SystemExit(f"podman {' '.join(args)} failed: {cp.stderr.strip()}")
        return cp.stdout

    def run_d(self, *command: str) -> str:
        cid = self("run", "-d", "--cgroup-parent", self.parent, self.IMAGE, *command).strip()
        self.ids.append(cid)
        return cid

    def __exit__(self, *_exc: object) -> None:
        if self.ids:
            subprocess.run([*self.argv, "rm", "-f", "-t", "0", *self.ids], env=self.env,
                           capture_output=True)  # fmt: skip
        subprocess.run([*self.argv, "rmi", "-f", self.IMAGE], env=self.env, capture_output=True)
        for ctrl in Path("/sys/fs/cgroup").iterdir():
            p = ctrl / self.parent.lstrip("/")
            # podman puts the conmons in <parent>/conmon and leaves it there
            for d in (p / "conmon", p):
                if d.is_dir():
                    with contextlib.suppress(OSError):
                        d.rmdir()
        shutil.rmtree(self.base, ignore_errors=True)


def conmon_memory(count: int) -> dict[str, float] | None:
    """The median conmon's memory over ``count`` ``podman run -d`` containers on runc, beside
    ours (:class:`PrivatePodman`). None without podman."""
    if not PrivatePodman.available():
        return None
    with PrivatePodman() as pm:
        ids = [pm.run_d("sleep", "300") for _ in range(count)]
        time.sleep(0.5)
        pids = [int(pm("inspect", "--format", "{{.State.ConmonPid}}", i).strip()) for i in ids]
        return medians([smaps(pid) for pid in pids])


def print_memory(name: str, mem: dict[str, float], conmon: dict[str, float] | None) -> None:
    vs = f" (x{mem['Private'] / conmon['Private']:.1f} of conmon's)" if conmon else ""
    print(
        f"[{name}] monitor memory per detached container: private {mem['Private']:.2f} MiB{vs}, "
        f"PSS {mem['Pss']:.2f} MiB, RSS {mem['Rss']:.1f} MiB"
    )


CHECK = 'id=$("$0" run -d busybox sleep 60) && "$0" inspect "$id" >/dev/null && "$0" rm -f "$id"'


def check_cycle(env: dict[str, str], strace_log: str | None = None) -> None:
    """What a verification check asks of the engine (``sh`` costs the same in every variant)."""
    argv = ["sh", "-c", CHECK, ISOPROOF]
    if strace_log:
        argv = ["strace", "-f", "-qq", "-e", "trace=execve", "-o", strace_log, *argv]
    cp = subprocess.run(argv, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if cp.returncode != 0:
        raise SystemExit(f"check cycle failed: {cp.stderr.strip()}")


def python_starts(env: dict[str, str]) -> int | None:
    """Python interpreters started by one check cycle: execve calls that succeeded on a Python
    binary or on a script whose ``#!`` line names one (the console scripts). None without strace."""
    if not shutil.which("strace"):
        return None
    with tempfile.NamedTemporaryFile(prefix="isoproof-bench-strace-") as log:
        check_cycle(env, log.name)
        lines = Path(log.name).read_text().splitlines()
    started = [ln.split('"') for ln in lines if "execve(" in ln and ln.rstrip().endswith("= 0")]
    # A program that re-execs itself through /proc/self/exe (runc init) is named by its argv[0].
    return sum(_is_python(f[3] if f[1] == "/proc/self/exe" else f[1]) for f in started)


def _is_python(path: str) -> bool:
    if Path(os.path.realpath(path)).name.startswith("python"):
        return True
    try:
        with open(path, "rb") as f:
            first = f.readline()
    except OSError:
        return False
    return first.startswith(b"#!") and b"python" in first


def check_figures(runtimes: list[str], runs: int) -> None:
    """Fork vs exec of our runtime (and runc), one check cycle per variant per round."""
    variants: dict[str, dict[str, str]] = {}
    for octet, rt in enumerate(runtimes, start=250):
        env = env_for(rt, uuid.uuid4().hex[:8], octet)
        if Path(rt).name == "isoproof-oci":
            variants["isoproof-oci, exec'd (ISOPROOF_OCI_FORK=0)"] = {
                **env,
                "ISOPROOF_OCI_FORK": "0",
            }
            variants["isoproof-oci, forked (default)"] = env
        else:
            variants[f"{Path(rt).name}, exec'd"] = env
    try:
        for env in variants.values():
            check_cycle(env)  # warm: bridge, image record, page cache
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(runs):
            for name, env in variants.items():
                times[name] += timed(lambda env=env: check_cycle(env), 1)
        peer = None
        for name, env in variants.items():
            med = statistics.median(times[name]) * 1000
            starts = python_starts(env)
            counted = "strace missing" if starts is None else f"{starts} Python starts"
            rel = f"  (x{med / peer:.2f} of the exec'd)" if peer and "forked" in name else ""
            peer = med if "ISOPROOF_OCI_FORK=0" in name else peer
            print(
                f"check cycle (run -d; inspect; rm -f) [{name}]: median {med:7.1f} ms, "
                f"{counted}{rel}"
            )
        print(f"  ({runs} rounds, variants interleaved in each round)")
    finally:
        for env in variants.values():
            if "ISOPROOF_OCI_FORK" not in env:
                cleanup(env)


VERBS = ("run -d", "ps", "inspect", "rm -f")


def import_ms(env: dict[str, str], *args: str, runs: int = 5) -> float:
    """Median milliseconds an ``isoproof`` verb spends importing after ``site`` (``-X
    importtime``: the cumulative times of the top-level imports that follow site's line)."""
    out = []
    for _ in range(runs):
        cp = subprocess.run([sys.executable, "-X", "importtime", ISOPROOF, *args], env=env,
                            capture_output=True, text=True, stdin=subprocess.DEVNULL)  # fmt: skip
        rows = [ln.split("|") for ln in cp.stderr.splitlines() if ln.startswith("import time:")]
        names = [r[2].rstrip() for r in rows]
        after = rows[names.index(" site") + 1 :] if " site" in names else rows[1:]
        out.append(sum(int(r[1]) for r in after if not r[2].startswith("  ")) / 1000)
    return statistics.median(out)


def verb_round(
    t: dict[str, list[float]], run_d: Callable[[], str], call: Callable[..., object], rm: list[str]
) -> str:
    """One round for one engine: ``run -d`` a container, then ``ps``, ``inspect`` and ``rm``
    it through ``call(*args)``, each timed into ``t``. Returns the container's ID."""
    t0 = time.perf_counter()
    cid = run_d().strip()
    t["run -d"].append(time.perf_counter() - t0)
    for verb, args in (("ps", ["ps"]), ("inspect", ["inspect", cid]), ("rm -f", [*rm, cid])):
        t0 = time.perf_counter()
        call(*args)
        t[verb].append(time.perf_counter() - t0)
    return cid


def verb_figures(runtimes: list[str], runs: int, baseline: Path | None = None) -> None:
    """Single verbs beside podman's: ``run -d``, ``ps``, ``inspect``, ``rm -f`` of one container,
    in every round once per engine (interleaved), podman on runc with a private root. Our
    containers use ``--network none``, as podman's ``netns = "none"``; podman removes with
    ``rm -f -t 0`` (SIGKILL at once, which is what our ``rm -f`` and docker's do). With
    ``baseline`` (a tree with a ``runtime/`` package, e.g. ``git archive`` of an older commit),
    the same console script on the first runtime runs that tree's code (``PYTHONPATH``) too.
    The interpreter's own start, with and without ``site``, is timed in the same rounds."""
    variants: dict[str, dict[str, str]] = {}
    for octet, rt in enumerate(runtimes, start=250):
        env = env_for(rt, uuid.uuid4().hex[:8], octet)
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # the warm round writes the bytecode, as a user's
        variants[f"isoproof[{Path(rt).name}]"] = env
    if baseline is not None:
        env = env_for(runtimes[0], uuid.uuid4().hex[:8], 250 + len(runtimes))
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPATH"] = str(baseline.resolve())
        variants[f"baseline[{Path(runtimes[0]).name}]"] = env
    run_args = ["run", "-d", "--network", "none", "busybox", "sleep", "60"]
    with contextlib.ExitStack() as stack:
        for env in variants.values():
            stack.callback(cleanup, env)
        pm = stack.enter_context(PrivatePodman()) if PrivatePodman.available() else None
        names = [*variants, *(["podman[runc]"] if pm else [])]
        floors: dict[str, list[float]] = {"with site": [], "-S": []}
        times: dict[str, dict[str, list[float]]] = {n: {v: [] for v in VERBS} for n in names}
        warm: dict[str, dict[str, list[float]]] = {n: {v: [] for v in VERBS} for n in names}
        for name, env in variants.items():  # warm: image record, page cache, bytecode
            verb_round(warm[name], partial(iso, env, *run_args), partial(iso, env), ["rm", "-f"])
        if pm:
            pm.ids.remove(verb_round(warm["podman[runc]"], partial(pm.run_d, "true"), pm,
                                     ["rm", "-f", "-t", "0"]))  # fmt: skip
        for _ in range(runs):
            for name, env in variants.items():
                verb_round(times[name], partial(iso, env, *run_args), partial(iso, env),
                           ["rm", "-f"])  # fmt: skip
            if pm:
                pm.ids.remove(verb_round(times["podman[runc]"], partial(pm.run_d, "sleep", "60"),
                                         pm, ["rm", "-f", "-t", "0"]))  # fmt: skip
            floors["with site"] += timed(partial(subprocess.run, [sys.executable, "-c", "pass"]), 1)
            floors["-S"] += timed(partial(subprocess.run, [sys.executable, "-S", "-c", "pass"]), 1)
        env = next(iter(variants.values()))
        cid = iso(env, *run_args).strip()
        imports = {"ps": import_ms(env, "ps"), "inspect": import_ms(env, "inspect", cid)}
        iso(env, "rm", "-f", cid)
    med = {n: {v: statistics.median(ts) * 1000 for v, ts in t.items()} for n, t in times.items()}
    peer = med.get("podman[runc]")
    width = max(len(n) for n in med) + 2
    print(f"engine verbs, median ms of {runs} rounds (engines interleaved in each round):")
    print("  verb    " + "".join(f"{n:>{width}}" for n in med) + ("   x podman" if peer else ""))
    for verb in VERBS:
        ratios = "  ".join(f"{med[n][verb] / peer[verb]:.2f}" for n in variants) if peer else ""
        cells = "".join(f"{med[n][verb]:>{width}.1f}" for n in med)
        print(f"  {verb:<8}{cells}   {ratios}")
    floor, bare = (statistics.median(floors[k]) * 1000 for k in ("with site", "-S"))
    print(
        f"  python -c pass (this venv, with site) {floor:.1f} ms; python -S -c pass {bare:.1f} ms"
        " (same rounds)"
    )
    print(
        f"  [{next(iter(variants))}] imports after site (-X importtime, median of 5): "
        + ", ".join(f"{v} {ms:.1f} ms" for v, ms in imports.items())
    )


def cleanup(env: dict[str, str]) -> None:
    ids = subprocess.run(
        [ISOPROOF, "ps", "-aq"], env=env, capture_output=True, text=True
    ).stdout.split()
    if ids:
        subprocess.run([ISOPROOF, "rm", "-f", *ids], env=env, capture_output=True)
    subprocess.run(["ip", "link", "del", "dev", env["ISOPROOF_BRIDGE"]], capture_output=True)
    for ctrl in Path("/sys/fs/cgroup").iterdir():
        p = ctrl / env["ISOPROOF_CGROUP_PARENT"]
        if p.is_dir():
            with contextlib.suppress(OSError):
                p.rmdir()
    shutil.rmtree(env["ISOPROOF_HOME"], ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--many", type=int, default=50)
    ap.add_argument("--runtime", action="append")
    ap.add_argument("--check-runs", type=int, default=10)
    ap.add_argument("--check-only", action="store_true", help="only the check-cycle figures")
    ap.add_argument("--memory-only", action="store_true", help="only the monitor and conmon memory")
    ap.add_argument("--verbs-only", action="store_true", help="only the verb table beside podman")
    ap.add_argument("--verb-runs", type=int, default=15)
    ap.add_argument("--baseline", type=Path, help="a tree whose runtime/ the verb table times too")
    a = ap.parse_args()
    runtimes = a.runtime or [
        shutil.which("runc") or "runc",
        str(Path(sys.executable).parent / "isoproof-oci"),
    ]
    if a.verbs_only:
        verb_figures(runtimes, a.verb_runs, a.baseline)
        return 0
    conmon = conmon_memory(5)
    if conmon is None:
        print("conmon: podman not installed here: not measured")
    else:
        print(
            f"conmon (podman run -d, runc) per container: private {conmon['Private']:.2f} MiB, "
            f"PSS {conmon['Pss']:.2f} MiB, RSS {conmon['Rss']:.1f} MiB"
        )
    if a.memory_only:
        for rt in runtimes:
            env = env_for(rt, uuid.uuid4().hex[:8])
            try:
                print_memory(Path(rt).name, monitor_memory(env, 5), conmon)
            finally:
                cleanup(env)
        return 0
    check_figures(runtimes, a.check_runs)
    if a.check_only:
        return 0
    verb_figures(runtimes, a.verb_runs, a.baseline)
    floor = statistics.median(runc_floor(a.runs)) * 1000
    print(f"runc run (bare bundle, no engine)          median {floor:7.1f} ms  ({a.runs} runs)")
    podman = podman_latency(a.runs)
    if podman is None:
        print(
            "podman: not installed here (apt-get install --no-install-recommends podman): not measured"
        )
    else:
        print(f"podman run --rm --network none (runc)      median {podman:7.1f} ms")
    for rt in runtimes:
        name = Path(rt).name
        env = env_for(rt, uuid.uuid4().hex[:8])
        try:
            iso(env, "run", "--rm", "busybox", "true")  # warm: bridge, image record
            net = (
                statistics.median(
                    timed(lambda env=env: iso(env, "run", "--rm", "busybox", "true"), a.runs)
                )
                * 1000
            )
            none = (
                statistics.median(
                    timed(
                        lambda env=env: iso(
                            env, "run", "--rm", "--network", "none", "busybox", "true"
                        ),
                        a.runs,
                    )
                )
                * 1000
            )
            print(
                f"[{name}] isoproof run --rm busybox true     median {net:7.1f} ms  "
                f"(x{net / floor:.1f} of bare runc)"
            )
            vs = f", x{none / podman:.2f} of podman" if podman else ""
            print(
                f"[{name}]   ... --network none                median {none:7.1f} ms  "
                f"(x{none / floor:.1f} of bare runc{vs})"
            )
            print_memory(name, monitor_memory(env, 5), conmon)
            t0 = time.perf_counter()
            ids = [iso(env, "run", "-d", "busybox", "sleep", "600").strip() for _ in range(a.many)]
            started = time.perf_counter() - t0
            t0 = time.perf_counter()
            iso(env, "rm", "-f", *ids)
            removed = time.perf_counter() - t0
            print(
                f"[{name}] start {a.many} detached: {started:.1f} s ({started / a.many * 1000:.0f} ms each); "
                f"rm -f all {a.many}: {removed:.1f} s"
            )
        finally:
            cleanup(env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
