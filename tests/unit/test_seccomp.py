"""OCI linux.seccomp: strict validation, runc's rule shaping, the libseccomp binding, and the
filter's real effect on the kernel (in a forked child with no_new_privs: no root needed)."""

from __future__ import annotations

import contextlib
import copy
import ctypes
import errno
import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime import seccomp as sc
from runtime import spec as spec_
from runtime.errors import IsoproofError, SpecError

DATA = Path(__file__).resolve().parents[1] / "data" / "seccomp"
PODMAN = json.loads((DATA / "podman-4.3-default.json").read_text())
DOCKER = json.loads((DATA / "docker-20.10-shape.json").read_text())
PODMAN_SOURCE = Path("/usr/share/containers/seccomp.json")


def lib_or_skip() -> sc.Lib:
    try:
        return sc.Lib.get()
    except IsoproofError as e:
        pytest.skip(f"needs libseccomp.so.2 (Debian libseccomp2): {e}")


# --- parse --------------------------------------------------------------------------------------


def test_podman_profile_parses_as_podman_meant_it():
    p = sc.parse(PODMAN)
    assert p.default_action == sc.ACT_ERRNO | errno.ENOSYS  # defaultErrnoRet 38
    assert p.architectures == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert len(p.rules) == 19 and sum(len(r.names) for r in p.rules) == 434
    pers = [r for r in p.rules if r.names == ["personality"]]
    assert [(a.index, a.op, a.value) for r in pers for a in r.args] == [
        (0, sc.OPS["SCMP_CMP_EQ"], v) for v in (0, 8, 131072, 131080, 4294967295)
    ]
    assert {r.action for r in p.rules} == {sc.ACT_ALLOW, sc.ACT_ERRNO | errno.EPERM}
    assert p.doc is PODMAN  # kept for exec


@pytest.mark.skipif(not PODMAN_SOURCE.exists(), reason=f"needs podman's {PODMAN_SOURCE}")
def test_captured_profile_comes_from_the_installed_podman_profile():
    """The captured object is what podman made of its own file: every syscall and argument rule
    in it is in the file podman read (a stale capture would drift from the installed package)."""
    src = json.loads(PODMAN_SOURCE.read_text())
    assert src["defaultAction"] == PODMAN["defaultAction"]
    assert src["defaultErrnoRet"] == PODMAN["defaultErrnoRet"]
    names = {n for r in src["syscalls"] for n in r["names"]}
    assert {n for r in PODMAN["syscalls"] for n in r["names"]} <= names
    src_args = [
        (r["names"], a["op"], a["value"]) for r in src["syscalls"] for a in r.get("args") or []
    ]
    for r in PODMAN["syscalls"]:
        for a in r.get("args") or []:
            assert (r["names"], a["op"], a["value"]) in src_args


def test_docker_shape_has_masked_eq_clone():
    p = sc.parse(DOCKER)
    assert p.default_action == sc.ACT_ERRNO | errno.EPERM  # no defaultErrnoRet: EPERM, as runc
    (clone,) = [r for r in p.rules if r.names == ["clone"]]
    assert clone.args == [sc.Arg(0, sc.OPS["SCMP_CMP_MASKED_EQ"], 0x7E020000, 0)]


@pytest.mark.parametrize("name", list(sc.ACTIONS))
def test_each_action(name: str):
    doc = {"defaultAction": "SCMP_ACT_ALLOW" if name != "SCMP_ACT_ALLOW" else "SCMP_ACT_LOG",
           "syscalls": [{"names": ["getpid"], "action": name}]}  # fmt: skip
    if name == "SCMP_ACT_NOTIFY":
        with pytest.raises(
            SpecError, match=r"^linux.seccomp.syscalls\[0\].action: SCMP_ACT_NOTIFY"
        ):
            sc.parse(doc)
        return
    want = {"SCMP_ACT_KILL": 0, "SCMP_ACT_KILL_THREAD": 0, "SCMP_ACT_KILL_PROCESS": 0x80000000,
            "SCMP_ACT_TRAP": 0x00030000, "SCMP_ACT_ERRNO": 0x00050001, "SCMP_ACT_TRACE": 0x7FF00001,
            "SCMP_ACT_LOG": 0x7FFC0000, "SCMP_ACT_ALLOW": 0x7FFF0000}[name]  # fmt: skip
    assert sc.parse(doc).rules[0].action == want


