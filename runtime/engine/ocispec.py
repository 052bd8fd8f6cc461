"""Turn an engine container config (what the user typed) into an OCI ``config.json``.

Pure: no file is read or written here, so the conversions are unit-tested without root. The
defaults follow docker's (capability set, mounts, masked paths), because a user comparing
``isoproof run`` with ``docker run`` should see the same container.
"""

from __future__ import annotations

import copy

from runtime.oci.caps import DEFAULT_CAPS
from runtime.spec import default_spec

TYPE_CHECKING = False  # True for mypy only: importing typing costs ~3 ms on every CLI call
if TYPE_CHECKING:
    from typing import Any

OCI_VERSION = "1.0.2"

# The defaults ``isoproof-oci spec`` writes are docker's too (capability set, masked and read-only
# paths, the /proc, /dev and /sys mounts): take them from there rather than keep a second copy.
_REFERENCE = default_spec()
MASKED_PATHS: list[str] = list(_REFERENCE["linux"]["maskedPaths"])
READONLY_PATHS: list[str] = list(_REFERENCE["linux"]["readonlyPaths"])
_REFERENCE_MOUNTS = {m["destination"]: m for m in _REFERENCE["mounts"]}


def _reference_mount(destination: str, options: list[str] | None = None) -> dict[str, Any]:
    """A copy of the reference spec's mount at ``destination``, with other options if given."""
    m = copy.deepcopy(_REFERENCE_MOUNTS[destination])
    if options is not None:
        m["options"] = options
    return dict(m)


# Namespace kinds a user can share with the host or another container, with their /proc/PID/ns name.
SHAREABLE = {"pid": "pid", "ipc": "ipc", "uts": "uts", "network": "net"}


def namespaces(
    host_config: dict[str, Any], netns_path: str | None, peer_pids: dict[str, int]
) -> list[dict[str, str]]:
    """OCI ``linux.namespaces`` from --pid/--ipc/--uts/--network/--userns.

    ``peer_pids`` maps a kind to the init PID of the container named by ``container:NAME``.
    """
    modes = {
        "pid": host_config.get("PidMode", ""),
        "ipc": host_config.get("IpcMode", ""),
        "uts": host_config.get("UTSMode", ""),
        "network": host_config.get("NetworkMode", "bridge"),
    }
    out: list[dict[str, str]] = [{"type": "mount"}]
    for kind, mode in modes.items():
        if mode == "host":
            continue
        if mode.startswith("container:"):
            out.append({"type": kind, "path": f"/proc/{peer_pids[kind]}/ns/{SHAREABLE[kind]}"})
        elif kind == "network" and netns_path:
            out.append({"type": kind, "path": netns_path})
        else:
            out.append({"type": kind})
    # Private unless --cgroupns host: docker's default on cgroup v2, ours everywhere because our
    # runtime supports it on v1 too; the container then sees its own cgroup as "/".
    if host_config.get("CgroupnsMode", "private") != "host":
        out.append({"type": "cgroup"})
    if host_config.get("UsernsRemap"):
        out.append({"type": "user"})
    return out


def resources(hc: dict[str, Any]) -> dict[str, Any]:
    """OCI ``linux.resources`` from the HostConfig (docker's field names)."""
    res: dict[str, Any] = {"devices": [{"allow": False, "access": "rwm"}]}
    mem: dict[str, Any] = {}
    if hc.get("Memory"):
        mem["limit"] = hc["Memory"]
        swap = hc.get("MemorySwap") or 0
        # docker: without --memory-swap the container may use as much swap as memory (2x total).
        mem["swap"] = swap if swap else 2 * hc["Memory"]
    if mem:
        res["memory"] = mem
    cpu: dict[str, Any] = {}
    if hc.get("CpuShares"):
        cpu["shares"] = hc["CpuShares"]
    if hc.get("CpuQuota"):
        cpu["quota"] = hc["CpuQuota"]
        cpu["period"] = hc.get("CpuPeriod") or 100_000
    elif hc.get("CpuPeriod"):
        cpu["period"] = hc["CpuPeriod"]  # docker passes a lone --cpu-period on as it is
    if hc.get("CpusetCpus"):
        cpu["cpus"] = hc["CpusetCpus"]
    if cpu:
        res["cpu"] = cpu
    if hc.get("PidsLimit"):
        res["pids"] = {"limit": hc["PidsLimit"]}
    blkio: dict[str, Any] = {}
    for field, key in (
        ("BlkioDeviceReadBps", "throttleReadBpsDevice"),
        ("BlkioDeviceWriteBps", "throttleWriteBpsDevice"),
        ("BlkioDeviceReadIOps", "throttleReadIOPSDevice"),
        ("BlkioDeviceWriteIOps", "throttleWriteIOPSDevice"),
    ):
        entries = hc.get(field) or []
        if entries:
            blkio[key] = [
                {"major": e["Major"], "minor": e["Minor"], "rate": e["Rate"]} for e in entries
            ]
    if blkio:
        res["blockIO"] = blkio
    return res


