"""What podman's seccomp profile costs: building and loading it, and a whole ``run`` with it.

1. In this process: validating podman 4.3's profile (tests/data/seccomp, 19 rules, 434 names),
   building the libseccomp filter (name resolution, three architectures), and loading it in a
   forked child (seccomp_load: libseccomp generates the BPF and the kernel takes it). Medians of
   ``-n`` repetitions.
2. ``run`` of a busybox ``true`` bundle with and without that profile, ours (``python -S -m
   runtime.oci.cli``) and runc's, in rotating order so that machine noise hits all alike; the
   difference of the medians is what the profile adds to each runtime's run.

    python bench/bench_seccomp.py [-n 20]

Part 2 needs root, runc and the busybox rootfs; part 1 needs only libseccomp2.
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
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from runtime import seccomp  # noqa: E402

PYCACHE = "/var/cache/isoproof/pycache"
PROFILE = json.loads((REPO / "tests/data/seccomp/podman-4.3-default.json").read_text())


def ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1e3


def in_process(n: int) -> None:
    parse, build, load = [], [], []
    lib = seccomp.Lib.get()
    for _ in range(n):
        t = time.perf_counter()
        p = seccomp.parse(PROFILE)
        parse.append(ms(t))
        t = time.perf_counter()
        f = seccomp.build(p, None, lib)
        build.append(ms(t))
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(38, 1, 0, 0, 0)  # no_new_privs
            t = time.perf_counter()
            f.load()
            os.write(w, str(ms(t)).encode())
            os._exit(0)
        os.close(w)
        load.append(float(os.read(r, 64)))
        os.close(r)
        os.waitpid(pid, 0)
        f.release()
    print(f"podman profile: {len(PROFILE['syscalls'])} rules, "
          f"{sum(len(r['names']) for r in PROFILE['syscalls'])} names, {n} repetitions (median ms)")  # fmt: skip
    for name, xs in (("parse (validate)", parse), ("build (libseccomp)", build),
                     ("load (fork child)", load)):  # fmt: skip
        print(f"  {name:<20} {statistics.median(xs):8.2f}  (min {min(xs):.2f}, max {max(xs):.2f})")
    total = statistics.median(parse) + statistics.median(build) + statistics.median(load)
    print(f"  {'total':<20} {total:8.2f}")


def bundles(tmp: Path) -> dict[str, Path]:
    from runtime.busybox import ensure_rootfs
    from runtime.spec import default_spec

    rootfs = ensure_rootfs()
    out = {}
    for name, prof in (("plain", None), ("podman", PROFILE)):
        b = tmp / name
        b.mkdir()
        shutil.copytree(rootfs, b / "rootfs", symlinks=True)
        cfg = default_spec()
        cfg["process"]["terminal"] = False
        cfg["process"]["args"] = ["true"]
        cfg["process"]["noNewPrivileges"] = False  # as podman sends it
        cfg["linux"]["cgroupsPath"] = f"/isoproof-bench-seccomp/{name}"
        if prof is not None:
            cfg["linux"]["seccomp"] = prof
        (b / "config.json").write_text(json.dumps(cfg))
        out[name] = b
    return out


def whole_run(n: int) -> None:
    runc = shutil.which("runc")
    if os.geteuid() != 0 or runc is None:
        print("run with and without the profile: skipped (needs root and runc)")
        return
    tmp = Path(tempfile.mkdtemp(prefix="isoproof-bench-seccomp-"))
    # bytecode compiled once into a private cache, as an installed package has it (this
    # environment sets PYTHONDONTWRITEBYTECODE: without it every run would recompile us)
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONPYCACHEPREFIX=PYCACHE)
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(REPO / "runtime")],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    ours = [sys.executable, "-S", "-m", "runtime.oci.cli", "--root", str(tmp / "ours")]
    theirs = [runc, "--root", str(tmp / "runc")]
    try:
        bs = bundles(tmp)
        variants = [(rt, kind, cmd) for rt, cmd in (("isoproof-oci", ours), ("runc", theirs))
                    for kind in ("plain", "podman")]  # fmt: skip
        times: dict[tuple[str, str], list[float]] = {(rt, k): [] for rt, k, _ in variants}
        for i in range(n):
            for rt, kind, cmd in variants[i % 4 :] + variants[: i % 4]:
                t = time.perf_counter()
                subprocess.run([*cmd, "run", "--bundle", str(bs[kind]), f"isoproof-bench-{kind}"],
                               env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               check=True)  # fmt: skip
                times[(rt, kind)].append(ms(t))
        print(
            f"run of `true`, {n} rounds in rotating order (median wall ms), load {os.getloadavg()[0]:.1f}"
        )
        for rt in ("isoproof-oci", "runc"):
            plain = statistics.median(times[(rt, "plain")])
            pod = statistics.median(times[(rt, "podman")])
            print(
                f"  {rt:<13} without {plain:7.1f}   with podman's profile {pod:7.1f}   "
                f"added {pod - plain:+6.1f}"
            )
        ours_add = statistics.median(times[("isoproof-oci", "podman")])
        print(
            f"  with the profile, isoproof-oci / runc: "
            f"{ours_add / statistics.median(times[('runc', 'podman')]):.2f}"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        for m in ("cpu", "cpuacct", "memory", "pids", "devices", "freezer", "blkio", "cpuset",
                  "systemd", "unified", "net_cls", "net_prio", "perf_event", "hugetlb", "rdma",
                  "misc"):  # fmt: skip
            for d in ("plain", "podman", ""):
                with contextlib.suppress(OSError):
                    os.rmdir(f"/sys/fs/cgroup/{m}/isoproof-bench-seccomp/{d}".rstrip("/"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=20)
    a = ap.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    in_process(a.n)
    whole_run(a.n)


if __name__ == "__main__":
    main()
