"""The guest script's ``bind_views`` (verify/matrix/guest.py), run on the host in a private mount
namespace: the page-cached views must not hide the mounts below them, also when paths hold spaces
(the leg directory lives under the repository, which may be anywhere)."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from verify.matrix import guest

pytestmark = pytest.mark.root


def test_bind_views_keeps_inner_mounts_of_paths_with_spaces(tmp_path: Path) -> None:
    base = tmp_path / "a b"
    repo, usr = base / "my repo", base / "usr"
    share = tmp_path / "fast share"  # stands for the page-cached 9p view of the host's /
    for d in (repo / "leg dir", usr / "lib" / "mods", Path(f"{share}{repo}") / "leg dir",
              Path(f"{share}{usr}") / "lib" / "mods"):  # fmt: skip
        d.mkdir(parents=True)
    for d in (repo, usr):
        (d / "marker").write_text("host\n")
        Path(f"{share}{d}/marker").write_text("cached\n")
    q = shlex.quote
    script = f"""
set -eu
mount -t tmpfs isoproof-test-run /run   # bind_views keeps its binds under /run
mount -t tmpfs isoproof-test-leg {q(str(repo / "leg dir"))}
echo leg > {q(str(repo / "leg dir" / "out"))}
mount -t tmpfs isoproof-test-mods {q(str(usr / "lib" / "mods"))}
echo mods > {q(str(usr / "lib" / "mods" / "m"))}
{guest.BIND_VIEWS}
bind_views {q(str(share))} {q(str(repo))} {q(str(usr))}
cat {q(str(repo / "marker"))} {q(str(usr / "marker"))}
cat {q(str(repo / "leg dir" / "out"))} {q(str(usr / "lib" / "mods" / "m"))}
"""
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr
    # The views are the cached copies, and what was mounted below them is still there on top.
    assert r.stdout.split() == ["cached", "cached", "leg", "mods"], r.stdout + r.stderr
    # Everything stayed in the test's mount namespace.
    mounts = Path("/proc/self/mounts").read_text()
    assert "isoproof-test-" not in mounts
