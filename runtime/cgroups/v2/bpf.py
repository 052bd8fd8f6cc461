"""The cgroup v2 device filter: OCI ``linux.resources.devices`` -> a BPF_PROG_TYPE_CGROUP_DEVICE
program, as raw eBPF instructions. Pure: nothing here touches the kernel (``devices.py`` loads and
attaches the result).

cgroup v2 has no ``devices.allow``/``devices.deny``. Instead the kernel runs every BPF program of
type CGROUP_DEVICE attached to the cgroup (and its ancestors) on each open or mknod of a device
node; access is granted only if every program returns 1. The program sees one
``struct bpf_cgroup_dev_ctx``::

    u32 access_type   low 16 bits: BPF_DEVCG_DEV_BLOCK (1) or _CHAR (2)
                      high 16 bits: BPF_DEVCG_ACC_MKNOD (1) | _READ (2) | _WRITE (4)
    u32 major
    u32 minor

The semantics we compile (same as :func:`allowed`, the reference the unit tests compare with):
rules apply in the listed order, so for each requested access bit the *last* rule that matches the
device and names that bit decides it; a bit no rule names is denied (default deny); the request is
granted only if every requested bit is. The access mask matters because the kernel asks for
several bits at once (``open(O_RDWR)`` asks for read|write): a later ``deny c 1:3 w`` must refuse
an ``O_RDWR`` open even after ``allow c 1:3 rwm``, and ``allow r`` + ``allow w`` must grant it.

Compilation walks the rules from last to first, keeping the still-undecided bits in R3:

* a matching deny rule that names an undecided bit decides the request: return 0;
* a matching allow rule clears the bits it names; once none are left: return 1;
* falling off the end leaves some bit undecided: return 0.

runc builds the same shape of program (libcontainer/cgroups/devices/devicefilter.go, after crun's
ebpf.c) but first reduces the rules through its cgroup-v1 emulator; we compile the list as given.
"""

from __future__ import annotations

import struct

TYPE_CHECKING = False  # True for mypy only: importing typing costs ~3 ms on every CLI call
if TYPE_CHECKING:
    from typing import Any

BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6  # attach type
BPF_F_ALLOW_MULTI = 2  # several programs on one cgroup, all must allow: lets update() overlap
LICENSE = "Apache-2.0"  # the program calls no helpers, so no GPL-only ones are needed

DEV_BLOCK = 1
DEV_CHAR = 2
ACC_MKNOD = 1
ACC_READ = 2
ACC_WRITE = 4
ACCESS_BITS = {"m": ACC_MKNOD, "r": ACC_READ, "w": ACC_WRITE}
TYPES = {"b": DEV_BLOCK, "c": DEV_CHAR}
MAX_NUMBER = 0x7FFFFFFF  # jump immediates are sign-extended s32; real majors/minors are far below

# Opcodes we emit (linux/bpf_common.h + linux/bpf.h): class | op | source.
LDX_MEM_W = 0x61  # BPF_LDX | BPF_MEM | BPF_W: dst = *(u32 *)(src + off)
ALU32_AND_K = 0x54  # BPF_ALU | BPF_AND | BPF_K: dst = (u32)(dst & imm)
ALU32_RSH_K = 0x74  # BPF_ALU | BPF_RSH | BPF_K: dst = (u32)dst >> imm
ALU32_MOV_K = 0xB4  # BPF_ALU | BPF_MOV | BPF_K: dst = (u32)imm
JMP_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K: if dst == imm: pc += off
JMP_JNE_K = 0x55  # BPF_JMP | BPF_JNE | BPF_K: if dst != imm: pc += off
JMP_JSET_K = 0x45  # BPF_JMP | BPF_JSET | BPF_K: if dst & imm: pc += off
JMP_EXIT = 0x95  # return R0

R0, R1, R2, R3, R4, R5 = range(6)  # R1 holds the ctx pointer on entry; R0 is the verdict

# struct bpf_insn: code, dst_reg:4 | src_reg:4 << 4, off, imm; laid out for a little-endian
# kernel (x86_64, aarch64), where dst_reg is the low nibble.
_INSN = struct.Struct("<BBhi")


class Insn:
    """One eBPF instruction. ``target`` names a label a jump goes to until :func:`_link` turns it
    into ``off`` (counted in instructions from the next one)."""

    __slots__ = ("code", "dst", "src", "off", "imm", "target")

    def __init__(
        self, code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0, target: str = ""
    ) -> None:
        self.code, self.dst, self.src, self.off, self.imm = code, dst, src, off, imm
        self.target = target

    def encode(self) -> bytes:
        return _INSN.pack(self.code, self.dst | self.src << 4, self.off, self.imm)

    def __repr__(self) -> str:
        return f"Insn({self.code:#04x}, dst=r{self.dst}, src=r{self.src}, off={self.off}, imm={self.imm})"


def encode(program: list[Insn]) -> bytes:
    return b"".join(i.encode() for i in program)


