"""OCI ``linux.seccomp``: validate the profile (pure), turn it into libseccomp calls, load it.

Three layers, so that most of it is tested without root or even libseccomp:

* :func:`parse` -- untrusted JSON to a :class:`Profile`, every JSON type checked; what we cannot
  honour (``SCMP_ACT_NOTIFY``, a ``listenerPath``, a flag libseccomp 2.5 lacks) is a
  :class:`~runtime.errors.SpecError` naming the field. Pure.
* :func:`plan` -- a profile to the rule additions libseccomp gets, in runc's shape: rules whose
  action is the default action are dropped (libseccomp refuses them), and a rule that compares one
  argument twice becomes one rule per comparison (libseccomp cannot AND two tests of one argument;
  runc does the same). Pure.
* :class:`Lib` -- a small ctypes binding to ``libseccomp.so.2`` (the library runc and crun use), and
  :func:`build` which resolves the syscall names with it and builds the filter context.

Syscall numbers come from libseccomp, never from a table of ours. A name libseccomp does not know
(a syscall newer than the library, or of another architecture) is skipped with a warning, as runc
does. The context is built in the runtime's process before it forks, so that a bad profile is an
error of ``create`` (and the warnings reach runc's usual places); the container's init only calls
:meth:`Filter.load` (libseccomp needs no file for that, so it works after pivot_root).
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os

from runtime.errors import IsoproofError, SpecError, SyscallError, suppress
from runtime.oci.record import Record

TYPE_CHECKING = False  # True for mypy only: importing typing costs ~3 ms on every CLI call
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

# The kernel's SECCOMP_RET_* action values (linux/seccomp.h), as libseccomp's SCMP_ACT_* macros.
ACT_KILL_PROCESS = 0x80000000
ACT_KILL_THREAD = 0x00000000
ACT_TRAP = 0x00030000
ACT_ERRNO = 0x00050000  # | errno
ACT_NOTIFY = 0x7FC00000
ACT_TRACE = 0x7FF00000  # | message
ACT_LOG = 0x7FFC0000
ACT_ALLOW = 0x7FFF0000

# OCI action name -> base action; ERRNO and TRACE carry a 16-bit return value.
ACTIONS: dict[str, int] = {
    "SCMP_ACT_KILL": ACT_KILL_THREAD,  # the OCI and runc meaning of plain KILL
    "SCMP_ACT_KILL_THREAD": ACT_KILL_THREAD,
    "SCMP_ACT_KILL_PROCESS": ACT_KILL_PROCESS,
    "SCMP_ACT_TRAP": ACT_TRAP,
    "SCMP_ACT_ERRNO": ACT_ERRNO,
    "SCMP_ACT_TRACE": ACT_TRACE,
    "SCMP_ACT_LOG": ACT_LOG,
    "SCMP_ACT_ALLOW": ACT_ALLOW,
    "SCMP_ACT_NOTIFY": ACT_NOTIFY,
}
WITH_RETURN = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")

# enum scmp_compare
OPS: dict[str, int] = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}
MAX_ARGS = 6  # a syscall has at most six arguments

# The runtime-spec's architecture names. libseccomp's own name for each is the lower-case rest
# (SCMP_ARCH_X86_64 -> "x86_64"), which seccomp_arch_resolve_name understands.
ARCHES = ("SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM",
          "SCMP_ARCH_AARCH64", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32",
          "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC",
          "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390", "SCMP_ARCH_S390X",
          "SCMP_ARCH_PARISC", "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64")  # fmt: skip

# enum scmp_filter_attr (libseccomp 2.5)
ATTR_CTL_NNP = 3
ATTR_CTL_TSYNC = 4
ATTR_CTL_LOG = 6
ATTR_CTL_SSB = 7
ATTR_API_SYSRAWRC = 9

# OCI flag -> the libseccomp attribute that sets it. WAIT_KILLABLE_RECV needs libseccomp 2.6 and
# only matters for SCMP_ACT_NOTIFY, which we refuse anyway.
FLAGS: dict[str, int] = {
    "SECCOMP_FILTER_FLAG_TSYNC": ATTR_CTL_TSYNC,
    "SECCOMP_FILTER_FLAG_LOG": ATTR_CTL_LOG,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": ATTR_CTL_SSB,
}

U64 = 2**64 - 1
NR_SCMP_ERROR = -1  # seccomp_syscall_resolve_name's "unknown"


class Arg(Record):
    __slots__ = ("index", "op", "value", "value_two")

    def __init__(self, index: int, op: int, value: int, value_two: int = 0) -> None:
        self.index = index
        self.op = op  # an OPS value
        self.value = value  # for SCMP_CMP_MASKED_EQ: the mask
        self.value_two = value_two  # for SCMP_CMP_MASKED_EQ: the value the masked argument must be


class Rule(Record):
    __slots__ = ("names", "action", "args")

    def __init__(self, names: list[str], action: int, args: list[Arg] | None = None) -> None:
        self.names = names
        self.action = action  # the full 32-bit action, return value included
        self.args = args or []


class Profile(Record):
    """A validated ``linux.seccomp``. ``doc`` is the JSON it came from (saved in the container's
    state for ``exec``); ``filter`` is set by :func:`build` in the runtime's process."""

    __slots__ = ("default_action", "architectures", "flags", "rules", "doc", "filter")

    def __init__(self, default_action: int, architectures: list[str] | None = None,
                 flags: list[str] | None = None, rules: list[Rule] | None = None,
                 doc: dict[str, Any] | None = None) -> None:  # fmt: skip
        self.default_action = default_action
        self.architectures = architectures or []
        self.flags = flags or []
        self.rules = rules or []
        self.doc = doc or {}
        self.filter: Filter | None = None


