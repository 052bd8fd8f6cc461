"""``isoproof matrix`` / ``python -m verify.matrix``: the verification suite across kernels.

    python -m verify.matrix                        # the five default legs
    python -m verify.matrix --leg 6.12-v2 --leg host --runtime oci:runc
    python -m verify.matrix --leg linux-image-6.1.0-50-amd64-v2 --leg ./my-kernel-tree-v1
    python -m verify.matrix --list                 # resolve kernels, print the plan, boot nothing

Every leg writes into ``RESULTS/legs/<leg>/``; the merged result set is ``RESULTS/matrix.json`` and
a summary table is printed. Exit status: 0 when every leg passed, 1 when one failed or errored, 2 on
bad usage.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import importlib.util
import itertools
import json
import os
import platform
import re
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from runtime.errors import IsoproofError
from verify.matrix import guest, kernels, merge, preflight, vm
from verify.matrix.legs import CgroupMode, LegSpec, MatrixError, parse_legs, runtimes_for

REPO = Path(__file__).resolve().parents[2]
DEFAULT_RESULTS = ".isoproof-results/matrix"
PAYLOADS = ("auto", "verify", "tests", "selfcheck")
GiB = 1 << 30
TCG_TIMEOUT_SCALE = 5


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not argparse's usage block
        raise MatrixError(f"{message} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="isoproof matrix",
        description="Run the verification suite across a kernel matrix of VMs (cgroup v1 and v2).",
        epilog="Exit status: 0 when every leg passed, 1 when one failed or errored, 2 on bad usage.",
    )
    p.add_argument("--leg", action="append", metavar="LEG",
                   help="host, 6.1-v1, 6.1-v2, 6.12-v1, 6.12-v2, PACKAGE-vN or PATH-vN "
                        "(repeatable; default: the five default legs)")  # fmt: skip
    p.add_argument("--runtime", action="append", metavar="RT",
                   help="runtime to verify in every leg (repeatable; default isoproof and "
                        "oci:runc, plus oci:crun in v2 legs)")  # fmt: skip
    p.add_argument("--payload", default=os.environ.get("ISOPROOF_MATRIX_PAYLOAD", "auto"),
                   help="verify (the verification suite), tests (pytest tests -m root), selfcheck "
                        "(leg self-check only), auto (verify when present), or a shell command")  # fmt: skip
    p.add_argument("--results", default=DEFAULT_RESULTS, metavar="DIR",
                   help=f"where legs and matrix.json go (default {DEFAULT_RESULTS})")  # fmt: skip
    p.add_argument("--jobs", type=int, default=0, help="legs at once (default: fit cores/memory)")
    p.add_argument("--timeout", type=float, default=1500.0, help="seconds per leg (default 1500)")
    p.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto",
                   help="kvm when /dev/kvm runs a guest, else tcg emulation (default: probe)")  # fmt: skip
    p.add_argument("--cpus", type=int, default=2, help="vCPUs per VM (default 2)")
    p.add_argument("--memory", default="2G", help="memory per VM (default 2G)")
    p.add_argument("--disk-size", default="2G", help="guest I/O disk, sparse (default 2G)")
    p.add_argument("--no-disk", action="store_true", help="give the guest no disk")
    p.add_argument("--python", default=sys.executable, help="interpreter the guest runs")
    p.add_argument("--list", action="store_true", help="resolve and print the legs; boot nothing")
    p.add_argument("--merge", action="append", metavar="DIR",
                   help="merge the matrix.json of earlier runs (one per CI job) into --results; "
                        "boots nothing (repeatable)")  # fmt: skip
    p.add_argument("suite_args", nargs="*", metavar="-- PYTEST_ARGS",
                   help="after --: passed to the payload's pytest (e.g. -- -m 'not timing')")  # fmt: skip
    return p


def parse_args(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(argv)


# --- planning --------------------------------------------------------------------------------


def memory_bytes(text: str) -> int:
    m = re.fullmatch(r"(\d+)([KMGT]?)i?B?", text.strip(), re.IGNORECASE)
    if not m:
        raise MatrixError(f"bad memory size {text!r}: use e.g. 2G or 512M")
    return (
        int(m.group(1))
        * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": GiB, "T": 1 << 40}[m.group(2).upper()]
    )


def available_memory() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def default_jobs(cpus_per_vm: int, mem_per_vm: int, accel: str) -> int:
    """Legs at once: each TCG vCPU wants a host core to itself (it is a busy emulator thread), a KVM
    guest can share; memory is never overcommitted (no swap). At least one."""
    cores = os.cpu_count() or 1
    by_cpu = cores // cpus_per_vm if accel == "tcg" else cores
    by_mem = (available_memory() - 2 * GiB) // mem_per_vm
    return max(1, min(by_cpu, by_mem))


def payload_argv(
    kind: str,
    python: str,
    leg_dir: Path,
    runtimes: list[str],
    in_guest: bool,
    extra: list[str] | None = None,
) -> list[str]:
    """The command a leg runs (after the self-check, in a guest); ``extra`` goes to its pytest."""
    extra = list(extra or [])
    record = [
        "-p",
        "verify.matrix.collect",
        "--isoproof-matrix-json",
        str(leg_dir / "payload.json"),
    ]
    if kind == "auto":
        kind = "verify" if importlib.util.find_spec("verify.plugin") else "tests"
    if kind == "verify":
        argv = [python, "-m", "verify.cli", *record, "--isoproof-results", str(leg_dir / "suite")]
        for rt in runtimes:
            argv += ["--runtime", rt]
        return argv + extra
    if kind == "tests":
        # The repo's root tests, minus the matrix's own (they would boot VMs inside the VM). Paths
        # leading ``extra`` (``-- tests/integration/test_x.py -k ...``) narrow it to those files,
        # so a guest does not import every test module to run one.
        paths = list(itertools.takewhile(lambda a: not a.startswith("-"), extra))
        return [
            python,
            "-m",
            "pytest",
            *record,
            *(paths or ["tests"]),
            "-m",
            "root",
            "--ignore-glob=*test_matrix*",
            *extra[len(paths) :],
        ]
    if kind == "selfcheck":
        if in_guest:
            return ["true"]  # the guest script runs the self-check before every payload
        return [python, "-m", "pytest", *record, "-q", guest.SELFCHECK_MODULE]
    return ["sh", "-c", kind]


@dataclass
class Leg:
    spec: LegSpec
    mode: CgroupMode
    runtimes: list[str]
    kernel: kernels.KernelTree | None = None
    error: str | None = None

    @property
    def release(self) -> str:
        if self.kernel is not None:
            return self.kernel.release
        return platform.release() if not self.spec.is_vm else "?"


def plan_legs(specs: list[LegSpec], requested_runtimes: list[str] | None) -> list[Leg]:
    """Resolve every leg's kernel; a leg whose kernel cannot be had is kept, as an error."""
    legs = []
    for spec in specs:
        mode = spec.mode if spec.mode is not None else vm.host_cgroup_mode()
        leg = Leg(spec, mode, runtimes_for(mode, requested_runtimes))
        if spec.is_vm:
            try:
                leg.kernel = kernels.kernel_for(spec)
            except IsoproofError as e:
                leg.error = f"kernel: {e}"
        legs.append(leg)
    return legs


