"""What a check asks for: a runtime-neutral description of one container, and its translation into
an OCI ``config.json`` (a pure function, so the translation is unit-tested without root)."""

from __future__ import annotations

import dataclasses
from typing import Any

OCI_NS = {
    "pid": "pid",
    "net": "network",
    "ipc": "ipc",
    "uts": "uts",
    "mnt": "mount",
    "user": "user",
    "cgroup": "cgroup",
}
DEFAULT_NAMESPACES = {
    "pid": "new",
    "net": "new",
    "ipc": "new",
    "uts": "new",
    "mnt": "new",
    "cgroup": "new",
}

# Docker's default capability set: what a "normal" container gets; the security baseline checks that
# nothing beyond it (CAP_SYS_ADMIN, CAP_SYS_MODULE, ...) is effective.
DEFAULT_CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
]  # fmt: skip
MASKED_PATHS = [
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi",
]  # fmt: skip
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


@dataclasses.dataclass
class ContainerSpec:
    args: list[str] = dataclasses.field(default_factory=lambda: ["sleep", "3600"])
    hostname: str | None = "isoproof-ctr"
    # type -> "new" | "host" | "container:<Container>" (resolved to a path by the driver) | "/path"
    namespaces: dict[str, Any] = dataclasses.field(default_factory=lambda: dict(DEFAULT_NAMESPACES))
    # (container id, host id, size) rows; None = no user namespace
    uid_map: list[tuple[int, int, int]] | None = None
    gid_map: list[tuple[int, int, int]] | None = None
    resources: dict[str, Any] = dataclasses.field(default_factory=dict)
    network: str = "none"  # "none" (an empty netns) or "veth" (the suite wires a veth into it)
    readonly_rootfs: bool = False
    env: list[str] = dataclasses.field(default_factory=list)
    cwd: str = "/"  # process.cwd (the escape checks ask for /proc/self/fd/N)
    oom_score_adj: int | None = None  # process.oomScoreAdj
    seccomp: dict[str, Any] | None = None  # linux.seccomp, an OCI profile sent as it is

    def pinned(self, cpus: str, cpuset: bool | None = None) -> ContainerSpec:
        """Run only on ``cpus`` (the contention checks put their containers on one CPU): a cpuset
        limit where the cgroup layout has that controller, else the workload's own affinity
        (``taskset``; an unprivileged process may narrow its own). Debian's 6.12 kernel has no v1
        cpuset (``CONFIG_CPUSETS_V1`` off), and what those checks prove is the CPU split, not the
        cpuset write. ``cpuset``: whether the controller is there (default: ask the host)."""
        if cpuset is None:
            from verify import host

            cpuset = host.layout().has_controller("cpuset")
        if cpuset:
            self.resources.setdefault("cpu", {})["cpus"] = cpus
        else:
            self.args = ["taskset", "-c", cpus, *self.args]
        return self

    def with_user_ns(self, host_base: int = 100000, size: int = 65536) -> ContainerSpec:
        self.uid_map = [(0, host_base, size)]
        self.gid_map = [(0, host_base, size)]
        self.namespaces["user"] = "new"
        return self


def oci_config(
    spec: ContainerSpec,
    rootfs: str,
    cgroups_path: str,
    ns_paths: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The OCI config for ``spec``. ``ns_paths`` gives a path for each namespace joined rather than
    created (another container's ``/proc/<pid>/ns/<type>`` or a netns the suite made)."""
    ns_paths = ns_paths or {}
    namespaces = []
    for ns, how in spec.namespaces.items():
        if how == "host":
            continue  # sharing the host's namespace = not listing it
        entry: dict[str, str] = {"type": OCI_NS[ns]}
        if ns in ns_paths:
            entry["path"] = ns_paths[ns]
        elif how != "new":
            raise ValueError(f"namespace {ns}: unresolved {how!r}")
        namespaces.append(entry)
    has = {n["type"] for n in namespaces}
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
    ]  # fmt: skip
    if "ipc" in has:
        mounts.append({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
                       "options": ["nosuid", "noexec", "nodev"]})  # fmt: skip
    if "network" in has or "user" not in has:
        # sysfs can only be mounted by the owner of the network namespace.
        mounts.append({"destination": "/sys", "type": "sysfs", "source": "sysfs",
                       "options": ["nosuid", "noexec", "nodev", "ro"]})  # fmt: skip
        mounts.append({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                       "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]})  # fmt: skip
    caps = list(DEFAULT_CAPS)
    linux: dict[str, Any] = {
        "namespaces": namespaces,
        "cgroupsPath": cgroups_path,
        "resources": {"devices": [{"allow": False, "access": "rwm"}], **spec.resources},
        "maskedPaths": MASKED_PATHS,
        "readonlyPaths": READONLY_PATHS,
    }
    if spec.uid_map is not None:
        linux["uidMappings"] = [
            {"containerID": c, "hostID": h, "size": s} for c, h, s in spec.uid_map
        ]
        linux["gidMappings"] = [
            {"containerID": c, "hostID": h, "size": s} for c, h, s in (spec.gid_map or spec.uid_map)
        ]
    cfg: dict[str, Any] = {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": list(spec.args),
            "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", *spec.env],
            "cwd": spec.cwd,
            "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": rootfs, "readonly": spec.readonly_rootfs},
        "mounts": mounts,
        "linux": linux,
    }
    if spec.oom_score_adj is not None:
        cfg["process"]["oomScoreAdj"] = spec.oom_score_adj
    if spec.seccomp is not None:
        linux["seccomp"] = spec.seccomp
    if spec.hostname is not None and "uts" in has:
        cfg["hostname"] = spec.hostname
    return cfg
