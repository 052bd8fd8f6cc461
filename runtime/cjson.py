"""JSON through ``_json``, the C half of the standard library's ``json`` package.

``import json`` imports ``re`` and ``enum`` for its pure-Python fallbacks (~6 ms on every CLI call
on this machine, more than the state files and sync messages cost to parse). The C scanner and
encoder that ``json`` itself uses underneath need neither. Same results as ``json.loads`` and
``json.dumps(doc)`` (one line, ASCII, ``", "``/``": "`` separators); errors are ``ValueError``.
"""

from __future__ import annotations

import _json

TYPE_CHECKING = False  # True for mypy only: importing typing costs ~3 ms on every CLI call
if TYPE_CHECKING:
    from typing import Any

_WS = " \t\n\r"


class _Options:
    """What ``_json.make_scanner`` reads from a ``json.JSONDecoder``: json.loads' defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = float  # NaN, Infinity, -Infinity: float() reads all three


_scan = _json.make_scanner(_Options())  # type: ignore[arg-type]  # duck-typed, as in C


def loads(text: str | bytes) -> Any:
    """``json.loads``: one JSON value, surrounded by nothing but whitespace."""
    if isinstance(text, bytes | bytearray):
        try:
            text = text.decode()
        except UnicodeDecodeError as e:
            raise ValueError(f"not UTF-8: {e}") from None
    start = len(text) - len(text.lstrip(_WS))
    try:
        doc, end = _scan(text, start)
    except StopIteration as e:  # the scanner's "no JSON value starts here"
        raise ValueError(_where("Expecting value", text, e.value)) from None
    except SystemError:
        # Any other error: the scanner raises json.decoder's JSONDecodeError, which it looks up in
        # sys.modules only (without it: SystemError). Damaged input: let json itself say why.
        import json

        return json.loads(text)
    if text[end:].strip(_WS):
        raise ValueError(
            _where("Extra data", text, end + len(text[end:]) - len(text[end:].lstrip(_WS)))
        )
    return doc


def _where(msg: str, text: str, pos: int) -> str:
    """json's wording: ``Expecting value: line 1 column 1 (char 0)``."""
    line = text.count("\n", 0, pos) + 1
    return f"{msg}: line {line} column {pos - text.rfind(chr(10), 0, pos)} (char {pos})"


def _refuse(obj: object) -> Any:
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def dumps(doc: Any, indent: int | None = None) -> str:
    """``json.dumps(doc, indent=indent)`` (with ``indent``: for objects with string keys)."""
    if indent is not None:
        return _indented(doc, indent, 0)
    # (circular-reference markers, default, string encoder, indent, key and item separators,
    # sort_keys, skipkeys, allow_nan): json.dumps' defaults
    encode = _json.make_encoder({}, _refuse, _json.encode_basestring_ascii, None, ": ", ", ",
                                False, False, True)  # fmt: skip
    return "".join(encode(doc, 0))


def _indented(doc: Any, indent: int, level: int) -> str:
    """json.dumps' layout with ``indent``: one member per line, ``,`` at the line ends."""
    if not doc or not isinstance(doc, dict | list):  # scalars, {} and [] print as without indent
        return dumps(doc)
    pad = "\n" + " " * (indent * (level + 1))
    if isinstance(doc, dict):
        key = _json.encode_basestring_ascii
        items = [f"{pad}{key(k)}: {_indented(v, indent, level + 1)}" for k, v in doc.items()]
        opening, closing = "{", "}"
    else:
        items = [pad + _indented(v, indent, level + 1) for v in doc]
        opening, closing = "[", "]"
    return opening + ",".join(items) + "\n" + " " * (indent * level) + closing