# --- running ---------------------------------------------------------------------------------


class Matrix:
    def __init__(
        self, args: argparse.Namespace, legs: list[Leg], results: Path, accel: str
    ) -> None:
        self.args = args
        self.legs = legs
        self.results = results
        self.accel = accel
        self.lock = threading.Lock()
        self.interrupted = False
        self.fast: list[Path] = []
        if any(leg.spec.is_vm for leg in legs):
            self.fast = vm.guest_fast_paths(args.python, REPO)
            vm.precompile(args.python, REPO)

    def leg_dir(self, leg: Leg) -> Path:
        safe = re.sub(r"[^A-Za-z0-9._+-]", "_", leg.spec.name.strip("./~"))
        return self.results / "legs" / safe

    def run_one(self, leg: Leg) -> merge.LegResult:
        d = self.leg_dir(leg)
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        res = merge.LegResult(leg=leg.spec.name, kernel=leg.release, cgroup_mode=str(leg.mode),
                              runtimes=leg.runtimes)  # fmt: skip
        if leg.kernel is not None:
            res.kernel_package = leg.kernel.package
            res.kernel_version = leg.kernel.version
            res.kernel_sha256 = leg.kernel.deb_sha256
        if leg.error:
            (d / "console.log").write_text(leg.error + "\n")
            res.dir, res.console_log, res.reason = str(d.relative_to(self.results)), "", leg.error
            return res
        payload = payload_argv(self.args.payload, self.args.python, d, leg.runtimes, leg.spec.is_vm,
                               self.args.suite_args)  # fmt: skip
        self.say(f"{leg.spec.name}: starting ({leg.release}, cgroup {leg.mode})")
        if leg.spec.is_vm:
            assert leg.kernel is not None
            res.accel = self.accel
            if leg.mode is CgroupMode.V1:
                res.v1_unavailable = kernels.v1_unavailable(kernels.kernel_config(leg.kernel))
            env = {
                "ISOPROOF_EXPECT_RELEASE": leg.kernel.release,
                "ISOPROOF_EXPECT_PYTHON": self.args.python,
                "ISOPROOF_V1_UNAVAILABLE": " ".join(res.v1_unavailable),
                "ISOPROOF_VERIFY_WORKDIR": f"{guest.DISK_MOUNT}/verify",
                "ISOPROOF_CACHE": str(kernels.cache_root().parent),
                # For the suite's own waits (probe helpers, container start): an emulated guest
                # runs Python 5-10x slower than the host, so a 10 s wait needs scaling there.
                "ISOPROOF_GUEST_ACCEL": self.accel,
                "ISOPROOF_TIMEOUT_SCALE": "1" if self.accel == "kvm" else str(TCG_TIMEOUT_SCALE),
            }
            if self.args.no_disk:
                env.pop("ISOPROOF_VERIFY_WORKDIR")
            plan = guest.GuestPlan(
                leg=leg.spec.name, mode=leg.mode, leg_dir=d, repo=REPO, python=self.args.python,
                payload=payload, disk=not self.args.no_disk, cache=kernels.cache_root().parent,
                env=env, fast=self.fast,
            )  # fmt: skip
            cfg = vm.VmConfig(cpus=self.args.cpus, memory=self.args.memory,
                              disk_size=self.args.disk_size, accel=self.accel,
                              timeout_s=self.args.timeout)  # fmt: skip
            out = vm.run_vm_leg(plan, leg.kernel, cfg)
        else:
            env = {"ISOPROOF_LEG": leg.spec.name, "ISOPROOF_LEG_DIR": str(d),
                   "ISOPROOF_CGROUP_MODE": str(leg.mode)}  # fmt: skip
            out = vm.run_host_leg(d, payload, REPO, self.args.timeout, env)
        res.wall_s, res.boot_s = (
            round(out.wall_s, 1),
            (round(out.boot_s, 1) if out.boot_s is not None else None),
        )
        merge.read_leg(res, d, self.results, out.timed_out, out.rc)
        if vm.stopping() and not (d / "exit-status").exists():
            # We stopped this VM (Ctrl-C, SIGTERM), it did not die: say so. Its finished tests stay.
            res.status, res.reason = "error", "interrupted"
        self.say(f"{leg.spec.name}: {res.status} in {res.wall_s:.0f}s"
                 + (f" ({res.reason})" if res.reason else ""))  # fmt: skip
        return res

    def say(self, msg: str) -> None:
        with self.lock:
            print(f"isoproof matrix: {msg}", file=sys.stderr, flush=True)

    def run_safe(self, leg: Leg) -> merge.LegResult:
        try:
            return self.run_one(leg)
        except Exception as e:  # a bug in one leg must not lose the others' results
            return self.not_run(leg, f"internal: {e!r}")
        except KeyboardInterrupt:  # only the main thread sees it: the host leg
            self.interrupted = True
            vm.kill_all()
            return self.not_run(leg, "interrupted")

    @staticmethod
    def not_run(leg: Leg, reason: str) -> merge.LegResult:
        return merge.LegResult(leg=leg.spec.name, kernel=leg.release, cgroup_mode=str(leg.mode),
                               reason=reason)  # fmt: skip

    def run(self, jobs: int) -> list[merge.LegResult]:
        done: dict[str, merge.LegResult] = {}
        # The host leg runs alone, before any VM: its timing checks measure absolute CPU time on the
        # host, and a TCG guest keeps every host core busy (seen: a 30% quota check got 18% of a
        # CPU while a VM leg ran beside it).
        for leg in (leg for leg in self.legs if not leg.spec.is_vm):
            done[leg.spec.name] = self.run_safe(leg)
        vms = [leg for leg in self.legs if leg.spec.is_vm]
        if self.interrupted:
            vms, skipped = [], vms
            for leg in skipped:
                done[leg.spec.name] = self.not_run(leg, "not run: the matrix was interrupted")
        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(self.run_safe, leg) for leg in vms]
            try:
                for leg, fut in zip(vms, futures, strict=True):
                    done[leg.spec.name] = fut.result()
            except KeyboardInterrupt:  # Ctrl-C / SIGTERM: stop every VM, keep what finished
                self.interrupted = True
                for fut in futures:
                    fut.cancel()
                vm.kill_all()
                for leg, fut in zip(vms, futures, strict=True):
                    if not fut.cancelled():
                        done[leg.spec.name] = fut.result()  # a killed leg reports itself
                    else:
                        done[leg.spec.name] = self.not_run(
                            leg, "not run: the matrix was interrupted"
                        )
        return [done[leg.spec.name] for leg in self.legs]


