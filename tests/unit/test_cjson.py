"""runtime.cjson: the same text and values as the json package, from ``_json`` alone."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime import cjson

SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
DOCS = st.recursive(SCALARS, lambda kids: st.lists(kids) | st.dictionaries(st.text(), kids),
                    max_leaves=30)  # fmt: skip


@given(DOCS)
def test_dumps_writes_what_json_dumps_writes(doc: object) -> None:
    assert cjson.dumps(doc) == json.dumps(doc)
    assert cjson.dumps(doc, indent=2) == json.dumps(doc, indent=2)


@given(DOCS, st.sampled_from([None, 1, 4]))
def test_loads_reads_what_json_reads(doc: object, indent: int | None) -> None:
    text = json.dumps(doc, indent=indent)
    got, want = cjson.loads(text), json.loads(text)
    assert json.dumps(got) == json.dumps(want)  # NaN != NaN: compared as text
    assert json.dumps(cjson.loads(text.encode())) == json.dumps(want)


@pytest.mark.parametrize("text", ["", "  ", "{", "{}x", "[1,]", "nul", '{"a":\n tru}', "1 2"])
def test_bad_json_is_a_value_error_worded_as_json_words_it(text: str) -> None:
    with pytest.raises(ValueError) as want:
        json.loads(text)
    with pytest.raises(ValueError) as got:
        cjson.loads(text)
    assert str(got.value) == str(want.value)


def test_not_utf8_and_not_serializable() -> None:
    with pytest.raises(ValueError, match="not UTF-8"):
        cjson.loads(b"\xff{}")
    with pytest.raises(TypeError, match="not JSON serializable"):
        cjson.dumps({"a": object()})
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular"):
        cjson.dumps(loop)


def test_errors_inside_a_value_without_json_imported_first() -> None:
    # the C scanner words these with json.decoder's error class, found in sys.modules only
    import subprocess
    import sys
    from pathlib import Path

    repo = str(Path(__file__).resolve().parents[2])
    code = (f"import sys; sys.path.insert(0, {repo!r}); from runtime import cjson\n"
            "for t in ('{', '{\"a\": 1, \"p', b'[1, {\"x\" 2}]'):\n"
            "    try:\n        cjson.loads(t)\n    except ValueError as e:\n        print(type(e).__name__)")  # fmt: skip
    out = subprocess.run([sys.executable, "-S", "-I", "-c", code], capture_output=True, text=True,
                         check=False)  # fmt: skip
    assert out.stdout.split() == ["JSONDecodeError"] * 3, out.stderr
