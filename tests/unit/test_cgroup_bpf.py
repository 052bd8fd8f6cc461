"""The v2 device filter without a kernel: the compiled program is *run* by a small eBPF interpreter
and its verdicts compared with the reference semantics (``bpf.allowed``), on chosen cases and on
random rule sets; then loading, attaching and replacing it through a RecordingSys.

The interpreter decodes the encoded bytes (so the encoding is under test too) and knows only the
opcodes the generator emits; like the kernel's verifier it refuses reads of unset registers,
backward or out-of-range jumps and an exit with R0 unset.
"""

from __future__ import annotations

import errno
import os
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.cgroups.common import Context
from runtime.cgroups.v2 import bpf, devices
from runtime.errors import BpfVerifierError, CgroupError
from runtime.sys import RecordingSys

B, C = bpf.DEV_BLOCK, bpf.DEV_CHAR
M, R, W = bpf.ACC_MKNOD, bpf.ACC_READ, bpf.ACC_WRITE
U32 = 0xFFFFFFFF
U64 = (1 << 64) - 1


class BadProgram(Exception):
    pass


def run(code: bytes, kind: int, major: int, minor: int, access: int) -> int:
    """Run a CGROUP_DEVICE program on one ``struct bpf_cgroup_dev_ctx``; return R0."""
    ctx = struct.pack("<III", access << 16 | kind, major, minor)
    prog = bpf.decode(code)
    regs: dict[int, int | str] = {1: "ctx"}  # R1 points at the context; the rest are unset

    def get(r: int) -> int:
        v = regs.get(r)
        if not isinstance(v, int):
            raise BadProgram(f"r{r} is read but holds {v!r}")
        return v

    def sext(imm: int) -> int:  # a K operand of a 64-bit jump is sign-extended
        return imm & U64

    pc = 0
    while True:
        if not 0 <= pc < len(prog):
            raise BadProgram(f"pc {pc} outside the program")
        i = prog[pc]
        pc += 1
        if i.code == bpf.LDX_MEM_W:
            if regs.get(i.src) != "ctx" or i.off not in (0, 4, 8):
                raise BadProgram(f"load from r{i.src}+{i.off}")
            regs[i.dst] = struct.unpack_from("<I", ctx, i.off)[0]
        elif i.code == bpf.ALU32_AND_K:
            regs[i.dst] = get(i.dst) & i.imm & U32
        elif i.code == bpf.ALU32_RSH_K:
            regs[i.dst] = (get(i.dst) & U32) >> i.imm
        elif i.code == bpf.ALU32_MOV_K:
            regs[i.dst] = i.imm & U32
        elif i.code in (bpf.JMP_JEQ_K, bpf.JMP_JNE_K, bpf.JMP_JSET_K):
            if i.off < 0:
                raise BadProgram(f"backward jump at {pc - 1}")
            v, k = get(i.dst), sext(i.imm)
            taken = {
                bpf.JMP_JEQ_K: v == k,
                bpf.JMP_JNE_K: v != k,
                bpf.JMP_JSET_K: bool(v & k),
            }[i.code]
            if taken:
                pc += i.off
        elif i.code == bpf.JMP_EXIT:
            return get(0)
        else:
            raise BadProgram(f"opcode {i.code:#x} at {pc - 1} is not one we emit")


def check_cfg(code: bytes) -> None:
    """The verifier's static check (kernel/bpf/verifier.c check_cfg): every instruction must be
    reachable, every jump must land inside the program, and the last one must not fall off."""
    prog = bpf.decode(code)
    seen, todo = set(), [0]
    while todo:
        pc = todo.pop()
        if pc in seen:
            continue
        if not 0 <= pc < len(prog):
            raise BadProgram(f"control flow leaves the program at {pc}")
        seen.add(pc)
        i = prog[pc]
        if i.code != bpf.JMP_EXIT:
            todo.append(pc + 1)
        if i.code in (bpf.JMP_JEQ_K, bpf.JMP_JNE_K, bpf.JMP_JSET_K):
            todo.append(pc + 1 + i.off)
    unreachable = sorted(set(range(len(prog))) - seen)
    if unreachable:
        raise BadProgram(f"unreachable insn {unreachable[0]}")


def rule(allow: bool, kind: str = "a", major: int = -1, minor: int = -1, access: str = "rwm"):
    return {"allow": allow, "type": kind, "major": major, "minor": minor, "access": access}


def verdict(oci_rules: list[dict], kind: int, major: int, minor: int, access: int) -> bool:
    """Program and reference must agree; return their common answer."""
    rules = [bpf.parse_rule(r) for r in oci_rules]
    code = bpf.encode(bpf.device_filter(rules))
    check_cfg(code)
    got = run(code, kind, major, minor, access)
    assert got in (0, 1)
    want = bpf.allowed(rules, kind, major, minor, access)
    assert bool(got) == want, f"program says {got}, reference says {want}"
    return want


