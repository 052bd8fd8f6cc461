"""Capabilities as the kernel allows them (runc's rules for ambient and unknown names) and where
the seccomp filter is loaded relative to the privilege steps. RecordingSys: no root needed."""

from __future__ import annotations

import os

import pytest

from runtime import seccomp as sc
from runtime import spec as spec_
from runtime import sys as s
from runtime.oci import caps as capslib
from runtime.oci import process

RUNC_SPEC_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]


def runc_spec_caps() -> spec_.Capabilities:
    """What `runc spec` writes: ambient, but no inheritable set."""
    c = RUNC_SPEC_CAPS
    return spec_.Capabilities(bounding=c, effective=c, permitted=c, ambient=c)


def test_ambient_only_where_permitted_and_inheritable():
    m = process.cap_masks(runc_spec_caps(), 40)
    assert m.ambient == 0 and m.permitted == capslib.mask(RUNC_SPEC_CAPS)
    c = runc_spec_caps()
    c.inheritable = ["CAP_KILL"]
    assert process.cap_masks(c, 40).ambient == capslib.mask(["CAP_KILL"])


def test_runc_spec_caps_raise_no_ambient_and_say_so():
    rec = s.RecordingSys()
    p = spec_.Process(args=["sh"], capabilities=runc_spec_caps())
    process.apply(rec, p, in_new_userns=False, last_cap=40)
    raises = [c for c in rec.calls if c[0] == "prctl" and c[1][:2] == (s.PR_CAP_AMBIENT,
                                                                       s.PR_CAP_AMBIENT_RAISE)]  # fmt: skip
    assert raises == []
    (w,) = process.cap_warnings(p.capabilities, 40)
    assert w.startswith("process.capabilities.ambient: not raised")
    assert all(n in w for n in RUNC_SPEC_CAPS)


def test_unknown_capability_names_are_ignored_with_a_warning():
    doc = {"bounding": ["CAP_KILL", "CAP_FUTURE"], "effective": ["CAP_FUTURE"],
           "permitted": ["CAP_KILL", "CAP_CHECKPOINT_RESTORE"]}  # fmt: skip
    c = spec_._caps(doc)
    assert c.bounding == ["CAP_KILL"] and c.effective == [] and c.unknown == ["CAP_FUTURE"]
    warnings = process.cap_warnings(c, 39)  # a kernel without CAP_CHECKPOINT_RESTORE (40)
    assert warnings == [
        "process.capabilities: unknown capabilities ignored: CAP_FUTURE",
        "process.capabilities: not known to this kernel, ignored: CAP_CHECKPOINT_RESTORE",
    ]
    assert process.cap_warnings(spec_.Capabilities(bounding=["CAP_KILL"]), 40) == []


class Recorder:
    """A profile whose filter records its load into the RecordingSys's call list."""

    def __init__(self, rec: s.RecordingSys) -> None:
        self.rec = rec

    def load(self) -> None:
        self.rec.calls.append(("seccomp_load", ()))


def _profile(rec: s.RecordingSys) -> sc.Profile:
    p = sc.parse({"defaultAction": "SCMP_ACT_ALLOW"})
    p.filter = Recorder(rec)  # type: ignore[assignment]
    return p


@pytest.mark.parametrize("nnp", [True, False])
def test_seccomp_is_loaded_where_runc_loads_it(nnp: bool):
    """With no_new_privs: after it, as the last step before execve. Without: before the
    capabilities are dropped, while CAP_SYS_ADMIN is still held (the kernel requires one of
    the two)."""
    rec = s.RecordingSys()
    prof = _profile(rec)
    p = spec_.Process(args=["/bin/sh"], cwd=os.getcwd(), capabilities=runc_spec_caps(),
                      no_new_privileges=nnp)  # fmt: skip
    process.prepare(rec, p, -1, False, 40, prof)
    process.before_exec(rec, p, prof)
    names = rec.names()
    assert names.count("seccomp_load") == 1
    if nnp:
        assert names[-2:] == ["prctl", "seccomp_load"]
        assert rec.calls[-2][1][0] == s.PR_SET_NO_NEW_PRIVS
    else:
        assert names.index("seccomp_load") < names.index("capset")
        assert names.index("seccomp_load") < names.index("setresuid")
        assert all(c[1][0] != s.PR_SET_NO_NEW_PRIVS for c in rec.calls if c[0] == "prctl")