def decode(raw: bytes) -> list[Insn]:
    out = []
    for code, regs, off, imm in _INSN.iter_unpack(raw):
        out.append(Insn(code, regs & 0xF, regs >> 4, off, imm))
    return out


class Rule:
    """One OCI device rule, checked: ``kind`` is None for all types, ``major``/``minor`` None for
    any, ``access`` a non-empty mask of ACC_* bits."""

    __slots__ = ("allow", "kind", "major", "minor", "access")

    def __init__(
        self, allow: bool, kind: int | None, major: int | None, minor: int | None, access: int
    ) -> None:
        self.allow = allow
        self.kind = kind
        self.major = major
        self.minor = minor
        self.access = access

    def matches(self, kind: int, major: int, minor: int) -> bool:
        return (
            (self.kind is None or self.kind == kind)
            and (self.major is None or self.major == major)
            and (self.minor is None or self.minor == minor)
        )


def parse_rule(rule: dict[str, Any]) -> Rule:
    """An OCI ``linux.resources.devices`` entry -> :class:`Rule`; ValueError names what is wrong.
    Defaults as for v1 (``convert.device_rule_v1``): no type is ``a``, no access is ``rwm``, an
    absent or -1 major/minor is any."""
    kind = rule.get("type") or "a"
    if kind not in ("a", "b", "c"):
        raise ValueError(f"device type {kind!r} is not a, b or c")
    access_text = rule.get("access") or "rwm"
    if not isinstance(access_text, str) or set(access_text) - set(ACCESS_BITS):
        raise ValueError(f"device access {access_text!r} is not a subset of rwm")
    access = 0
    for ch in access_text:
        access |= ACCESS_BITS[ch]

    def number(name: str) -> int | None:
        v = rule.get(name)
        if v is None or v == -1:
            return None
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_NUMBER:
            raise ValueError(f"device {name} {v!r} is not -1 or an integer 0..{MAX_NUMBER}")
        return v

    return Rule(bool(rule.get("allow")), TYPES.get(kind), number("major"), number("minor"), access)


def allowed(rules: list[Rule], kind: int, major: int, minor: int, access: int) -> bool:
    """The reference semantics (see the module docstring), written the obvious way: decide each
    requested bit by the last matching rule that names it."""
    for bit in (ACC_MKNOD, ACC_READ, ACC_WRITE):
        if not access & bit:
            continue
        verdict = False
        for r in rules:
            if r.access & bit and r.matches(kind, major, minor):
                verdict = r.allow
        if not verdict:
            return False
    return True


def device_filter(rules: list[Rule]) -> list[Insn]:
    """Compile ``rules`` into a CGROUP_DEVICE program (see the module docstring)."""
    prog: list[Insn | _Label] = [
        Insn(LDX_MEM_W, R2, R1, off=0),  # R2 = access_type
        Insn(ALU32_AND_K, R2, imm=0xFFFF),  # R2 = device type
        Insn(LDX_MEM_W, R3, R1, off=0),
        Insn(ALU32_RSH_K, R3, imm=16),  # R3 = requested access bits, not yet decided
        Insn(LDX_MEM_W, R4, R1, off=4),  # R4 = major
        Insn(LDX_MEM_W, R5, R1, off=8),  # R5 = minor
    ]
    for n, rule in enumerate(reversed(rules)):
        nxt = f"rule{n + 1}"
        if rule.kind is not None:
            prog.append(Insn(JMP_JNE_K, R2, imm=rule.kind, target=nxt))
        if rule.major is not None:
            prog.append(Insn(JMP_JNE_K, R4, imm=rule.major, target=nxt))
        if rule.minor is not None:
            prog.append(Insn(JMP_JNE_K, R5, imm=rule.minor, target=nxt))
        if rule.allow:
            prog.append(Insn(ALU32_AND_K, R3, imm=~rule.access))  # these bits are granted
            prog.append(Insn(JMP_JEQ_K, R3, imm=0, target="allow"))
        else:
            prog.append(Insn(JMP_JSET_K, R3, imm=rule.access, target="deny"))
        prog.append(_Label(nxt))
    prog += [_Label("deny"), Insn(ALU32_MOV_K, R0, imm=0), Insn(JMP_EXIT)]
    if any(r.allow for r in rules):  # else nothing jumps there, and the verifier refuses
        prog += [_Label("allow"), Insn(ALU32_MOV_K, R0, imm=1), Insn(JMP_EXIT)]
    return _link(prog)


class _Label:
    """A place in the program under construction: the index of the next instruction."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


def _link(prog: list[Insn | _Label]) -> list[Insn]:
    """Drop the labels and turn each jump's target label into a relative offset."""
    at: dict[str, int] = {}
    out: list[Insn] = []
    for item in prog:
        if isinstance(item, _Label):
            at[item.name] = len(out)
        else:
            out.append(item)
    for pc, insn in enumerate(out):
        if insn.target:
            insn.off = at[insn.target] - (pc + 1)
            insn.target = ""
    return out
