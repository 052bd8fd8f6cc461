"""The container flags of ``create``/``run``: their argparse definition, where options end, and
their conversion to docker's ``HostConfig`` (every value checked before anything is created).

argparse is wrapped so that a flag error is one line and exit 125, as docker's. The conversions
are pure but for ``device_number`` (a stat of the named device); unit-tested in
tests/unit/test_engine_units.py.
"""

from __future__ import annotations

import argparse
import os
import sys

from runtime.engine import units
from runtime.engine.output import daemon

TYPE_CHECKING = False  # True for mypy only: importing typing costs ~3 ms on every CLI call
if TYPE_CHECKING:
    from typing import Any, NoReturn


class _Formatter(argparse.HelpFormatter):
    """argparse's formatter, with the terminal width found as ``shutil.get_terminal_size``
    finds it but without importing shutil (and bz2, lzma with it: ~3 ms of every verb)."""

    def __init__(self, prog: str) -> None:
        try:
            columns = int(os.environ.get("COLUMNS", "0"))
        except ValueError:
            columns = 0
        if columns <= 0:
            try:
                columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
            except (AttributeError, ValueError, OSError):  # no stdout, or not a terminal
                columns = 0
        super().__init__(prog, width=(columns or 80) - 2)


class Parser(argparse.ArgumentParser):
    """argparse that reports flag errors as one line and exits 125, like docker."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise units.FlagError(f"{message}. See '{self.prog} --help'")


# -- container flags --------------------------------------------------------------------------


def add_container_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--help", action="help")
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("-t", "--tty", action="store_true")
    p.add_argument("--rm", action="store_true")
    p.add_argument("--name")
    p.add_argument("-h", "--hostname")
    p.add_argument("-e", "--env", action="append", default=[])
    p.add_argument("-v", "--volume", action="append", default=[])
    p.add_argument("-w", "--workdir")
    p.add_argument("-u", "--user")
    p.add_argument("-c", "--cpu-shares")
    p.add_argument("--cpus")
    p.add_argument("--cpu-quota")
    p.add_argument("--cpu-period")
    p.add_argument("--cpuset-cpus")
    p.add_argument("-m", "--memory")
    p.add_argument("--memory-swap")
    p.add_argument("--pids-limit")
    p.add_argument("--device-read-bps", action="append", default=[])
    p.add_argument("--device-write-bps", action="append", default=[])
    p.add_argument("--device-read-iops", action="append", default=[])
    p.add_argument("--device-write-iops", action="append", default=[])
    p.add_argument("--network", "--net")
    p.add_argument("--userns")
    p.add_argument("--cgroupns")
    p.add_argument("--security-opt", action="append", default=[])
    p.add_argument("--ipc")
    p.add_argument("--pid")
    p.add_argument("--uts")
    p.add_argument("--restart")
    p.add_argument("image")
    p.add_argument("command", nargs=argparse.REMAINDER)


def split_at_image(p: argparse.ArgumentParser, argv: list[str]) -> tuple[list[str], list[str]]:
    """Options end at the first positional (the image): what follows is the container's command."""
    takes_value = {}
    for action in p._actions:
        for opt in action.option_strings:
            takes_value[opt] = action.nargs != 0
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok == "--":
            return argv[:i], argv[i + 1 :]
        if tok.startswith("--"):
            if "=" not in tok and takes_value.get(tok, False):
                i += 1
        elif tok.startswith("-") and len(tok) > 1:
            for j, ch in enumerate(tok[1:], start=1):
                if takes_value.get(f"-{ch}", False):
                    if j == len(tok) - 1:
                        i += 1
                    break
        else:
            return argv[: i + 1], argv[i + 1 :]
        i += 1
    return argv, []