def test_errno_ret_and_value_two():
    p = sc.parse({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38, "syscalls": [
        {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
         "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_GE", "valueTwo": None}]},
        {"names": ["ptrace"], "action": "SCMP_ACT_TRACE", "errnoRet": 5}]})  # fmt: skip
    assert p.default_action == sc.ACT_ERRNO | 38
    assert p.rules[0].action == sc.ACT_ERRNO | 13 and p.rules[0].args[0].value_two == 0
    assert p.rules[1].action == sc.ACT_TRACE | 5


OK = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
      "flags": ["SECCOMP_FILTER_FLAG_LOG"],
      "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 0, "value": 1, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]}]}  # fmt: skip


def _with(path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(OK)
    keys = path.split(".")
    cur: Any = doc
    for k in keys[:-1]:
        cur = cur[int(k)] if isinstance(cur, list) else cur[k]
    last = keys[-1]
    if isinstance(cur, list):
        cur[int(last)] = value
    else:
        cur[last] = value
    return doc


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("defaultAction", None, "linux.seccomp.defaultAction: expected a string"),
        ("defaultAction", "SCMP_ACT_MAYBE", "linux.seccomp.defaultAction: unknown value"),
        ("defaultAction", "SCMP_ACT_NOTIFY", "linux.seccomp.defaultAction: SCMP_ACT_NOTIFY"),
        ("defaultErrnoRet", 1, "linux.seccomp.defaultAction: errnoRet is only allowed"),
        ("defaultErrnoRet", "1", "linux.seccomp.defaultErrnoRet: expected an integer"),
        ("listenerPath", "/run/agent.sock", "linux.seccomp.listenerPath: seccomp notify agents"),
        ("architectures", "SCMP_ARCH_X86_64", "linux.seccomp.architectures: expected an array"),
        ("architectures.0", "x86_64", "linux.seccomp.architectures[0]: unknown value"),
        ("flags.0", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV", "linux.seccomp.flags[0]: SECCOMP"),
        ("flags.0", "SECCOMP_FILTER_FLAG_NOPE", "linux.seccomp.flags[0]: unknown value"),
        ("syscalls", {}, "linux.seccomp.syscalls: expected an array"),
        ("syscalls.0", "kill", "linux.seccomp.syscalls[0]: expected an object"),
        ("syscalls.0.names", [], "linux.seccomp.syscalls[0].names: must list"),
        ("syscalls.0.names", "kill", "linux.seccomp.syscalls[0].names: expected an array"),
        ("syscalls.0.names", ["kill", 3], "linux.seccomp.syscalls[0].names[1]"),
        ("syscalls.0.names", [""], "linux.seccomp.syscalls[0].names[0]"),
        ("syscalls.0.action", "SCMP_ACT_NOTIFY", "linux.seccomp.syscalls[0].action: SCMP_ACT_N"),
        ("syscalls.0.errnoRet", 65536, "linux.seccomp.syscalls[0].errnoRet: 65536 is out of"),
        ("syscalls.0.errnoRet", True, "linux.seccomp.syscalls[0].errnoRet: expected an integer"),
        ("syscalls.0.args.0.index", 6, "linux.seccomp.syscalls[0].args[0].index: 6 is out"),
        ("syscalls.0.args.0.index", "0", "linux.seccomp.syscalls[0].args[0].index: expected an"),
        ("syscalls.0.args.0.op", "SCMP_CMP_ABOUT", "linux.seccomp.syscalls[0].args[0].op: unknown"),
        ("syscalls.0.args.0.value", -1, "linux.seccomp.syscalls[0].args[0].value: -1 is out"),
        ("syscalls.0.args.0.value", 2**64, "linux.seccomp.syscalls[0].args[0].value: 1844"),
        ("syscalls.0.args.0.valueTwo", 1.5, "linux.seccomp.syscalls[0].args[0].valueTwo: expec"),
        ("syscalls.0.args.0", [], "linux.seccomp.syscalls[0].args[0]: expected an object"),
    ],
)
def test_each_bad_field_is_named(path: str, value: Any, field: str):
    with pytest.raises(SpecError) as e:
        sc.parse(_with(path, value))
    assert str(e.value).startswith(field), str(e.value)
    assert "\n" not in str(e.value)


