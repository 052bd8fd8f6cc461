"""CLI pieces that need no root: signals, sizes, update flags, and the one-line error contract."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest

from runtime.errors import SpecError
from runtime.oci import cli


@pytest.mark.parametrize("word", ["KILL", "kill", "SIGKILL", "9", " sigkill "])
def test_signal_forms(word: str):
    assert cli.parse_signal(word) == signal.SIGKILL


@pytest.mark.parametrize("word", ["", "0", "999", "SIGNOPE", "SIG_DFL", "-1"])
def test_bad_signals(word: str):
    with pytest.raises(SpecError):
        cli.parse_signal(word)


def test_update_flags_to_resources():
    a = cli._parser().parse_args(["update", "--memory", "64m", "--cpu-shares", "512",
                                  "--pids-limit", "10", "--blkio-weight", "300", "c"])  # fmt: skip
    assert cli.update_resources(a) == {
        "memory": {"limit": 64 << 20}, "cpu": {"shares": 512}, "pids": {"limit": 10},
        "blockIO": {"weight": 300}}  # fmt: skip
    with pytest.raises(SpecError, match="--memory"):
        cli.parse_bytes("memory", "lots")
    with pytest.raises(SpecError, match="nothing to change"):
        cli.update_resources(cli._parser().parse_args(["update", "c"]))


def test_errors_are_one_line_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    for argv in (["state", "nosuch"], ["start", "nosuch"], ["kill", "nosuch", "KILL"],
                 ["delete", "nosuch"], ["kill", "nosuch", "NOPE"], ["state", "../x"]):  # fmt: skip
        assert cli.main(["--root", str(tmp_path), *argv]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("isoproof-oci: "), err
    assert list(tmp_path.iterdir()) == []


def test_usage_errors_are_one_line(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as e:
        cli.main(["frobnicate"])
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("isoproof-oci: ")


def test_spec_writes_default_config_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert cli.main(["spec", "--bundle", str(tmp_path)]) == 0
    assert (tmp_path / "config.json").exists()
    assert cli.main(["spec", "--bundle", str(tmp_path)]) == 1
    assert "exists" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, want",
    [
        (["--root", "/r", "run", "--bundle", "/b", "c"],
         {"root": "/r", "cmd": "run", "bundle": "/b", "id": "c", "detach": False}),
        (["run", "-b/b", "-d", "c"], {"bundle": "/b", "detach": True, "id": "c"}),
        (["create", "--pid-file=/p", "c", "--bundle", "/b"], {"pid_file": "/p", "bundle": "/b"}),
        (["kill", "--all", "c", "KILL"], {"all": True, "id": "c", "signal": "KILL"}),
        (["kill", "c", "--signal=TERM"], {"signal_opt": "TERM", "signal": None}),
        (["exec", "-t", "-e", "A=1", "--env", "B=2", "c", "sh", "-c", "x -y"],
         {"tty": True, "env": ["A=1", "B=2"], "command": ["sh", "-c", "x -y"]}),
        (["exec", "c", "--", "ls", "-l"], {"command": ["ls", "-l"]}),
        (["exec", "--process", "p.json", "c"], {"process": "p.json", "command": []}),
        (["events", "--interval", "2", "c"], {"interval": 2.0, "stats": False}),
        (["--log-format", "json", "list", "-q"], {"log_format": "json", "quiet": True}),
        (["delete", "-f", "--", "c"], {"force": True, "id": "c"}),
    ],
)  # fmt: skip
def test_argv_shapes(argv: list[str], want: dict[str, object]):
    got = vars(cli.parse_args(argv))
    assert {k: got[k] for k in want} == want


@pytest.mark.parametrize("argv", [[], ["run"], ["run", "--bogus", "c"], ["run", "--bundle"],
                                  ["--log-format", "xml", "list"], ["kill", "a", "b", "c"],
                                  ["events", "--interval", "x", "c"], ["delete", "--force=1", "c"]])  # fmt: skip
def test_bad_argv_is_one_line_exit_1(argv: list[str], capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as e:
        cli.parse_args(argv)
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("isoproof-oci: "), err


@pytest.mark.parametrize("argv", [["--help"], ["-h"], ["exec", "--help"], ["--version"]])
def test_help_and_version_exit_0(argv: list[str], capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as e:
        cli.parse_args(argv)
    assert e.value.code == 0
    assert "isoproof-oci" in capsys.readouterr().out


def test_failed_output_write_is_one_line_not_a_traceback(tmp_path, monkeypatch, capsys):
    import errno
    import io

    class Full(io.StringIO):
        def write(self, s: str) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("sys.stdout", Full())
    rc = cli.main(["--root", str(tmp_path), "list"])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.strip() == "isoproof-oci: No space left on device"


# --- cgroup warnings on create/run -------------------------------------------------------------------


def _warning_bundle(tmp_path: Path, resources: dict[str, object]) -> Path:
    import json

    from runtime.spec import default_spec

    b = tmp_path / "bundle"
    (b / "rootfs").mkdir(parents=True)
    cfg = default_spec()
    cfg["process"]["terminal"] = False
    cfg["linux"]["cgroupsPath"] = "/isoproof-tfake/c1"
    cfg["linux"]["resources"] = resources
    (b / "config.json").write_text(json.dumps(cfg))
    return b


@pytest.fixture
def create_until_fork(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    """``isoproof-oci VERB`` against a fake cgroup tree (v1 or v2), stopped where stage-1 would be
    forked. Returns (exit status, stderr before the fork, stderr after it, fake tree, state root)."""
    import errno
    import os

    from test_cgroup_fake import make_v1, make_v2

    from runtime import cgroups
    from runtime.oci import process, rootfs  # noqa: F401  (imported before the patch: they keep Sys)
    from runtime.sys import RecordingSys

    # no PR_SET_CHILD_SUBREAPER on pytest (container imports Sys when create needs it)
    monkeypatch.setattr("runtime.sys.Sys", RecordingSys)

    def run(version: str, resources: dict[str, object], *global_opts: str, verb: str = "create"):
        tree = (make_v1 if version == "v1" else make_v2)(tmp_path, monkeypatch)
        monkeypatch.setattr(cgroups, "new_manager", lambda path, cid: tree.manager(path, cid))
        before_fork: list[str] = []

        def fork() -> int:
            before_fork.append(capsys.readouterr().err)
            raise OSError(errno.EAGAIN, "fork refused by the test")

        monkeypatch.setattr(os, "fork", fork)
        bundle = _warning_bundle(tmp_path, resources)
        root = tmp_path / "state"
        rc = cli.main(["--root", str(root), *global_opts, verb, "--bundle", str(bundle), "c1"])
        assert before_fork, "create never reached the fork"
        return rc, before_fork[0], capsys.readouterr().err, tree, root

    return run


@pytest.mark.parametrize(
    "version, resources, expected",
    [
        ("v1", {"memory": {"kernel": 1 << 20}},
         ["memory.kernel is ignored: kernel memory limits are deprecated"]),
        # The device rules are enforced by a BPF filter (the fake tree's RecordingSys attaches
        # it): only swappiness is left to warn about.
        ("v2", {"memory": {"swappiness": 10}, "devices": [{"allow": False, "access": "rwm"}]},
         ["memory.swappiness is not enforced: cgroup v2 has no per-cgroup swappiness"]),
        ("v1", {"memory": {"swappiness": 10}}, []),  # v1 enforces it: nothing to say
    ],
)  # fmt: skip
@pytest.mark.parametrize("verb", ["create", "run"])
def test_cgroup_warnings_go_to_stderr_before_the_fork(
    create_until_fork, version: str, resources: dict[str, object], expected: list[str], verb: str
):
    rc, before, after, tree, root = create_until_fork(version, resources, verb=verb)
    assert before.splitlines() == [f"isoproof-oci: warning: {w}" for w in expected]
    # The fork failed (the test's doing): reported as the one error line, and rolled back.
    assert rc == 1 and after == "isoproof-oci: fork refused by the test\n"
    assert tree.leftovers() == [] and list(root.iterdir()) == []


def test_cgroup_warnings_go_to_the_log_file_when_one_is_given(create_until_fork, tmp_path: Path):
    import json

    log = tmp_path / "oci.log"
    rc, before, _after, _tree, _root = create_until_fork(
        "v1", {"memory": {"kernel": 1 << 20}}, "--log", str(log), "--log-format", "json"
    )
    assert before == ""  # runc's rule: with --log, warnings go there only
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(e["level"], e["msg"]) for e in entries] == [
        ("warning", "memory.kernel is ignored: kernel memory limits are deprecated"),
        ("error", "fork refused by the test"),
    ]


# --- issue 12: runc 1.1's verbs and flags -----------------------------------------------------------

RUNC = "/usr/sbin/runc"


@pytest.mark.parametrize(
    "argv, want",
    [
        (["update", "--cpu-share", "512", "c"], {"cpu_shares": "512"}),  # runc's spelling
        (["update", "--cpu-shares", "512", "c"], {"cpu_shares": "512"}),  # docker's
        (["run", "--keep", "--no-subreaper", "--preserve-fds", "2", "c"],
         {"keep": True, "no_subreaper": True, "preserve_fds": "2"}),
        (["create", "--preserve-fds=1", "c"], {"preserve_fds": "1"}),
        (["exec", "-g", "10", "--additional-gids", "20", "--cgroup", "memory:sub",
          "--ignore-paused", "--preserve-fds", "1", "c", "id"],
         {"additional_gids": ["10", "20"], "cgroup": ["memory:sub"], "ignore_paused": True,
          "preserve_fds": "1", "command": ["id"]}),
        (["ps", "c", "--", "-ef"], {"id": "c", "ps_args": ["-ef"]}),
        (["ps", "c", "-o", "pid,comm"], {"ps_args": ["-o", "pid,comm"]}),
        (["ps", "-f", "json", "c"], {"format": "json", "ps_args": []}),
        (["features"], {"cmd": "features"}),
    ],
)  # fmt: skip
def test_runc_11_argv_shapes(argv: list[str], want: dict[str, object]):
    got = vars(cli.parse_args(argv))
    assert {k: got[k] for k in want} == want


def runc_flags(verb: str) -> set[str]:
    import re
    import subprocess

    text = subprocess.run([RUNC, verb, "--help"], capture_output=True, text=True).stdout
    options = text.split("OPTIONS:", 1)[1] if "OPTIONS:" in text else ""
    return {m for m in re.findall(r"^\s+(--[\w-]+)", options, re.M)}


@pytest.mark.parametrize("verb", ["create", "run", "start", "state", "kill", "delete", "ps",
                                  "exec", "update", "pause", "resume", "list", "spec", "events",
                                  "features"])  # fmt: skip
def test_every_runc_flag_of_a_verb_is_known(verb: str):
    """Parity with the runc 1.1 on this machine: each of its flags parses here (help aside)."""
    import os

    if not os.access(RUNC, os.X_OK):
        pytest.skip(f"needs {RUNC} (Debian's runc) to compare with; not installed here")
    ours = {n for names, *_ in cli.COMMANDS[verb][1] for n in names}
    missing = runc_flags(verb) - ours - {"--help"}
    assert not missing, f"runc {verb} has {sorted(missing)}"


def test_update_with_resources_ignores_the_other_flags_as_runc(tmp_path: Path):
    f = tmp_path / "r.json"
    f.write_text('{"memory": {"limit": 1048576}}')
    a = cli.parse_args(["update", "-r", str(f), "--cpu-share", "10", "c"])
    assert cli.update_resources(a) == {"memory": {"limit": 1048576}}


def test_update_rdt_flags_are_refused():
    with pytest.raises(SpecError, match="^--l3-cache-schema: Intel RDT is not supported"):
        cli.update_resources(cli.parse_args(["update", "--l3-cache-schema", "L3:0=f", "c"]))


def test_delete_force_of_a_missing_id_exits_0_like_runc(tmp_path: Path, capsys):
    assert cli.main(["--root", str(tmp_path), "delete", "--force", "nosuch"]) == 0
    assert capsys.readouterr().err == ""
    assert cli.main(["--root", str(tmp_path), "delete", "nosuch"]) == 1  # without --force: an error


def test_features_document(capsys):
    import json

    assert cli.main(["features"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ociVersionMin"] == "1.0.0" and doc["ociVersionMax"].startswith("1.0.")
    assert doc["hooks"] == ["prestart", "createRuntime", "createContainer", "startContainer",
                            "poststart", "poststop"]  # fmt: skip
    assert {"bind", "rbind", "ro", "nosuid", "rprivate"} <= set(doc["mountOptions"])
    linux = doc["linux"]
    assert {"cgroup", "ipc", "mount", "network", "pid", "user", "uts"} <= set(linux["namespaces"])
    assert "CAP_SYS_ADMIN" in linux["capabilities"]
    assert linux["cgroup"]["systemd"] is False  # what we do not do is not claimed
    assert linux["apparmor"] == {"enabled": False} and linux["selinux"] == {"enabled": False}


def test_preserve_fds_must_be_open(tmp_path: Path, capsys):
    assert cli.main(["--root", str(tmp_path), "create", "--preserve-fds", "900", "c"]) == 1
    err = capsys.readouterr().err
    assert re.fullmatch(r"isoproof-oci: --preserve-fds 900: fd \d+ is not open\n", err), err
    assert list(tmp_path.iterdir()) == []


def test_host_ps_keeps_the_header_and_the_containers_lines(monkeypatch, capsys):
    import subprocess

    out = "  PID TTY      STAT   TIME COMMAND\n    1 ?        Ss     0:01 init\n  42 ?  S  0:00 sleep\n"
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(
        a[0], 0, out, ""))  # fmt: skip
    assert cli._host_ps([42], ["ax"]) == 0
    assert capsys.readouterr().out.splitlines() == [out.splitlines()[0], out.splitlines()[2]]
