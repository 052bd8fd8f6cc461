"""seccomp: a profile the runtime is given is in force on the container's processes.

Host-side evidence: the init's ``Seccomp:`` field in /proc/PID/status is 2 (filter mode) and
``Seccomp_filters`` counts the filter; the container's own work shows the filter's effect: a
syscall the profile denies fails with the errno the profile names (ENOTBLK, which chmod never
returns by itself), while an allowed one works. The profile allows everything else, so any
runtime's own setup steps run unhindered wherever it loads the filter.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytest

from verify import host, probes
from verify.drivers import Driver
from verify.spec import ContainerSpec

pytestmark = pytest.mark.root

DENIED_ERRNO = errno.ENOTBLK
PROFILE = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [{"names": ["chmod", "fchmodat"], "action": "SCMP_ACT_ERRNO",
                  "errnoRet": DENIED_ERRNO}],
}  # fmt: skip
OUT = "/dev/shm/isoproof-seccomp.out"
FILE = "/dev/shm/isoproof-seccomp"
# allowed: creating a file (openat); denied: chmod of it. Each prints its exit status and, if it
# failed, its own message (which carries strerror of the errno it got).
PROBE = (f"touch {FILE} 2>>{OUT}; echo allowed=$? >>{OUT}; chmod 600 {FILE} 2>>{OUT}; "
         f"echo denied=$? >>{OUT}")  # fmt: skip


def _wait_for(path: Path, marker: str, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s * host.slowdown()
    text = ""
    while time.monotonic() < deadline:
        try:
            text = path.read_text()
        except OSError:
            text = ""
        if marker in text:
            break
        time.sleep(0.05)
    return text


def _statuses(text: str) -> dict[str, str]:
    return dict(
        ln.split("=", 1) for ln in text.splitlines() if ln.startswith(("allowed=", "denied="))
    )


def test_seccomp_profile_in_force(runtime: Driver, evidence) -> None:
    spec = ContainerSpec(args=["sh", "-c", f"{PROBE}; exec sleep 3600"], seccomp=PROFILE)
    c = runtime.create(spec)
    st = probes.status_fields(c.pid)
    evidence.record("Seccomp of init", expected="2", measured=st.get("Seccomp"))
    # Seccomp_filters exists since Linux 5.9; without it only the mode can be read.
    filters = st.get("Seccomp_filters")
    evidence.record("Seccomp_filters of init", expected=">= 1", measured=filters)
    text = _wait_for(Path(f"/proc/{c.pid}/root{OUT}"), "denied=", 10)
    got = _statuses(text)
    evidence.record("allowed syscall (touch: openat) exit status", expected="0",
                    measured=got.get("allowed"))  # fmt: skip
    evidence.record("denied syscall (chmod) error", expected=os.strerror(DENIED_ERRNO),
                    measured=text.strip().splitlines())  # fmt: skip
    assert st.get("Seccomp") == "2", (
        f"the init is not in seccomp filter mode (Seccomp: {st.get('Seccomp')}): the profile was not loaded"
    )
    assert filters is None or int(filters) >= 1, f"Seccomp_filters is {filters}"
    assert got.get("allowed") == "0", f"an allowed syscall failed inside: {text!r}"
    assert got.get("denied") not in (None, "0"), (
        f"chmod, which the profile denies, worked: {text!r}"
    )
    assert os.strerror(DENIED_ERRNO) in text, (
        f"chmod failed, but not with the profile's errno {os.strerror(DENIED_ERRNO)!r}: {text!r}"
    )


def test_seccomp_applies_to_exec(runtime: Driver, evidence) -> None:
    """A process exec'd into the container gets the container's filter too."""
    c = runtime.create(ContainerSpec(seccomp=PROFILE))
    code, out, err = runtime.exec(c, ["sh", "-c", f"grep -E '^Seccomp' /proc/self/status; {PROBE}; "
                                      f"cat {OUT}"])  # fmt: skip
    text = out + err
    mode = next((ln.split(":", 1)[1].strip() for ln in out.splitlines()
                 if ln.startswith("Seccomp:")), None)  # fmt: skip
    got = _statuses(text)
    evidence.record("Seccomp of an exec'd process", expected="2", measured=mode)
    evidence.record("denied syscall (chmod) in exec", expected=os.strerror(DENIED_ERRNO),
                    measured=text.strip().splitlines())  # fmt: skip
    assert code == 0, f"exec failed ({code}): {err.strip()}"
    assert mode == "2", f"the exec'd process is not in seccomp filter mode (Seccomp: {mode})"
    assert got.get("allowed") == "0", f"an allowed syscall failed in exec: {text!r}"
    assert got.get("denied") not in (None, "0") and os.strerror(DENIED_ERRNO) in text, (
        f"chmod did not fail with the profile's errno in exec: {text!r}"
    )