def test_errno_ret_on_an_action_without_a_return_value_is_refused():
    doc = _with("syscalls.0.action", "SCMP_ACT_ALLOW")
    doc["syscalls"][0]["errnoRet"] = 1
    with pytest.raises(SpecError, match="errnoRet is only allowed with SCMP_ACT_ERRNO"):
        sc.parse(doc)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**65), 2**65) | st.text(max_size=8)
    | st.sampled_from(["SCMP_ACT_ERRNO", "SCMP_CMP_MASKED_EQ", "kill", "SCMP_ARCH_X86"]),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(
        st.sampled_from(["names", "action", "args", "index", "value", "valueTwo", "op",
                         "errnoRet", "defaultAction", "syscalls", "flags", "architectures"]),
        c, max_size=4),
    max_leaves=12,
)  # fmt: skip


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_arbitrary_json_gives_a_profile_or_a_spec_error(v: Any):
    try:
        p = sc.parse(v)
    except SpecError as e:
        assert "\n" not in str(e)
        return
    assert list(sc.plan(p)) is not None


@settings(max_examples=200)
@given(st.sampled_from(["defaultAction", "syscalls.0.action", "syscalls.0.names",
                        "syscalls.0.args.0.op", "syscalls.0.args.0.index", "architectures.0",
                        "flags.0", "syscalls.0.args.0.value"]), json_values)  # fmt: skip
def test_mutated_profile_gives_a_profile_or_a_spec_error(path: str, value: Any):
    with contextlib.suppress(SpecError):
        sc.parse(_with(path, value))


# --- plan -----------------------------------------------------------------------------------------


def test_plan_drops_default_action_rules_and_splits_repeated_arguments():
    eq, ne = sc.OPS["SCMP_CMP_EQ"], sc.OPS["SCMP_CMP_NE"]
    p = sc.Profile(sc.ACT_ERRNO | 1, rules=[
        sc.Rule(["read", "write"], sc.ACT_ALLOW),
        sc.Rule(["acct"], sc.ACT_ERRNO | 1),  # the default again: libseccomp would say EACCES
        sc.Rule(["kill"], sc.ACT_ALLOW, [sc.Arg(0, eq, 1), sc.Arg(1, ne, 9)]),  # AND: one rule
        sc.Rule(["personality"], sc.ACT_ALLOW, [sc.Arg(0, eq, 0), sc.Arg(0, eq, 8)]),  # split
    ])  # fmt: skip
    assert list(sc.plan(p)) == [
        ("read", sc.ACT_ALLOW, []),
        ("write", sc.ACT_ALLOW, []),
        ("kill", sc.ACT_ALLOW, [sc.Arg(0, eq, 1), sc.Arg(1, ne, 9)]),
        ("personality", sc.ACT_ALLOW, [sc.Arg(0, eq, 0)]),
        ("personality", sc.ACT_ALLOW, [sc.Arg(0, eq, 8)]),
    ]


# --- build, with a recording libseccomp -------------------------------------------------------------


class FakeLib:
    def __init__(self, known: dict[str, int]) -> None:
        self.known = known
        self.calls: list[tuple[Any, ...]] = []

    def init(self, act: int) -> int:
        self.calls.append(("init", act))
        return 1

    def release(self, ctx: int) -> None:
        self.calls.append(("release",))

    def attr_set(self, ctx: int, attr: int, value: int) -> None:
        self.calls.append(("attr", attr, value))

    def arch_add(self, ctx: int, name: str) -> None:
        self.calls.append(("arch", name))

    def resolve(self, name: str) -> int:
        return self.known.get(name, sc.NR_SCMP_ERROR)

    def rule_add(self, ctx: int, act: int, nr: int, args: list[sc.Arg], name: str) -> None:
        if name == "boom":
            raise IsoproofError("seccomp_rule_add boom: Invalid argument")
        self.calls.append(("rule", act, nr, len(args)))


