"""Running one leg: a virtme-ng VM (or the host itself), with a deadline and its console kept.

Each leg runs in its own process group (``start_new_session``), so a timeout or Ctrl-C kills vng,
virtme-run, qemu and virtiofsd together and never leaves a VM behind. The leg's verdict comes from
files the guest writes (see ``guest.py``): a leg without ``exit-status`` panicked, hung, timed out or
was killed, and is reported as an error with its console log.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from verify.matrix import guest
from verify.matrix.kernels import KernelTree, cache_root
from verify.matrix.legs import CgroupMode, MatrixError

KVM_DEVICE = Path("/dev/kvm")
ACCEL_CACHE = "accel.json"
PROBE_TIMEOUT_S = 60.0
# What qemu prints when KVM cannot run the guest (seen here: the MSR error, or an emulation failure
# that leaves qemu hanging); the probe stops at the first sign instead of waiting out its timeout.
KVM_FAILURE = re.compile(r"failed to set MSR[^\n]*|KVM internal error[^\n]*|emulation failure")
KILL_GRACE_S = 5.0


def vng_binary() -> str:
    """vng from the running interpreter's venv (it calls virtme-run by name: PATH must hold it)."""
    beside = Path(sys.executable).parent / "vng"
    if beside.exists():
        return str(beside)
    found = shutil.which("vng")
    if not found:
        raise MatrixError("vng (virtme-ng) not found: pip install 'isoproof[matrix]'")
    return found


def vm_env() -> dict[str, str]:
    path = (
        f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
    )
    return dict(os.environ, PATH=path)


@dataclass
class VmConfig:
    cpus: int = 2
    memory: str = "2G"
    disk_size: str = "2G"
    accel: str = "tcg"  # "kvm" or "tcg"
    timeout_s: float = 1200.0


def vng_argv(
    kernel: KernelTree,
    leg_dir: Path,
    cfg: VmConfig,
    disk: Path | None,
    cache: Path | None,
    cwd: Path,
    fast: list[Path] | None = None,
) -> list[str]:
    """The vng command line for one leg (pure: unit tests read it)."""
    argv = [vng_binary(), "--run", str(kernel.vmlinuz), "--cpus", str(cfg.cpus)]
    argv += ["--memory", cfg.memory, "--rwdir", str(leg_dir), "--cwd", str(cwd)]
    # --verbose keeps the kernel log on the console: it is the only record of a panic.
    argv += ["--verbose", "--name", "isoproof-vm"]
    if cfg.accel != "kvm":
        argv.append("--disable-kvm")
    if disk is not None:
        argv += ["--disk", str(disk)]
    if cache is not None:
        argv += [f"--rodir={guest.CACHE_SHARE}={cache}"]
    if fast:
        argv += [f"--rodir={guest.FAST_SHARE}=/"]
    argv += ["--exec", f"sh {leg_dir / guest.GUEST_SCRIPT}"]
    return argv


def make_disk(path: Path, size: str) -> Path:
    """A sparse ext4 image for the guest's I/O checks (made on the host: no root needed)."""
    path.unlink(missing_ok=True)
    subprocess.run(["truncate", "-s", size, str(path)], check=True)
    proc = subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-L", "isoproof", str(path)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise MatrixError(f"mkfs.ext4 {path} failed: {proc.stderr.strip()}")
    return path


@dataclass
class Outcome:
    """How a leg's process ended, before its results are read."""

    rc: int | None  # None: killed by us (timeout)
    wall_s: float
    boot_s: float | None
    timed_out: bool = False


# Every leg process group alive right now, so an interrupted matrix can stop them all.
_LIVE: set[subprocess.Popen[bytes]] = set()
_LIVE_LOCK = threading.Lock()


_STOPPING = threading.Event()


def stopping() -> bool:
    """True once ``kill_all`` ran: legs ending now were stopped by us."""
    return _STOPPING.is_set()


def kill_all() -> None:
    """Stop every leg's process group now, and refuse to start new ones."""
    with _LIVE_LOCK:
        _STOPPING.set()
        procs = list(_LIVE)
    for proc in procs:
        kill_group(proc)