DENY_ALL = rule(False)
NULL = rule(True, "c", 1, 3)
# What the OCI runtime hands the manager for a default spec (plan.DEFAULT_DEVICE_RULES after it).
DEFAULT = [DENY_ALL, NULL, rule(True, "c", 1, 5), rule(True, "c", 136), rule(True, "c", 5, 2)]


# ---------------------------------------------------------------------------- chosen cases
def test_default_config_allows_its_nodes_and_nothing_else() -> None:
    assert verdict(DEFAULT, C, 1, 3, R | W)  # open("/dev/null", O_RDWR)
    assert verdict(DEFAULT, C, 1, 3, M)
    assert verdict(DEFAULT, C, 136, 7, R | W)  # any /dev/pts/N
    assert not verdict(DEFAULT, C, 1, 1, R)  # /dev/mem
    assert not verdict(DEFAULT, B, 8, 0, R)  # /dev/sda
    assert not verdict(DEFAULT, B, 1, 3, R)  # the type matters, not just the numbers
    assert not verdict(DEFAULT, B, 8, 0, M)


def test_no_rules_denies_everything() -> None:
    assert not verdict([], C, 1, 3, R)


def test_allow_all_then_deny_one() -> None:
    rules = [rule(True), rule(False, "c", 1, 5)]
    assert verdict(rules, C, 1, 3, R | W)
    assert verdict(rules, B, 8, 0, R | W | M)
    assert not verdict(rules, C, 1, 5, R)


def test_last_match_wins_per_access_bit() -> None:
    # A later deny of one bit refuses a request that includes it (O_RDWR) but not one without it.
    rules = [rule(True, "c", 1, 3), rule(False, "c", 1, 3, access="w")]
    assert not verdict(rules, C, 1, 3, R | W)
    assert verdict(rules, C, 1, 3, R)
    # Two allows that each name one bit together grant both.
    rules = [rule(True, "c", 1, 3, access="r"), rule(True, "c", 1, 3, access="w")]
    assert verdict(rules, C, 1, 3, R | W)
    assert not verdict(rules, C, 1, 3, M)
    # An earlier deny is overridden by a later allow.
    rules = [rule(False, "c", 1, 3), rule(True, "c", 1, 3)]
    assert verdict(rules, C, 1, 3, R | W | M)


def test_missing_fields_mean_any_and_rwm() -> None:
    rules = [{"allow": True, "type": "c", "major": 1}]
    assert verdict(rules, C, 1, 99, R | W | M)
    assert not verdict(rules, C, 2, 0, R)


def test_the_encoding_is_the_kernels_struct_bpf_insn() -> None:
    # r2 = *(u32 *)(r1 + 4): code 0x61, dst 2 in the low nibble, src 1 in the high one, off 4.
    assert bpf.Insn(bpf.LDX_MEM_W, 2, 1, off=4).encode() == bytes.fromhex("6112040000000000")
    assert bpf.Insn(bpf.ALU32_AND_K, 3, imm=~R).encode() == bytes.fromhex("54030000fdffffff")
    prog = bpf.device_filter([bpf.parse_rule(r) for r in DEFAULT])
    assert len(bpf.encode(prog)) == 8 * len(prog)
    assert [i.encode() for i in bpf.decode(bpf.encode(prog))] == [i.encode() for i in prog]


@pytest.mark.parametrize(
    "bad,match",
    [
        ({"allow": True, "type": "x"}, "device type 'x'"),
        ({"allow": True, "access": "rx"}, "access 'rx'"),
        ({"allow": True, "major": -2}, "major -2"),
        ({"allow": True, "minor": "3"}, "minor '3'"),
        ({"allow": True, "major": True}, "major True"),
        ({"allow": True, "major": 1 << 31}, "major 2147483648"),
    ],
)
def test_bad_rules_are_refused_naming_the_rule(bad: dict, match: str) -> None:
    with pytest.raises(CgroupError, match=rf"devices\[1\]: .*{match}"):
        devices.program([DENY_ALL, bad])


# --------------------------------------------------------------------------- random rule sets
numbers = st.one_of(st.just(-1), st.integers(0, 3))  # small, so that rules and requests collide
oci_rules = st.lists(
    st.builds(
        rule,
        allow=st.booleans(),
        kind=st.sampled_from("abc"),
        major=numbers,
        minor=numbers,
        access=st.sampled_from(["r", "w", "m", "rw", "rm", "wm", "rwm"]),
    ),
    max_size=8,
)
requests = st.tuples(
    st.sampled_from([B, C]), st.integers(0, 3), st.integers(0, 3), st.integers(1, 7)
)


@settings(max_examples=600, deadline=None)
@given(oci_rules, st.lists(requests, min_size=1, max_size=8))
def test_program_agrees_with_the_reference(rules: list[dict], reqs: list[tuple]) -> None:
    for kind, major, minor, access in reqs:
        verdict(rules, kind, major, minor, access)