def test_build_sets_nnp_off_flags_arches_and_skips_unknown_names_with_one_warning():
    p = sc.parse({"defaultAction": "SCMP_ACT_ERRNO", "flags": ["SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
                  "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
                  "syscalls": [{"names": ["read", "nosuch", "write"], "action": "SCMP_ACT_ALLOW"},
                               {"names": ["nosuch"], "action": "SCMP_ACT_LOG"}]})  # fmt: skip
    lib = FakeLib({"read": 0, "write": 1})
    warnings: list[str] = []
    f = sc.build(p, warnings.append, lib)  # type: ignore[arg-type]
    assert lib.calls == [
        ("init", sc.ACT_ERRNO | errno.EPERM),
        ("attr", sc.ATTR_CTL_NNP, 0),
        ("attr", sc.ATTR_API_SYSRAWRC, 1),
        ("attr", sc.ATTR_CTL_SSB, 1),
        ("arch", "SCMP_ARCH_X86_64"),
        ("arch", "SCMP_ARCH_X86"),
        ("rule", sc.ACT_ALLOW, 0, 0),
        ("rule", sc.ACT_ALLOW, 1, 0),
    ]
    assert warnings == ["linux.seccomp: unknown syscall 'nosuch' ignored"]
    assert f.skipped == ["nosuch"] and p.filter is f


def test_build_releases_the_context_when_a_rule_fails():
    p = sc.parse({"defaultAction": "SCMP_ACT_ERRNO",
                  "syscalls": [{"names": ["boom"], "action": "SCMP_ACT_ALLOW"}]})  # fmt: skip
    lib = FakeLib({"boom": 5})
    with pytest.raises(IsoproofError, match="boom"):
        sc.build(p, None, lib)  # type: ignore[arg-type]
    assert lib.calls[-1] == ("release",) and p.filter is None


def test_load_without_a_built_filter_is_an_error():
    with pytest.raises(IsoproofError, match="not built"):
        sc.load(sc.parse(OK))


# --- the real libseccomp and kernel ----------------------------------------------------------------


def test_real_profiles_build_and_every_name_resolves():
    lib = lib_or_skip()
    for doc in (PODMAN, DOCKER):
        p = sc.parse(doc)
        f = sc.build(p, None, lib)
        assert f.skipped == [] and f.ctx
        f.release()


def test_unknown_architecture_to_libseccomp_is_a_spec_error_and_unknown_name_a_warning():
    lib = lib_or_skip()
    warnings: list[str] = []
    p = sc.parse({"defaultAction": "SCMP_ACT_ALLOW",
                  "syscalls": [{"names": ["isoproof_no_such_call"], "action": "SCMP_ACT_KILL"}]})  # fmt: skip
    assert sc.build(p, warnings.append, lib).skipped == ["isoproof_no_such_call"]
    assert warnings == ["linux.seccomp: unknown syscall 'isoproof_no_such_call' ignored"]


def in_filtered_child(
    profile: dict[str, Any], calls: list[tuple[str, tuple[int, ...]]]
) -> list[int]:
    """Load ``profile`` in a forked child (no_new_privs first: no root needed), make each libc call
    and return its errno (0: it succeeded)."""
    p = sc.parse(profile)
    f = sc.build(p, None, lib_or_skip())
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
            f.load()
            out = []
            for name, args in calls:
                ctypes.set_errno(0)
                ret = getattr(libc, name)(*args)
                out.append(ctypes.get_errno() if ret == -1 else 0)
            os.write(w, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 4096):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    f.release()
    return json.loads(data)


NO_PID = 3_900_000  # above any pid_max we meet: kill(pid, 0) says ESRCH unless the filter answers


def _cmp(op: str, arg: int, value: int, two: int) -> bool:
    # libseccomp (2.5, as runc and crun use it) masks valueTwo too: (arg & mask) == (two & mask)
    return {"SCMP_CMP_NE": arg != value, "SCMP_CMP_LT": arg < value, "SCMP_CMP_LE": arg <= value,
            "SCMP_CMP_EQ": arg == value, "SCMP_CMP_GE": arg >= value, "SCMP_CMP_GT": arg > value,
            "SCMP_CMP_MASKED_EQ": arg & value == two & value}[op]  # fmt: skip


@settings(max_examples=25, deadline=None)
@given(
    op=st.sampled_from(list(sc.OPS)),
    value=st.integers(NO_PID - 4, NO_PID + 4),
    two=st.integers(0, 7),
    probes=st.lists(st.integers(NO_PID - 4, NO_PID + 4), min_size=1, max_size=4),
)
def test_every_comparison_on_the_real_kernel(op: str, value: int, two: int, probes: list[int]):
    """kill(pid, 0) with the rule `kill: ERRNO(EACCES) if arg0 OP value`: the kernel answers
    EACCES exactly where the comparison holds, ESRCH (no such pid) elsewhere."""
    lib_or_skip()
    if op == "SCMP_CMP_MASKED_EQ":
        value &= 7  # a small mask, so that both outcomes happen
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EACCES,
         "args": [{"index": 0, "value": value, "valueTwo": two, "op": op}]}]}  # fmt: skip
    got = in_filtered_child(profile, [("kill", (p, 0)) for p in probes])
    want = [errno.EACCES if _cmp(op, p, value, two) else errno.ESRCH for p in probes]
    assert got == want


