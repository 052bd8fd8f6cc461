"""OCI runtime-spec ``config.json``: load, validate, and the default written by ``isoproof-oci spec``.

The loader turns untrusted JSON into typed dataclasses. Every problem raises
:class:`~runtime.errors.SpecError` whose message names the offending field (``process.user.uid:
expected an integer``); nothing else may escape, whatever the input (a hypothesis test feeds it
arbitrary and mutated documents). Checks that need the host (a namespace path's type) live in
:func:`check_host` so that the loader itself stays pure.

Only ``_json`` (through :mod:`runtime.cjson`) is imported: this is on the hot path of ``isoproof-oci run``.
"""

from __future__ import annotations

import os
import stat

from runtime import cjson  # json.loads without the json package's imports (re, enum)
from runtime.errors import SpecError
from runtime.oci.caps import CAPS, DEFAULT_CAPS
from runtime.oci.record import Record

TYPE_CHECKING = False  # True for mypy only: importing typing costs ~3 ms on every CLI call
if TYPE_CHECKING:
    from collections.abc import Collection, Iterator
    from typing import Any

CONFIG = "config.json"
OCI_VERSION = "1.0.2"

# linux.namespaces[].type -> clone flag. "network"/"mount" are the spec's names for net/mnt.
NAMESPACES: dict[str, int] = {
    "pid": 0x20000000,
    "network": 0x40000000,
    "mount": 0x00020000,
    "ipc": 0x08000000,
    "uts": 0x04000000,
    "user": 0x10000000,
    "cgroup": 0x02000000,
    "time": 0x00000080,
}
# The name of each namespace under /proc/<pid>/ns/.
NS_PROC_NAME = {
    "pid": "pid",
    "network": "net",
    "mount": "mnt",
    "ipc": "ipc",
    "uts": "uts",
    "user": "user",
    "cgroup": "cgroup",
    "time": "time",
}

RLIMITS: dict[str, int] = {
    "RLIMIT_CPU": 0,
    "RLIMIT_FSIZE": 1,
    "RLIMIT_DATA": 2,
    "RLIMIT_STACK": 3,
    "RLIMIT_CORE": 4,
    "RLIMIT_RSS": 5,
    "RLIMIT_NPROC": 6,
    "RLIMIT_NOFILE": 7,
    "RLIMIT_MEMLOCK": 8,
    "RLIMIT_AS": 9,
    "RLIMIT_LOCKS": 10,
    "RLIMIT_SIGPENDING": 11,
    "RLIMIT_MSGQUEUE": 12,
    "RLIMIT_NICE": 13,
    "RLIMIT_RTPRIO": 14,
    "RLIMIT_RTTIME": 15,
}

PROPAGATIONS = ("", "private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable",
                "runbindable")  # fmt: skip

U32 = 2**32 - 1
U64 = 2**64 - 1


class User(Record):
    __slots__ = ("uid", "gid", "umask", "additional_gids")

    def __init__(self, uid: int = 0, gid: int = 0, umask: int | None = None,
                 additional_gids: list[int] | None = None) -> None:  # fmt: skip
        self.uid = uid
        self.gid = gid
        self.umask = umask
        self.additional_gids = additional_gids or []


class Capabilities(Record):
    __slots__ = ("bounding", "effective", "inheritable", "permitted", "ambient", "unknown")

    def __init__(self, bounding: list[str] | None = None, effective: list[str] | None = None,
                 inheritable: list[str] | None = None, permitted: list[str] | None = None,
                 ambient: list[str] | None = None) -> None:  # fmt: skip
        self.bounding = bounding or []
        self.effective = effective or []
        self.inheritable = inheritable or []
        self.permitted = permitted or []
        self.ambient = ambient or []
        self.unknown: list[str] = []  # names we do not know: warned about and ignored, as runc


class Rlimit(Record):
    __slots__ = ("type", "resource", "soft", "hard")

    def __init__(self, type: str, resource: int, soft: int, hard: int) -> None:
        self.type = type
        self.resource = resource
        self.soft = soft
        self.hard = hard


