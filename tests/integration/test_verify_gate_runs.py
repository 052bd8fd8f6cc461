"""The suite as a CI gate, end to end against runc: a declared deviation keeps the run green and is
shown as such (and removing the declaration turns it red), bad input stops before anything starts,
and the installed package works as a plain pytest plugin from an empty directory."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.root, pytest.mark.slow]

RUNC = shutil.which("runc") or "/usr/sbin/runc"
REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "verify" / "deviations"
CHECKS = "test_lifecycle_state_machine or test_uts_isolated"


def _needs_runc_11() -> None:
    if not os.path.exists(RUNC):
        pytest.skip(f"needs runc; not found at {RUNC}")
    v = subprocess.run([RUNC, "--version"], capture_output=True, text=True).stdout
    if not v.startswith("runc version 1.1."):
        pytest.skip(f"needs runc 1.1 (the shipped deviation is for it); this host has {v[:40]!r}")


def verify(tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], dict]:  # type: ignore[type-arg]
    results = tmp_path / "results"
    cmd = [sys.executable, "-m", "verify.cli", "--runtime", f"oci:{RUNC}", "--results",
           str(results), "--workdir", str(tmp_path / "work"), "-k", CHECKS, *extra]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd="/")
    assert (results / "results.json").exists(), (
        f"no results (exit {r.returncode}):\n{r.stdout[-3000:]}{r.stderr[-2000:]}"
    )
    return r, json.loads((results / "results.json").read_text())


def test_declared_deviation_keeps_the_gate_green(tmp_path: Path) -> None:
    _needs_runc_11()
    r, doc = verify(tmp_path)
    assert r.returncode == 0, r.stdout[-3000:]
    (entry,) = [e for e in doc["results"] if e["check"] == "test_lifecycle_state_machine"]
    assert entry["outcome"] == "xfailed", entry
    assert (
        entry["deviation"]["file"].endswith("runc-1.1.toml")
        and "MUST" in entry["deviation"]["quote"]
    )
    assert "delete succeeded in state created" in entry["message"]
    lines = r.stdout.splitlines()
    assert any(
        x.startswith("[2/2] DEVIATES (declared) test_lifecycle_state_machine") for x in lines
    ), r.stdout
    assert any("check(s) deviate as declared" in x for x in lines)
    assert any(x.startswith("[") and "PASSED" in x and "test_uts_isolated" in x for x in lines)
    assert any(x.startswith("isoproof isolation report: ") for x in lines)


def test_without_the_declaration_runc_fails(tmp_path: Path) -> None:
    _needs_runc_11()
    devs = tmp_path / "deviations"
    shutil.copytree(SHIPPED, devs, ignore=shutil.ignore_patterns("runc-*", "__pycache__", "*.py"))
    r, doc = verify(tmp_path, "--deviations", str(devs))
    assert r.returncode == 1, r.stdout[-3000:]
    (entry,) = [e for e in doc["results"] if e["check"] == "test_lifecycle_state_machine"]
    assert entry["outcome"] == "failed" and "deviation" not in entry
    # ... also as a file, named in the JUnit test case (JUnit has no attachments of its own).
    assert json.loads(Path(entry["evidence_file"]).read_text()) == entry["evidence"]
    assert (
        f'name="isoproof_evidence_file" value="{entry["evidence_file"]}"'
        in (tmp_path / "results" / "junit.xml").read_text()
    )
    # The failure carries what the suite knew, as data: the runtime's commands with exit codes.
    assert any(c["argv"][-2:] == ["delete", c["argv"][-1]] and c["exit"] == 0
               for c in entry["evidence"]["transcript"]), entry["evidence"]["transcript"][-5:]  # fmt: skip


def test_bad_runtime_refused_before_anything_starts(tmp_path: Path) -> None:
    before = set(Path("/var/tmp").glob("isoproof-verify-*"))
    for label, says in (("oci:/nope/runc", "no executable at /nope/runc"),
                        ("oic:/usr/sbin/runc", "unknown runtime")):  # fmt: skip
        r = subprocess.run([sys.executable, "-m", "verify.cli", "--runtime", label], cwd=tmp_path,
                           capture_output=True, text=True, timeout=60)  # fmt: skip
        assert r.returncode == 2 and says in r.stderr and r.stderr.count("\n") == 1, r.stderr
        assert r.stdout == ""
    assert set(Path("/var/tmp").glob("isoproof-verify-*")) == before
    assert not (tmp_path / ".isoproof-results").exists()


def test_installed_package_is_a_pytest_plugin(tmp_path: Path) -> None:
    """``pytest -p no:cacheprovider --runtime oci:runc --pyargs verify.checks -k uts`` from an empty
    directory with only the built wheel on the path: the plugin comes from its pytest11 entry."""
    if not os.path.exists(RUNC):
        pytest.skip(f"needs runc; not found at {RUNC}")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for tree in ("runtime", "verify", "reports", "scenarios"):
        shutil.copytree(REPO / tree, src / tree, ignore=shutil.ignore_patterns("__pycache__"))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                        "--disable-pip-version-check", "-w", str(tmp_path / "dist"), str(src)],
                       capture_output=True, text=True, timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    site = tmp_path / "site"
    (wheel,) = (tmp_path / "dist").glob("isoproof-*.whl")
    with zipfile.ZipFile(wheel) as whl:
        whl.extractall(site)
        names = whl.namelist()
    assert "verify/deviations/runc-1.1.toml" in names
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--runtime", f"oci:{RUNC}",
           "--pyargs", "verify.checks", "-k", "uts", "-v"]  # fmt: skip
    r = subprocess.run(cmd, cwd=empty, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "test_uts_isolated[oci-runc] PASSED" in r.stdout, r.stdout[-3000:]
    assert f"isoproof: runtime oci:{RUNC}" in r.stdout  # the plugin's header: it was loaded
    assert os.listdir(empty) == [], "the run wrote into the directory it ran from"


def test_baseline_names_the_regression(tmp_path: Path) -> None:
    """isoproof verify --baseline: a run compared with an earlier one says what regressed, on the
    console and at the top of report.html, and a run that only fixed things stays green."""
    _needs_runc_11()
    green, _ = verify(tmp_path / "green")  # the shipped declaration: runc deviates as declared
    assert green.returncode == 0, green.stdout[-3000:]
    base = tmp_path / "baseline.json"
    shutil.copy(tmp_path / "green" / "results" / "results.json", base)
    devs = tmp_path / "deviations"
    shutil.copytree(SHIPPED, devs, ignore=shutil.ignore_patterns("runc-*", "__pycache__", "*.py"))
    red, _ = verify(tmp_path / "red", "--deviations", str(devs), "--baseline", str(base))
    assert red.returncode == 1, red.stdout[-3000:]
    assert f"isoproof: since {base}: properties " in red.stdout, red.stdout[-3000:]
    assert "checks 1 regressed, 0 fixed, 0 new" in red.stdout, red.stdout[-3000:]
    page = (tmp_path / "red" / "results" / "report.html").read_text()
    assert "REGRESSED since the baseline" in page and "test_lifecycle_state_machine" in page
    # Back to the declaration, compared with the red run: nothing regressed, the gate is green.
    again, _ = verify(tmp_path / "again", "--baseline",
                      str(tmp_path / "red" / "results" / "results.json"))  # fmt: skip
    assert again.returncode == 0, again.stdout[-3000:]
    assert "checks 0 regressed, 1 fixed" in again.stdout, again.stdout[-3000:]
