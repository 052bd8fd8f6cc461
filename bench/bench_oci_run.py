"""``isoproof-oci run`` vs ``runc run`` of the same busybox bundle running ``true``.

N runs of each, interleaved (ours, runc, ours, ...) so that machine noise hits both alike; prints
the median wall time of each and the ratio ours/runc (target <= 1.0). Also prints where our time
goes: interpreter start, module imports, and the runtime's own work.

    /work/venv/bin/python bench/bench_oci_run.py [-n 30]

Needs root, runc and busybox-static. Our runtime runs as ``<venv python> -S -m runtime.oci.cli``
(no ``site``: the editable-install hook alone costs ~10 ms) with bytecode compiled beforehand into
a private cache (``PYTHONPYCACHEPREFIX``), as an installed package would have it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from runtime.busybox import ensure_rootfs  # noqa: E402
from runtime.spec import default_spec  # noqa: E402

PYCACHE = "/var/cache/isoproof/pycache"


def wall(argv: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    p = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, cwd="/")  # fmt: skip
    dt = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({p.returncode}): {p.stderr.decode().strip()}")
    return dt * 1000


def med(xs: list[float]) -> str:
    return f"{statistics.median(xs):6.1f} ms (min {min(xs):5.1f}, max {max(xs):5.1f})"


def remove_cgroup_parent(parent: str) -> None:
    with open("/proc/self/mountinfo") as f:
        mounts = [ln.split()[4] for ln in f if " - cgroup" in ln]
    for m in mounts:
        d = os.path.join(m, parent)
        if os.path.isdir(d):
            for sub in sorted((os.path.join(d, x) for x in os.listdir(d)
                               if os.path.isdir(os.path.join(d, x))), reverse=True):  # fmt: skip
                os.rmdir(sub)
            os.rmdir(d)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=30)
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root")
    runc = shutil.which("runc")
    if runc is None:
        raise SystemExit("needs runc (apt-get install runc)")

    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONPYCACHEPREFIX=PYCACHE)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "runtime")], env=env,
                   check=True, stdout=subprocess.DEVNULL)  # fmt: skip

    tmp = Path(tempfile.mkdtemp(prefix="isoproof-bench-"))
    tag = f"isoproof-bench-{os.getpid()}"
    try:
        shutil.copytree(ensure_rootfs(), tmp / "rootfs", symlinks=True)
        cfg = default_spec()
        cfg["process"].update(terminal=False, args=["true"])
        cfg["linux"]["cgroupsPath"] = f"/{tag}/run"
        (tmp / "config.json").write_text(json.dumps(cfg))
        py = [sys.executable, "-S"]
        ours_cmd = [
            *py,
            "-m",
            "runtime.oci.cli",
            "--root",
            f"/run/{tag}",
            "run",
            "--bundle",
            str(tmp),
        ]
        runc_cmd = [runc, "--root", f"/run/{tag}-runc", "run", "--bundle", str(tmp)]
        ours: list[float] = []
        theirs: list[float] = []
        for i in range(args.n):
            ours.append(wall([*ours_cmd, f"o{i}"], env))
            theirs.append(wall([*runc_cmd, f"r{i}"], env))
        # Where our time goes: the interpreter alone, and the interpreter plus every module that
        # `run` imports (measured the same way, same cache).
        mods = ("runtime.oci.cli, runtime.oci.container, runtime.oci.init, runtime.oci.rootfs, "
                "runtime.oci.process, runtime.oci.plan, runtime.cgroups, runtime.cgroups.v1, _socket, "
                "select")  # fmt: skip
        bare = [wall([*py, "-c", "pass"], env) for _ in range(15)]
        imports = [wall([*py, "-c", f"import {mods}"], env) for _ in range(15)]
        site = [wall([sys.executable, "-c", "pass"], env) for _ in range(15)]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        for d in (f"/run/{tag}", f"/run/{tag}-runc"):
            shutil.rmtree(d, ignore_errors=True)
        remove_cgroup_parent(tag)

    m_ours, m_runc = statistics.median(ours), statistics.median(theirs)
    print(f"isoproof-oci run  (n={args.n}): {med(ours)}")
    print(f"runc run          (n={args.n}): {med(theirs)}")
    print(f"ratio isoproof/runc (median): {m_ours / m_runc:.2f}   (target <= 1.0)")
    print("where isoproof's time goes (medians):")
    print(f"  interpreter start (-S)            {statistics.median(bare):6.1f} ms")
    print(
        f"  + imports of the run path         {statistics.median(imports) - statistics.median(bare):6.1f} ms"
    )
    print(f"  runtime work (fork, namespaces, cgroup, mounts, exec, wait, delete) "
          f"{m_ours - statistics.median(imports):6.1f} ms")  # fmt: skip
    print(
        f"  (with site, as the console script runs: +{statistics.median(site) - statistics.median(bare):.1f} ms)"
    )


if __name__ == "__main__":
    main()
