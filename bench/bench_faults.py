"""Fault benchmark: kill -9 at a random moment, then one ordinary command; count what is left.

For each operation, ``--trials`` times (default 100): start it, SIGKILL the client after a random
delay (uniform in ``[0, --max-delay]``), run the *next command* a user would run, wait for
monitors still winding a container up (at most ``--settle`` s), then count what is left of the
trial's containers: container/state directories (and half-made ``.new-*`` / ``.rm-*`` ones),
mounts, network namespaces, veths, leases, cgroups, processes (container inits and monitors).
Whatever a trial leaves is counted, then removed (``rm -f`` and ``system prune -f``, or the OCI
runtime's ``delete --force`` and a manual sweep), so each trial starts clean.

Engine operations (``isoproof``; next command in brackets):

* ``create``    ``isoproof create busybox sleep 300``          [``rm -f`` every ID of ``ps -aq``]
* ``run``       ``isoproof run -d busybox sleep 300``          [``rm -f`` every ID of ``ps -aq``]
* ``run --rm``  ``isoproof run --rm busybox true``             [``ps -a``]
* ``rm``        ``isoproof rm -f ID`` of a running container   [``rm -f ID``]

OCI operations, ``isoproof-oci`` beside ``runc`` (same bundle, same delays):

* ``oci create``  ``<runtime> create ID``                      [``<runtime> delete --force ID``]

Prints one table; asserts nothing. Needs root.

    python bench/bench_faults.py [--trials 100] [--max-delay 0.8] [--ops create,run,...]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

BIN = Path(sys.executable).parent
ISOPROOF = str(BIN / "isoproof")
ISOPROOF_OCI = str(BIN / "isoproof-oci")
KINDS = ("dirs", "mounts", "netns", "veths", "leases", "cgroups", "procs")


class Engine:
    def __init__(self, runtime: str) -> None:
        tag = uuid.uuid4().hex[:8]
        self.home = Path(tempfile.gettempdir()) / f"ipf-{tag}"
        self.bridge = f"isoproofF{tag[:6]}"
        self.parent = f"isoproof-f{tag}"
        used = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True).stdout
        octet = next(x for x in range(200, 250) if f" 172.31.{x}." not in used)
        self.env = {
            **os.environ,
            "ISOPROOF_HOME": str(self.home),
            "ISOPROOF_OCI_RUNTIME": runtime,
            "ISOPROOF_BRIDGE": self.bridge,
            "ISOPROOF_SUBNET": f"172.31.{octet}.0/24",
            "ISOPROOF_CGROUP_PARENT": self.parent,
        }

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [ISOPROOF, *args], env=self.env, capture_output=True, text=True,
            stdin=subprocess.DEVNULL, timeout=timeout,
        )  # fmt: skip

    def popen(self, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [ISOPROOF, *args], env=self.env, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def ids(self) -> list[str]:
        return self.run("ps", "-aq", "--no-trunc").stdout.split()

    def leftovers(self) -> dict[str, int]:
        out = dict.fromkeys(KINDS, 0)
        cdir = self.home / "containers"
        if cdir.exists():
            out["dirs"] += len(list(cdir.iterdir()))
        oci = self.home / "oci"
        if oci.exists():
            out["dirs"] += len(list(oci.iterdir()))
        with open("/proc/self/mountinfo") as f:
            out["mounts"] = sum(1 for ln in f if str(self.home) in ln)
        ns = self.home / "netns"
        if ns.exists():
            out["netns"] = len(list(ns.iterdir()))
        out["veths"] = len([p for p in os.listdir(f"/sys/class/net/{self.bridge}/brif")]) if Path(
            f"/sys/class/net/{self.bridge}/brif"
        ).exists() else 0  # fmt: skip
        leases = Path("/run/isoproof") / f"{self.bridge}.leases.json"
        if leases.exists():
            with contextlib.suppress(ValueError):
                table = json.loads(leases.read_text())
                out["leases"] = sum(len(n) for n in table.values())
        out["cgroups"] = count_cgroups(self.parent)
        out["procs"] = len(procs_with(str(self.home).encode())) + len(cgroup_procs(self.parent))
        return out

    def clean(self) -> None:
        ids = self.ids()
        if ids:
            self.run("rm", "-f", *ids)
        self.run("system", "prune", "-f")

    def close(self) -> None:
        self.clean()
        subprocess.run(["ip", "link", "del", "dev", self.bridge], capture_output=True)
        remove_parent(self.parent)
        shutil.rmtree(self.home, ignore_errors=True)
        (Path("/run/isoproof") / f"{self.bridge}.leases.json").unlink(missing_ok=True)
        (Path("/run/isoproof") / f"{self.bridge}.leases.lock").unlink(missing_ok=True)


def count_cgroups(parent: str) -> int:
    n = 0
    for ctrl in Path("/sys/fs/cgroup").iterdir():
        d = ctrl / parent
        if d.is_dir():
            n += sum(1 for p in d.iterdir() if p.is_dir())
    return n


def cgroup_procs(parent: str) -> set[int]:
    pids: set[int] = set()
    for ctrl in Path("/sys/fs/cgroup").iterdir():
        d = ctrl / parent
        if d.is_dir():
            for procs in d.glob("*/cgroup.procs"):
                with contextlib.suppress(OSError):
                    pids.update(int(p) for p in procs.read_text().split())
    return pids


def remove_parent(parent: str) -> None:
    for ctrl in Path("/sys/fs/cgroup").iterdir():
        d = ctrl / parent
        if d.is_dir():
            for kid in d.iterdir():
                if kid.is_dir():
                    with contextlib.suppress(OSError):
                        kid.rmdir()
            with contextlib.suppress(OSError):
                d.rmdir()


def procs_with(marker: bytes) -> list[int]:
    """Processes whose command line holds ``marker`` (a monitor names its home)."""
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != os.getpid():
            with contextlib.suppress(OSError):
                if marker in Path(f"/proc/{name}/cmdline").read_bytes():
                    out.append(int(name))
    return out


def kill_after(p: subprocess.Popen[bytes], delay: float) -> None:
    time.sleep(delay)
    with contextlib.suppress(ProcessLookupError):
        p.send_signal(signal.SIGKILL)
    p.wait()


def settle(measure: Callable[[], dict[str, int]], timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        left = measure()
        if not any(left.values()) or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


# -- engine operations ---------------------------------------------------------------------------


def engine_trial(e: Engine, op: str, delay: float, settle_s: float) -> dict[str, int]:
    if op == "create":
        kill_after(e.popen("create", "busybox", "sleep", "300"), delay)
        ids = e.ids()
        if ids:
            e.run("rm", "-f", *ids)
    elif op == "run":
        kill_after(e.popen("run", "-d", "busybox", "sleep", "300"), delay)
        ids = e.ids()
        if ids:
            e.run("rm", "-f", *ids)
    elif op == "run --rm":
        kill_after(e.popen("run", "--rm", "busybox", "true"), delay)
        e.run("ps", "-a")
    elif op == "rm":
        cid = e.run("run", "-d", "busybox", "sleep", "300").stdout.strip()
        kill_after(e.popen("rm", "-f", cid), delay)
        e.run("rm", "-f", cid)
    else:
        raise SystemExit(f"unknown operation {op}")
    left = settle(e.leftovers, settle_s)
    if any(left.values()):
        e.clean()
    return left


# -- OCI create, ours beside runc -------------------------------------------------------------------


class Oci:
    def __init__(self, runtime: str, bundle: Path, parent: str) -> None:
        self.runtime = runtime
        self.root = Path(tempfile.gettempdir()) / f"ipf-oci-{uuid.uuid4().hex[:8]}"
        self.bundle = bundle
        self.parent = parent

    def argv(self, *args: str) -> list[str]:
        return [self.runtime, "--root", str(self.root), *args]

    def leftovers(self) -> dict[str, int]:
        out = dict.fromkeys(KINDS, 0)
        if self.root.exists():
            out["dirs"] = len(list(self.root.iterdir()))
        out["cgroups"] = count_cgroups(self.parent)
        out["procs"] = len(cgroup_procs(self.parent))
        with open("/proc/self/mountinfo") as f:
            out["mounts"] = sum(1 for ln in f if str(self.root) in ln)
        return out

    def trial(self, delay: float, settle_s: float) -> dict[str, int]:
        cid = f"isoproof-f{uuid.uuid4().hex[:8]}"
        p = subprocess.Popen(
            self.argv("create", "--bundle", str(self.bundle), cid),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        kill_after(p, delay)
        subprocess.run(self.argv("delete", "--force", cid), capture_output=True)
        left = settle(self.leftovers, settle_s)
        if any(left.values()):  # sweep by hand for the next trial
            for pid in cgroup_procs(self.parent):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
            remove_parent(self.parent)
            shutil.rmtree(self.root, ignore_errors=True)
        return left


def oci_bundle(tmp: Path, parent: str) -> Path:
    from runtime.busybox import ensure_rootfs

    subprocess.run(["runc", "spec", "--bundle", str(tmp)], check=True)
    spec = json.loads((tmp / "config.json").read_text())
    spec["root"] = {"path": str(ensure_rootfs()), "readonly": True}
    spec["process"]["terminal"] = False
    spec["process"]["args"] = ["sleep", "300"]
    spec["linux"]["cgroupsPath"] = f"/{parent}/c"
    (tmp / "config.json").write_text(json.dumps(spec))
    return tmp


# -- the table ---------------------------------------------------------------------------------------


def row(name: str, results: list[dict[str, int]]) -> str:
    bad = sum(1 for r in results if any(r.values()))
    totals = [sum(r[k] for r in results) for k in KINDS]
    cells = "".join(f"{t:>9}" for t in totals)
    return f"{name:<28}{len(results):>7}{bad:>8}{cells}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--max-delay", type=float, default=0.8)
    ap.add_argument("--settle", type=float, default=20.0)
    ap.add_argument("--ops", default="create,run,run --rm,rm,oci create")
    ap.add_argument("--seed", type=int, default=14)
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_faults: needs root", file=sys.stderr)
        return 1
    rng = random.Random(a.seed)
    ops = [o.strip() for o in a.ops.split(",") if o.strip()]
    lines = []
    header = f"{'operation (kill -9 client)':<28}{'trials':>7}{'leaky':>8}" + "".join(
        f"{k:>9}" for k in KINDS
    )
    for op in ops:
        if op == "oci create":
            parent = f"isoproof-fo{uuid.uuid4().hex[:6]}"
            tmp = Path(tempfile.mkdtemp(prefix="isoproof-fb-"))
            bundle = oci_bundle(tmp, parent)
            for runtime in (ISOPROOF_OCI, shutil.which("runc") or "/usr/sbin/runc"):
                oci = Oci(runtime, bundle, parent)
                delays = [rng.uniform(0, min(a.max_delay, 0.3)) for _ in range(a.trials)]
                results = [oci.trial(d, a.settle) for d in delays]
                lines.append(row(f"oci create ({Path(runtime).name})", results))
                print(lines[-1], file=sys.stderr, flush=True)
                shutil.rmtree(oci.root, ignore_errors=True)
            remove_parent(parent)
            shutil.rmtree(tmp, ignore_errors=True)
            continue
        e = Engine(ISOPROOF_OCI)
        try:
            delays = [rng.uniform(0, a.max_delay) for _ in range(a.trials)]
            results = [engine_trial(e, op, d, a.settle) for d in delays]
        finally:
            e.close()
        lines.append(row(f"isoproof {op}", results))
        print(lines[-1], file=sys.stderr, flush=True)
    print(f"kill -9 at a uniform random delay in [0, {a.max_delay}] s (OCI: [0, "
          f"{min(a.max_delay, 0.3)}] s), then the next command; leftovers summed over trials "
          "(dirs: container and runtime state directories)")  # fmt: skip
    print(header)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