# --- parse (pure) ----------------------------------------------------------------------------------


def _int(v: Any, name: str, hi: int) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise SpecError(f"{name}: expected an integer")
    if not 0 <= v <= hi:
        raise SpecError(f"{name}: {v} is out of range 0..{hi}")
    return v


def _list(v: Any, name: str) -> list[Any]:
    if v is None:
        return []
    if not isinstance(v, list):
        raise SpecError(f"{name}: expected an array")
    return v


def _name(v: Any, name: str, known: Any) -> str:
    if not isinstance(v, str):
        raise SpecError(f"{name}: expected a string")
    if v not in known:
        raise SpecError(f"{name}: unknown value {v!r}")
    return v


def action(act: str, errno_ret: int | None, name: str) -> int:
    """The 32-bit action for an OCI action name and its optional ``errnoRet``.

    As runc: ERRNO and TRACE without errnoRet return EPERM. errnoRet on any other action cannot be
    honoured, so it is refused rather than ignored."""
    if act == "SCMP_ACT_NOTIFY":
        raise SpecError(
            f"{name}: SCMP_ACT_NOTIFY is not supported by isoproof-oci (no seccomp agent)"
        )
    if act in WITH_RETURN:
        return ACTIONS[act] | (_errno.EPERM if errno_ret is None else errno_ret)
    if errno_ret is not None:
        raise SpecError(f"{name}: errnoRet is only allowed with SCMP_ACT_ERRNO or SCMP_ACT_TRACE")
    return ACTIONS[act]


def _errno_ret(d: dict[str, Any], key: str, name: str) -> int | None:
    v = d.get(key)
    return None if v is None else _int(v, f"{name}.{key}", 0xFFFF)


def parse(v: Any, where: str = "linux.seccomp") -> Profile:
    """Validate an OCI ``linux.seccomp`` object."""
    if not isinstance(v, dict):
        raise SpecError(f"{where}: expected an object")
    for key in ("listenerPath", "listenerMetadata"):
        if v.get(key) not in (None, ""):
            raise SpecError(
                f"{where}.{key}: seccomp notify agents are not supported by isoproof-oci"
            )
    default = _name(v.get("defaultAction"), f"{where}.defaultAction", ACTIONS)
    default_action = action(default, _errno_ret(v, "defaultErrnoRet", where),
                            f"{where}.defaultAction")  # fmt: skip
    arches = [_name(a, f"{where}.architectures[{i}]", ARCHES)
              for i, a in enumerate(_list(v.get("architectures"), f"{where}.architectures"))]  # fmt: skip
    flags = []
    for i, f in enumerate(_list(v.get("flags"), f"{where}.flags")):
        fname = f"{where}.flags[{i}]"
        if f == "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV":
            raise SpecError(
                f"{fname}: {f} is not supported (it needs libseccomp 2.6 and a notify agent)"
            )
        flags.append(_name(f, fname, FLAGS))
    rules = []
    for i, s in enumerate(_list(v.get("syscalls"), f"{where}.syscalls")):
        name = f"{where}.syscalls[{i}]"
        if not isinstance(s, dict):
            raise SpecError(f"{name}: expected an object")
        names = _list(s.get("names"), f"{name}.names")
        if not names:
            raise SpecError(f"{name}.names: must list at least one syscall")
        for j, n in enumerate(names):
            if not isinstance(n, str) or not n or "\0" in n:
                raise SpecError(f"{name}.names[{j}]: expected a syscall name")
        act = _name(s.get("action"), f"{name}.action", ACTIONS)
        args = []
        for j, a in enumerate(_list(s.get("args"), f"{name}.args")):
            aname = f"{name}.args[{j}]"
            if not isinstance(a, dict):
                raise SpecError(f"{aname}: expected an object")
            args.append(Arg(
                index=_int(a.get("index"), f"{aname}.index", MAX_ARGS - 1),
                op=OPS[_name(a.get("op"), f"{aname}.op", OPS)],
                value=_int(a.get("value"), f"{aname}.value", U64),
                value_two=0 if a.get("valueTwo") is None
                else _int(a["valueTwo"], f"{aname}.valueTwo", U64),
            ))  # fmt: skip
        rules.append(Rule(list(names), action(act, _errno_ret(s, "errnoRet", name), f"{name}.action"),
                          args))  # fmt: skip
    return Profile(default_action, arches, flags, rules, v)


