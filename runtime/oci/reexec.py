"""The read-only-bind re-exec of ``create``, ``run`` and ``exec`` (the CVE-2019-5736 defence).

A module of its own, importing only ``runtime.sys`` (and of it only the light calls, which need no
``ctypes``): the CLI calls it before anything else, and whatever the process imported before the
exec it would import again after.
"""

from __future__ import annotations

import os

RO_EXEC_ENV = "ISOPROOF_RO_EXEC"  # set across the exec below: "<mount ns fd>,<cwd fd>"


def exec_read_only(argv: list[str]) -> None:
    """Run this command again from a read-only bind of our interpreter, before anything of a
    container is made or joined (``create``, ``run`` and ``exec`` call it first). In the process
    so started it puts back the caller's mount namespace and directory and returns.

    The CVE-2019-5736 attack, whole: the container's program may be a script whose interpreter
    line is ``#!/proc/self/exe``. Our final execve then makes the kernel start *our* executable as
    the container's process, dumpable again and owned by the container's user, which opens its
    /proc/PID/exe and writes the host's interpreter once nothing runs it any more. The executable
    the kernel resolves there is the file we were exec'd from, through the mount we were exec'd
    from: exec'd through a read-only bind, every open for writing through /proc/PID/exe (or a
    descriptor reopened from it) fails with EROFS. The bind is made in a mount namespace of our
    own that we leave again right after the exec: the kernel keeps that mount for as long as a
    process runs the file, and nothing else about the runtime's view of the host changes.

    runc's answers were a sealed memfd copy of its static binary, then this read-only bind. The
    bind fits a Python runtime better: nothing is copied (the interpreter finds its libpython and
    standard library through its real path, $ORIGIN-relative ones included); the price is one more
    start of the interpreter and of this CLI module per create and exec. Non-dumpable
    (:func:`not_dumpable`) covers the rest of the time."""
    import sys as _sys

    import runtime
    from runtime import sys
    from runtime.sys import CLONE_NEWNS, MS_BIND, MS_RDONLY, MS_REC, MS_REMOUNT, MS_SLAVE

    back = os.environ.pop(RO_EXEC_ENV, None)
    if back is not None:
        mnt_ns, cwd = (int(x) for x in back.split(","))
        sys.setns(mnt_ns, CLONE_NEWNS, "mnt")
        os.fchdir(cwd)
        os.close(mnt_ns)
        os.close(cwd)
        return
    exe = os.readlink("/proc/self/exe")
    mnt_ns = os.open("/proc/self/ns/mnt", os.O_RDONLY)
    cwd = os.open(".", os.O_PATH | os.O_DIRECTORY)
    os.set_inheritable(mnt_ns, True)
    os.set_inheritable(cwd, True)
    sys.unshare(CLONE_NEWNS)
    sys.mount(None, "/", None, MS_SLAVE | MS_REC)  # nothing we mount here reaches the host
    sys.mount(exe, exe, None, MS_BIND)
    sys.mount(None, exe, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
    env = dict(os.environ, **{RO_EXEC_ENV: f"{mnt_ns},{cwd}"})
    # Our sys.path, led by the directory our own `runtime` package came from: the new process
    # runs without `site`, so an editable install's import hook is not there to find it.
    path = [os.path.dirname(os.path.dirname(os.path.abspath(runtime.__file__))), *_sys.path]
    code = (f"import sys; sys.path[:] = {path!r}; sys.argv[1:] = {argv!r}; "
            "from runtime.oci.cli import main; main()")  # fmt: skip
    for stream in (_sys.stdout, _sys.stderr):
        stream.flush()
    # -S -I: no `site` (its .pth files cost as much as the rest of the start) and no PYTHON*
    # variable steers the privileged process; the bytecode settings those variables gave us are
    # passed on as options.
    flags = ["-S", "-I"]
    if _sys.dont_write_bytecode:
        flags.append("-B")
    if _sys.pycache_prefix:
        flags += ["-X", f"pycache_prefix={_sys.pycache_prefix}"]
    os.execve(exe, [_sys.executable, *flags, "-c", code], env)
