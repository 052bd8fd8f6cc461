"""Properties of the pure cgroup conversions (runtime/cgroups/convert.py)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime.cgroups import convert

shares = st.integers(min_value=convert.SHARES_MIN, max_value=convert.SHARES_MAX)
weights = st.integers(min_value=10, max_value=1000)
sizes = st.integers(min_value=1, max_value=1 << 50)


# ------------------------------------------------------------------------ shares -> weight
@pytest.mark.parametrize("s,w", [(2, 1), (512, 59), (1024, 100), (2048, 174), (262144, 10000)])
def test_shares_to_weight_anchors(s: int, w: int) -> None:
    assert convert.shares_to_weight(s) == w


@given(shares)
def test_shares_to_weight_range(s: int) -> None:
    assert convert.WEIGHT_MIN <= convert.shares_to_weight(s) <= convert.WEIGHT_MAX


@given(shares, shares)
def test_shares_to_weight_monotonic(a: int, b: int) -> None:
    if a <= b:
        assert convert.shares_to_weight(a) <= convert.shares_to_weight(b)


@given(st.integers(min_value=-(1 << 40), max_value=1 << 40))
def test_shares_to_weight_clamps_out_of_range(s: int) -> None:
    w = convert.shares_to_weight(s)
    if s <= convert.SHARES_MIN:
        assert w == 1
    elif s >= convert.SHARES_MAX:
        assert w == 10000


def test_shares_to_weight_does_not_keep_ratios() -> None:
    # Documented: 2:1 in shares is not 2:1 in weight (174:100).
    assert convert.shares_to_weight(2048) / convert.shares_to_weight(1024) != 2


# ------------------------------------------------------------------------ blkio weight
@given(weights)
def test_io_weight_range(w: int) -> None:
    assert 1 <= convert.blkio_weight_to_io_weight(w) <= 10000


@given(weights, weights)
def test_io_weight_monotonic(a: int, b: int) -> None:
    if a < b:
        assert convert.blkio_weight_to_io_weight(a) < convert.blkio_weight_to_io_weight(b)


def test_io_weight_ends() -> None:
    assert convert.blkio_weight_to_io_weight(10) == 1
    assert convert.blkio_weight_to_io_weight(1000) == 10000


@given(st.integers().filter(lambda w: not 10 <= w <= 1000))
def test_io_weight_rejects_out_of_range(w: int) -> None:
    with pytest.raises(ValueError):
        convert.blkio_weight_to_io_weight(w)


# ------------------------------------------------------------------------ memory and swap
@given(sizes, st.integers(min_value=0, max_value=1 << 40))
def test_swap_v2_is_swap_minus_limit(limit: int, extra: int) -> None:
    assert convert.swap_v2(limit + extra, limit) == str(extra)


@given(sizes)
def test_swap_v2_unlimited_and_unset(limit: int) -> None:
    assert convert.swap_v2(-1, limit) == "max"
    assert convert.swap_v2(0, limit) is None
    assert convert.swap_v2(None, limit) is None


@given(sizes, st.integers(min_value=1, max_value=1 << 40))
def test_swap_v2_below_limit_is_an_error(limit: int, less: int) -> None:
    if limit - less > 0:
        with pytest.raises(ValueError, match="below memory.limit"):
            convert.swap_v2(limit - less, limit)


@given(sizes)
def test_swap_v2_needs_a_limit(swap: int) -> None:
    for limit in (None, 0, -1):
        with pytest.raises(ValueError):
            convert.swap_v2(swap, limit)


@given(st.integers(min_value=-(1 << 62), max_value=1 << 62))
def test_memory_values(limit: int) -> None:
    v2, v1 = convert.memory_v2(limit), convert.memory_v1(limit)
    if limit < 0:
        assert (v2, v1) == ("max", "-1")
    else:
        assert int(v2) == int(v1) == limit


# ------------------------------------------------------------------------ pids and cpu.max
@given(st.integers(min_value=-(1 << 31), max_value=1 << 31))
def test_pids_max(limit: int) -> None:
    out = convert.pids_max(limit)
    assert out == ("max" if limit < 0 else str(limit))


def test_pids_zero_is_a_limit() -> None:
    assert convert.pids_max(0) == "0"
    assert convert.pids_max(-1) == "max"


@given(
    st.integers(min_value=1000, max_value=1 << 40), st.one_of(st.none(), st.integers(1000, 1000000))
)
def test_cpu_max(quota: int, period: int | None) -> None:
    out = convert.cpu_max(quota, period).split()
    assert int(out[0]) == quota
    assert out[1:] == ([] if period is None else [str(period)])


def test_cpu_max_unlimited() -> None:
    assert convert.cpu_max(-1, 100000) == "max 100000"
    assert convert.cpu_max(None, None) == "max"


# ------------------------------------------------------------------------ device lines
majmin = st.integers(min_value=0, max_value=4095)
rates = st.integers(min_value=0, max_value=1 << 50)


@given(majmin, majmin, rates)
def test_throttle_lines(major: int, minor: int, rate: int) -> None:
    assert convert.throttle_v1(major, minor, rate) == f"{major}:{minor} {rate}"
    for kind, key in convert.IO_MAX_KEYS.items():
        line = convert.io_max(major, minor, kind, rate)
        dev, pair = line.split(" ")
        assert dev == f"{major}:{minor}"
        assert pair == f"{key}={'max' if rate == 0 else rate}"


@given(
    st.sampled_from(["a", "b", "c", None]),
    st.one_of(st.none(), st.just(-1), majmin),
    st.one_of(st.none(), st.just(-1), majmin),
    st.sampled_from(["r", "w", "m", "rw", "rwm", None]),
)
def test_device_rule_v1(
    kind: str | None, major: int | None, minor: int | None, access: str | None
) -> None:
    line = convert.device_rule_v1({"type": kind, "major": major, "minor": minor, "access": access})
    t, mm, acc = line.split(" ")
    assert t == (kind or "a")
    want_major = "*" if major in (None, -1) else str(major)
    want_minor = "*" if minor in (None, -1) else str(minor)
    assert mm == f"{want_major}:{want_minor}"
    assert acc == (access or "rwm")


@pytest.mark.parametrize("rule", [{"type": "x"}, {"access": "rwx"}])
def test_device_rule_v1_rejects(rule: dict) -> None:
    with pytest.raises(ValueError):
        convert.device_rule_v1(rule)


# ------------------------------------------------------------------------ huge page sizes
@given(st.integers(min_value=0, max_value=40), st.sampled_from(["K", "M", "G"]))
def test_page_size_round_trip(exp: int, unit: str) -> None:
    text = f"{1 << exp}{unit}B"
    size = convert.parse_page_size(text)
    assert size == (1 << exp) * {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[unit]
    # The kernel's name is the largest exact unit: 2048KB is 2MB.
    assert convert.parse_page_size(convert.page_size_name(size)) == size
    name = convert.page_size_name(size)
    assert int(name[:-2]) < 1024 or name.endswith("TB")


@pytest.mark.parametrize(
    "text,name", [("2MB", "2MB"), ("1GB", "1GB"), ("64KB", "64KB"), ("2048KB", "2MB")]
)
def test_page_size_names(text: str, name: str) -> None:
    assert convert.page_size_name(convert.parse_page_size(text)) == name


@pytest.mark.parametrize("text", ["2M", "MB", "2mb", "-2MB", ""])
def test_page_size_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        convert.parse_page_size(text)


def test_formula_is_the_documented_one() -> None:
    # Cross-check the implementation against the formula written out, over the whole range.
    for s in range(3, convert.SHARES_MAX, 97):
        lg = math.log2(s)
        assert convert.shares_to_weight(s) == min(
            10000, math.ceil(10 ** ((lg * lg + 125 * lg) / 612 - 7 / 34))
        )