def nr(name: str) -> int:
    """The native number of a syscall, from libseccomp (never a table of ours)."""
    return lib_or_skip().resolve(name)


def test_podman_profile_on_the_real_kernel():
    """podman's profile: swapoff answers EPERM (its errnoRet 1; without the filter: ENOENT), a
    syscall it does not list answers ENOSYS (defaultErrnoRet 38), personality only for the values
    it allows; getppid works. setns is both allowed and in an EPERM rule: libseccomp keeps the
    first rule (the allow list), which is what runc, using the same library, does too."""
    ul = ctypes.c_ulong
    got = in_filtered_child(PODMAN, [
        ("getppid", ()), ("swapoff", (b"/isoproof-no-such-swap",)),
        ("syscall", (nr("add_key"), 0, 0, 0, 0, 0)),
        ("personality", (ul(0xFFFFFFFF),)), ("personality", (ul(0x0040000),)), ("setns", (-1, 0)),
    ])  # fmt: skip
    assert got == [0, errno.EPERM, errno.ENOSYS, 0, errno.ENOSYS, errno.EBADF]


def test_docker_shape_masked_eq_clone_on_the_real_kernel():
    """docker's clone rule lets a plain fork through (no namespace flag under the mask) and
    refuses unshare-like clones with the default EPERM; clone3 answers ENOSYS."""
    got = in_filtered_child(DOCKER, [
        ("syscall", (nr("clone"), 0x04000000 | 17, 0, 0, 0, 0)),  # CLONE_NEWUTS | SIGCHLD
        ("syscall", (nr("clone3"), 0, 0)),
        ("unshare", (0x04000000,)),
    ])  # fmt: skip
    assert got == [errno.EPERM, errno.ENOSYS, errno.EPERM]


def test_spec_keeps_the_validated_profile_on_linux():
    from tests.unit.test_spec import BUNDLE, good

    doc = good()
    doc["linux"]["seccomp"] = PODMAN
    s = spec_.parse(doc, BUNDLE)
    assert isinstance(s.linux.seccomp, sc.Profile) and len(s.linux.seccomp.rules) == 19
    doc["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_NOTIFY"}
    with pytest.raises(SpecError, match="^linux.seccomp.defaultAction: SCMP_ACT_NOTIFY"):
        spec_.parse(doc, BUNDLE)


def _child_outcome(profile: dict[str, Any]) -> tuple[int | None, int]:
    """Load ``profile`` in a forked child, call getppid() through syscall(2) (glibc's getppid
    cannot report an error) and return (its errno or 0, the signal that ended the child or 0)."""
    p = sc.parse(profile)
    f = sc.build(p, None, lib_or_skip())
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(38, 1, 0, 0, 0)
            f.load()
            ret = libc.syscall(nr("getppid"))
            os.write(w, str(ctypes.get_errno() if ret == -1 else 0).encode())
        finally:
            os._exit(0)
    os.close(w)
    out = os.read(r, 64)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    f.release()
    return (int(out) if out else None), (os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0)


@pytest.mark.parametrize(
    ("act", "want"),
    [
        ("SCMP_ACT_ALLOW", (0, 0)),
        ("SCMP_ACT_LOG", (0, 0)),  # allowed, and logged by the kernel
        ("SCMP_ACT_ERRNO", (errno.EPERM, 0)),  # no errnoRet: EPERM, as runc
        ("SCMP_ACT_TRACE", (errno.ENOSYS, 0)),  # no tracer attached: the kernel says ENOSYS
        ("SCMP_ACT_TRAP", (None, signal.SIGSYS)),  # SIGSYS
        (
            "SCMP_ACT_KILL",
            (None, signal.SIGSYS),
        ),  # the thread (here: the whole single-threaded child)
        ("SCMP_ACT_KILL_PROCESS", (None, signal.SIGSYS)),
    ],
)
def test_each_action_on_the_real_kernel(act: str, want: tuple[int | None, int]):
    flags = [
        "SECCOMP_FILTER_FLAG_LOG",
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
        "SECCOMP_FILTER_FLAG_TSYNC",
    ]
    default = "SCMP_ACT_LOG" if act == "SCMP_ACT_ALLOW" else "SCMP_ACT_ALLOW"
    prof = {"defaultAction": default, "flags": flags,
            "syscalls": [{"names": ["getppid"], "action": act}]}  # fmt: skip
    assert _child_outcome(prof) == want