def host_facts(accel: str, why: str) -> dict[str, Any]:
    return {
        "kernel": platform.release(),
        "cgroup_mode": str(vm.host_cgroup_mode()),
        "cpus": os.cpu_count(),
        "accel": accel,
        "accel_why": why,
        "python": sys.executable,
    }


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = parse_args(argv)
    except IsoproofError as e:
        print(f"isoproof matrix: {e}", file=sys.stderr)
        return 2
    # SIGTERM (CI cancelling the job) must run the finalisers that kill the VMs.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return run(args)
    except IsoproofError as e:
        print(f"isoproof matrix: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("isoproof matrix: interrupted; VMs stopped", file=sys.stderr)
        return 130


def merge_only(args: argparse.Namespace) -> int:
    """``--merge DIR...``: combine the result sets of legs run elsewhere (CI jobs, other hosts)."""
    docs = []
    for d in args.merge:
        path = Path(d) if d.endswith(".json") else Path(d) / "matrix.json"
        try:
            docs.append(json.loads(path.read_text()))
        except (OSError, ValueError) as e:
            raise MatrixError(f"cannot read {path}: {e}") from None
    try:
        doc, legs = merge.combine(docs, {"merged": True})
    except (TypeError, ValueError) as e:
        raise MatrixError(str(e)) from None
    results = Path(args.results).absolute()
    results.mkdir(parents=True, exist_ok=True)
    (results / "matrix.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
    print(merge.summary_table(legs))
    print(f"merged results: {results / 'matrix.json'}")
    write_html_report(results / "matrix.json")
    return 0 if legs and all(leg.status == "passed" for leg in legs) else 1


def run(args: argparse.Namespace) -> int:
    if args.merge:
        return merge_only(args)
    if args.payload not in PAYLOADS and " " not in args.payload and not shutil.which(args.payload):
        raise MatrixError(f"bad --payload {args.payload!r}: use {', '.join(PAYLOADS)} or a command")
    if args.cpus < 1 or args.timeout <= 0 or args.jobs < 0:
        raise MatrixError("--cpus, --timeout must be positive and --jobs not negative")
    mem = memory_bytes(args.memory)
    specs = parse_legs(args.leg)
    if any(s.is_vm for s in specs) and not args.list and os.geteuid() != 0:
        raise MatrixError("VM legs need root (apt-get download, qemu, cgroup mounts in guest)")
    if any(s.is_vm for s in specs) and not args.list:
        preflight.check()
    legs = plan_legs(specs, args.runtime)
    accel, why = "none", "no VM legs"
    first = next((leg.kernel for leg in legs if leg.kernel is not None), None)
    if first is not None:
        accel, why = (args.accel, "--accel") if args.accel != "auto" else ("?", "not probed")
        if args.accel == "auto" and not args.list:
            accel, why = vm.detect_accel(first)
    if args.list:
        for leg in legs:
            k = leg.kernel
            where = f"{k.vmlinuz} ({k.package or 'local'} {k.version or ''})" if k else "-"
            print(f"{leg.spec.name:12} {leg.release:24} cgroup {leg.mode!s:6} "
                  f"{','.join(leg.runtimes):28} {leg.error or where}")  # fmt: skip
        return 0
    jobs = args.jobs or default_jobs(args.cpus, mem, accel)
    results = Path(args.results).absolute()
    results.mkdir(parents=True, exist_ok=True)
    print(f"isoproof matrix: {len(legs)} legs, {jobs} at a time, accel {accel} ({why}), "
          f"results in {results}", file=sys.stderr)  # fmt: skip
    start = time.time()
    matrix = Matrix(args, legs, results, accel)
    out = matrix.run(jobs)
    total = time.time() - start
    doc = merge.result_set(out, host_facts(accel, why))
    doc["wall_s"] = round(total, 1)
    doc["jobs"] = jobs
    (results / "matrix.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
    print(merge.summary_table(out, total))
    print(f"merged results: {results / 'matrix.json'}")
    write_html_report(results / "matrix.json")
    if matrix.interrupted:
        print("isoproof matrix: interrupted; VMs stopped", file=sys.stderr)
        return 130
    return 0 if all(r.status == "passed" for r in out) else 1


# --- HTML report (reports/) ----------------------------------------------------------------------


def write_html_report(matrix_json: Path) -> None:
    """``report.html`` beside matrix.json. It only presents the verdicts: a report that cannot be
    made is one warning line and never changes the matrix's exit status."""
    from reports.cli import write_report

    try:
        out = write_report([], [matrix_json], matrix_json.parent / "report.html")
    except Exception as e:
        why = str(e) if isinstance(e, IsoproofError) else repr(e)
        print(f"isoproof matrix: warning: no HTML report: {why}", file=sys.stderr)
    else:
        print(f"isolation report: {out}")
