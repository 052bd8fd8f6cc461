"""The monitor stays light (issue 14: at most 3 MiB private per container, conmon holds 0.33): what
it imports, and that its stand-ins for ``json``, ``datetime`` and ``selectors`` write and behave the
same. The memory itself is a figure of ``bench/bench_engine.py``, beside conmon's."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from runtime.engine import monitor
from runtime.engine.home import format_ns
from runtime.engine.lifecycle import MONITOR_BOOT, PACKAGE_ROOT

# Each costs the monitor 0.2 to 2.2 MiB private memory (measured with smaps_rollup).
HEAVY = ("os", "json", "pathlib", "subprocess", "typing", "socket", "selectors", "re", "enum",
         "datetime", "contextlib", "struct", "array", "signal", "ctypes", "runtime.engine.store",
         "runtime.engine.home", "runtime.engine.oci", "runtime.sys")  # fmt: skip


def test_the_monitor_imports_no_heavy_module() -> None:
    # How lifecycle starts it (-S -I, its own sys.path), minus main(): the modules it then holds.
    boot = MONITOR_BOOT.split("; from")[0]
    code = f"{boot}; import runtime.engine.monitor; print(' '.join(sys.modules))"
    out = subprocess.run(
        [sys.executable, "-S", "-I", "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert "runtime.engine.monitor" in out
    assert sorted(set(HEAVY) & set(out)) == []
    assert PACKAGE_ROOT in MONITOR_BOOT


@pytest.mark.parametrize(
    "data",
    [
        b"plain\n",
        b'quote " back \\ slash\ttab\n',
        "d\u00e9j\u00e0 \u2603\n".encode(),
        b"\x00\x01\x1f ctl",
        b"bad \xff\xfe utf-8",
        b"",
    ],  # fmt: skip
)
def test_log_record_is_what_json_dumps_writes(data: bytes) -> None:
    line = monitor.log_record("stderr", data)
    rec = json.loads(line)
    expected = json.dumps(
        {"log": data.decode(errors="replace"), "stream": "stderr", "time": rec["time"]}
    )
    assert line == expected.encode() + b"\n"


@pytest.mark.parametrize("ns", [0, 1, 1_700_000_000_123_456_789, 4_102_444_799_999_999_999])
def test_format_ns_matches_the_engines(ns: int) -> None:
    assert monitor.format_ns(ns) == format_ns(ns)


def test_selector_masks_and_errors_as_selectors_gives_them() -> None:
    sel = monitor.Selector()
    r, w = os.pipe()
    try:
        sel.register(r, monitor.EVENT_READ, "r")
        sel.register(w, monitor.EVENT_WRITE, "w")
        with pytest.raises(KeyError):
            sel.register(r, monitor.EVENT_READ, "again")
        assert sel.select(0) == [(w, "w", monitor.EVENT_WRITE)]
        os.write(w, b"x")
        assert sorted(sel.select(0)) == sorted(
            [(r, "r", monitor.EVENT_READ), (w, "w", monitor.EVENT_WRITE)]
        )
        sel.unregister(w)
        with pytest.raises(KeyError):
            sel.unregister(w)
        with pytest.raises(ValueError):
            sel.register(-1, monitor.EVENT_READ, None)
        os.close(w)
        w = -1
        assert sel.select(0) == [(r, "r", monitor.EVENT_READ)]  # data, then EOF: readable
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)
