"""The report as one self-contained HTML page: inline CSS, inline SVG charts, a few lines of
optional inline JS (grid filters, open everything before printing); no network, no libraries.
Pure: ``render(report, generated_at, comparison)`` returns the same string for the same input, so
it can be compared byte for byte.

The page, top to bottom: the verdict; what changed since a baseline (with ``--baseline``); the
isolation properties x leg/runtime (each cell one click from its evidence); the counts per column;
the check x column grid; the evidence (measurements, charts, failure evidence) grouped by
property; the legs and hosts. Everything works without JavaScript and from the keyboard; every
colour pair meets WCAG AA contrast (``CONTRAST_PAIRS``, checked by the unit tests).

Every string that came from an input file goes through ``esc`` (failure messages quote container
output, which can be anything).
"""

from __future__ import annotations

import html
import json
import re
from typing import Any

from reports import charts
from reports.compare import Comparison
from reports.model import (
    COUNT_KEYS,
    NO_RUNTIME,
    CheckResult,
    Measurement,
    Report,
    Row,
    is_deviation,
)
from reports.properties import property_of
from reports.verdicts import Cell, Verdicts, host_state

CELL_TEXT = {
    "passed": "pass",
    "failed": "FAIL",
    "error": "ERROR",
    "runtime_error": "RUNTIME",
    "skipped": "skip",
    "xfailed": "deviates",
    "xpassed": "XPASS",
}
VERDICT_TEXT = {
    "pass": "holds",
    "fail": "FAILS",
    "deviates": "deviates as declared",
    "inconclusive": "inconclusive",
    "skip": "skipped",
    "absent": "not tested",
}
CHANGE_TEXT = {"regressed": "regressed", "fixed": "fixed", "new": "new", "gone": "gone"}
BYTE_UNITS = ("B", "B/s", "bytes", "bytes/s")
MAX_VALUE_CHARS = 300
MAX_EVIDENCE_CHARS = 20000

# Colours, named once: the CSS is made from these, and the unit tests compute the contrast of
# every pair in CONTRAST_PAIRS (text 4.5:1, WCAG AA; focus ring and chart lines 3:1).
TEXT = "#1a1a1a"
MUTED = "#595959"
LINK = "#0645ad"
WHITE = "#ffffff"
BG_HEAD = "#f4f4f4"
BG_PASS = "#d8f0d8"
BG_FAIL = "#f6c9c9"
BG_SKIP = "#f8ecc2"
BG_ABSENT = "#eeeeee"
BG_DEVIATES = "#dde6fa"
BG_TAG = "#ffd27f"
BG_RTDIFF = "#fff0c8"
BG_BAD_ROW = "#fdf0f0"
BG_REGRESSED = "#8b0000"
BG_FIXED = "#1b5e20"
BG_NEW = "#1f4e99"
BG_GONE = MUTED
FOCUS = "#1f5fbf"
BORDER_PASS = "#2e7d32"
BORDER_FAIL = "#c62828"
BORDER_SKIP = "#8d6e00"
CONTRAST_PAIRS: tuple[tuple[str, str, str, float], ...] = (
    ("body text", TEXT, WHITE, 4.5),
    ("meta text", MUTED, WHITE, 4.5),
    ("meta text on a header", MUTED, BG_HEAD, 4.5),
    ("link", LINK, WHITE, 4.5),
    ("header text", TEXT, BG_HEAD, 4.5),
    ("pass cell", TEXT, BG_PASS, 4.5),
    ("fail cell", TEXT, BG_FAIL, 4.5),
    ("skip cell", TEXT, BG_SKIP, 4.5),
    ("absent cell", MUTED, BG_ABSENT, 4.5),
    ("deviates cell", TEXT, BG_DEVIATES, 4.5),
    ("link in a pass cell", LINK, BG_PASS, 4.5),
    ("link in a fail cell", LINK, BG_FAIL, 4.5),
    ("link in a skip cell", LINK, BG_SKIP, 4.5),
    ("link in a deviates cell", LINK, BG_DEVIATES, 4.5),
    ("link in a leg-difference row", LINK, BG_TAG, 4.5),
    ("link in a runtime-difference row", LINK, BG_RTDIFF, 4.5),
    ("tag", TEXT, BG_TAG, 4.5),
    ("failed result", TEXT, BG_BAD_ROW, 4.5),
    ("regressed badge", WHITE, BG_REGRESSED, 4.5),
    ("fixed badge", WHITE, BG_FIXED, 4.5),
    ("new badge", WHITE, BG_NEW, 4.5),
    ("gone badge", WHITE, BG_GONE, 4.5),
    ("focus ring", FOCUS, WHITE, 3.0),
    ("pass border", BORDER_PASS, WHITE, 3.0),
    ("fail border", BORDER_FAIL, WHITE, 3.0),
    ("skip border", BORDER_SKIP, WHITE, 3.0),
    ("chart tick labels", charts.MUTED, charts.BACKGROUND, 4.5),
    ("chart text", charts.INK, charts.BACKGROUND, 4.5),
    *((f"chart series {c}", c, charts.BACKGROUND, 4.5) for c in charts.PALETTE),
)

