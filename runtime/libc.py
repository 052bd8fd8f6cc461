"""libc calls through ``_ctypes`` alone: the light core of :mod:`runtime.sys`.

``ctypes`` is a Python layer over the C module ``_ctypes``, and importing it costs ~2.5 ms and
0.4 MiB. A call whose arguments are integers, bytes or NULL needs only ``_ctypes`` and the few C
types it passes, declared here as ctypes.py declares them. :mod:`runtime.sys` makes its unshare,
setns, mount and prctl through here (so the read-only-bind re-exec of create, run and exec needs no
ctypes); the engine's monitor, a long-lived process kept small, calls :func:`prctl` directly: this
module imports nothing but ``_ctypes`` and ``posix``, where ``runtime.sys`` would cost it 0.4 MiB.
"""

import _ctypes
import posix  # os without os.py: the monitor imports this module and holds no os


class Int(_ctypes._SimpleCData):  # ctypes.c_int
    _type_ = "i"


class Long(_ctypes._SimpleCData):  # ctypes.c_long
    _type_ = "l"


class ULong(_ctypes._SimpleCData):  # ctypes.c_ulong
    _type_ = "L"


class _Function(_ctypes.CFuncPtr):
    """A libc function as ``ctypes.CDLL(None, use_errno=True)`` gives it: it returns a C int, and
    the call's errno is kept for ``_ctypes.get_errno()``."""

    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = Int


class _Process:
    """What ``CFuncPtr((name, library))`` reads of a ``ctypes.CDLL``: its handle. dlopen(NULL) is
    this process's own symbols, libc's included (as ``ctypes.CDLL(None)``)."""

    _handle = _ctypes.dlopen(None)  # type: ignore[arg-type]  # NULL: typeshed does not say


_FUNCTIONS: dict = {}  # name -> _Function, looked up once


def call(name: str, *args: object) -> int:
    """libc's ``name(*args)``; a result of -1 raises OSError with the call's errno."""
    fn = _FUNCTIONS.get(name)
    if fn is None:
        fn = _FUNCTIONS[name] = _Function((name, _Process))  # type: ignore[arg-type]
    ret: int = fn(*args)
    if ret == -1:
        err = _ctypes.get_errno()
        raise OSError(err, f"{name}: {posix.strerror(err)}")
    return ret


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return call("prctl", Int(option), ULong(arg2), ULong(arg3), ULong(arg4), ULong(arg5))
