"""The newcomer's path (issue 18): what a fresh machine meets before any container runs.

Each test names the hole it closes: a failed tox install that left an empty venv behind (exit 127
on every later run), commands that never reached PATH, a checkout dirtied by tox's own files.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.root]  # scripts/bootstrap.sh may install Debian packages


def test_tox_install_failure_is_one_line_and_leaves_no_venv(tmp_path: Path) -> None:
    """pip cannot reach its index: one line with pip's reason, exit 1, no half-made venv."""
    env = dict(
        os.environ,
        ISOPROOF_CACHE=str(tmp_path),
        PIP_INDEX_URL="http://127.0.0.1:9/simple",  # discard port: nothing listens
        PIP_RETRIES="0",
        PIP_TIMEOUT="2",
        PIP_CONFIG_FILE=os.devnull,
    )
    for _ in range(2):  # the second run must fail the same clear way, not with exit 127
        proc = subprocess.run(
            ["sh", str(REPO / "scripts" / "tox"), "--version"],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 1, proc.stderr
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("isoproof: could not install tox=="), lines
        assert "No matching distribution" in lines[0] or "ERROR" in lines[0], lines
        assert not (tmp_path / "tox-venv").exists()


def test_install_puts_the_three_commands_on_a_bin_dir(tmp_path: Path, busybox_rootfs: Path) -> None:
    env = dict(
        os.environ, ISOPROOF_PREFIX=str(tmp_path / "opt"), ISOPROOF_BIN=str(tmp_path / "bin")
    )
    proc = subprocess.run(
        ["sh", str(REPO / "scripts" / "install")], env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert str(tmp_path / "bin") in proc.stdout  # says where, and that it is not on PATH
    for cmd, probe in (("isoproof-oci", "--version"), ("isoproof-report", "--help"),
                       ("isoproof", "--help")):  # fmt: skip
        path = tmp_path / "bin" / cmd
        assert path.is_symlink(), cmd
        out = subprocess.run([str(path), probe], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, (cmd, out.stderr)
    # The installed runtime runs a container: its site-less launcher finds the package, and so
    # does the read-only-bind re-exec of run (which starts the interpreter a second time).
    oci = str(tmp_path / "bin" / "isoproof-oci")
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    subprocess.run([oci, "spec", "-b", str(bundle)], check=True, timeout=60)
    config = json.loads((bundle / "config.json").read_text())
    config["root"] = {"path": str(busybox_rootfs), "readonly": True}
    config["process"].update(terminal=False, args=["echo", "isoproof-installed"])
    (bundle / "config.json").write_text(json.dumps(config))
    cid = f"isoproof-install-{os.getpid()}"
    root = tmp_path / "state"
    try:
        out = subprocess.run(
            [oci, "--root", str(root), "run", "-b", str(bundle), cid],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        subprocess.run([oci, "--root", str(root), "delete", "-f", cid], capture_output=True)
    assert out.returncode == 0 and out.stdout.strip() == "isoproof-installed", out


def test_checkout_stays_clean_of_tool_files() -> None:
    """tox 4 writes a `.venv` marker into the checkout; git must not show it as untracked."""
    for name in (".venv", ".tox/py/pyvenv.cfg", ".isoproof-results/results.json"):
        proc = subprocess.run(["git", "check-ignore", "-q", name], cwd=REPO)
        assert proc.returncode == 0, f"{name} is not in .gitignore"