# --- plan (pure) -----------------------------------------------------------------------------------


def plan(p: Profile) -> Iterator[tuple[str, int, list[Arg]]]:
    """(syscall name, action, comparisons) for each seccomp_rule_add, in profile order."""
    for r in p.rules:
        if r.action == p.default_action:
            continue  # libseccomp refuses a rule that repeats the default (EACCES); it is a no-op
        counts = [0] * MAX_ARGS
        for a in r.args:
            counts[a.index] += 1
        # libseccomp ANDs the comparisons of one rule but refuses two on the same argument: then,
        # like runc, one rule per comparison (which ORs them: what profiles that do it mean).
        groups = [[a] for a in r.args] if max(counts) > 1 else [r.args]
        for name in r.names:
            for g in groups:
                yield name, r.action, g


# --- libseccomp ------------------------------------------------------------------------------------


class _ArgCmp(ctypes.Structure):
    """struct scmp_arg_cmp"""

    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


class Lib:
    """libseccomp.so.2 through ctypes. Functions return 0 or a negative errno (libseccomp's
    convention), which :meth:`_check` turns into :class:`SyscallError`."""

    _instance: Lib | None = None

    def __init__(self, path: str = "libseccomp.so.2") -> None:
        try:
            lib = ctypes.CDLL(path, use_errno=True)
        except OSError:
            raise IsoproofError(
                f"linux.seccomp: {path} cannot be loaded (install libseccomp2)"
            ) from None
        vp, c_int, c_uint32, c_char_p = (
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.c_uint32,
            ctypes.c_char_p,
        )
        sigs = {
            "seccomp_init": (vp, [c_uint32]),
            "seccomp_release": (None, [vp]),
            "seccomp_arch_native": (c_uint32, []),
            "seccomp_arch_resolve_name": (c_uint32, [c_char_p]),
            "seccomp_arch_add": (c_int, [vp, c_uint32]),
            "seccomp_syscall_resolve_name": (c_int, [c_char_p]),
            "seccomp_rule_add_array": (c_int, [vp, c_uint32, c_int, ctypes.c_uint,
                                               ctypes.POINTER(_ArgCmp)]),
            "seccomp_attr_set": (c_int, [vp, c_int, c_uint32]),
            "seccomp_load": (c_int, [vp]),
        }  # fmt: skip
        for fn, (res, argtypes) in sigs.items():
            f = getattr(lib, fn)
            f.restype, f.argtypes = res, argtypes
        self._lib = lib

    @classmethod
    def get(cls) -> Lib:
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    @staticmethod
    def _check(ret: int, call: str, target: str | None = None) -> int:
        if ret < 0:
            raise SyscallError(call, -ret, target)
        return ret

    def init(self, default_action: int) -> int:
        ctx = self._lib.seccomp_init(default_action)
        if not ctx:
            raise SyscallError(
                "seccomp_init", ctypes.get_errno() or _errno.EINVAL, hex(default_action)
            )
        return int(ctx)

    def release(self, ctx: int) -> None:
        self._lib.seccomp_release(ctx)

    def arch_native(self) -> int:
        return int(self._lib.seccomp_arch_native())

    def arch_add(self, ctx: int, oci_name: str) -> None:
        token = self._lib.seccomp_arch_resolve_name(oci_name[len("SCMP_ARCH_") :].lower().encode())
        if token == 0:
            raise SpecError(
                f"linux.seccomp.architectures: {oci_name} is unknown to this libseccomp"
            )
        ret = self._lib.seccomp_arch_add(ctx, token)
        if ret != -_errno.EEXIST:  # the native architecture is in every new context already
            self._check(ret, "seccomp_arch_add", oci_name)

    def resolve(self, name: str) -> int:
        """The native syscall number (negative for libseccomp's multiplexed pseudo-syscalls), or
        NR_SCMP_ERROR when libseccomp does not know the name."""
        return int(self._lib.seccomp_syscall_resolve_name(name.encode()))

    def rule_add(self, ctx: int, act: int, nr: int, args: list[Arg], name: str) -> None:
        arr = (_ArgCmp * max(1, len(args)))(
            *[_ArgCmp(a.index, a.op, a.value, a.value_two) for a in args]
        )
        self._check(self._lib.seccomp_rule_add_array(ctx, act, nr, len(args), arr),
                    "seccomp_rule_add", name)  # fmt: skip

    def attr_set(self, ctx: int, attr: int, value: int) -> None:
        self._check(self._lib.seccomp_attr_set(ctx, attr, value), "seccomp_attr_set", str(attr))

    def load(self, ctx: int) -> None:
        self._check(self._lib.seccomp_load(ctx), "seccomp_load")