class Process(Record):
    __slots__ = ("args", "env", "cwd", "terminal", "user", "capabilities", "rlimits",
                 "no_new_privileges", "oom_score_adj", "console_size", "apparmor_profile",
                 "selinux_label", "preserve_fds")  # fmt: skip

    def __init__(self, args: list[str], env: list[str] | None = None, cwd: str = "/",
                 terminal: bool = False, user: User | None = None,
                 capabilities: Capabilities | None = None, rlimits: list[Rlimit] | None = None,
                 no_new_privileges: bool = False, oom_score_adj: int | None = None,
                 console_size: tuple[int, int] | None = None) -> None:  # fmt: skip
        self.args = args
        self.env = env or []
        self.cwd = cwd
        self.terminal = terminal
        self.user = user or User()
        self.capabilities = capabilities
        self.rlimits = rlimits or []
        self.no_new_privileges = no_new_privileges
        self.oom_score_adj = oom_score_adj
        self.console_size = console_size  # (rows, columns) of the pty, when terminal
        self.apparmor_profile = ""
        self.selinux_label = ""
        self.preserve_fds = 0  # --preserve-fds: fds 3 .. 3+N-1 are passed on (not from the spec)


class Mount(Record):
    __slots__ = ("destination", "type", "source", "options")

    def __init__(self, destination: str, type: str | None = None, source: str | None = None,
                 options: list[str] | None = None) -> None:  # fmt: skip
        self.destination = destination
        self.type = type
        self.source = source
        self.options = options or []


class Namespace(Record):
    __slots__ = ("type", "path")

    def __init__(self, type: str, path: str | None = None) -> None:
        self.type = type
        self.path = path


class IDMapping(Record):
    __slots__ = ("container_id", "host_id", "size")

    def __init__(self, container_id: int, host_id: int, size: int) -> None:
        self.container_id = container_id
        self.host_id = host_id
        self.size = size


class Device(Record):
    __slots__ = ("path", "type", "major", "minor", "file_mode", "uid", "gid")

    def __init__(self, path: str, type: str, major: int, minor: int, file_mode: int | None = None,
                 uid: int | None = None, gid: int | None = None) -> None:  # fmt: skip
        self.path = path
        self.type = type
        self.major = major
        self.minor = minor
        self.file_mode = file_mode
        self.uid = uid
        self.gid = gid


class Hook(Record):
    __slots__ = ("path", "args", "env", "timeout")

    def __init__(self, path: str, args: list[str] | None = None, env: list[str] | None = None,
                 timeout: int | None = None) -> None:  # fmt: skip
        self.path = path
        self.args = args or [path]  # runc: no args means argv[0] is the path
        self.env = env or []
        self.timeout = timeout  # seconds; None waits for ever, as the spec allows


# The six kinds of hooks, in the order of the lifecycle (prestart is the deprecated spelling of a
# createRuntime hook and runs just before it).
HOOK_KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
              "poststop")  # fmt: skip


class Linux(Record):
    __slots__ = ("namespaces", "uid_mappings", "gid_mappings", "resources", "cgroups_path",
                 "masked_paths", "readonly_paths", "rootfs_propagation", "sysctl", "devices",
                 "mount_label", "seccomp")  # fmt: skip

    def __init__(self) -> None:
        self.namespaces: list[Namespace] = []
        self.uid_mappings: list[IDMapping] = []
        self.gid_mappings: list[IDMapping] = []
        self.resources: dict[str, Any] = {}
        self.cgroups_path: str | None = None
        self.masked_paths: list[str] = []
        self.readonly_paths: list[str] = []
        self.rootfs_propagation = ""
        self.sysctl: dict[str, str] = {}
        self.devices: list[Device] = []
        self.seccomp: Any = None  # a runtime.seccomp.Profile
        self.mount_label = ""  # SELinux

    def ns(self, kind: str) -> Namespace | None:
        for n in self.namespaces:
            if n.type == kind:
                return n
        return None


class Spec(Record):
    __slots__ = ("oci_version", "root_path", "root_readonly", "process", "hostname", "domainname",
                 "mounts", "linux", "annotations", "bundle", "hooks")  # fmt: skip

    def __init__(self, oci_version: str, root_path: str, root_readonly: bool,
                 process: Process | None, hostname: str | None = None,
                 domainname: str | None = None, mounts: list[Mount] | None = None,
                 linux: Linux | None = None, annotations: dict[str, str] | None = None,
                 bundle: str = "", hooks: dict[str, list[Hook]] | None = None) -> None:  # fmt: skip
        self.oci_version = oci_version
        self.root_path = root_path  # absolute
        self.root_readonly = root_readonly
        self.process = process
        self.hostname = hostname
        self.domainname = domainname
        self.mounts = mounts or []
        self.linux = linux or Linux()
        self.annotations = annotations or {}
        self.bundle = bundle
        self.hooks = hooks or {}  # kind -> hooks, only kinds that have some


