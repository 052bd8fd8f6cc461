"""What the engine's query verbs import (issue 14: a verb pays only for what it uses).

``ps``, ``inspect`` and ``logs`` of a running container run in a fresh ``python -S`` against a
private home, and must not have loaded the modules that only starting, stopping or removing a
container needs. Before the CLI was split, ``ps`` of a running container imported 77 modules,
among them all of these; the figures are in ``bench/bench_engine.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime import statefile
from runtime.engine.home import Home, now
from runtime.engine.store import initial_state

REPO = Path(__file__).resolve().parents[2]
NOT_FOR_QUERIES = ("json", "subprocess", "ctypes", "socket", "typing", "datetime", "shutil", "tempfile",
                   "random", "runtime.sys", "runtime.engine.lifecycle", "runtime.engine.oci",
                   "runtime.engine.images", "runtime.engine.attach", "runtime.engine.network")  # fmt: skip
CID = "c0ffee" + "0" * 58


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """A home with one running container: its 'monitor' and 'init' is a sleeping Python whose
    command line names the container (which is how the engine tells a live monitor)."""
    proc = subprocess.Popen([sys.executable, "-S", "-c", "import time; time.sleep(60)", CID])
    try:
        h = Home(tmp_path).ensure()
        d = h.containers / CID
        d.mkdir()
        cfg = {"Id": CID, "Name": "/probe", "Created": now(), "Path": "sleep", "Args": ["60"],
               "Image": "sha256:" + "1" * 64, "ImageRootfs": "/nonexistent",
               "Config": {"Image": "busybox", "Cmd": ["sleep", "60"], "Env": []},
               "HostConfig": {"NetworkMode": "none"}, "Runtime": "/bin/false",
               "OciRoot": str(h.oci_root), "CgroupsPath": f"/isoproof-unit/{CID}",
               "LogPath": str(d / "container.log")}  # fmt: skip
        statefile.write(d / "config.json", cfg)
        st = {**initial_state(), "Status": "running", "Running": True, "Pid": proc.pid,
              "MonitorPid": proc.pid, "StartedAt": now()}  # fmt: skip
        statefile.write(d / "state.json", st)
        rec = {"log": "hi\n", "stream": "stdout", "time": now()}
        (d / "container.log").write_text(json.dumps(rec) + "\n")
        yield tmp_path
    finally:
        proc.kill()
        proc.wait()


def run_verb(home: Path, *argv: str) -> tuple[str, set[str]]:
    """The verb's output and which of NOT_FOR_QUERIES it imported."""
    probe = (
        "import sys\nfrom runtime.engine.cli import main\nrc = main(sys.argv[1:])\n"
        f"print('IMPORTED', *[m for m in {NOT_FOR_QUERIES!r} if m in sys.modules])\n"
        "sys.exit(rc)"
    )
    env = {**os.environ, "ISOPROOF_HOME": str(home)}
    cp = subprocess.run([sys.executable, "-S", "-c", probe, *argv], cwd=REPO, env=env,
                        capture_output=True, text=True)  # fmt: skip
    assert cp.returncode == 0, cp.stderr
    out, _, imported = cp.stdout.rpartition("IMPORTED")
    return out, set(imported.split())


def test_ps_of_a_running_container_imports_none_of_them(home: Path) -> None:
    out, imported = run_verb(home, "ps")
    assert "Up " in out and "probe" in out  # it did look at the running container
    assert imported == set()


def test_inspect_of_a_running_container_imports_none_of_them(home: Path) -> None:
    out, imported = run_verb(home, "inspect", "-f", "{{.State.Status}} {{.Name}}", "probe")
    assert out.strip() == "running /probe"
    assert imported == set()


def test_logs_imports_none_of_them(home: Path) -> None:
    out, imported = run_verb(home, "logs", "probe")
    assert out == "hi\n"
    assert imported == set()
