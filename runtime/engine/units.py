"""Pure conversions from docker's flag values to OCI values (no I/O; tested with hypothesis).

The choices follow docker's CLI (``docker/go-units`` and ``opts``) so that a user's muscle memory
carries over: sizes are binary (``32m`` is 32 MiB), ``--cpus`` becomes a CFS quota over a 100 ms
period, ``--memory-swap`` is memory *plus* swap (as OCI's ``memory.swap``), ``-1`` means unlimited.
"""

from __future__ import annotations

import re

from runtime.errors import IsoproofError

CFS_PERIOD_US = 100_000  # docker's fixed period for --cpus
CPU_SHARES_MIN = 2  # kernel clamps lower values; docker rejects nothing but we refuse nonsense
CPU_SHARES_MAX = 262_144
MEMORY_MIN = 6 * 1024 * 1024  # docker refuses limits below 6 MiB


class FlagError(IsoproofError):
    """A flag value is malformed; the CLI prints it and exits 125 like docker."""

    exit_code = 125


_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?$", re.IGNORECASE)
_MULT = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_size(text: str) -> int:
    """``"32m"`` → 33554432. Binary multiples, optional ``b``/``ib`` suffix, like go-units."""
    m = _SIZE_RE.match(text.strip())
    if not m:
        raise ValueError(f"invalid size: '{text}'")
    number, unit = float(m.group(1)), m.group(2).lower()
    return int(number * _MULT[unit])


def parse_memory(text: str, flag: str = "-m, --memory") -> int:
    try:
        value = parse_size(text)
    except ValueError as e:
        raise FlagError(f'invalid argument "{text}" for "{flag}" flag: {e}') from None
    return value


def parse_memory_swap(text: str) -> int:
    """``-1`` means unlimited swap; otherwise a size."""
    if text.strip() == "-1":
        return -1
    return parse_memory(text, "--memory-swap")


def check_memory(memory: int | None, swap: int | None) -> None:
    if memory is not None and 0 < memory < MEMORY_MIN:
        raise FlagError("Minimum memory limit allowed is 6MB")
    if swap is not None and swap != -1:
        if memory is None or memory == 0:
            raise FlagError(
                "You should always set the Memory limit when using Memoryswap limit, see usage"
            )
        if swap < memory:
            raise FlagError(
                "Minimum memoryswap limit should be larger than memory limit, see usage"
            )


def parse_cpus(text: str) -> tuple[int, int]:
    """``--cpus 1.5`` → (quota 150000, period 100000)."""
    try:
        value = float(text)
    except ValueError:
        raise FlagError(f'invalid argument "{text}" for "--cpus" flag: failed to parse') from None
    if value < 0 or value != value:
        raise FlagError(f"Range of CPUs is from 0.01 to the number of CPUs: {text}")
    return int(round(value * CFS_PERIOD_US)), CFS_PERIOD_US


CFS_PERIOD_MIN_US, CFS_PERIOD_MAX_US = 1_000, 1_000_000  # the kernel's (and docker's) bounds
CFS_QUOTA_MIN_US = 1_000