def mounts(
    etc_files: dict[str, str], binds: list[dict[str, Any]], userns: bool, shm_size: int = 64 << 20
) -> list[dict[str, Any]]:
    pts = _reference_mount("/dev/pts")["options"]
    shm = [o for o in _reference_mount("/dev/shm")["options"] if not o.startswith("size=")]
    out: list[dict[str, Any]] = [
        _reference_mount("/proc"),
        _reference_mount("/dev"),
        # gid=5 names a group of the host's: no such mapping inside a user namespace
        _reference_mount("/dev/pts", [o for o in pts if not (userns and o == "gid=5")]),
        _reference_mount("/dev/shm", [*shm, f"size={shm_size}"]),
        _reference_mount("/dev/mqueue"),
    ]
    if userns:
        # sysfs cannot be mounted from a user namespace that does not own the network namespace.
        out.append(
            {
                "destination": "/sys",
                "type": "none",
                "source": "/sys",
                "options": ["rbind", "nosuid", "noexec", "nodev", "ro"],
            }
        )
    else:
        out.append(_reference_mount("/sys"))
        out.append(_reference_mount("/sys/fs/cgroup"))
    for dest, src in etc_files.items():
        out.append(
            {"destination": dest, "type": "bind", "source": src, "options": ["rbind", "rprivate"]}
        )
    for b in binds:
        opts = ["rbind", "rprivate"] + (["ro"] if b.get("ReadOnly") else [])
        out.append(
            {
                "destination": b["Destination"],
                "type": "bind",
                "source": b["Source"],
                "options": opts,
            }
        )
    return out


def build(
    cfg: dict[str, Any],
    rootfs: str,
    etc_files: dict[str, str],
    netns_path: str | None,
    peer_pids: dict[str, int],
    cgroups_path: str,
    user: tuple[int, int, list[int]],
) -> dict[str, Any]:
    """The whole OCI config for one container."""
    c = cfg["Config"]
    hc = cfg["HostConfig"]
    uid, gid, extra_gids = user
    caps = list(DEFAULT_CAPS)
    process: dict[str, Any] = {
        "terminal": bool(c.get("Tty")),
        "user": {"uid": uid, "gid": gid, **({"additionalGids": extra_gids} if extra_gids else {})},
        "args": ([cfg["Path"]] if cfg.get("Path") else []) + list(cfg.get("Args") or []),
        "env": list(c.get("Env") or []),
        "cwd": c.get("WorkingDir") or "/",
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        # Default True, unlike docker (False): setuid binaries cannot regain what we dropped.
        # ``--security-opt no-new-privileges=false`` gives docker's behaviour.
        "noNewPrivileges": bool(hc.get("NoNewPrivileges", True)),
    }
    if c.get("Tty") and c.get("ConsoleSize"):
        rows, cols = c["ConsoleSize"]
        process["consoleSize"] = {"height": rows, "width": cols}
    userns = hc.get("UsernsRemap")
    linux: dict[str, Any] = {
        "namespaces": namespaces(hc, netns_path, peer_pids),
        "resources": resources(hc),
        "cgroupsPath": cgroups_path,
        "maskedPaths": list(MASKED_PATHS),
        "readonlyPaths": list(READONLY_PATHS),
    }
    if userns:
        host_id, size = userns
        linux["uidMappings"] = [{"containerID": 0, "hostID": host_id, "size": size}]
        linux["gidMappings"] = [{"containerID": 0, "hostID": host_id, "size": size}]
    spec: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": rootfs, "readonly": False},
        "mounts": mounts(etc_files, hc.get("Mounts") or [], bool(userns)),
        "linux": linux,
        "annotations": {"io.isoproof.engine.name": cfg.get("Name", "").lstrip("/")},
    }
    if hc.get("UTSMode", "") != "host" and not hc.get("UTSMode", "").startswith("container:"):
        spec["hostname"] = c.get("Hostname") or cfg["Id"][:12]
    return spec
