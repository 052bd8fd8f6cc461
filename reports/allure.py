"""Allure extras for a suite run: environment, categories, readable parameters, property labels.

allure-pytest (loaded by the suite, ``verify/plugin.py``) writes one ``*-result.json`` per test
into ``.isoproof-results/allure/``. What it cannot know, this adds after the run, from the same
results.json the HTML report is made of (``reports.cli.write_report`` calls ``write_extras`` when an
``allure/`` directory sits beside the results.json):

- ``environment.properties``: kernel, cgroup mode and controllers of each leg, and each runtime
  with its version (allure's "Environment" widget);
- ``categories.json``: "deviates as declared", "inconclusive: host too busy", "runtime command
  failed", failures by property family, other errors (allure's "Categories" tab); allure matches categories on the message,
  so a failed test's message is prefixed with its property's title;
- per result: parameters as text (``cpu-shares-2-to-1``, ``oci:/usr/sbin/runc``) instead of
  Python reprs, and labels: ``epic`` = property family, ``feature`` = property, ``tag`` = kernel
  and cgroup mode.

Re-running it over the same directory changes nothing more (each step checks before it edits).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from reports.model import Report
from reports.properties import PROPERTIES, Property, property_of

FAMILIES = ("namespaces", "resources", "security", "lifecycle", "suite")


def _prop_escape(text: str) -> str:
    """A key or value of a Java .properties file (what allure reads)."""
    out = text.replace("\\", "\\\\").replace("\n", " ")
    for ch in (":", "=", " ", "#", "!"):
        out = out.replace(ch, "\\" + ch)
    return out


def environment(report: Report) -> str:
    lines = []
    several = len(report.legs) > 1
    for leg in report.legs:
        pre = f"{leg.name}." if several else ""
        lines.append((f"{pre}kernel", leg.kernel))
        lines.append((f"{pre}cgroup mode", leg.cgroup_mode))
        controllers = leg.facts.get("controllers")
        if isinstance(controllers, list):
            lines.append((f"{pre}controllers", " ".join(str(c) for c in controllers)))
        for rt in leg.runtimes:
            version = report.runtime_versions.get(rt, "?")
            lines.append((f"{pre}runtime {rt}", version))
    return "".join(f"{_prop_escape(k)}={_prop_escape(str(v))}\n" for k, v in lines)


def _titles(family: str) -> str:
    return "|".join(re.escape(p.title) for p in PROPERTIES if p.family == family)


def categories() -> list[dict[str, Any]]:
    cats: list[dict[str, Any]] = [
        {"name": "deviates as declared", "matchedStatuses": ["skipped"],
         "messageRegex": "(?s).*(XFAIL|deviates as declared).*"},
        {"name": "inconclusive: host too busy", "matchedStatuses": ["skipped"],
         "messageRegex": "(?s).*inconclusive.*"},
        # Before the families: the runtime under test failing a command is its own finding.
        {"name": "runtime command failed", "matchedStatuses": ["failed", "broken"],
         "messageRegex": "(?s).*RuntimeFailure.*"},
    ]  # fmt: skip
    for family in FAMILIES:
        cats.append(
            {
                "name": f"{family}: isolation not shown to hold",
                "matchedStatuses": ["failed", "broken"],
                "messageRegex": f"(?s)^({_titles(family)}): .*",
            }
        )
    cats.append({"name": "runtime or suite errors", "matchedStatuses": ["broken"]})
    return cats


def readable(name: str, value: str) -> str:
    """allure-pytest's repr of a parameter as the text a reader wants."""
    m = re.search(r"PosixPath\('[^']*/([^/']+)\.toml'\)", value)
    if m:  # a Scenario: its id is its file's stem
        return m.group(1)
    m = re.fullmatch(r"'(.*)'", value, re.S) or re.fullmatch(r'"(.*)"', value, re.S)
    if m:
        return m.group(1)
    return value


def _property_of_result(doc: dict[str, Any]) -> Property:
    name = str(doc.get("name", ""))
    module = str(doc.get("fullName", "")).partition("#")[0].rpartition(".")[2]
    return property_of(module.removeprefix("test_"), name)


def rewrite_result(doc: dict[str, Any], tags: list[str]) -> bool:
    """Readable parameters, property labels, message prefix; True when anything changed."""
    changed = False
    for p in doc.get("parameters") or []:
        if isinstance(p, dict) and isinstance(p.get("value"), str):
            text = readable(str(p.get("name")), p["value"])
            if text != p["value"]:
                p["value"] = text
                changed = True
    prop = _property_of_result(doc)
    labels = doc.setdefault("labels", [])
    have = {(lb.get("name"), lb.get("value")) for lb in labels if isinstance(lb, dict)}
    for label in [("epic", prop.family), ("feature", prop.title)] + [("tag", t) for t in tags]:
        if label not in have:
            labels.append({"name": label[0], "value": label[1]})
            changed = True
    details = doc.get("statusDetails")
    if doc.get("status") in ("failed", "broken") and isinstance(details, dict):
        message = str(details.get("message") or "")
        if not message.startswith(f"{prop.title}: "):
            details["message"] = f"{prop.title}: {message}"
            changed = True
    return changed


def write_extras(allure_dir: Path, report: Report) -> int:
    """Write environment.properties and categories.json, rewrite the results; returns how many
    result files were rewritten."""
    (allure_dir / "environment.properties").write_text(environment(report))
    (allure_dir / "categories.json").write_text(json.dumps(categories(), indent=1) + "\n")
    tags = sorted({f"kernel {leg.kernel}" for leg in report.legs})
    tags += sorted({f"cgroup {leg.cgroup_mode}" for leg in report.legs})
    n = 0
    for path in sorted(allure_dir.glob("*-result.json")):
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # not ours to judge: allure itself will say
        if isinstance(doc, dict) and rewrite_result(doc, tags):
            path.write_text(json.dumps(doc))
            n += 1
    return n
