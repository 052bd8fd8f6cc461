"""Engine benchmarks: prints figures, asserts nothing about time.

* ``isoproof run --rm busybox true`` median wall time (bridge network and ``--network none``), next to
  ``runc run`` of a plain busybox bundle measured in the same run (the floor an engine adds to) and,
  where podman is installed, ``podman run --rm --network none`` of the same rootfs on the same runc;
* the monitor's memory per detached container (RSS and PSS from ``/proc/PID/smaps_rollup``);
* the time to start 50 detached containers one after another, and to remove them with one ``rm -f``.

Each figure is measured for every OCI runtime given (default: runc and isoproof-oci). Private home,
bridge, subnet and cgroup parent, all removed at the end.

    /work/venv/bin/python bench/bench_engine.py [--runs 20] [--many 50] [--runtime PATH ...]
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
from pathlib import Path

ISOPROOF = str(Path(sys.executable).parent / "isoproof")


def env_for(runtime: str, tag: str) -> dict[str, str]:
    return {
        **os.environ,
        "ISOPROOF_HOME": f"/tmp/ipb-{tag}",
        "ISOPROOF_OCI_RUNTIME": runtime,
        "ISOPROOF_BRIDGE": f"isoproofB{tag[:6]}",
        "ISOPROOF_SUBNET": "172.31.250.0/24",
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


def monitor_memory(env: dict[str, str], count: int) -> tuple[float, float]:
    ids = [iso(env, "run", "-d", "busybox", "sleep", "300").strip() for _ in range(count)]
    time.sleep(0.5)
    rss, pss = [], []
    for cid in ids:
        st = json.loads(
            (Path(env["ISOPROOF_HOME"]) / "containers" / cid / "state.json").read_text()
        )
        pid = st["MonitorPid"]
        fields = {}
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
            k, v = line.split(":", 1)
            fields[k] = int(v.split()[0])
        rss.append(fields["Rss"] / 1024)
        pss.append(fields["Pss"] / 1024)
    iso(env, "rm", "-f", *ids)
    return statistics.median(rss), statistics.median(pss)


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
    a = ap.parse_args()
    runtimes = a.runtime or [
        shutil.which("runc") or "runc",
        str(Path(sys.executable).parent / "isoproof-oci"),
    ]
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
            rss, pss = monitor_memory(env, 5)
            print(
                f"[{name}] monitor memory per detached container: RSS {rss:.1f} MiB, PSS {pss:.1f} MiB"
            )
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