def run_group(
    argv: list[str],
    log: Path,
    timeout_s: float,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    pgid_file: Path | None = None,
    booted: Path | None = None,
    abort_on: re.Pattern[str] | None = None,
) -> Outcome:
    """Run ``argv`` in its own session with output to ``log``; kill the whole group on timeout (or
    as soon as ``abort_on`` shows up in the log)."""
    start = time.time()
    with log.open("wb") as out, _LIVE_LOCK:
        if _STOPPING.is_set():
            raise MatrixError("interrupted before the leg started")
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        _LIVE.add(proc)
    if pgid_file is not None:
        pgid_file.write_text(f"{proc.pid}\n")
    timed_out = False
    try:
        rc = _wait(proc, start + timeout_s, log, abort_on)
        timed_out = rc is None
    except BaseException:
        kill_group(proc)
        raise
    finally:
        if timed_out:
            kill_group(proc)
        else:
            # vng exits when qemu does; anything still in the group (virtiofsd) goes too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        with _LIVE_LOCK:
            _LIVE.discard(proc)
    wall = time.time() - start
    boot = None
    if booted is not None and booted.exists():
        boot = max(0.0, booted.stat().st_mtime - start)
    return Outcome(rc=rc, wall_s=wall, boot_s=boot, timed_out=timed_out)


def _wait(
    proc: subprocess.Popen[bytes], deadline: float, log: Path, abort_on: re.Pattern[str] | None
) -> int | None:
    """The exit code, or None when the deadline passed or ``abort_on`` matched the log."""
    while True:
        step = min(0.5, deadline - time.time()) if abort_on is not None else deadline - time.time()
        if step <= 0:
            return None
        try:
            return proc.wait(timeout=step)
        except subprocess.TimeoutExpired:
            pass
        if abort_on is not None and abort_on.search(log.read_text(errors="replace")):
            return None


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """TERM the leg's process group, then KILL it; reap the leader."""
    for sig, grace in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, KILL_GRACE_S)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=grace)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


# --- KVM or TCG ------------------------------------------------------------------------------


def qemu_version() -> str:
    try:
        out = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise MatrixError("qemu-system-x86_64 not found (apt-get install qemu-system-x86)") from exc
    return out.stdout.splitlines()[0] if out.stdout else "unknown"


def accel_key() -> str:
    return f"{platform.release()} | {qemu_version()}"


def kvm_usable_device() -> bool:
    return KVM_DEVICE.exists() and os.access(KVM_DEVICE, os.R_OK | os.W_OK)


def detect_accel(kernel: KernelTree, cache: Path | None = None) -> tuple[str, str]:
    """Return ("kvm"|"tcg", why). A working /dev/kvm is not enough: on some hosts qemu dies with
    "failed to set MSR 0x10a" or hangs in an emulation failure, so we boot a tiny guest once with
    KVM and cache the answer per (host kernel, qemu version)."""
    forced = os.environ.get("ISOPROOF_ACCEL")
    if forced in ("kvm", "tcg"):
        return forced, "ISOPROOF_ACCEL"
    if not kvm_usable_device():
        return "tcg", f"{KVM_DEVICE} missing or not read-writable"
    path = (cache or cache_root()) / ACCEL_CACHE
    key = accel_key()
    with contextlib.suppress(OSError, ValueError):
        known = json.loads(path.read_text())
        if known.get("key") == key and known.get("accel") in ("kvm", "tcg"):
            return known["accel"], f"cached probe ({path})"
    accel, why = probe_kvm(kernel)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps({"key": key, "accel": accel, "why": why}) + "\n")
    tmp.replace(path)  # concurrent matrix runs never read half a file
    return accel, why


def probe_kvm(kernel: KernelTree) -> tuple[str, str]:
    """Boot ``kernel`` with KVM to run one shell command; TCG unless the marker comes back."""
    with tempfile.TemporaryDirectory(prefix="isoproof-kvmprobe-") as tmp:
        d = Path(tmp)
        marker = d / "ok"
        (d / guest.GUEST_SCRIPT).write_text(f"echo ok > {marker}\n")
        cfg = VmConfig(cpus=1, memory="512M", accel="kvm", timeout_s=PROBE_TIMEOUT_S)
        argv = vng_argv(kernel, d, cfg, None, None, d)
        out = run_group(
            argv, d / "console.log", PROBE_TIMEOUT_S, env=vm_env(), cwd=d, abort_on=KVM_FAILURE
        )
        if marker.exists():
            return "kvm", f"KVM probe booted in {out.wall_s:.1f}s"
        text = (d / "console.log").read_text(errors="replace")
        m = KVM_FAILURE.search(text)
        why = m.group(0) if m else ("timed out" if out.timed_out else f"exit {out.rc}")
        return "tcg", f"KVM probe failed: {why}"