def _parse_int(text: str, flag: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise FlagError(
            f'invalid argument "{text}" for "{flag}" flag: strconv.ParseInt: '
            f'parsing "{text}": invalid syntax'
        ) from None


def parse_cpu_period(text: str) -> int:
    """``--cpu-period`` in microseconds; 0 leaves the kernel's default (100 ms)."""
    value = _parse_int(text, "--cpu-period")
    if value != 0 and not CFS_PERIOD_MIN_US <= value <= CFS_PERIOD_MAX_US:
        raise FlagError(
            "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1 second "
            "(i.e. 1000000)"
        )
    return value


def parse_cpu_quota(text: str) -> int:
    """``--cpu-quota`` in microseconds per period; 0 means unset and -1 (or below) unlimited."""
    value = _parse_int(text, "--cpu-quota")
    if value < 0:
        return -1
    if value != 0 and value < CFS_QUOTA_MIN_US:
        raise FlagError("CPU cfs quota can not be less than 1ms (i.e. 1000)")
    return value


CGROUPNS_MODES = ("host", "private")


def parse_cgroupns(text: str) -> str:
    """``--cgroupns``: docker's two modes. We default to private everywhere (docker does on v2)."""
    if text not in CGROUPNS_MODES:
        raise FlagError(f"invalid --cgroupns value {text!r}: want host or private")
    return text


def parse_no_new_privileges(opts: list[str]) -> bool:
    """``--security-opt`` values; only ``no-new-privileges[=true|false]`` is understood.

    The default is True, unlike docker's False: a reference runtime starts from the safer choice.
    """
    value = True
    for opt in opts:
        key, sep, arg = opt.partition("=")
        if key != "no-new-privileges":
            raise FlagError(f"invalid --security-opt {opt!r}: only no-new-privileges is supported")
        if not sep:
            value = True
        elif arg in ("true", "false"):
            value = arg == "true"
        else:
            raise FlagError(f"invalid --security-opt {opt!r}: want no-new-privileges=true|false")
    return value


def parse_cpu_shares(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise FlagError(
            f'invalid argument "{text}" for "-c, --cpu-shares" flag: strconv.ParseInt: '
            f'parsing "{text}": invalid syntax'
        ) from None
    if value != 0 and not CPU_SHARES_MIN <= value <= CPU_SHARES_MAX:
        raise FlagError(
            f"invalid --cpu-shares {value}: must be between {CPU_SHARES_MIN} and {CPU_SHARES_MAX}"
        )
    return value


_CPUSET_RE = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")


def parse_cpuset(text: str) -> str:
    if not _CPUSET_RE.match(text):
        raise FlagError(f"invalid value {text!r} for --cpuset-cpus")
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        if hi and int(hi) < int(lo):
            raise FlagError(f"invalid value {text!r} for --cpuset-cpus")
    return text


def parse_pids_limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise FlagError(f'invalid argument "{text}" for "--pids-limit" flag') from None
    return -1 if value <= 0 else value  # docker: 0 or -1 mean unlimited


def split_device_rate(text: str, flag: str) -> tuple[str, str]:
    """``/dev/sda:1mb`` → (``/dev/sda``, ``1mb``); the path must be absolute."""
    path, sep, rate = text.rpartition(":")
    if not sep or not path.startswith("/") or not rate:
        raise FlagError(f'invalid argument "{text}" for "{flag}" flag: bad format {text}')
    return path, rate


def parse_device_bps(text: str, flag: str) -> tuple[str, int]:
    path, rate = split_device_rate(text, flag)
    try:
        return path, parse_size(rate)
    except ValueError:
        raise FlagError(
            f'invalid argument "{text}" for "{flag}" flag: invalid rate {rate}'
        ) from None


def parse_device_iops(text: str, flag: str) -> tuple[str, int]:
    path, rate = split_device_rate(text, flag)
    if not rate.isdigit():
        raise FlagError(f'invalid argument "{text}" for "{flag}" flag: invalid rate {rate}')
    return path, int(rate)


def parse_restart(text: str) -> tuple[str, int]:
    """``no`` | ``always`` | ``unless-stopped`` | ``on-failure[:N]`` → (name, max retries)."""
    name, _, count = text.partition(":")
    if name in ("no", "always", "unless-stopped") and not count:
        return name, 0
    if name == "on-failure":
        if not count:
            return name, 0
        if count.isdigit():
            return name, int(count)
    raise FlagError(f"invalid restart policy {text!r}")


def parse_env(items: list[str], lookup: dict[str, str]) -> list[str]:
    """``-e K=V`` as given; ``-e K`` takes K from the caller's environment (skipped if unset)."""
    out = []
    for item in items:
        if "=" in item:
            if item.startswith("="):
                raise FlagError(f"invalid environment variable: {item}")
            out.append(item)
        elif item in lookup:
            out.append(f"{item}={lookup[item]}")
    return out


def merge_env(base: list[str], extra: list[str]) -> list[str]:
    """Later entries override earlier ones by name, keeping the first position."""
    order: list[str] = []
    values: dict[str, str] = {}
    for item in base + extra:
        key = item.split("=", 1)[0]
        if key not in values:
            order.append(key)
        values[key] = item
    return [values[k] for k in order]


def parse_volume(text: str) -> tuple[str, str, bool]:
    """``SRC:DST[:ro|rw]`` or ``DST`` → (source or "", destination, read-only)."""
    parts = text.split(":")
    ro = False
    if len(parts) in (2, 3) and parts[-1] in ("ro", "rw", "z", "Z") and len(parts) == 3:
        ro = parts[-1] == "ro"
        parts = parts[:-1]
    if len(parts) == 1:
        src, dst = "", parts[0]
    elif len(parts) == 2:
        src, dst = parts
    else:
        raise FlagError(f"invalid volume specification: '{text}'")
    if not dst.startswith("/") or not dst or ".." in dst.split("/"):
        raise FlagError(f"invalid volume specification: '{text}': destination must be absolute")
    return src, dst, ro


def parse_userns(text: str) -> tuple[int, int] | None:
    """``host`` (or empty) → no user namespace; ``HOSTID[:SIZE]`` → root inside is HOSTID outside."""
    if text in ("", "host"):
        return None
    first, _, size = text.partition(":")
    if not first.isdigit() or (size and not size.isdigit()) or (size and int(size) < 1):
        raise FlagError(f"invalid --userns {text!r}: want host or HOSTUID[:SIZE]")
    return int(first), int(size) if size else 65536


def parse_duration(text: str) -> float:
    """Go-style durations for --since: ``10s``, ``5m``, ``1h30m``, ``250ms``."""
    m = re.fullmatch(r"((?:\d+(?:\.\d+)?(?:ms|s|m|h))+)", text)
    if not m:
        raise ValueError(text)
    total = 0.0
    for num, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text):
        total += float(num) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total


def _scaled(n: float, base: int, units: list[str], digits: int) -> str:
    i = 0
    while n >= base and i < len(units) - 1:
        n /= base
        i += 1
    return f"{n:.{digits}g}{units[i]}"


def human_size(n: float) -> str:
    """docker's ``HumanSize`` (decimal units, 3 significant digits): 4.5MB."""
    return _scaled(n, 1000, ["B", "kB", "MB", "GB", "TB"], 3)


def bytes_size(n: float) -> str:
    """docker's ``BytesSize`` (binary units, 4 significant digits): 31.9MiB."""
    return _scaled(n, 1024, ["B", "KiB", "MiB", "GiB", "TiB"], 4)


def human_duration(seconds: float) -> str:
    """docker's ``HumanDuration``: "Less than a second", "5 seconds", "About a minute", ..."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    m = s // 60
    if m == 1:
        return "About a minute"
    if m < 60:
        return f"{m} minutes"
    h = round(s / 3600)
    if h == 1:
        return "About an hour"
    if h < 48:
        return f"{h} hours"
    return f"{h // 24} days"