CSS = f"""
body{{font:14px/1.45 system-ui,sans-serif;margin:1.5em;color:{TEXT};background:{WHITE}}}
a{{color:{LINK}}}
:focus-visible{{outline:3px solid {FOCUS};outline-offset:2px}}
.skip{{position:absolute;left:-999px}}.skip:focus{{left:1em;top:1em;background:{WHITE};padding:.3em}}
h1{{margin:0 0 .2em}}h2{{margin-top:1.6em;border-bottom:1px solid #ccc}}
nav a{{margin-right:1em}}
table{{border-collapse:collapse;margin:.4em 0}}
th,td{{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}}
th{{background:{BG_HEAD}}}.num{{text-align:right}}.holds{{min-width:8em;font-size:13px}}
.meta{{color:{MUTED}}}.mono,code{{font-family:ui-monospace,monospace;font-size:12px}}
.verdict{{padding:.6em 1em;margin:1em 0;font-size:1.2em;font-weight:bold;border-radius:4px}}
.o-passed,.v-pass,.p-pass{{background:{BG_PASS}}}
.o-xfailed,.p-deviates{{background:{BG_DEVIATES}}}
.o-failed,.o-xpassed,.o-error,.o-runtime_error,.v-fail,.p-fail{{background:{BG_FAIL}}}
.o-skipped,.v-incomplete,.p-skip,.p-inconclusive{{background:{BG_SKIP}}}
.o-absent,.p-absent{{background:{BG_ABSENT};color:{MUTED}}}
.grid td.c,.props td.c{{text-align:center;white-space:nowrap}}
.grid td.c{{font-weight:bold}}.props td.c a{{font-weight:bold}}
.grid td.c a,.props td.c a{{color:{TEXT};text-decoration:none;display:block}}
.grid td.c a:hover,.props td.c a:hover{{text-decoration:underline}}
tr.legdiff th.r{{background:{BG_TAG}}}tr.rtdiff th.r{{background:{BG_RTDIFF}}}
.grid th.r{{font-weight:normal;white-space:nowrap}}
.props th.r{{font-weight:normal;min-width:16em}}.props th.r b{{font-weight:bold}}
.tag{{font-size:11px;padding:0 4px;border-radius:3px;background:{BG_TAG};margin-left:4px}}
.chg{{font-size:11px;padding:0 4px;border-radius:3px;color:{WHITE};margin-left:3px;font-weight:bold;white-space:nowrap}}
.chg-regressed{{background:{BG_REGRESSED}}}.chg-fixed{{background:{BG_FIXED}}}
.chg-new{{background:{BG_NEW}}}.chg-gone{{background:{BG_GONE}}}
.check{{border-top:1px solid #ccc;margin-top:1em}}
.res{{margin:.5em 0 .5em 1em;padding:.3em .6em;border-left:4px solid #ccc;background:none}}
.res.o-passed,.res.o-xfailed{{border-color:{BORDER_PASS};background:none}}
.res.o-skipped{{border-color:{BORDER_SKIP};background:none}}
.res.o-failed,.res.o-error,.res.o-runtime_error,.res.o-xpassed{{border-color:{BORDER_FAIL};background:{BG_BAD_ROW}}}
.res summary{{cursor:pointer;font-weight:bold}}
.msg,pre{{white-space:pre-wrap;font-family:ui-monospace,monospace;font-size:12px;margin:.2em 0}}
tr.bad td{{background:{BG_BAD_ROW}}}
figure.chart{{margin:.6em 0 1em;max-width:100%}}
figure.chart figcaption{{font-size:12px;max-width:640px}}
svg.chart{{max-width:100%;height:auto;display:block}}
svg.chart .ct{{font:bold 13px system-ui,sans-serif;fill:{charts.INK}}}
svg.chart .tk{{font:11px system-ui,sans-serif;fill:{charts.MUTED}}}
svg.chart .al,svg.chart .lg{{font:11px system-ui,sans-serif;fill:{charts.INK}}}
svg.chart .rl{{font:bold 11px system-ui,sans-serif;paint-order:stroke;stroke:{WHITE};stroke-width:3px}}
.filters[hidden]{{display:none}}
@media print{{
  nav,.filters,.skip{{display:none}}
  details::details-content{{content-visibility:visible;display:block}}
  section.check,figure.chart{{break-inside:avoid}}
  body{{margin:0;font-size:11px}}
}}
"""