# --- small typed readers; each names the field it reads -------------------------------------------


def _obj(v: Any, name: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise SpecError(f"{name}: expected an object")
    return v


def _get_obj(d: dict[str, Any], key: str, name: str) -> dict[str, Any] | None:
    v = d.get(key)
    return None if v is None else _obj(v, name)


def _str(v: Any, name: str, *, nonempty: bool = False) -> str:
    if not isinstance(v, str):
        raise SpecError(f"{name}: expected a string")
    if "\0" in v:
        raise SpecError(f"{name}: contains a NUL byte")
    if nonempty and not v:
        raise SpecError(f"{name}: must not be empty")
    return v


def _opt_str(v: Any, name: str) -> str | None:
    return None if v is None else _str(v, name)


def _bool(v: Any, name: str, default: bool = False) -> bool:
    if v is None:
        return default
    if not isinstance(v, bool):
        raise SpecError(f"{name}: expected true or false")
    return v


def _int(v: Any, name: str, lo: int, hi: int) -> int:
    # bool is an int in Python; JSON true is not a number.
    if not isinstance(v, int) or isinstance(v, bool):
        raise SpecError(f"{name}: expected an integer")
    if not lo <= v <= hi:
        raise SpecError(f"{name}: {v} is out of range {lo}..{hi}")
    return v


def _list(v: Any, name: str) -> list[Any]:
    if v is None:
        return []
    if not isinstance(v, list):
        raise SpecError(f"{name}: expected an array")
    return v


def _strs(v: Any, name: str) -> list[str]:
    return [_str(x, f"{name}[{i}]") for i, x in enumerate(_list(v, name))]


def _abs_path(v: Any, name: str) -> str:
    p = _str(v, name, nonempty=True)
    if not p.startswith("/"):
        raise SpecError(f"{name}: {p!r} must be an absolute path")
    return p


# --- sections --------------------------------------------------------------------------------------


def _caps(v: Any) -> Capabilities:
    d = _obj(v, "process.capabilities")
    out = Capabilities()
    for kind in ("bounding", "effective", "inheritable", "permitted", "ambient"):
        names = _strs(d.get(kind), f"process.capabilities.{kind}")
        # runc warns about a name it does not know (a newer kernel's) and ignores it
        out.unknown += [n for n in names if n not in CAPS and n not in out.unknown]
        setattr(out, kind, [n for n in names if n in CAPS])
    return out


def _process(v: Any) -> Process:
    d = _obj(v, "process")
    args = _strs(d.get("args"), "process.args")
    if not args or not args[0]:
        raise SpecError("process.args: must name a program to run")
    env = _strs(d.get("env"), "process.env")
    for i, e in enumerate(env):
        if "=" not in e:
            raise SpecError(f"process.env[{i}]: {e!r} is not KEY=VALUE")
    cwd = _abs_path(d.get("cwd", "/"), "process.cwd")
    u = _get_obj(d, "user", "process.user") or {}
    user = User(
        uid=_int(u.get("uid", 0), "process.user.uid", 0, U32),
        gid=_int(u.get("gid", 0), "process.user.gid", 0, U32),
        umask=None if u.get("umask") is None else _int(u["umask"], "process.user.umask", 0, 0o777),
        additional_gids=[
            _int(g, f"process.user.additionalGids[{i}]", 0, U32)
            for i, g in enumerate(_list(u.get("additionalGids"), "process.user.additionalGids"))
        ],
    )
    rlimits = []
    for name, r, kind in _typed(d.get("rlimits"), "process.rlimits", RLIMITS, "rlimit"):
        soft = _int(r.get("soft"), f"{name}.soft", 0, U64)
        hard = _int(r.get("hard"), f"{name}.hard", 0, U64)
        if soft > hard:
            raise SpecError(f"{name}: soft limit {soft} exceeds hard limit {hard}")
        rlimits.append(Rlimit(kind, RLIMITS[kind], soft, hard))
    oom = d.get("oomScoreAdj")
    size = _get_obj(d, "consoleSize", "process.consoleSize")
    console_size = None
    if size is not None:
        console_size = (_int(size.get("height"), "process.consoleSize.height", 0, 65535),
                        _int(size.get("width"), "process.consoleSize.width", 0, 65535))  # fmt: skip
    proc = Process(
        args=args,
        env=env,
        cwd=cwd,
        terminal=_bool(d.get("terminal"), "process.terminal"),
        user=user,
        capabilities=None if d.get("capabilities") is None else _caps(d["capabilities"]),
        rlimits=rlimits,
        no_new_privileges=_bool(d.get("noNewPrivileges"), "process.noNewPrivileges"),
        oom_score_adj=None if oom is None else _int(oom, "process.oomScoreAdj", -1000, 1000),
        console_size=console_size,
    )
    proc.apparmor_profile = _str(d.get("apparmorProfile", ""), "process.apparmorProfile")
    proc.selinux_label = _str(d.get("selinuxLabel", ""), "process.selinuxLabel")
    return proc


def _mounts(v: Any) -> list[Mount]:
    out = []
    for i, m in enumerate(_list(v, "mounts")):
        name = f"mounts[{i}]"
        m = _obj(m, name)
        out.append(
            Mount(
                destination=_abs_path(m.get("destination"), f"{name}.destination"),
                type=_opt_str(m.get("type"), f"{name}.type"),
                source=_opt_str(m.get("source"), f"{name}.source"),
                options=_strs(m.get("options"), f"{name}.options"),
            )
        )
    return out


def _mappings(v: Any, name: str) -> list[IDMapping]:
    out = []
    for i, m in enumerate(_list(v, name)):
        f = f"{name}[{i}]"
        m = _obj(m, f)
        out.append(
            IDMapping(
                container_id=_int(m.get("containerID"), f"{f}.containerID", 0, U32 - 1),
                host_id=_int(m.get("hostID"), f"{f}.hostID", 0, U32 - 1),
                size=_int(m.get("size"), f"{f}.size", 1, U32),
            )
        )
    return out


def _hooks(v: Any) -> dict[str, list[Hook]]:
    d = _obj(v, "hooks")
    out: dict[str, list[Hook]] = {}
    for kind, entries in d.items():
        if kind not in HOOK_KINDS:
            raise SpecError(f"hooks.{kind}: unknown kind of hook (known: {', '.join(HOOK_KINDS)})")
        hooks = []
        for i, h in enumerate(_list(entries, f"hooks.{kind}")):
            name = f"hooks.{kind}[{i}]"
            h = _obj(h, name)
            env = _strs(h.get("env"), f"{name}.env")
            for j, e in enumerate(env):
                if "=" not in e:
                    raise SpecError(f"{name}.env[{j}]: {e!r} is not KEY=VALUE")
            timeout = h.get("timeout")
            hooks.append(
                Hook(
                    path=_abs_path(h.get("path"), f"{name}.path"),
                    args=_strs(h.get("args"), f"{name}.args"),
                    env=env,
                    # The spec: "timeout MUST be greater than zero".
                    timeout=None if timeout is None else _int(timeout, f"{name}.timeout", 1, I32),
                )
            )
        if hooks:
            out[kind] = hooks
    return out


# linux.resources: the Go types runc decodes into (a wrong JSON type is an error there, not a
# default), with the bounds that matter: a memory limit below -1 has no meaning (runc refuses it)
# and one above int64 would be clamped by the kernel to "no limit" without a word.
I32 = 2**31 - 1
I64_MIN, I64 = -(2**63), 2**63 - 1
_RES_INTS: dict[str, dict[str, tuple[int, int]]] = {
    "memory": {"limit": (-1, I64), "reservation": (-1, I64), "swap": (-1, I64),
               "kernel": (-1, I64), "kernelTCP": (-1, I64), "swappiness": (-1, U64)},
    "cpu": {"shares": (0, U64), "quota": (I64_MIN, I64), "burst": (0, U64), "period": (0, U64),
            "realtimeRuntime": (I64_MIN, I64), "realtimePeriod": (0, U64), "idle": (I64_MIN, I64)},
    "pids": {"limit": (I64_MIN, I64)},
    "blockIO": {"weight": (0, 2**16 - 1), "leafWeight": (0, 2**16 - 1)},
}  # fmt: skip
_RES_STRS = {"cpu": ("cpus", "mems")}
_RES_BOOLS = {"memory": ("disableOOMKiller", "useHierarchy", "checkBeforeUpdate")}
_BLKIO_DEVICE_LISTS = {"weightDevice": ("weight", "leafWeight"), "throttleReadBpsDevice": ("rate",),
                       "throttleWriteBpsDevice": ("rate",), "throttleReadIOPSDevice": ("rate",),
                       "throttleWriteIOPSDevice": ("rate",)}  # fmt: skip


def check_resources(v: Any, where: str = "linux.resources") -> dict[str, Any]:
    """Check the JSON types of a ``linux.resources`` object (also ``update --resources``) and
    return it unchanged. Unknown keys pass: the cgroup manager refuses what it cannot do."""
    res = _obj(v, where)
    for section, fields in _RES_INTS.items():
        sec = _get_obj(res, section, f"{where}.{section}")
        if sec is None:
            continue
        for key, (lo, hi) in fields.items():
            if sec.get(key) is not None:
                _int(sec[key], f"{where}.{section}.{key}", lo, hi)
        for key in _RES_STRS.get(section, ()):
            if sec.get(key) is not None:
                _str(sec[key], f"{where}.{section}.{key}")
        for key in _RES_BOOLS.get(section, ()):
            _bool(sec.get(key), f"{where}.{section}.{key}")
    for i, rule in enumerate(_list(res.get("devices"), f"{where}.devices")):
        name = f"{where}.devices[{i}]"
        rule = _obj(rule, name)
        # A string "false" must not become "allow": Go's decoder refuses it, and so do we.
        _bool(rule.get("allow"), f"{name}.allow")
        for key in ("type", "access"):
            if rule.get(key) is not None:
                _str(rule[key], f"{name}.{key}")
        for key in ("major", "minor"):
            if rule.get(key) is not None:
                _int(rule[key], f"{name}.{key}", -1, I64)
    blkio = _get_obj(res, "blockIO", f"{where}.blockIO") or {}
    for key, values in _BLKIO_DEVICE_LISTS.items():
        for i, dev in enumerate(_list(blkio.get(key), f"{where}.blockIO.{key}")):
            name = f"{where}.blockIO.{key}[{i}]"
            dev = _obj(dev, name)
            for k in ("major", "minor"):
                _int(dev.get(k), f"{name}.{k}", 0, I64)
            for k in values:
                if dev.get(k) is not None:
                    _int(dev[k], f"{name}.{k}", 0, 2**16 - 1 if "eight" in k else U64)
    for i, h in enumerate(_list(res.get("hugepageLimits"), f"{where}.hugepageLimits")):
        name = f"{where}.hugepageLimits[{i}]"
        h = _obj(h, name)
        _str(h.get("pageSize"), f"{name}.pageSize", nonempty=True)
        _int(h.get("limit"), f"{name}.limit", 0, U64)
    return res


# Sysctls that belong to a namespace (runc's validator): only these may be set, and only when the
# container has that namespace of its own. Anything else would be written to the host's kernel.
IPC_SYSCTLS = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
               "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced")  # fmt: skip


