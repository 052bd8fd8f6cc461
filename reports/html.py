"""The report as one self-contained HTML page: inline CSS, inline SVG sparklines, a few lines of
inline JS for filtering the grid; no network, no libraries. Pure: ``render(report, generated_at)``
returns the same string for the same report, so it can be compared byte for byte.

Every string that came from an input file goes through ``esc`` (failure messages quote container
output, which can be anything).
"""

from __future__ import annotations

import html
import json
from typing import Any

from reports.model import COUNT_KEYS, NO_RUNTIME, CheckResult, Measurement, Report, Row

CELL_TEXT = {
    "passed": "pass",
    "failed": "FAIL",
    "error": "ERROR",
    "runtime_error": "RUNTIME",
    "skipped": "skip",
    "xfailed": "xfail",
    "xpassed": "XPASS",
}
BYTE_UNITS = ("B", "B/s", "bytes", "bytes/s")
MAX_VALUE_CHARS = 300
PALETTE = ("#2a62b8", "#c0392b", "#1e8449", "#8e44ad", "#b9770e")

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{margin:0 0 .2em}h2{margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.4em 0}
th,td{border:1px solid #ddd;padding:2px 6px;text-align:left;vertical-align:top}
th{background:#f4f4f4}.num{text-align:right}
.meta{color:#666}.mono,code{font-family:ui-monospace,monospace;font-size:12px}
.verdict{padding:.6em 1em;margin:1em 0;font-size:1.2em;font-weight:bold;border-radius:4px}
.o-passed,.o-xfailed,.v-pass{background:#d8f0d8}
.o-failed,.o-xpassed,.o-error,.o-runtime_error,.v-fail{background:#f6c9c9}
.o-skipped,.v-incomplete{background:#f8ecc2}.o-absent{background:#eee;color:#999}
.grid td.c{text-align:center;font-weight:bold;white-space:nowrap}
.grid td.c a{color:inherit;text-decoration:none;display:block}
tr.legdiff th.r{background:#ffd27f}tr.rtdiff th.r{background:#fff0c8}
.grid th.r{font-weight:normal;white-space:nowrap}
.tag{font-size:11px;padding:0 4px;border-radius:3px;background:#ffd27f;margin-left:4px}
.check{border-top:1px solid #ccc;margin-top:1em}
.res{margin:.5em 0 .5em 1em;padding:.3em .6em;border-left:4px solid #ccc}
.res.o-passed{border-color:#4a4;background:none}.res.o-skipped{border-color:#cb4;background:none}
.res.o-failed,.res.o-error,.res.o-runtime_error,.res.o-xpassed{border-color:#c33;background:#fdf0f0}
.res summary{cursor:pointer;font-weight:bold}.msg{white-space:pre-wrap;font-family:ui-monospace,monospace;font-size:12px}
tr.bad td{background:#fdf0f0}
.spark{vertical-align:middle;background:#f8f8ff}
figure{display:inline-block;margin:.2em 1em .2em 0}figcaption{font-size:12px;color:#555}
"""

JS = """
function isoFilter(){
  var d=document.getElementById('only-legdiff').checked,b=document.getElementById('only-bad').checked;
  document.querySelectorAll('table.grid tbody tr').forEach(function(r){
    var show=(!d||r.dataset.legdiff==='1')&&(!b||r.dataset.bad==='1');
    r.style.display=show?'':'none';});
}
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


# --- values ----------------------------------------------------------------------------------------


def fmt_number(v: float) -> str:
    if isinstance(v, int):
        return str(v)
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.0f}"


def human_bytes(v: float) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(v) >= size:
            return f"{v / size:.2f} {unit}"
    return f"{fmt_number(v)} B"


def fmt_value(v: Any, unit: str = "") -> str:
    """A value as readable text (not yet escaped)."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int | float):
        text = fmt_number(v)
        if unit in BYTE_UNITS and abs(v) >= 1024:
            text += f" ({human_bytes(v)}{'/s' if unit.endswith('/s') else ''})"
        return text
    text = v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)
    return text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS] + "..."


def fmt_seconds(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f} s" if v >= 10 else f"{v:.2f} s"


def humanise(row: str) -> str:
    """``test_cpu_shares_split[cpu-shares-2-to-1]`` -> ``cpu shares split (cpu-shares-2-to-1)``."""
    base, _, params = row.partition("[")
    text = base.removeprefix("test_").replace("_", " ")
    return f"{text} ({params.rstrip(']')})" if params else text


# --- sparklines ------------------------------------------------------------------------------------


def sparkline(
    lines: list[list[float]], xs: list[float] | None = None, width: int = 220, height: int = 40
) -> str:
    """An inline SVG with one polyline per series, all on one scale, so series recorded together
    (two containers' CPU time under contention) compare at a glance. ``xs`` is shared (the sample
    times); without it, or for a series of another length, the sample index is the x axis."""
    lines = [ys for ys in lines if len(ys) >= 2]
    if not lines:
        return ""

    def x_of(ys: list[float]) -> list[float]:
        return xs if xs is not None and len(xs) == len(ys) else [float(i) for i in range(len(ys))]

    all_x = [x for ys in lines for x in x_of(ys)]
    all_y = [y for ys in lines for y in ys]
    x0, x1, y0, y1 = min(all_x), max(all_x), min(all_y), max(all_y)
    pad = 2
    sx = (width - 2 * pad) / (x1 - x0) if x1 > x0 else 0.0
    sy = (height - 2 * pad) / (y1 - y0) if y1 > y0 else 0.0
    polys = []
    for i, ys in enumerate(lines):
        pts = " ".join(
            f"{pad + (x - x0) * sx:.1f},{(height - pad - (y - y0) * sy) if sy else height / 2:.1f}"
            for x, y in zip(x_of(ys), ys, strict=True)
        )
        polys.append(
            f'<polyline fill="none" stroke="{PALETTE[i % len(PALETTE)]}" stroke-width="1.5" '
            f'points="{pts}"/>'
        )
    return (
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img">{"".join(polys)}</svg>'
    )


def rate(slope: float, key: str, unit: str) -> str:
    """A counter's slope in the unit a limit is set in: CPU time in CPUs, bytes in MiB/s."""
    if unit == "ns" or key.endswith("_ns"):
        return f"{slope / 1e9:.3f} CPUs"
    if unit in BYTE_UNITS:
        return f"{human_bytes(slope)}/s"
    return f"{fmt_value(slope)}/s"


def series_figure(m: Measurement) -> str:
    """The measurement's series in one sparkline, with a legend line per series: first and last
    value and the slope, which for the cumulative counters the checks sample (CPU ns, bytes, IOs)
    is the rate the limit allowed."""
    t = m.series.get("t")
    names = [k for k, ys in m.series.items() if k != "t" and len(ys) >= 2]
    if not names:
        return ""
    legend = []
    for i, key in enumerate(names):
        ys = m.series[key]
        text = f"{key}: {fmt_number(ys[0])} to {fmt_number(ys[-1])}, {len(ys)} samples"
        if t is not None and len(t) == len(ys) and t[-1] > t[0]:
            slope = (ys[-1] - ys[0]) / (t[-1] - t[0])
            text += f" over {t[-1] - t[0]:.2f} s, slope {rate(slope, key, m.unit)}"
        color = PALETTE[i % len(PALETTE)]
        legend.append(f'<span style="color:{color}">&#9632;</span> {esc(text)}')
    svg = sparkline([m.series[k] for k in names], t)
    return f"<figure>{svg}<figcaption>{'<br>'.join(legend)}</figcaption></figure>"


# --- verdicts --------------------------------------------------------------------------------------


def column_verdict(counts: dict[str, int]) -> str:
    if counts["failed"] or counts["error"]:
        return "fail"
    return "pass" if counts["passed"] else "incomplete"


def overall(report: Report) -> tuple[str, str]:
    """(css class, one sentence): does isolation hold for everything in the report?"""
    cols = report.columns()
    bad = [c for c in cols if column_verdict(report.counts(*c)) == "fail"]
    leaky = [leg.name for leg in report.legs if leg.leaks]
    errored = [leg.name for leg in report.legs if leg.status == "error"]
    if bad or leaky:
        parts = []
        if bad:
            parts.append("failures in " + ", ".join(f"{leg} / {rt}" for leg, rt in bad))
        if leaky:
            parts.append("left-behind resources in " + ", ".join(leaky))
        if errored:
            parts.append("legs that did not finish: " + ", ".join(errored))
        return "v-fail", "Isolation NOT shown to hold: " + "; ".join(parts)
    if errored:
        return "v-incomplete", "Incomplete: legs that did not finish: " + ", ".join(errored)
    if not cols:
        return "v-incomplete", "Incomplete: no check results in the input"
    total = {k: sum(report.counts(*c)[k] for c in cols) for k in COUNT_KEYS}
    skipped = f", {total['skipped']} skipped (see reasons)" if total["skipped"] else ""
    return "v-pass", (
        f"Isolation holds: {total['passed']} checks passed in {len(cols)} "
        f"leg/runtime combinations{skipped}"
    )


def row_flags(report: Report, row: Row) -> tuple[bool, bool, bool]:
    """(differs between legs for one runtime, differs between runtimes in one leg, not all passed).

    A check missing from a column that ran others (a leg that died half way) counts as a
    difference. Rows of runtime-less payloads (the leg self-check) are compared only among
    themselves, so they do not mark every runtime column as missing them.
    """
    present = [r for r in report.results if r.key == row]
    selfcheck = all(r.runtime == NO_RUNTIME for r in present)
    by_runtime: dict[str, set[str]] = {}
    by_leg: dict[str, set[str]] = {}
    bad = False
    for leg, rt in report.columns():
        if (rt == NO_RUNTIME) != selfcheck:
            continue
        r = report.cell(leg, rt, row)
        outcome = r.outcome if r is not None else "absent"
        bad = bad or r is None or r.bucket != "passed"
        by_runtime.setdefault(rt, set()).add(outcome)
        by_leg.setdefault(leg, set()).add(outcome)
    return (
        any(len(s) > 1 for s in by_runtime.values()),
        any(len(s) > 1 for s in by_leg.values()),
        bad,
    )


# --- sections --------------------------------------------------------------------------------------


def _table(head: list[str], rows: list[list[str]], cls: str = "") -> str:
    """Cells are HTML already."""
    c = f' class="{cls}"' if cls else ""
    th = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{x}</td>" for x in r) + "</tr>" for r in rows)
    return f"<table{c}><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def summary_section(report: Report) -> str:
    rows = []
    for leg_name, rt in report.columns():
        leg = report.leg(leg_name)
        c = report.counts(leg_name, rt)
        v = column_verdict(c)
        version = report.runtime_versions.get(rt, "")
        rows.append(
            [
                esc(leg_name),
                esc(leg.kernel if leg else "?"),
                esc(leg.cgroup_mode if leg else "?"),
                esc(leg.accel or "-") if leg else "-",
                esc(rt if rt != NO_RUNTIME else "(no runtime: self-check)")
                + (f'<br><span class="meta">{esc(version)}</span>' if version else ""),
                *(f'<span class="num">{c[k]}</span>' for k in COUNT_KEYS),
                f'<span class="verdict-cell">{v}</span>',
            ]
        )
    with_results = {leg for leg, _ in report.columns()}
    for leg in report.legs:
        if leg.name not in with_results:  # a leg that never got to run a check
            rows.append(
                [esc(leg.name), esc(leg.kernel), esc(leg.cgroup_mode), esc(leg.accel or "-"),
                 "-", "0", "0", "0", "0",
                 esc(f"{leg.status or 'no results'}: {leg.reason or 'no check results'}")]
            )  # fmt: skip
    table = _table(
        ["leg", "kernel", "cgroup", "accel", "runtime", *COUNT_KEYS, "verdict"], rows, "summary"
    )
    return f"<h2>Summary</h2>{table}{differences(report)}"


def differences(report: Report) -> str:
    """The checks whose outcome for one runtime is not the same on every leg, linked: with a
    kernel matrix, these are the findings."""
    links = [
        f'<a href="#{_anchor(i)}">{esc(mod)}: {esc(name)}</a>'
        for i, (mod, name) in enumerate(report.rows())
        if row_flags(report, (mod, name))[0]
    ]
    if not links:
        return ""
    return f'<p class="diffs"><b>Differ between legs ({len(links)}):</b> {", ".join(links)}</p>'


def legs_section(report: Report) -> str:
    rows = []
    for leg in report.legs:
        if leg.leaks is None:
            leak = "-"
        elif leg.leaks:
            leak = "LEFT BEHIND: " + esc("; ".join(leg.leaks))
        else:
            leak = "clean"
        status = esc(leg.status or "-") + (f": {esc(leg.reason)}" if leg.reason else "")
        console = ""
        if leg.console_log and leg.status != "passed":
            console = f"<code>{esc(leg.console_log)}</code>"
        facts = "<br>".join(
            f"{esc(k)}: <code>{esc(fmt_value(v))}</code>" for k, v in sorted(leg.facts.items())
        )
        rows.append(
            [
                esc(leg.name), esc(leg.kernel), esc(leg.cgroup_mode), esc(leg.accel or "-"),
                status, fmt_seconds(leg.wall_s), fmt_seconds(leg.boot_s),
                esc(", ".join(leg.runtimes) or "-"), leak, console, facts,
                f'<code>{esc(leg.source)}</code>',
            ]
        )  # fmt: skip
    head = ["leg", "kernel", "cgroup", "accel", "status", "wall", "boot", "runtimes",
            "leak check", "console log", "facts", "source"]  # fmt: skip
    return f"<h2>Legs</h2>{_table(head, rows, 'legs')}"


def hosts_section(report: Report) -> str:
    parts = ["<h2>Hosts</h2>"]
    for source, facts in report.hosts:
        rows = [[esc(k), f"<code>{esc(fmt_value(v))}</code>"] for k, v in sorted(facts.items())]
        parts.append(f"<p>from <code>{esc(source)}</code></p>{_table(['fact', 'value'], rows)}")
    if report.runtime_versions:
        rows = [[esc(k), esc(v)] for k, v in sorted(report.runtime_versions.items())]
        parts.append(_table(["runtime", "version"], rows))
    return "".join(parts)


def _anchor(i: int) -> str:
    return f"check-{i}"


def grid_section(report: Report) -> str:
    cols = report.columns()
    head = ["<th>check</th>"]
    for leg_name, rt in cols:
        leg = report.leg(leg_name)
        sub = f"{leg.kernel} {leg.cgroup_mode}" if leg else ""
        head.append(
            f'<th>{esc(leg_name)}<br>{esc(rt)}<br><span class="meta">{esc(sub)}</span></th>'
        )
    body = []
    module = None
    for i, row in enumerate(report.rows()):
        mod, name = row
        if mod != module:
            module = mod
            body.append(f'<tr class="mod"><th colspan="{len(cols) + 1}">{esc(mod)}</th></tr>')
        legdiff, rtdiff, bad = row_flags(report, row)
        cls = "legdiff" if legdiff else "rtdiff" if rtdiff else ""
        tag = '<span class="tag">differs between legs</span>' if legdiff else ""
        cells = [f'<th class="r"><a href="#{_anchor(i)}">{esc(name)}</a>{tag}</th>']
        for leg_name, rt in cols:
            r = report.cell(leg_name, rt, row)
            if r is None:
                cells.append('<td class="c o-absent">-</td>')
                continue
            title = f' title="{esc(r.message)}"' if r.message else ""
            cells.append(
                f'<td class="c o-{esc(r.outcome)}"{title}><a href="#{_anchor(i)}">'
                f"{esc(CELL_TEXT.get(r.outcome, r.outcome))}</a></td>"
            )
        body.append(
            f'<tr class="{cls}" data-legdiff="{int(legdiff)}" data-bad="{int(bad)}">'
            + "".join(cells)
            + "</tr>"
        )
    filters = (
        '<p><label><input type="checkbox" id="only-legdiff" onchange="isoFilter()"> only checks '
        'whose outcome differs between legs</label> <label><input type="checkbox" id="only-bad" '
        'onchange="isoFilter()"> only checks not passed everywhere</label></p>'
    )
    return (
        f'<h2>Matrix</h2>{filters}<table class="grid"><thead><tr>{"".join(head)}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def measurement_table(ms: tuple[Measurement, ...]) -> str:
    rows = []
    figures = []
    for m in ms:
        extra = "<br>".join(f"{esc(k)}: {esc(fmt_value(v))}" for k, v in m.extra.items())
        ok = {True: "yes", False: "NO", None: "-"}[m.ok]
        cls = ' class="bad"' if m.ok is False else ""
        rows.append(
            f"<tr{cls}><td>{esc(m.name)}</td><td>{esc(fmt_value(m.expected, m.unit))}</td>"
            f"<td>{esc(fmt_value(m.measured, m.unit))}</td><td>{esc(fmt_value(m.tolerance))}</td>"
            f"<td>{esc(m.unit)}</td><td>{ok}</td><td>{extra}</td></tr>"
        )
        if m.series:
            figures.append(series_figure(m))
    head = "".join(
        f"<th>{h}</th>"
        for h in ("measurement", "expected", "measured", "tolerance", "unit", "ok", "more")
    )
    table = (
        f'<table class="ms"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )
    return table + "".join(figures)


def result_block(r: CheckResult) -> str:
    """One column's result; open when it did not pass, so failures are what the eye meets."""
    title = f"{r.leg} / {r.runtime}: {r.outcome} ({fmt_seconds(r.duration_s)})"
    if r.message:
        title += f" - {r.message.splitlines()[0][:160]}"
    is_open = " open" if r.bucket in ("failed", "error") else ""
    parts = [f'<details class="res o-{esc(r.outcome)}"{is_open}><summary>{esc(title)}</summary>']
    parts.append(f'<div class="meta mono">{esc(r.test_id)}</div>')
    if r.message:
        label = "reason" if r.outcome == "skipped" else "message"
        parts.append(f'<div class="msg">{label}: {esc(r.message)}</div>')
    if r.measurements:
        parts.append(measurement_table(r.measurements))
    parts.append("</details>")
    return "".join(parts)


def checks_section(report: Report) -> str:
    parts = ["<h2>Checks</h2>"]
    for i, row in enumerate(report.rows()):
        mod, name = row
        results = [r for c in report.columns() if (r := report.cell(c[0], c[1], row)) is not None]
        doc = next((r.doc for r in results if r.doc), None)
        parts.append(
            f'<section class="check" id="{_anchor(i)}"><h3>{esc(mod)}: {esc(humanise(name))}</h3>'
            f'<div class="meta mono">{esc(name)}</div>'
        )
        if doc:
            parts.append(f"<p>property: {esc(doc)}</p>")
        parts += [result_block(r) for r in results]
        parts.append("</section>")
    return "".join(parts)


def render(report: Report, generated_at: str) -> str:
    cls, sentence = overall(report)
    sources = ", ".join(f"<code>{esc(s)}</code>" for s in report.sources)
    return "".join(
        [
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
            "<title>isoproof isolation report</title>",
            f"<style>{CSS}</style></head><body>",
            "<h1>isoproof isolation report</h1>",
            f'<p class="meta">generated {esc(generated_at)} from {sources}</p>',
            f'<div class="verdict {cls}">{esc(sentence)}</div>',
            summary_section(report),
            grid_section(report),
            legs_section(report),
            hosts_section(report),
            checks_section(report),
            f"<script>{JS}</script></body></html>\n",
        ]
    )