def parse_container_args(p: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    opts, command = split_at_image(p, argv)
    a = p.parse_args(opts)
    a.command = list(a.command) + command
    return a


# -- conversion to HostConfig ------------------------------------------------------------------


def device_number(path: str, flag: str) -> tuple[int, int]:
    import stat

    try:
        st = os.stat(path)
    except OSError:
        raise daemon(
            f'{flag}: error gathering device information for "{path}": no such device', 125
        ) from None
    if not stat.S_ISBLK(st.st_mode):
        raise daemon(f"{flag}: {path} is not a block device", 125)
    return os.major(st.st_rdev), os.minor(st.st_rdev)


def host_config(a: argparse.Namespace) -> dict[str, Any]:
    """Validate every resource/namespace flag before anything is created."""
    hc: dict[str, Any] = {}
    mem = units.parse_memory(a.memory) if a.memory else 0
    swap = units.parse_memory_swap(a.memory_swap) if a.memory_swap else 0
    units.check_memory(mem or None, swap or None)
    hc["Memory"], hc["MemorySwap"] = mem, swap
    hc["CpuShares"] = units.parse_cpu_shares(a.cpu_shares) if a.cpu_shares is not None else 0
    if a.cpus is not None:
        if a.cpu_quota is not None or a.cpu_period is not None:
            # docker's words: --cpus is a shorthand for the pair, so both at once is ambiguous
            raise daemon(
                "Conflicting options: Nano CPUs and CPU Period/Quota cannot both be set", 125
            )
        quota, period = units.parse_cpus(a.cpus)
        hc["NanoCpus"] = int(float(a.cpus) * 1e9)
        hc["CpuQuota"], hc["CpuPeriod"] = quota, period
    else:
        hc["CpuQuota"] = units.parse_cpu_quota(a.cpu_quota) if a.cpu_quota is not None else 0
        hc["CpuPeriod"] = units.parse_cpu_period(a.cpu_period) if a.cpu_period is not None else 0
    hc["CpusetCpus"] = units.parse_cpuset(a.cpuset_cpus) if a.cpuset_cpus else ""
    hc["PidsLimit"] = units.parse_pids_limit(a.pids_limit) if a.pids_limit is not None else 0
    if hc["PidsLimit"] == -1:
        hc["PidsLimit"] = 0
    for field, flag, items, parse in (
        ("BlkioDeviceReadBps", "--device-read-bps", a.device_read_bps, units.parse_device_bps),
        ("BlkioDeviceWriteBps", "--device-write-bps", a.device_write_bps, units.parse_device_bps),
        ("BlkioDeviceReadIOps", "--device-read-iops", a.device_read_iops, units.parse_device_iops),
        (
            "BlkioDeviceWriteIOps",
            "--device-write-iops",
            a.device_write_iops,
            units.parse_device_iops,
        ),
    ):
        entries = []
        for item in items:
            path, rate = parse(item, flag)
            major, minor = device_number(path, flag)
            entries.append({"Path": path, "Rate": rate, "Major": major, "Minor": minor})
        hc[field] = entries
    net = a.network or "bridge"
    if net == "default":
        net = "bridge"
    if net not in ("none", "host", "bridge") and not net.startswith("container:"):
        raise daemon(f"network {net} not found", 125)
    hc["NetworkMode"] = net
    for key, flag, value in (
        ("IpcMode", "--ipc", a.ipc),
        ("PidMode", "--pid", a.pid),
        ("UTSMode", "--uts", a.uts),
    ):
        v = value or ""
        if v not in ("", "host", "private", "shareable") and not (
            v.startswith("container:") and len(v) > 10
        ):
            raise units.FlagError(f"invalid {flag} value {v!r}: want host or container:NAME")
        hc[key] = "" if v in ("private", "shareable") else v
    if hc["UTSMode"] == "host" and a.hostname:
        raise daemon("Conflicting options: hostname and the UTS mode", 125)
    hc["CgroupnsMode"] = units.parse_cgroupns(a.cgroupns or "private")
    hc["UsernsMode"] = a.userns or ""
    hc["UsernsRemap"] = units.parse_userns(a.userns or "")
    name, count = units.parse_restart(a.restart or "no")
    if a.rm and name != "no":
        raise daemon("Conflicting options: --restart and --rm", 125)
    hc["RestartPolicy"] = {"Name": name, "MaximumRetryCount": count}
    hc["AutoRemove"] = bool(a.rm)
    hc["Binds"] = list(a.volume)
    hc["SecurityOpt"] = list(a.security_opt)
    hc["NoNewPrivileges"] = units.parse_no_new_privileges(a.security_opt)
    return hc