def sysctl_namespace(key: str) -> str | None:
    """The namespace type a sysctl belongs to, or None if it is global to the host."""
    if key in IPC_SYSCTLS or key.startswith("fs.mqueue."):
        return "ipc"
    if key.startswith("net."):
        return "network"
    if key in ("kernel.hostname", "kernel.domainname"):
        return "uts"
    return None


def _typed(
    v: Any, where: str, known: Collection[str], what: str
) -> Iterator[tuple[str, dict[str, Any], str]]:
    """The entries of a list of objects keyed by ``type`` (rlimits, namespaces), each type known
    and at most once: yields (its name for errors, the object, the type)."""
    seen: set[str] = set()
    for i, e in enumerate(_list(v, where)):
        name = f"{where}[{i}]"
        e = _obj(e, name)
        kind = _str(e.get("type"), f"{name}.type")
        if kind not in known:
            raise SpecError(f"{name}.type: unknown {what} type {kind!r}")
        if kind in seen:
            raise SpecError(f"{name}.type: duplicate {what} {kind}")
        seen.add(kind)
        yield name, e, kind


def _linux(v: Any) -> Linux:
    d = _obj(v, "linux")
    lx = Linux()
    for name, n, kind in _typed(d.get("namespaces"), "linux.namespaces", NAMESPACES, "namespace"):
        path = n.get("path")
        lx.namespaces.append(
            Namespace(kind, None if path in (None, "") else _abs_path(path, f"{name}.path"))
        )
    lx.uid_mappings = _mappings(d.get("uidMappings"), "linux.uidMappings")
    lx.gid_mappings = _mappings(d.get("gidMappings"), "linux.gidMappings")
    user = lx.ns("user")
    if (lx.uid_mappings or lx.gid_mappings) and (user is None or user.path):
        raise SpecError("linux.uidMappings: mappings need a new user namespace in linux.namespaces")
    if user is not None and user.path is None and not (lx.uid_mappings and lx.gid_mappings):
        raise SpecError("linux.uidMappings: a new user namespace needs uidMappings and gidMappings")
    res = d.get("resources")
    lx.resources = {} if res is None else check_resources(res)
    cg = d.get("cgroupsPath")
    lx.cgroups_path = None if cg in (None, "") else _str(cg, "linux.cgroupsPath")
    lx.masked_paths = [_abs_path(p, f"linux.maskedPaths[{i}]")
                       for i, p in enumerate(_list(d.get("maskedPaths"), "linux.maskedPaths"))]  # fmt: skip
    lx.readonly_paths = [_abs_path(p, f"linux.readonlyPaths[{i}]")
                         for i, p in enumerate(_list(d.get("readonlyPaths"), "linux.readonlyPaths"))]  # fmt: skip
    prop = _str(d.get("rootfsPropagation", ""), "linux.rootfsPropagation")
    if prop not in PROPAGATIONS:
        raise SpecError(f"linux.rootfsPropagation: unknown propagation {prop!r}")
    lx.rootfs_propagation = prop
    sysctl = _get_obj(d, "sysctl", "linux.sysctl") or {}
    lx.sysctl = {
        _str(k, "linux.sysctl"): _str(val, f"linux.sysctl.{k}") for k, val in sysctl.items()
    }
    for k in lx.sysctl:
        if not k or ".." in k or k.startswith(("/", ".")):
            raise SpecError(f"linux.sysctl: invalid key {k!r}")
        ns_type = sysctl_namespace(k)
        if ns_type is None:
            raise SpecError(f"linux.sysctl: {k} is not in a separate kernel namespace")
        if lx.ns(ns_type) is None:
            raise SpecError(f"linux.sysctl: {k} needs a {ns_type} namespace of the container's own")
    for i, dev in enumerate(_list(d.get("devices"), "linux.devices")):
        name = f"linux.devices[{i}]"
        dev = _obj(dev, name)
        kind = _str(dev.get("type"), f"{name}.type")
        if kind not in ("c", "b", "u", "p"):
            raise SpecError(f"{name}.type: unknown device type {kind!r}")
        lx.devices.append(
            Device(
                path=_abs_path(dev.get("path"), f"{name}.path"),
                type=kind,
                major=_int(dev.get("major", 0), f"{name}.major", 0, 2**12 - 1),
                minor=_int(dev.get("minor", 0), f"{name}.minor", 0, 2**20 - 1),
                # podman sends the node's type bits too (0o20666 for a char device); runc keeps
                # only the permission bits, as mknod takes the type from `type`.
                file_mode=None if dev.get("fileMode") is None
                else _int(dev["fileMode"], f"{name}.fileMode", 0, 0o177777) & 0o7777,
                uid=None if dev.get("uid") is None else _int(dev["uid"], f"{name}.uid", 0, U32),
                gid=None if dev.get("gid") is None else _int(dev["gid"], f"{name}.gid", 0, U32),
            )
        )  # fmt: skip
    if d.get("mountLabel"):
        lx.mount_label = _str(d["mountLabel"], "linux.mountLabel")
    if d.get("seccomp") is not None:
        from runtime import seccomp  # only specs with a profile pay for the import

        lx.seccomp = seccomp.parse(d["seccomp"])
    for key in ("intelRdt", "personality"):
        if d.get(key) is not None:
            raise SpecError(f"linux.{key}: not supported by isoproof-oci")
    return lx