def guest_fast_paths(python: str, repo: Path) -> list[Path]:
    """What the guest should see through a page cache (see ``guest.FAST_SHARE``): the guest
    interpreter's prefix and base prefix (a venv and the Python it was made from), the repo, /usr."""
    proc = subprocess.run(
        [python, "-c", "import sys; print(sys.prefix); print(sys.base_prefix)"],
        capture_output=True, text=True,
    )  # fmt: skip
    if proc.returncode != 0:
        raise MatrixError(f"guest interpreter {python} does not run: {proc.stderr.strip()}")
    prefixes = [Path(line) for line in proc.stdout.split()]
    return guest.fast_paths([*prefixes, repo, Path("/usr")])


def precompile(python: str, repo: Path) -> None:
    """Write the repo's bytecode on the host: the guest sees the repo read-only and would otherwise
    compile every module of ours from source in each emulated interpreter it starts."""
    dirs = [str(repo / d) for d in ("runtime", "verify", "reports", "tests") if (repo / d).is_dir()]
    subprocess.run([python, "-m", "compileall", "-q", "-j", "0", *dirs], capture_output=True)


# --- one leg --------------------------------------------------------------------------------


def run_vm_leg(plan: guest.GuestPlan, kernel: KernelTree, cfg: VmConfig) -> Outcome:
    """Boot the leg's kernel, run its guest script, wait (up to the timeout), clean up."""
    guest.write(plan)
    disk = make_disk(plan.leg_dir / "disk.img", cfg.disk_size) if plan.disk else None
    argv = vng_argv(kernel, plan.leg_dir, cfg, disk, plan.cache, plan.repo, plan.fast)
    (plan.leg_dir / "vng-argv.json").write_text(json.dumps(argv) + "\n")
    try:
        out = run_group(
            argv,
            plan.leg_dir / "console.log",
            cfg.timeout_s,
            env=vm_env(),
            cwd=plan.repo,
            pgid_file=plan.leg_dir / "vm.pgid",
            booted=plan.leg_dir / "booted",
        )
    finally:
        if disk is not None:
            disk.unlink(missing_ok=True)  # sparse but up to disk_size once written: do not keep
    return out


def run_host_leg(
    leg_dir: Path, payload: list[str], repo: Path, timeout_s: float, env: dict[str, str]
) -> Outcome:
    """The ``host`` leg: the payload on the running kernel, no VM."""
    leg_dir.mkdir(parents=True, exist_ok=True)
    (leg_dir / "booted").write_text("0\n")
    out = run_group(
        payload,
        leg_dir / "console.log",
        timeout_s,
        env=dict(os.environ) | env,
        cwd=repo,
        pgid_file=leg_dir / "vm.pgid",
    )
    out.boot_s = 0.0
    if out.rc is not None:
        tmp = leg_dir / "exit-status.tmp"
        tmp.write_text(f"selfcheck=0 payload={out.rc}\n")
        tmp.rename(leg_dir / "exit-status")
    return out


def host_cgroup_mode(mountinfo: str | None = None) -> CgroupMode:
    """v2 when /sys/fs/cgroup is cgroup2, hybrid when v1 hierarchies sit beside a cgroup2, else v1."""
    text = mountinfo if mountinfo is not None else Path("/proc/self/mountinfo").read_text()
    v1 = v2_root = v2_any = False
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        fields = left.split()
        if len(fields) < 5 or not right:
            continue
        fstype = right.split()[0]
        if fstype == "cgroup2":
            v2_any = True
            v2_root |= fields[4] == "/sys/fs/cgroup"
        elif fstype == "cgroup":
            v1 = True
    if v2_root and not v1:
        return CgroupMode.V2
    if v1 and v2_any:
        return CgroupMode.HYBRID
    if v1:
        return CgroupMode.V1
    raise MatrixError("no cgroup filesystem mounted on this host")