# Optional: without JS the page shows everything and the filter boxes stay hidden.
JS = """
function isoFilter(){
  var d=document.getElementById('only-legdiff').checked,b=document.getElementById('only-bad').checked;
  document.querySelectorAll('table.grid tbody tr').forEach(function(r){
    if(!r.dataset.bad)return;
    var show=(!d||r.dataset.legdiff==='1')&&(!b||r.dataset.bad==='1');
    r.style.display=show?'':'none';});
}
document.querySelectorAll('.filters').forEach(function(f){f.hidden=false;});
window.addEventListener('beforeprint',function(){
  document.querySelectorAll('details').forEach(function(d){d.open=true;});});
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


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
    changed = [leg.name for leg in report.legs
               if not leg.leaks and host_state(leg)[0] == "fail"]  # fmt: skip
    errored = [leg.name for leg in report.legs if leg.status == "error"]
    if bad or leaky or changed:
        parts = []
        if bad:
            parts.append("failures in " + ", ".join(f"{leg} / {rt}" for leg, rt in bad))
        if leaky:
            parts.append("left-behind resources in " + ", ".join(leaky))
        if changed:
            parts.append("host state changed in " + ", ".join(changed))
        if errored:
            parts.append("legs that did not finish: " + ", ".join(errored))
        return "v-fail", "Isolation NOT shown to hold: " + "; ".join(parts)
    if errored:
        return "v-incomplete", "Incomplete: legs that did not finish: " + ", ".join(errored)
    if not cols:
        return "v-incomplete", "Incomplete: no check results in the input"
    total = {k: sum(report.counts(*c)[k] for c in cols) for k in COUNT_KEYS}
    skipped = f", {total['skipped']} skipped (see reasons)" if total["skipped"] else ""
    deviating = sum(1 for r in report.results if is_deviation(r.outcome))
    if deviating:
        skipped += f", {deviating} deviate as declared"
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


class Page:
    """What every section needs: the report, its verdicts, anchors, and the comparison."""

    def __init__(self, report: Report, comparison: Comparison | None) -> None:
        self.report = report
        self.comparison = comparison
        self.columns = report.columns()
        self.rows = report.rows()
        self.row_index = {row: i for i, row in enumerate(self.rows)}
        self.col_index = {col: j for j, col in enumerate(self.columns)}
        self.verdicts = Verdicts(report)
        ran = {leg for leg, _ in self.columns}
        self.dead_legs = [leg for leg in report.legs if leg.name not in ran]

    def evidence_anchor(self, r: CheckResult) -> str:
        return f"ev-{self.row_index[r.key]}-{self.col_index[(r.leg, r.runtime)]}"

    def check_change(self, r: CheckResult) -> str:
        if self.comparison is None:
            return ""
        return change_badge(self.comparison.check_kind(r.leg, r.runtime, r.key))


def change_badge(kind: str | None) -> str:
    if kind not in CHANGE_TEXT:
        return ""
    return f'<span class="chg chg-{kind}">{CHANGE_TEXT[kind]}</span>'


def comparison_section(page: Page) -> str:
    c = page.comparison
    if c is None:
        return ""
    checks, props = c.counts("checks"), c.counts("properties")

    def line(counts: dict[str, int]) -> str:
        return ", ".join(f"{counts[k]} {k}" for k in ("regressed", "fixed", "new", "gone",
                                                         "unchanged"))  # fmt: skip

    cls = "v-fail" if c.regressed else "v-pass"
    head = "REGRESSED since the baseline" if c.regressed else "No regression since the baseline"
    parts = [
        f'<section id="changes" aria-labelledby="changes-h"><h2 id="changes-h">Since the '
        f"baseline</h2>"
        f'<div class="verdict {cls}">{head}: properties {line(props)}; checks {line(checks)}</div>'
        f'<p class="meta">baseline: <code>{esc(c.baseline)}</code></p>'
    ]
    items = []
    for (prop, leg, rt), (kind, before, after) in c.properties.items():
        if kind in ("regressed", "fixed"):
            p = next((x for x in page.verdicts.properties if x.id == prop), None)
            title = p.title if p else prop
            items.append(f"<li>{change_badge(kind)} <a href=\"#prop-{esc(prop)}\">{esc(title)}"
                         f"</a> on {esc(leg)} / {esc(rt)}: {esc(before)} &rarr; {esc(after)}</li>")  # fmt: skip
    for (leg, rt, row), (kind, before, after) in c.checks.items():
        if kind in ("regressed", "fixed"):
            r = page.report.cell(leg, rt, row)
            target = f"#{page.evidence_anchor(r)}" if r is not None else "#matrix"
            items.append(f'<li>{change_badge(kind)} <a href="{target}">{esc(row[0])}: '
                         f"{esc(row[1])}</a> on {esc(leg)} / {esc(rt)}: {esc(before)} &rarr; "
                         f"{esc(after)}</li>")  # fmt: skip
    if items:
        parts.append(f"<ul>{''.join(items)}</ul>")
    parts.append("</section>")
    return "".join(parts)


def grouped_head(page: Page, first: tuple[str, ...], dead_legs: bool) -> str:
    """Two header rows: each leg once over its runtimes (kernel and cgroup mode with it), then the
    runtimes; the ``first`` headers and a leg with no results span both rows."""
    top = [f'<th scope="col" rowspan="2">{esc(h)}</th>' for h in first]
    groups: list[list[Any]] = []
    for name, _ in page.columns:
        if groups and groups[-1][0] == name:
            groups[-1][1] += 1
        else:
            groups.append([name, 1])
    for leg_name, n in groups:
        info = page.report.leg(leg_name)
        sub = f"{info.kernel} {info.cgroup_mode}" if info else ""
        top.append(f'<th scope="colgroup" colspan="{n}">{esc(leg_name)}<br>'
                   f'<span class="meta">{esc(sub)}</span></th>')  # fmt: skip
    top += [f'<th scope="col" rowspan="2">{esc(leg.name)}<br><span class="meta">no results</span>'
            "</th>" for leg in (page.dead_legs if dead_legs else [])]  # fmt: skip
    runtimes = [f'<th scope="col">{esc(rt if rt != NO_RUNTIME else "self-check")}</th>'
                for _, rt in page.columns]  # fmt: skip
    return f"<thead><tr>{''.join(top)}</tr><tr>{''.join(runtimes)}</tr></thead>"


def _prop_cell(page: Page, prop: str, leg: str, rt: str) -> str:
    cell: Cell = page.verdicts.cell(prop, leg, rt)
    text = VERDICT_TEXT[cell.verdict]
    tally = cell.tally()
    label = f"{text} {tally}" if tally and cell.verdict in ("pass", "fail", "deviates") else text
    worst = cell.worst
    if worst is not None:
        href = f"#{page.evidence_anchor(worst)}"
        titles = "; ".join(f"{humanise(c.row)}: {c.outcome}" for c in cell.checks)
    elif prop == "host" and cell.verdict != "absent":
        href, titles = "#legs", cell.note or "nothing left behind"
    else:
        href, titles = "", "no check of this property ran here"
    badge = ""
    if page.comparison is not None:
        badge = change_badge(page.comparison.property_kind(prop, leg, rt))
    inner = f'<a href="{href}" title="{esc(titles)}">{esc(label)}</a>' if href else esc(label)
    return f'<td class="c p-{cell.verdict}">{inner}{badge}</td>'


def properties_section(page: Page) -> str:
    """Every isolation property x leg/runtime: the page's answer, each cell linking to the
    evidence of its worst check there."""
    cols = page.columns
    body = []
    for prop in page.verdicts.properties:
        ok, judged = page.verdicts.holds(prop.id)
        holds = f"{ok} of {judged}" if judged else "-"
        row = page.verdicts.row(prop.id)
        failing = [f"{leg} / {rt}" for (leg, rt), cell in zip(cols, row, strict=True)
                   if cell.verdict == "fail"]  # fmt: skip
        if failing:
            more = f" and {len(failing) - 3} more" if len(failing) > 3 else ""
            holds += f'<br><span class="meta">fails on {esc(", ".join(failing[:3]))}{more}</span>'
        cells = [_prop_cell(page, prop.id, leg, rt) for leg, rt in cols]
        cells += [f'<td class="c p-absent"><a href="#legs" title="{esc(leg.reason or "")}">'
                  f"not run</a></td>" for leg in page.dead_legs]  # fmt: skip
        body.append(
            f'<tr><th scope="row" class="r" id="prop-{esc(prop.id)}"><b>{esc(prop.title)}</b>'
            f'<br><span class="meta">{esc(prop.what)}</span></th><td class="holds">{holds}</td>'
            + "".join(cells)
            + "</tr>"
        )
    legend = (
        '<p class="meta">Each cell is the worst of the property\'s checks in that leg and runtime '
        "(holds: all passed or skipped; FAILS: one failed or errored; deviates as declared: a "
        "known deviation of that runtime; not tested: no check of it ran there) and links to "
        "that check's evidence. The count is checks passed of those run.</p>"
    )
    return (
        '<section id="properties" aria-labelledby="properties-h"><h2 id="properties-h">'
        f'Isolation properties</h2>{legend}<table class="props">{grouped_head(page, ("property", "holds on"), True)}'
        f"<tbody>{''.join(body)}</tbody></table></section>"
    )


# --- sections --------------------------------------------------------------------------------------


def _table(head: list[str], rows: list[list[str]], cls: str = "") -> str:
    """Cells are HTML already."""
    c = f' class="{cls}"' if cls else ""
    th = "".join(f'<th scope="col">{h}</th>' for h in head)
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
    return (
        f'<section id="summary" aria-labelledby="summary-h"><h2 id="summary-h">Counts per leg and '
        f"runtime</h2>{table}{differences(report)}</section>"
    )


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
        ) + evidence_blocks(leg.extras)
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
    return (
        f'<section id="legs" aria-labelledby="legs-h"><h2 id="legs-h">Legs</h2>'
        f"{_table(head, rows, 'legs')}</section>"
    )


def hosts_section(report: Report) -> str:
    parts = ['<section id="hosts" aria-labelledby="hosts-h"><h2 id="hosts-h">Hosts</h2>']
    for source, facts in report.hosts:
        rows = [[esc(k), f"<code>{esc(fmt_value(v))}</code>"] for k, v in sorted(facts.items())]
        parts.append(f"<p>from <code>{esc(source)}</code></p>{_table(['fact', 'value'], rows)}")
    if report.runtime_versions:
        rows = [[esc(k), esc(v)] for k, v in sorted(report.runtime_versions.items())]
        parts.append(_table(["runtime", "version"], rows))
    parts.append("</section>")
    return "".join(parts)


def _anchor(i: int) -> str:
    return f"check-{i}"


def grid_section(page: Page) -> str:
    report, cols = page.report, page.columns
    body = []
    module = None
    for i, row in enumerate(page.rows):
        mod, name = row
        if mod != module:
            module = mod
            body.append(f'<tr class="mod"><th colspan="{len(cols) + 1}">{esc(mod)}</th></tr>')
        legdiff, rtdiff, bad = row_flags(report, row)
        cls = "legdiff" if legdiff else "rtdiff" if rtdiff else ""
        tag = '<span class="tag">differs between legs</span>' if legdiff else ""
        cells = [f'<th scope="row" class="r"><a href="#{_anchor(i)}">{esc(name)}</a>{tag}</th>']
        for leg_name, rt in cols:
            r = report.cell(leg_name, rt, row)
            if r is None:
                cells.append('<td class="c o-absent">-</td>')
                continue
            title = f' title="{esc(r.message)}"' if r.message else ""
            cells.append(
                f'<td class="c o-{esc(r.outcome)}"{title}><a href="#{page.evidence_anchor(r)}">'
                f"{esc(CELL_TEXT.get(r.outcome, r.outcome))}</a>{page.check_change(r)}</td>"
            )
        body.append(
            f'<tr class="{cls}" data-legdiff="{int(legdiff)}" data-bad="{int(bad)}">'
            + "".join(cells)
            + "</tr>"
        )
    filters = (
        '<p class="filters" hidden><label><input type="checkbox" id="only-legdiff" '
        'onchange="isoFilter()"> only checks whose outcome differs between legs</label> <label>'
        '<input type="checkbox" id="only-bad" onchange="isoFilter()"> only checks not passed '
        "everywhere</label></p>"
    )
    return (
        f'<section id="matrix" aria-labelledby="matrix-h"><h2 id="matrix-h">Checks by leg and '
        f'runtime</h2>{filters}<table class="grid">{grouped_head(page, ("check",), False)}'
        f"<tbody>{''.join(body)}</tbody></table></section>"
    )


def measurement_table(ms: tuple[Measurement, ...]) -> str:
    rows = []
    for m in ms:
        extra = "<br>".join(f"{esc(k)}: {esc(fmt_value(v))}" for k, v in m.extra.items())
        ok = {True: "yes", False: "NO", None: "-"}[m.ok]
        cls = ' class="bad"' if m.ok is False else ""
        rows.append(
            f"<tr{cls}><td>{esc(m.name)}</td><td>{esc(fmt_value(m.expected, m.unit))}</td>"
            f"<td>{esc(fmt_value(m.measured, m.unit))}</td><td>{esc(fmt_value(m.tolerance))}</td>"
            f"<td>{esc(m.unit)}</td><td>{ok}</td><td>{extra}</td></tr>"
        )
    head = "".join(
        f'<th scope="col">{h}</th>'
        for h in ("measurement", "expected", "measured", "tolerance", "unit", "ok", "more")
    )
    return f'<table class="ms"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _evidence_text(value: Any) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, list) and all(isinstance(x, str) for x in value):
        text = "\n".join(value)
    else:
        text = json.dumps(value, indent=1, sort_keys=True, default=str)
    if len(text) > MAX_EVIDENCE_CHARS:
        text = (
            text[:MAX_EVIDENCE_CHARS] + f"\n... ({len(text) - MAX_EVIDENCE_CHARS} more characters)"
        )
    return text


def _kv_table(d: dict[str, Any]) -> str:
    rows = "".join(f'<tr><th scope="row">{esc(k)}</th><td><pre>{esc(_evidence_text(v))}</pre>'
                   f"</td></tr>" for k, v in sorted(d.items()))  # fmt: skip
    return f'<table class="kv">{rows}</table>'


def deviation_block(d: Any) -> str:
    """The declared deviation a check ran under (verify/deviations/*.toml)."""
    if not isinstance(d, dict):
        return ""
    text = f"{d.get('why', '')}"
    where = " ".join(str(d[k]) for k in ("runtime", "versions") if d.get(k))
    out = f'<div class="msg"><b>deviates as declared</b>: {esc(text)}'
    if where:
        out += f" ({esc(where)})"
    if d.get("spec"):
        out += f"<br>spec: {esc(d['spec'])}"
    if d.get("quote"):
        out += f"<br>&ldquo;{esc(d['quote'])}&rdquo;"
    if d.get("file"):
        out += f'<br><span class="meta">declared in {esc(d["file"])}</span>'
    return out + "</div>"


def findings_block(findings: Any) -> str:
    """Things worth knowing that are not a verdict (a conversion that distorts a ratio)."""
    items = findings if isinstance(findings, list) else [findings]
    lis = []
    for f in items:
        if isinstance(f, dict):
            rest = {k: v for k, v in f.items() if k != "text"}
            extra = f' <span class="meta">{esc(fmt_value(rest))}</span>' if rest else ""
            lis.append(f"<li>{esc(f.get('text', ''))}{extra}</li>")
        else:
            lis.append(f"<li>{esc(fmt_value(f))}</li>")
    return f'<div class="findings"><b>findings</b><ul>{"".join(lis)}</ul></div>' if lis else ""


def _command(x: dict[str, Any]) -> str:
    rc = "timed out" if x.get("exit") is None else f"exit {x['exit']}"
    argv = x.get("argv")
    cmd = " ".join(str(a) for a in argv) if isinstance(argv, list) else str(argv)
    head = f"$ {cmd}  ({rc}, {x.get('duration_s', '?')} s)"
    return head + (f"\n  {x['stderr']}" if x.get("stderr") else "")


def failure_evidence_block(ev: Any) -> str | None:
    """What the suite knew at the failure: per container its state, cgroup files, init status and
    namespaces against the host's; the runtime's command transcript. None: not that shape."""
    if not isinstance(ev, dict) or not isinstance(ev.get("containers", []), list):
        return None
    parts = ['<div class="evidence"><b>evidence at the failure</b>']
    for c in ev.get("containers", []):
        if not isinstance(c, dict):
            return None
        parts.append(f"<div>container <code>{esc(c.get('name', '?'))}</code> "
                     f"({esc(c.get('runtime', '?'))}, init pid {esc(c.get('init_pid', '?'))})</div>")  # fmt: skip
        if c.get("state"):
            parts.append(f"<pre>{esc(_evidence_text(c['state']))}</pre>")
        for key in ("cgroup_files", "init_status", "namespaces"):
            value = c.get(key)
            if isinstance(value, dict) and value:
                parts.append(f'<div class="meta">{esc(key.replace("_", " "))}</div>'
                             + _kv_table(value))  # fmt: skip
    transcript = ev.get("transcript")
    if isinstance(transcript, list) and transcript:
        lines = [_command(x) if isinstance(x, dict) else str(x) for x in transcript]
        parts.append(
            f'<div class="meta">runtime commands</div><pre>{esc(chr(10).join(lines))}</pre>'
        )
    rest = {k: v for k, v in ev.items() if k not in ("containers", "transcript")}
    if rest:
        parts.append(_kv_table(rest))
    parts.append("</div>")
    return "".join(parts)


def evidence_blocks(evidence: dict[str, Any]) -> str:
    """Fields of the result beyond outcome and measurements (the suite's evidence on failure:
    cgroup files, the runtime's command transcript, /proc status; a declared deviation;
    findings), drawn by shape where it is known, else shown as written."""
    parts = []
    for key, value in sorted(evidence.items()):
        if value in (None, "", [], {}):
            continue
        if key == "deviation" and isinstance(value, dict):
            parts.append(deviation_block(value))
            continue
        if key == "findings":
            parts.append(findings_block(value))
            continue
        if key == "evidence":
            block = failure_evidence_block(value)
            if block is not None:
                parts.append(block)
                continue
        if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
            rows = "".join(f"<tr><th scope=\"row\">{esc(k)}</th><td><pre>{esc(_evidence_text(v))}"
                           f"</pre></td></tr>" for k, v in sorted(value.items()))  # fmt: skip
            parts.append(f'<div class="evidence"><b>{esc(key)}</b><table>{rows}</table></div>')
        else:
            parts.append(f'<div class="evidence"><b>{esc(key)}</b><pre>'
                         f"{esc(_evidence_text(value))}</pre></div>")  # fmt: skip
    return "".join(parts)


def result_block(page: Page, r: CheckResult) -> str:
    """One column's result; open when it did not pass, so failures are what the eye meets. The
    anchor sits inside, so following a link to it opens the block."""
    title = f"{r.leg} / {r.runtime}: {r.outcome} ({fmt_seconds(r.duration_s)})"
    if r.message:
        title += f" - {r.message.splitlines()[0][:160]}"
    is_open = " open" if r.bucket in ("failed", "error") else ""
    anchor = page.evidence_anchor(r)
    parts = [f'<details class="res o-{esc(r.outcome)}"{is_open}><summary>{esc(title)}'
             f"{page.check_change(r)}</summary>"]  # fmt: skip
    parts.append(f'<div class="meta mono" id="{anchor}">{esc(r.test_id)}</div>')
    if r.message:
        label = "reason" if r.outcome == "skipped" else "message"
        if is_deviation(r.outcome):
            label = "deviates as declared" if "deviation" not in r.evidence else "message"
        parts.append(f'<div class="msg">{label}: {esc(r.message)}</div>')
    if r.measurements:
        parts.append(measurement_table(r.measurements))
        parts += charts.charts_for(r.check, r.measurements, f"c{anchor[3:]}")
    parts.append(evidence_blocks(r.evidence))
    parts.append("</details>")
    return "".join(parts)


def checks_section(page: Page) -> str:
    report = page.report
    parts = ['<section id="checks" aria-labelledby="checks-h"><h2 id="checks-h">Evidence, by '
             "property</h2>"]  # fmt: skip
    by_prop: dict[str, list[tuple[int, Row]]] = {}
    for i, row in enumerate(page.rows):
        by_prop.setdefault(property_of(*row).id, []).append((i, row))
    for prop in page.verdicts.properties:
        rows = by_prop.get(prop.id)
        if not rows:
            continue
        parts.append(f'<h3 id="ev-{esc(prop.id)}">{esc(prop.title)}</h3>')
        for i, row in rows:
            mod, name = row
            results = [r for c in page.columns if (r := report.cell(c[0], c[1], row)) is not None]
            doc = next((r.doc for r in results if r.doc), None)
            parts.append(
                f'<section class="check" id="{_anchor(i)}"><h4>{esc(mod)}: {esc(humanise(name))}'
                f'</h4><div class="meta mono">{esc(name)}</div>'
            )
            if doc:
                parts.append(f"<p>property: {esc(doc)}</p>")
            parts += [result_block(page, r) for r in results]
            parts.append("</section>")
    parts.append("</section>")
    return "".join(parts)


NAV = (
    '<nav aria-label="sections"><a href="#properties">Properties</a><a href="#summary">Counts</a>'
    '<a href="#matrix">Checks</a><a href="#checks">Evidence</a><a href="#legs">Legs</a>'
    '<a href="#hosts">Hosts</a></nav>'
)


def render(report: Report, generated_at: str, comparison: Comparison | None = None) -> str:
    page = Page(report, comparison)
    cls, sentence = overall(report)
    sources = ", ".join(f"<code>{esc(s)}</code>" for s in report.sources)
    return "".join(
        [
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            "<title>isoproof isolation report</title>",
            f"<style>{CSS}</style></head><body>",
            '<a class="skip" href="#properties">Skip to the isolation properties</a>',
            "<header><h1>isoproof isolation report</h1>",
            f'<p class="meta">generated {esc(generated_at)} from {sources}</p>{NAV}</header>',
            f'<main><div class="verdict {cls}" role="status">{esc(sentence)}</div>',
            comparison_section(page),
            properties_section(page),
            summary_section(report),
            grid_section(page),
            checks_section(page),
            legs_section(report),
            hosts_section(report),
            f"</main><script>{JS}</script></body></html>\n",
        ]
    )