def parse(doc: Any, bundle: str) -> Spec:
    """Validate a decoded config.json document. ``bundle`` must be absolute."""
    d = _obj(doc, "config.json")
    version = _str(d.get("ociVersion"), "ociVersion", nonempty=True)
    if not version.startswith("1."):
        raise SpecError(f"ociVersion: unsupported version {version!r} (need 1.x)")
    root = _obj(d.get("root"), "root")
    rpath = _str(root.get("path"), "root.path", nonempty=True)
    # The spec allows a path relative to the bundle, "." included.
    rpath = os.path.normpath(os.path.join(bundle, rpath))
    hostname = _opt_str(d.get("hostname"), "hostname")
    domainname = _opt_str(d.get("domainname"), "domainname")
    for fname, val in (("hostname", hostname), ("domainname", domainname)):
        if val is not None and len(val.encode()) > 64:
            raise SpecError(f"{fname}: longer than 64 bytes")
    ann = _get_obj(d, "annotations", "annotations") or {}
    annotations = {_str(k, "annotations"): _str(v, f"annotations.{k}") for k, v in ann.items()}
    spec = Spec(
        oci_version=version,
        root_path=rpath,
        root_readonly=_bool(root.get("readonly"), "root.readonly"),
        process=None if d.get("process") is None else _process(d["process"]),
        hostname=hostname,
        domainname=domainname,
        mounts=_mounts(d.get("mounts")),
        linux=_linux(d.get("linux") or {}),
        annotations=annotations,
        bundle=bundle,
        hooks=None if d.get("hooks") is None else _hooks(d["hooks"]),
    )
    if spec.linux.ns("mount") is None:
        # No mount namespace: runc chroots into the rootfs. Mounts would be made on the host's own
        # mount table and outlive the container: refused, as anything else we could not undo.
        refused: tuple[tuple[str, object], ...] = (
            ("mounts", spec.mounts),
            ("linux.maskedPaths", spec.linux.masked_paths),
            ("linux.readonlyPaths", spec.linux.readonly_paths),
            ("root.readonly", spec.root_readonly),
        )
        for key, given in refused:
            if given:
                raise SpecError(f"{key}: needs a mount namespace in linux.namespaces")
    # A joined uts namespace keeps its names: the hostname is set only in one of our own (runc
    # refuses a hostname only without any uts namespace).
    if (hostname or domainname) and spec.linux.ns("uts") is None:
        raise SpecError("hostname: setting it needs a uts namespace in linux.namespaces")
    return spec