@settings(max_examples=200, deadline=None)
@given(oci_rules, requests)
def test_reference_matches_a_per_bit_reading_of_the_rules(rules: list[dict], req: tuple) -> None:
    """The reference, cross-checked by a second formulation: the device's permission set after
    applying each rule in order (allow adds its bits, deny removes them), as v1's tutorials read
    an allow-list."""
    kind, major, minor, access = req
    parsed = [bpf.parse_rule(r) for r in rules]
    perms = 0
    for r in parsed:
        if r.matches(kind, major, minor):
            perms = perms | r.access if r.allow else perms & ~r.access
    assert bpf.allowed(parsed, kind, major, minor, access) == (access & perms == access)


def test_the_interpreter_catches_a_broken_program() -> None:
    """The checks above can fail: a program that forgets R0, and one whose deny is inverted."""
    with pytest.raises(BadProgram, match="r0"):
        run(bpf.encode([bpf.Insn(bpf.JMP_EXIT)]), C, 1, 3, R)
    prog = bpf.device_filter([bpf.parse_rule(r) for r in [rule(True), rule(False, "c", 1, 5)]])
    for i in prog:
        if i.code == bpf.JMP_JSET_K:
            i.code = bpf.JMP_JEQ_K  # "deny if some undecided bit is named" -> "if none is"
    assert run(bpf.encode(prog), C, 1, 5, R) == 1  # the broken program lets /dev/zero through


# ------------------------------------------------------------------ load, attach, replace (fake)
def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_attach_then_replace_new_first(tmp_path: Path) -> None:
    sys = RecordingSys()
    ctx = Context()
    before = open_fds()
    assert devices.attach(str(tmp_path), devices.program(DEFAULT), ctx, sys)
    assert sys.calls[1][1][0] == bpf.BPF_PROG_TYPE_CGROUP_DEVICE
    assert sys.calls[2] == ("bpf_prog_attach", (1, bpf.BPF_CGROUP_DEVICE, bpf.BPF_F_ALLOW_MULTI))
    assert sys.bpf_attached == [1]
    sys.calls.clear()
    assert devices.attach(str(tmp_path), devices.program([rule(True)]), ctx, sys)
    assert sys.names() == [
        "bpf_prog_query",
        "bpf_prog_load",
        "bpf_prog_attach",  # the new one first: no moment without a filter
        "bpf_prog_get_fd_by_id",
        "bpf_prog_detach",
    ]
    assert sys.calls[4][1][0] == 1 and sys.bpf_attached == [2]
    assert ctx.warnings == []
    assert open_fds() == before, "a program or directory fd was left open"


@pytest.mark.parametrize("call", ["bpf_prog_query", "bpf_prog_load", "bpf_prog_attach"])
@pytest.mark.parametrize("err", [errno.EPERM, errno.ENOSYS])
def test_bpf_unavailable_is_a_warning_not_silence(tmp_path: Path, call: str, err: int) -> None:
    sys = RecordingSys(fail={call: err})
    ctx = Context()
    before = open_fds()
    assert not devices.attach(str(tmp_path), devices.program(DEFAULT), ctx, sys)
    assert sys.bpf_attached == []
    assert len(ctx.warnings) == 1
    assert "device rules are not enforced" in ctx.warnings[0]
    assert errno.errorcode[err] in ctx.warnings[0] and str(tmp_path) in ctx.warnings[0]
    assert open_fds() == before


def test_other_bpf_failures_are_errors(tmp_path: Path) -> None:
    sys = RecordingSys(fail={"bpf_prog_attach": errno.EINVAL})
    with pytest.raises(CgroupError, match="cannot attach a BPF device filter.*EINVAL"):
        devices.attach(str(tmp_path), devices.program(DEFAULT), Context(), sys)


def test_a_failed_detach_keeps_both_filters_and_is_an_error(tmp_path: Path) -> None:
    sys = RecordingSys()
    devices.attach(str(tmp_path), devices.program(DEFAULT), Context(), sys)
    sys.fail["bpf_prog_detach"] = errno.EBUSY
    with pytest.raises(CgroupError, match="cannot detach the previous device filter"):
        devices.attach(str(tmp_path), devices.program([rule(True)]), Context(), sys)
    assert sys.bpf_attached == [1, 2]  # stricter than asked, never looser


def test_verifier_refusal_message_names_the_reason() -> None:
    log = "0: R1=ctx() R10=fp0\n0: (95) exit\nR0 !read_ok\nprocessed 1 insns (limit 1000000)\n"
    e = BpfVerifierError(errno.EACCES, log)
    assert str(e).endswith("(EACCES): R0 !read_ok") and e.log == log
    assert isinstance(e, CgroupError)
