"""Image verbs: images, import, load, rmi."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from runtime.engine import units
from runtime.engine.engine import Engine
from runtime.engine.flags import Parser
from runtime.engine.home import parse_time
from runtime.engine.images import du
from runtime.engine.output import Fail, each, table
from runtime.errors import NotFoundError


def cmd_images(e: Engine, argv: list[str]) -> int:
    p = Parser(prog="isoproof images")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    a = p.parse_args(argv)
    rows = []
    for img in e.images.all():
        short = img.id if a.no_trunc else img.id.removeprefix("sha256:")[:12]
        created = (
            units.human_duration(time.time() - parse_time(img.meta.get("Created", ""))) + " ago"
        )
        for tag in img.tags or ["<none>:<none>"]:
            repo, _, t = tag.rpartition(":")
            rows.append([repo, t, short, created, units.human_size(du(img.rootfs))])
    if a.quiet:
        for r in dict.fromkeys(r[2] for r in rows):
            print(r)
        return 0
    print(table(rows, ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]))
    return 0


def _stdin_to_file(e: Engine) -> Path:
    import shutil
    import tempfile

    fd, name = tempfile.mkstemp(prefix=".stdin-", dir=e.home.images)
    with os.fdopen(fd, "wb") as f:
        shutil.copyfileobj(sys.stdin.buffer, f)
    return Path(name)


def cmd_import(e: Engine, argv: list[str]) -> int:
    p = Parser(prog="isoproof import")
    p.add_argument("file")
    p.add_argument("reference", nargs="?")
    a = p.parse_args(argv)
    src = _stdin_to_file(e) if a.file == "-" else Path(a.file)
    try:
        if not src.exists():
            raise Fail(f"Error: open {a.file}: no such file or directory")
        img = e.images.import_tarball(src, a.reference)
    finally:
        if a.file == "-":
            src.unlink(missing_ok=True)
    print(img.id)
    return 0


def cmd_load(e: Engine, argv: list[str]) -> int:
    p = Parser(prog="isoproof load")
    p.add_argument("-i", "--input")
    p.add_argument("-q", "--quiet", action="store_true")
    a = p.parse_args(argv)
    src = Path(a.input) if a.input else _stdin_to_file(e)
    try:
        if not src.exists():
            raise Fail(f"Error: open {a.input}: no such file or directory")
        imgs = e.images.load(src)
    finally:
        if not a.input:
            src.unlink(missing_ok=True)
    for img in imgs:
        if img.tags:
            for t in img.tags:
                print(f"Loaded image: {t}")
        else:
            print(f"Loaded image ID: {img.id}")
    return 0


def cmd_rmi(e: Engine, argv: list[str]) -> int:
    p = Parser(prog="isoproof rmi")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("images", nargs="+")
    a = p.parse_args(argv)
    in_use = set()
    for cid in e.store.ids():
        try:
            in_use.add(e.store.config(cid)["Image"])
        except NotFoundError:
            continue

    def one(ref: str) -> None:
        for line in e.images.remove(ref, set() if a.force else in_use):
            print(line)

    return each(a.images, one)
