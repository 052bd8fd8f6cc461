"""How closely the kernel holds the limits isoproof writes: CPU split under shares and O_DIRECT
write rate under a write-bps throttle, each over N runs. Prints figures; asserts nothing.

    sudo /work/venv/bin/python bench/bench_cgroup_limits.py [--runs 5] [--seconds 4] [--mib 20]

CPU: two busy loops in sibling cgroups with shares 512 and 1024, both pinned to CPU 0; the expected
ratio is the one the kernel was given (1024:512 on v1; on v2 the converted weights 100:59).
I/O: dd of N MiB with oflag=direct to a scratch loop device under write_bps = 10 MiB/s.
Error = (measured - expected) / expected. Run it on a quiet machine: other load on CPU 0 does not
change the split between the two cgroups much, but disk and scheduler noise widens the spread.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import uuid
from pathlib import Path

from runtime.cgroups import Manager, new_manager
from runtime.cgroups.testing import cpu_split, direct_write_rate, loop_device

MiB = 1 << 20


def written_weight(mgr: Manager) -> int:
    ctrl, name = ("cpu", "cpu.shares") if mgr.version == 1 else ("", "cpu.weight")
    return int(Path(mgr.paths()[ctrl], name).read_text())


def summary(label: str, errors: list[float], unit_values: list[str]) -> None:
    mean = statistics.mean(errors)
    spread = (max(errors) - min(errors)) if len(errors) > 1 else 0.0
    sd = statistics.stdev(errors) if len(errors) > 1 else 0.0
    print(f"{label}: runs {', '.join(unit_values)}")
    print(
        f"{label}: mean error {mean * 100:+.1f}%  spread (max-min) {spread * 100:.1f} pts  stdev {sd * 100:.1f} pts"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--mib", type=int, default=20)
    ap.add_argument("--rate-mib", type=int, default=10)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print(
            "bench_cgroup_limits: needs root (creates cgroups and a loop device)", file=sys.stderr
        )
        return 1
    parent = f"isoproof-b{os.getpid()}-{uuid.uuid4().hex[:4]}"
    made: list[Manager] = []

    def cg(name: str, resources: dict) -> Manager:
        mgr = new_manager(f"/{parent}/{name}", name)
        made.append(mgr)
        mgr.create()
        mgr.set(resources)
        return mgr

    try:
        lo = cg("lo", {"cpu": {"shares": 512, "cpus": "0"}})
        hi = cg("hi", {"cpu": {"shares": 1024, "cpus": "0"}})
        expected = written_weight(hi) / written_weight(lo)
        print(
            f"cgroup v{lo.version} ({lo.mode.value}); asked shares 1024:512 = 2.00, "
            f"kernel given {written_weight(hi)}:{written_weight(lo)} = {expected:.2f}"
        )
        errors, values = [], []
        for _ in range(args.runs):
            used_lo, used_hi = cpu_split(lo, hi, args.seconds)
            ratio = used_hi / used_lo
            errors.append(ratio / expected - 1)
            values.append(f"{ratio:.3f}")
        summary("cpu split", errors, values)

        rate = args.rate_mib * MiB
        with loop_device(max(64, args.mib * 2)) as dev:
            io = cg(
                "io",
                {
                    "blockIO": {
                        "throttleWriteBpsDevice": [
                            {"major": dev.major, "minor": dev.minor, "rate": rate}
                        ]
                    }
                },
            )
            free = cg("free", {})
            unthrottled = direct_write_rate(free, dev.path, args.mib)
            # dd keeps one request in flight: service time adds to the throttle's wait, and the
            # rate seen is about 1/(1/limit + 1/unthrottled); below 20x that costs over 5%.
            if unthrottled < 20 * rate:
                print(
                    f"write bps: warning: the device does only {unthrottled / MiB:.1f} MiB/s "
                    f"unthrottled; a {args.rate_mib} MiB/s limit measures the device, not the throttle"
                )
            errors, values = [], []
            for _ in range(args.runs):
                measured = direct_write_rate(io, dev.path, args.mib)
                errors.append(measured / rate - 1)
                values.append(f"{measured / MiB:.2f}")
            print(
                f"write bps: limit {args.rate_mib} MiB/s; unthrottled peer in this run {unthrottled / MiB:.0f} MiB/s"
            )
            summary("write bps (MiB/s)", errors, values)
    finally:
        for mgr in made:
            mgr.kill_all()
            mgr.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
