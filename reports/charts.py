"""Charts for the report: inline SVG with axes, units and the reference drawn in.

Two primitives, ``line_chart`` and ``bar_chart``, and one builder per kind of evidence the checks
record (``chart_for``). Each chart is a ``<figure>``: the SVG carries a visible title, a ``<title>``
and ``<desc>`` for screen readers (``role="img"``, ``aria-labelledby``), and the figcaption says in
words what the chart shows, so the page reads the same without the pictures and prints in grey
(series differ by dash pattern as well as colour). Pure functions of their input: the same
measurements give the same bytes.

The checks sample cumulative counters (CPU ns, bytes, IOs); a chart of a counter shows its rate
over the window (CPU share, MiB/s, IO/s), which is what a limit is set in, not the running total.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# Series colours: each has at least 3:1 contrast against the white chart background (WCAG 1.4.11,
# checked in tests/unit/test_reports.py); the dash patterns keep them apart in grey print.
PALETTE = ("#1f5fbf", "#b22222", "#1b7a3d", "#7b3fa0", "#8a5a00")
DASHES = ("", "9 3", "3 3", "12 3 3 3", "6 6")
INK = "#222222"  # axes, limit lines, text
GRID = "#d0d0d0"
BACKGROUND = "#ffffff"
MUTED = "#555555"  # tick labels
WIDTH, HEIGHT = 640, 240
MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 64, 20, 34, 44
LEGEND_ROW = 18
CHAR_W = 6.6  # an estimate of a 11px sans-serif glyph, for laying out the legend


@dataclass(frozen=True)
class Line:
    label: str
    xs: Sequence[float]
    ys: Sequence[float]
    color: str = PALETTE[0]
    dash: str = ""
    step: bool = False  # a counter read at sample times: hold the value until the next sample


@dataclass(frozen=True)
class Ref:
    """A horizontal reference line (a limit, an expected value)."""

    value: float
    label: str
    color: str = INK
    dash: str = "6 4"


@dataclass(frozen=True)
class Mark:
    """A vertical marker at one moment (the OOM kill)."""

    x: float
    label: str
    color: str = PALETTE[1]


@dataclass(frozen=True)
class Span:
    """A shaded time interval (the container was frozen)."""

    x0: float
    x1: float
    label: str


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


# --- numbers ---------------------------------------------------------------------------------------


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [lo, hi] (1, 2, 2.5 or 5 times a power of ten)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step + 1e-9) * step
    ticks = []
    v = first
    while v < hi + step * 1e-6:
        ticks.append(round(v, 12))
        v += step
    if ticks[-1] < hi - step * 1e-6:
        ticks.append(round(v, 12))
    return ticks


def fmt_tick(v: float, step: float) -> str:
    """A tick label with as many decimals as the step needs (0.25 -> 2, 5 -> 0)."""
    decimals = next((d for d in range(7) if abs(step * 10**d - round(step * 10**d)) < 1e-6), 6)
    text = f"{v:.{decimals}f}"
    return "0" if float(text) == 0 else text


def fmt(v: float, digits: int = 3) -> str:
    """A value for a label: 3 significant digits, no exponent for the sizes seen here."""
    if v == 0:
        return "0"
    if v == int(v) or abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.{max(0, digits - 1 - math.floor(math.log10(abs(v))))}f}"


def rates(
    ts: Sequence[float], ys: Sequence[float], min_dt: float
) -> tuple[list[float], list[float]]:
    """A cumulative counter as its rate per interval of at least ``min_dt`` seconds: the x of
    each is the interval's midpoint. Short sampling intervals of a throttled counter alternate
    between bursts and stalls (the throttle's own time slices); a wider window shows the rate."""
    xs: list[float] = []
    out: list[float] = []
    a = 0
    for b in range(1, len(ts)):
        dt = ts[b] - ts[a]
        if dt >= min_dt or (b == len(ts) - 1 and dt > 0):
            xs.append((ts[a] + ts[b]) / 2)
            out.append((ys[b] - ys[a]) / dt)
            a = b
    return xs, out


def active(ts: Sequence[float], ys: Sequence[float]) -> tuple[list[float], list[float]]:
    """The samples from the one before the counter first grew to the one where it last grew: a
    workload that started late or ended early is not drawn as a rate falling to zero."""
    grew = [i for i in range(1, len(ys)) if ys[i] != ys[i - 1]]
    if not grew:
        return list(ts), list(ys)
    a, b = grew[0] - 1, grew[-1]
    return list(ts[a : b + 1]), list(ys[a : b + 1])


def number_in(value: Any) -> float | None:
    """A number, or the first number in a text such as ``"<= 16"``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        m = re.search(r"-?\d+(?:\.\d+)?", value)
        return float(m.group()) if m else None
    return None


# --- primitives ------------------------------------------------------------------------------------


def _legend(items: list[tuple[str, str, str, str]], top: float, width: int) -> tuple[str, float]:
    """Legend entries (label, colour, dash, kind) laid out in rows under the plot; returns the
    SVG and the height used. ``kind`` is "line" or "box"."""
    out = []
    x, y = MARGIN_L, top
    for label, color, dash, kind in items:
        w = 26 + len(label) * CHAR_W + 14
        if x + w > width - MARGIN_R and x > MARGIN_L:
            x, y = MARGIN_L, y + LEGEND_ROW
        if kind == "box":
            out.append(f'<rect x="{x}" y="{y - 8}" width="18" height="9" fill="{color}" '
                       f'fill-opacity="0.25" stroke="{color}"/>')  # fmt: skip
        else:
            d = f' stroke-dasharray="{dash}"' if dash else ""
            out.append(f'<line x1="{x}" y1="{y - 4}" x2="{x + 18}" y2="{y - 4}" stroke="{color}" '
                       f'stroke-width="2.5"{d}/>')  # fmt: skip
        out.append(f'<text x="{x + 24}" y="{y}" class="lg">{esc(label)}</text>')
        x += int(w)
    used = (y - top + LEGEND_ROW) if items else 0
    return "".join(out), used


def _svg_open(cid: str, title: str, desc: str, width: int, height: float) -> str:
    return (
        f'<svg class="chart" role="img" aria-labelledby="{cid}-t {cid}-d" '
        f'viewBox="0 0 {width} {height:.0f}" width="{width}" height="{height:.0f}" '
        f'xmlns="http://www.w3.org/2000/svg"><title id="{cid}-t">{esc(title)}</title>'
        f'<desc id="{cid}-d">{esc(desc)}</desc>'
        f'<rect width="{width}" height="{height:.0f}" fill="{BACKGROUND}"/>'
        f'<text x="{MARGIN_L}" y="18" class="ct">{esc(title)}</text>'
    )


def line_chart(
    cid: str,
    title: str,
    desc: str,
    lines: Sequence[Line],
    *,
    y_label: str,
    x_label: str = "time (s)",
    refs: Sequence[Ref] = (),
    marks: Sequence[Mark] = (),
    spans: Sequence[Span] = (),
    y_min: float = 0.0,
    y_max: float | None = None,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> str:
    """An SVG line chart: axes with round ticks, axis titles with units, grid lines, reference
    lines labelled at their right end, vertical marks, shaded spans and a legend."""
    lines = [ln for ln in lines if len(ln.xs) == len(ln.ys) and ln.ys]
    xs = [x for ln in lines for x in ln.xs] + [m.x for m in marks]
    xs += [s for sp in spans for s in (sp.x0, sp.x1)]
    ys = [y for ln in lines for y in ln.ys] + [r.value for r in refs]
    x0, x1 = (min(xs), max(xs)) if xs else (0.0, 1.0)
    top = max(ys) if ys else 1.0
    if y_max is None:
        y_max = top * 1.1 if top > y_min else y_min + 1.0
    xt = nice_ticks(x0, x1)
    yt = nice_ticks(y_min, y_max)
    x0, x1, ya, yb = xt[0], xt[-1], yt[0], yt[-1]
    # A range too small to tick (all samples equal, or nearly): give it a unit's width.
    x1 = x1 if x1 > x0 else x0 + 1.0
    yb = yb if yb > ya else ya + 1.0
    pw, ph = width - MARGIN_L - MARGIN_R, height - MARGIN_T - MARGIN_B

    def sx(x: float) -> float:
        return MARGIN_L + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return MARGIN_T + ph - (y - ya) / (yb - ya) * ph

    parts = []
    for sp in spans:
        parts.append(f'<rect x="{sx(sp.x0):.1f}" y="{MARGIN_T}" width="{sx(sp.x1) - sx(sp.x0):.1f}" '
                     f'height="{ph}" fill="#7b3fa0" fill-opacity="0.12"/>')  # fmt: skip
    ystep = yt[1] - yt[0] if len(yt) > 1 else 1.0
    for v in yt:
        y = sy(v)
        parts.append(f'<line x1="{MARGIN_L}" y1="{y:.1f}" x2="{MARGIN_L + pw}" y2="{y:.1f}" '
                     f'stroke="{GRID}" stroke-width="1"/>')  # fmt: skip
        parts.append(f'<text x="{MARGIN_L - 6}" y="{y + 4:.1f}" class="tk" text-anchor="end">'
                     f"{fmt_tick(v, ystep)}</text>")  # fmt: skip
    xstep = xt[1] - xt[0] if len(xt) > 1 else 1.0
    for v in xt:
        x = sx(v)
        parts.append(f'<line x1="{x:.1f}" y1="{MARGIN_T + ph}" x2="{x:.1f}" y2="{MARGIN_T + ph + 4}" '
                     f'stroke="{INK}"/>')  # fmt: skip
        parts.append(f'<text x="{x:.1f}" y="{MARGIN_T + ph + 16}" class="tk" '
                     f'text-anchor="middle">{fmt_tick(v, xstep)}</text>')  # fmt: skip
    parts.append(f'<path d="M{MARGIN_L} {MARGIN_T}V{MARGIN_T + ph}H{MARGIN_L + pw}" fill="none" '
                 f'stroke="{INK}" stroke-width="1.2"/>')  # fmt: skip
    parts.append(f'<text x="{MARGIN_L + pw / 2:.0f}" y="{MARGIN_T + ph + 34}" class="al" '
                 f'text-anchor="middle">{esc(x_label)}</text>')  # fmt: skip
    parts.append(f'<text transform="translate(14 {MARGIN_T + ph / 2:.0f}) rotate(-90)" class="al" '
                 f'text-anchor="middle">{esc(y_label)}</text>')  # fmt: skip
    for r in refs:
        y = sy(r.value)
        parts.append(f'<line x1="{MARGIN_L}" y1="{y:.1f}" x2="{MARGIN_L + pw}" y2="{y:.1f}" '
                     f'stroke="{r.color}" stroke-width="1.5" stroke-dasharray="{r.dash}"/>')  # fmt: skip
        parts.append(f'<text x="{MARGIN_L + pw - 4}" y="{y - 4:.1f}" class="rl" '
                     f'text-anchor="end" fill="{r.color}">{esc(r.label)}</text>')  # fmt: skip
    for mk in marks:
        x = sx(mk.x)
        parts.append(f'<line x1="{x:.1f}" y1="{MARGIN_T}" x2="{x:.1f}" y2="{MARGIN_T + ph}" '
                     f'stroke="{mk.color}" stroke-width="2"/>')  # fmt: skip
        anchor = "end" if x > MARGIN_L + pw * 0.6 else "start"
        dx = -4 if anchor == "end" else 4
        parts.append(f'<text x="{x + dx:.1f}" y="{MARGIN_T + 12}" class="rl" text-anchor="{anchor}" '
                     f'fill="{mk.color}">{esc(mk.label)}</text>')  # fmt: skip
    for ln in lines:
        pts = []
        prev = None
        for x, y in zip(ln.xs, ln.ys, strict=True):
            if ln.step and prev is not None:
                pts.append(f"{sx(x):.1f},{sy(prev):.1f}")
            pts.append(f"{sx(x):.1f},{sy(y):.1f}")
            prev = y
        d = f' stroke-dasharray="{ln.dash}"' if ln.dash else ""
        parts.append(f'<polyline fill="none" stroke="{ln.color}" stroke-width="2"{d} '
                     f'stroke-linejoin="round" points="{" ".join(pts)}"/>')  # fmt: skip
        if len(ln.xs) <= 40:  # a few samples: show where they are
            parts += [f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.2" fill="{ln.color}"/>'
                      for x, y in zip(ln.xs, ln.ys, strict=True)]  # fmt: skip
    items = [(ln.label, ln.color, ln.dash, "line") for ln in lines]
    items += [(r.label, r.color, r.dash, "line") for r in refs if r.label]
    items += [(sp.label, "#7b3fa0", "", "box") for sp in spans]
    legend, used = _legend(items, height + 4, width)
    total = height + used + 4
    return _svg_open(cid, title, desc, width, total) + "".join(parts) + legend + "</svg>"


def bar_chart(
    cid: str,
    title: str,
    desc: str,
    bars: Sequence[tuple[str, float, str]],
    *,
    x_label: str,
    refs: Sequence[Ref] = (),
    width: int = WIDTH,
) -> str:
    """Horizontal bars (label, value, colour) against vertical reference lines (a limit)."""
    bar_h, gap, label_w = 22, 10, 190
    ph = len(bars) * (bar_h + gap) + gap
    height = MARGIN_T + ph + MARGIN_B
    values = [v for _, v, _ in bars] + [r.value for r in refs]
    top = max(values + [0.0])
    ticks = nice_ticks(0.0, top * 1.1 if top > 0 else 1.0)
    x1 = ticks[-1] if ticks[-1] > 0 else 1.0
    left, pw = label_w, width - label_w - MARGIN_R

    def sx(v: float) -> float:
        return left + v / x1 * pw

    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    parts = []
    for v in ticks:
        x = sx(v)
        parts.append(f'<line x1="{x:.1f}" y1="{MARGIN_T}" x2="{x:.1f}" y2="{MARGIN_T + ph}" '
                     f'stroke="{GRID}"/>')  # fmt: skip
        parts.append(f'<text x="{x:.1f}" y="{MARGIN_T + ph + 16}" class="tk" text-anchor="middle">'
                     f"{fmt_tick(v, step)}</text>")  # fmt: skip
    for i, (label, v, color) in enumerate(bars):
        y = MARGIN_T + gap + i * (bar_h + gap)
        parts.append(f'<text x="{left - 8}" y="{y + bar_h * 0.7:.1f}" class="tk" text-anchor="end">'
                     f"{esc(label)}</text>")  # fmt: skip
        parts.append(f'<rect x="{left}" y="{y}" width="{max(sx(v) - left, 1.5):.1f}" '
                     f'height="{bar_h}" fill="{color}"/>')  # fmt: skip
        parts.append(f'<text x="{max(sx(v), left) + 4:.1f}" y="{y + bar_h * 0.7:.1f}" class="tk">'
                     f"{esc(fmt(v))}</text>")  # fmt: skip
    parts.append(f'<path d="M{left} {MARGIN_T}V{MARGIN_T + ph}H{left + pw}" fill="none" '
                 f'stroke="{INK}" stroke-width="1.2"/>')  # fmt: skip
    parts.append(f'<text x="{left + pw / 2:.0f}" y="{MARGIN_T + ph + 34}" class="al" '
                 f'text-anchor="middle">{esc(x_label)}</text>')  # fmt: skip
    for r in refs:
        x = sx(r.value)
        parts.append(f'<line x1="{x:.1f}" y1="{MARGIN_T - 4}" x2="{x:.1f}" y2="{MARGIN_T + ph}" '
                     f'stroke="{r.color}" stroke-width="2" stroke-dasharray="{r.dash}"/>')  # fmt: skip
        anchor = "end" if x > left + pw * 0.6 else "start"
        parts.append(f'<text x="{x + (-4 if anchor == "end" else 4):.1f}" y="{MARGIN_T - 6}" '
                     f'class="rl" text-anchor="{anchor}" fill="{r.color}">{esc(r.label)}</text>')  # fmt: skip
    return _svg_open(cid, title, desc, width, height) + "".join(parts) + "</svg>"


def figure(svg: str, caption: str) -> str:
    return f'<figure class="chart">{svg}<figcaption>{esc(caption)}</figcaption></figure>'


# --- builders: one per kind of evidence ------------------------------------------------------------


@dataclass(frozen=True)
class Evidence:
    """What a chart builder gets: the measurement with the series, and its siblings (the other
    measurements of the same check, which carry ratios, limits, OOM counts)."""

    measurement: Any  # reports.model.Measurement (duck-typed: name, unit, expected, extra, series)
    siblings: Sequence[Any]
    check: str  # the check's function name


def _times(m: Any) -> list[float] | None:
    t = m.series.get("t")
    if not t or len(t) < 2:
        return None
    return [x - t[0] for x in t]


def _sibling(ev: Evidence, prefix: str) -> Any | None:
    return next((s for s in ev.siblings if str(s.name).startswith(prefix)), None)


def cpu_shares(cid: str, ev: Evidence) -> str | None:
    """Each container's share of the CPU per interval, against the split its written weights
    give (dashed) and the split that was requested (dotted, when the two differ)."""
    m = ev.measurement
    t = _times(m)
    names = [k for k in m.series if k != "t"]
    if t is None or len(names) < 2 or any(len(m.series[k]) != len(t) for k in names):
        return None
    pts = [rates(t, m.series[k], 0.2) for k in names]
    xs = pts[0][0]
    totals = [sum(p[1][i] for p in pts) for i in range(len(xs))]
    lines, refs, words = [], [], []
    for i, k in enumerate(names):
        share = [
            p / tot * 100 if tot > 0 else 0.0 for p, tot in zip(pts[i][1], totals, strict=True)
        ]
        color, dash = PALETTE[i % len(PALETTE)], DASHES[i % len(DASHES)]
        lines.append(Line(k, xs, share, color, dash))
        used = m.series[k][-1] - m.series[k][0]
        total = sum(m.series[n][-1] - m.series[n][0] for n in names)
        overall = used / total * 100 if total > 0 else 0.0
        ratio = _sibling(ev, f"cpu time of {k}")
        extra = ratio.extra if ratio is not None else {}
        expected = number_in(extra.get("expected_ratio", extra.get("written_ratio")))
        requested = number_in(extra.get("requested_ratio"))
        text = f"{k} got {overall:.1f}% overall"
        if expected is not None:
            refs.append(Ref(expected * 100, f"{k} expected {expected * 100:.1f}%", color, "7 4"))
            text += f" (expected {expected * 100:.1f}%"
            if requested is not None:
                text += f", requested {requested * 100:.1f}%"
            text += ")"
        if requested is not None and (expected is None or abs(requested - expected) > 0.0005):
            refs.append(Ref(requested * 100, f"{k} requested {requested * 100:.1f}%", color, "2 3"))
        words.append(text)
    elapsed = t[-1]
    title = "CPU share per container under contention"
    desc = (f"Share of the CPU time used in each interval of at least 0.2 s over {elapsed:.1f} s: "
            + "; ".join(words) + ".")  # fmt: skip
    svg = line_chart(cid, title, desc, lines, y_label="share of CPU time (%)", refs=refs,
                     y_max=100.0)  # fmt: skip
    return figure(svg, desc)


def cpu_rate(cid: str, ev: Evidence) -> str | None:
    """A single container's CPU use in CPUs per interval, against its quota."""
    m = ev.measurement
    t = _times(m)
    keys = [k for k in m.series if k != "t"]
    if t is None or len(keys) != 1 or len(m.series[keys[0]]) != len(t):
        return None
    xs, ys = rates(t, m.series[keys[0]], 0.2)
    cpus = [y / 1e9 for y in ys]
    refs = []
    expected = number_in(m.expected)
    text = f"{keys[0]} rate over {t[-1]:.1f} s: mean {(m.series[keys[0]][-1] - m.series[keys[0]][0]) / 1e9 / t[-1]:.3f} CPUs"
    if expected is not None and m.unit == "s" and t[-1] > 0:
        quota = expected / t[-1]
        refs.append(Ref(quota, f"quota {quota:.3f} CPUs"))
        text += f", the quota allows {quota:.3f}"
    top = max(cpus + [r.value for r in refs] + [0.0])
    svg = line_chart(cid, "CPU use against the quota", text + ".",
                     [Line("CPU use", xs, cpus, PALETTE[0])], y_label="CPUs", refs=refs,
                     y_max=top * 1.3 if top > 0 else 1.0)  # fmt: skip
    return figure(svg, text + ".")


IO_COUNTERS = ("read", "write", "read_ios", "write_ios")


def throughput(cid: str, ev: Evidence) -> str | None:
    """Read or write throughput per interval against the throttle's limit."""
    m = ev.measurement
    t = _times(m)
    key = next((k for k in IO_COUNTERS if k in m.series), None)
    if t is None or key is None or len(m.series[key]) != len(t):
        return None
    ios = key.endswith("_ios")
    scale, unit = (1.0, "IO/s") if ios else (1 / (1 << 20), "MiB/s")
    t, counter = active(t, m.series[key])
    if len(t) < 2:
        return None
    xs, ys = rates(t, counter, 0.5)
    ys = [y * scale for y in ys]
    limit = number_in(m.expected)
    refs = [Ref(limit * scale, f"limit {fmt(limit * scale)} {unit}")] if limit else []
    done = counter[-1] - counter[0]
    span = t[-1] - t[0]
    mean = done / span * scale if span > 0 else 0.0
    what = "reads" if key.startswith("read") else "writes"
    text = (f"{what.capitalize()} at {mean:.2f} {unit} on average over the {span:.1f} s the "
            f"counter grew"
            f" (each point: at least 0.5 s)")  # fmt: skip
    if limit:
        text += f"; the limit is {fmt(limit * scale)} {unit}"
    top = max(ys + [r.value for r in refs] + [0.0])
    svg = line_chart(cid, f"{what.capitalize()} throughput against the limit", text + ".",
                     [Line(f"{key} throughput", xs, ys, PALETTE[0])], y_label=f"throughput ({unit})",
                     refs=refs, y_max=top * 1.25 if top > 0 else 1.0)  # fmt: skip
    return figure(svg, text + ".")


def pids(cid: str, ev: Evidence) -> str | None:
    """pids.current as sampled while the workload forks, against pids.max."""
    m = ev.measurement
    t = _times(m)
    key = next((k for k in m.series if k != "t"), None)
    if t is None or key is None or len(m.series[key]) != len(t):
        return None
    ys = m.series[key]
    limit = number_in(m.extra.get("limit", m.expected))
    peak = max(ys)
    at = t[ys.index(peak)]
    refs = [Ref(limit, f"pids.max {fmt(limit)}")] if limit is not None else []
    text = f"{key} peaked at {fmt(peak)} tasks {at:.2f} s after the first sample"
    text += f" (limit {fmt(limit)})" if limit is not None else ""
    text += f", {fmt(ys[-1])} at the end; {len(ys)} samples over {t[-1]:.2f} s"
    failures = _sibling(ev, "fork failures")
    if failures is not None and number_in(failures.measured) is not None:
        text += f"; forks refused: {fmt(number_in(failures.measured) or 0)}"
    top = max([peak] + [r.value for r in refs])
    svg = line_chart(cid, "Tasks against the pids limit", text + ".",
                     [Line(key, t, ys, PALETTE[0], step=True)], y_label="tasks", refs=refs,
                     y_max=top * 1.2 + 1)  # fmt: skip
    return figure(svg, text + ".")


MEMORY_KEYS = ("memory.current", "memory.usage_in_bytes", "usage", "memory", "usage_bytes")


def memory_series(cid: str, ev: Evidence) -> str | None:
    """Memory usage over time up to the limit, with the moment of the OOM kill."""
    m = ev.measurement
    t = _times(m)
    key = next((k for k in MEMORY_KEYS if k in m.series), None)
    if t is None or key is None or len(m.series[key]) != len(t):
        return None
    mib = [v / (1 << 20) for v in m.series[key]]
    limit = number_in(m.extra.get("limit", m.expected))
    refs = [Ref(limit / (1 << 20), f"limit {limit / (1 << 20):.0f} MiB")] if limit else []
    marks = []
    oom_at = number_in(m.extra.get("oom_at_s"))
    text = f"{key} peaked at {max(mib):.1f} MiB over {t[-1]:.2f} s"
    if limit:
        text += f" (limit {limit / (1 << 20):.0f} MiB)"
    if oom_at is not None:
        raw_t = m.series["t"]
        oom_rel = oom_at - raw_t[0] if oom_at >= raw_t[0] else oom_at
        marks.append(Mark(oom_rel, f"OOM kill at {oom_rel:.2f} s"))
        text += f"; OOM kill at {oom_rel:.2f} s"
    top = max(mib + [r.value for r in refs])
    svg = line_chart(cid, "Memory usage against the limit", text + ".",
                     [Line(key, t, mib, PALETTE[0])], y_label="memory (MiB)", refs=refs,
                     marks=marks, y_max=top * 1.2)  # fmt: skip
    return figure(svg, text + ".")


def memory_peak(cid: str, ev: Evidence) -> str | None:
    """No usage series recorded: the peak against the limit, and whether the OOM killer ran."""
    m = ev.measurement
    if not str(m.name).startswith("peak usage"):
        return None
    peak = number_in(m.measured)
    limit = number_in(m.extra.get("limit", m.expected))
    if peak is None or limit is None:
        return None
    bars = [("peak usage", peak / (1 << 20), PALETTE[0])]
    written = number_in(m.extra.get("written"))
    if written:
        bars.append(("written through the cache", written / (1 << 20), PALETTE[2]))
    kills = _sibling(ev, "oom_kill")
    status = _sibling(ev, "exit status")
    text = f"Peak usage {peak / (1 << 20):.1f} MiB under a limit of {limit / (1 << 20):.0f} MiB"
    if written:
        text += f", {written / (1 << 20):.0f} MiB written"
    if kills is not None:
        text += f"; OOM kills: {kills.measured}"
    if status is not None:
        text += f"; the workload exited {status.measured}"
    if kills is not None and (number_in(kills.measured) or 0) > 0:
        text += " (the check records no usage series, so the moment of the kill is not drawn)"
    svg = bar_chart(cid, "Memory: peak usage against the limit", text + ".", bars,
                    x_label="memory (MiB)", refs=[Ref(limit / (1 << 20), "limit")])  # fmt: skip
    return figure(svg, text + ".")


def freezer_series(cid: str, ev: Evidence) -> str | None:
    """CPU time used over a pause and a resume: flat while frozen."""
    m = ev.measurement
    t = _times(m)
    key = next((k for k in m.series if k not in ("t", "frozen")), None)
    if t is None or key is None or len(m.series[key]) != len(t):
        return None
    ms = [(v - m.series[key][0]) / 1e6 for v in m.series[key]]
    spans = []
    frozen = m.series.get("frozen")
    if frozen and len(frozen) == len(t):
        start = None
        for x, f in zip(t, frozen, strict=True):
            if f and start is None:
                start = x
            elif not f and start is not None:
                spans.append(Span(start, x, "frozen"))
                start = None
        if start is not None:
            spans.append(Span(start, t[-1], "frozen"))
    text = f"CPU time used by the container over {t[-1]:.1f} s: {ms[-1]:.0f} ms"
    if spans:
        text += "; frozen " + ", ".join(f"{s.x0:.1f}-{s.x1:.1f} s" for s in spans)
    svg = line_chart(cid, "CPU time through pause and resume", text + ".",
                     [Line(key, t, ms, PALETTE[0])], y_label="CPU time used (ms)", spans=spans[:1])  # fmt: skip
    return figure(svg, text + ".")


def freezer_bars(cid: str, ev: Evidence) -> str | None:
    """No series: CPU used while paused against CPU used after resume."""
    paused = _sibling(ev, "cpu used while paused")
    resumed = _sibling(ev, "cpu used after resume")
    if paused is None or ev.measurement is not paused:
        return None
    bars = [("while paused (1 s)", (number_in(paused.measured) or 0.0) * 1000, PALETTE[1])]
    if resumed is not None and number_in(resumed.measured) is not None:
        bars.append(("after resume", (number_in(resumed.measured) or 0.0) * 1000, PALETTE[0]))
    text = "CPU time used: " + "; ".join(f"{label} {fmt(v)} ms" for label, v, _ in bars)
    text += " (a frozen container must use none)"
    svg = bar_chart(cid, "Freezer: CPU used while paused and after resume", text + ".", bars,
                    x_label="CPU time (ms)", refs=[Ref(1.0, "1 ms allowed while paused")])  # fmt: skip
    return figure(svg, text + ".")


def generic(cid: str, ev: Evidence) -> str | None:
    """Any other series: drawn as recorded, in the measurement's unit."""
    m = ev.measurement
    t = _times(m)
    names = [k for k in m.series if k != "t" and len(m.series[k]) >= 2]
    if not names:
        return None
    lines = []
    for i, k in enumerate(names):
        ys = m.series[k]
        xs = t if t is not None and len(t) == len(ys) else [float(j) for j in range(len(ys))]
        lines.append(Line(k, xs, ys, PALETTE[i % len(PALETTE)], DASHES[i % len(DASHES)]))
    lo = min(min(ln.ys) for ln in lines)
    text = f"{m.name}: " + "; ".join(
        f"{ln.label} from {fmt(ln.ys[0])} to {fmt(ln.ys[-1])} (max {fmt(max(ln.ys))})"
        for ln in lines
    )
    x_label = "time (s)" if t is not None else "sample"
    unit = f" ({m.unit})" if m.unit else ""
    svg = line_chart(cid, str(m.name), text + ".", lines, x_label=x_label, y_label=f"value{unit}",
                     y_min=min(0.0, lo))  # fmt: skip
    return figure(svg, text + ".")


# check name -> builders tried in order for each of its measurements
BUILDERS: dict[str, tuple[Any, ...]] = {
    "test_cpu_shares_split": (cpu_shares,),
    "test_cpu_quota": (cpu_rate,),
    "test_io_throttle": (throughput,),
    "test_pids_limit": (pids,),
    "test_memory_limit_oom": (memory_series, memory_peak),
    "test_page_cache_capped": (memory_series, memory_peak),
    "test_pause_resume": (freezer_series, freezer_bars),
}


def charts_for(check: str, measurements: Sequence[Any], cid: str) -> list[str]:
    """Every chart the check's measurements make: at most one per measurement."""
    out = []
    builders = BUILDERS.get(check, ())
    for i, m in enumerate(measurements):
        ev = Evidence(m, measurements, check)
        made = None
        try:
            for build in builders:
                made = build(f"{cid}-{i}", ev)
                if made:
                    break
            if made is None and m.series:
                made = generic(f"{cid}-{i}", ev)
        except (ArithmeticError, ValueError, TypeError, KeyError, IndexError) as e:
            # Data of a shape no builder expected (a newer suite, a broken counter): the values
            # are in the table above; the page must still render.
            made = f'<p class="meta">chart of {esc(m.name)} not drawn: {esc(type(e).__name__)}</p>'
        if made:
            out.append(made)
    return out