class Filter:
    """A built libseccomp context, ready to load."""

    def __init__(self, lib: Lib, ctx: int, skipped: list[str]) -> None:
        self.lib = lib
        self.ctx = ctx
        self.skipped = skipped  # syscall names libseccomp did not know

    def load(self) -> None:
        """Install the filter on the calling thread. Without no_new_privs already set this needs
        CAP_SYS_ADMIN (libseccomp's own NNP setting is off: the spec decides NNP, not us)."""
        self.lib.load(self.ctx)

    def release(self) -> None:
        if self.ctx:
            self.lib.release(self.ctx)
            self.ctx = 0


def build(p: Profile, warn: Callable[[str], None] | None = None, lib: Lib | None = None) -> Filter:
    """Build the filter for ``p`` (and keep it as ``p.filter``). Unknown syscall names are
    skipped, each named once through ``warn``."""
    lib = lib or Lib.get()
    ctx = lib.init(p.default_action)
    try:
        # NNP off: we set no_new_privs ourselves, only when the spec asks (runc does the same).
        lib.attr_set(ctx, ATTR_CTL_NNP, 0)
        # Report the kernel's errno from seccomp_load, not libseccomp's generic -ECANCELED.
        with suppress(SyscallError):  # older libseccomp: only the message is vaguer
            lib.attr_set(ctx, ATTR_API_SYSRAWRC, 1)
        for f in p.flags:
            lib.attr_set(ctx, FLAGS[f], 1)
        for a in p.architectures:
            lib.arch_add(ctx, a)
        numbers: dict[str, int] = {}
        skipped: list[str] = []
        for name, act, args in plan(p):
            nr = numbers.get(name)
            if nr is None:
                nr = numbers[name] = lib.resolve(name)
                if nr == NR_SCMP_ERROR:
                    skipped.append(name)
                    if warn is not None:
                        warn(f"linux.seccomp: unknown syscall {name!r} ignored")
            if nr != NR_SCMP_ERROR:
                lib.rule_add(ctx, act, nr, args, name)
    except BaseException:
        lib.release(ctx)
        raise
    p.filter = Filter(lib, ctx, skipped)
    return p.filter


def load(p: Profile | None) -> None:
    """Load ``p``'s filter (built by :func:`build` before the fork), if there is a profile."""
    if p is None:
        return
    if p.filter is None:
        raise IsoproofError("linux.seccomp: the filter was not built before the container's setup")
    p.filter.load()


def status(pid: int | str = "self") -> dict[str, str]:
    """The Seccomp and Seccomp_filters lines of /proc/PID/status (for tests and checks)."""
    out = {}
    with open(os.path.join("/proc", str(pid), "status")) as f:
        for line in f:
            key, _, val = line.partition(":")
            if key in ("Seccomp", "Seccomp_filters", "NoNewPrivs"):
                out[key] = val.strip()
    return out