def loads(text: str | bytes, bundle: str) -> Spec:
    try:
        doc = cjson.loads(text)
    except (
        ValueError,
        RecursionError,
    ) as e:  # JSONDecodeError and UnicodeDecodeError are ValueError
        raise SpecError(f"config.json: not valid JSON ({str(e).splitlines()[0][:120]})") from None
    try:
        return parse(doc, bundle)
    except RecursionError:
        raise SpecError("config.json: nested too deeply") from None


def load(bundle: str) -> Spec:
    """Load ``<bundle>/config.json``."""
    bundle = os.path.abspath(bundle)
    path = os.path.join(bundle, CONFIG)
    try:
        # O_NONBLOCK: a FIFO in its place must not block us until some writer comes along.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise SpecError(f"{path}: {e.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SpecError(f"{path}: not a regular file")
        with open(fd, "rb", closefd=False) as f:
            text = f.read()
    except OSError as e:
        raise SpecError(f"{path}: {e.strerror}") from None
    finally:
        os.close(fd)
    return loads(text, bundle)


def check_host(spec: Spec, nstype_of: Any = None) -> None:
    """Checks that need the host: the rootfs exists and each namespace path is of the right type.

    ``nstype_of(fd) -> int`` answers NS_GET_NSTYPE (``Sys().nstype`` unless a test supplies one).
    """
    if not os.path.isdir(spec.root_path):
        raise SpecError(f"root.path: {spec.root_path} is not a directory")
    if nstype_of is None:
        from runtime.sys import Sys

        nstype_of = Sys().nstype
    for i, ns in enumerate(spec.linux.namespaces):
        if ns.path is None:
            continue
        name = f"linux.namespaces[{i}].path"
        try:
            fd = os.open(ns.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise SpecError(f"{name}: {ns.path}: {e.strerror}") from None
        try:
            kind = nstype_of(fd)
        except Exception:
            raise SpecError(f"{name}: {ns.path} is not a namespace file") from None
        finally:
            os.close(fd)
        if kind != NAMESPACES[ns.type]:
            raise SpecError(f"{name}: {ns.path} is not a {ns.type} namespace")
    for key in spec.linux.sysctl:
        owner = spec.linux.ns(sysctl_namespace(key) or "")
        if owner is not None and owner.path is not None and _same_ns(owner.path, owner.type):
            raise SpecError(f"linux.sysctl: {key} would be written to the host ({owner.path} is"
                            f" the runtime's own {owner.type} namespace)")  # fmt: skip
    check_labels(spec)


def _same_ns(path: str, kind: str) -> bool:
    try:
        a, b = os.stat(path), os.stat(f"/proc/self/ns/{NS_PROC_NAME[kind]}")
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


APPARMOR_ENABLED = "/sys/module/apparmor/parameters/enabled"
SELINUX_FS = "/sys/fs/selinux"


def check_labels(spec: Spec) -> None:
    """AppArmor and SELinux labels are refused rather than dropped: a config that asks for a
    confinement must not run without it. isoproof-oci applies neither; where the host has no such
    LSM the message says so, as runc's does."""
    if spec.process is not None:
        check_process_labels(spec.process)
    if spec.linux.mount_label:
        _refuse_label("linux.mountLabel", "SELinux", os.path.isdir(SELINUX_FS))


def check_process_labels(proc: Process) -> None:
    labels = []
    if proc.apparmor_profile:
        labels.append(("process.apparmorProfile", "AppArmor", _apparmor_enabled()))
    if proc.selinux_label:
        labels.append(("process.selinuxLabel", "SELinux", os.path.isdir(SELINUX_FS)))
    for field, lsm, enabled in labels:
        _refuse_label(field, lsm, enabled)


def _refuse_label(field: str, lsm: str, enabled: bool) -> None:
    if not enabled:
        raise SpecError(f"{field}: {lsm} is not enabled on this host")
    raise SpecError(f"{field}: applying {lsm} labels is not supported by isoproof-oci")


def _apparmor_enabled() -> bool:
    try:
        with open(APPARMOR_ENABLED) as f:
            return f.read().strip() == "Y"
    except OSError:
        return False


def default_spec() -> dict[str, Any]:
    """The config.json that ``isoproof-oci spec`` writes (like ``runc spec``, with the usual
    default capability set)."""
    caps = list(DEFAULT_CAPS)
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm",
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": caps,
                "effective": caps,
                "permitted": caps,
                "ambient": [],
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "isoproof",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
            },
            {
                "destination": "/dev/pts",
                "type": "devpts",
                "source": "devpts",
                "options": [
                    "nosuid",
                    "noexec",
                    "newinstance",
                    "ptmxmode=0666",
                    "mode=0620",
                    "gid=5",
                ],
            },
            {
                "destination": "/dev/shm",
                "type": "tmpfs",
                "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
            },
            {
                "destination": "/dev/mqueue",
                "type": "mqueue",
                "source": "mqueue",
                "options": ["nosuid", "noexec", "nodev"],
            },
            {
                "destination": "/sys",
                "type": "sysfs",
                "source": "sysfs",
                "options": ["nosuid", "noexec", "nodev", "ro"],
            },
            {
                "destination": "/sys/fs/cgroup",
                "type": "cgroup",
                "source": "cgroup",
                "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
            },
        ],  # fmt: skip
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [
                {"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "cgroup")
            ],
            "maskedPaths": [
                "/proc/acpi",
                "/proc/asound",
                "/proc/kcore",
                "/proc/keys",
                "/proc/latency_stats",
                "/proc/timer_list",
                "/proc/timer_stats",
                "/proc/sched_debug",
                "/proc/scsi",
                "/sys/firmware",
                "/sys/devices/virtual/powercap",
            ],
            "readonlyPaths": [
                "/proc/bus",
                "/proc/fs",
                "/proc/irq",
                "/proc/sys",
                "/proc/sysrq-trigger",
            ],
        },  # fmt: skip
    }


def parse_process(doc: Any) -> Process:
    """A ``process`` object alone (``exec --process FILE``)."""
    try:
        return _process(doc)
    except RecursionError:
        raise SpecError("process: nested too deeply") from None
