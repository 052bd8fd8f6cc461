"""The isolation report in a real browser: Debian's chromium, headless, driven over the DevTools
protocol by a small websocket client (standard library only; nothing fetched at test time).

Reports are made from recorded result sets (tests/unit/data: a passing host run, a run with
failures compared with the passing one, and a 5-leg x 3-runtime matrix with a dead leg,
synthesised from the recorded runs by ``reports_synth.py``). For each page the test checks that the
property summary, every chart and every result block render with a real size, that following
a summary cell lands on opened evidence, that the keyboard reaches the links, that the page reads the
same with JavaScript off, and that the console logs no error; a full-page screenshot of each is
kept under ``.isoproof-results/report-browser/`` (or ``$ISOPROOF_ARTIFACTS``) and its path printed.

``--no-sandbox`` is used here only: chromium refuses to run as root with its sandbox, and the test
runs as root in CI.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reports import cli, properties

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "unit" / "data"
PASS = DATA / "reports-host-pass.json"
FAILURES = DATA / "reports-host-failures.json"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="needs Debian's chromium (scripts/bootstrap.sh installs it); this host has no "
    "chromium or chromium-browser on PATH",
)


# --- a minimal DevTools client --------------------------------------------------------------------


class DevTools:
    """One websocket to one page target; ``call`` sends a command and waits for its answer,
    keeping every event that arrives meanwhile in ``events``."""

    def __init__(self, ws_url: str) -> None:
        host_port, _, path = ws_url.removeprefix("ws://").partition("/")
        host, _, port = host_port.partition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=60)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (f"GET /{path} HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\n"
             f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
             "Sec-WebSocket-Version: 13\r\n\r\n").encode()
        )  # fmt: skip
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise ConnectionError("DevTools closed the websocket handshake")
            head += chunk
        assert b" 101 " in head.split(b"\r\n")[0], head
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def _send(self, text: str) -> None:
        data = text.encode()
        mask = os.urandom(4)
        n = len(data)
        if n < 126:
            header = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 1 << 16:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("DevTools closed the websocket")
            buf += chunk
        return bytes(buf)

    def _recv(self) -> dict[str, Any]:
        message = bytearray()
        while True:
            b0, b1 = self._exact(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._exact(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._exact(8))[0]
            payload = self._exact(n)  # the server does not mask
            opcode = b0 & 0x0F
            if opcode in (0x1, 0x0):
                message += payload
                if b0 & 0x80:
                    return dict(json.loads(message))
            elif opcode == 0x8:
                raise ConnectionError("DevTools closed the websocket")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self._send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = self._recv()
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return dict(msg.get("result", {}))
            self.events.append(msg)

    def wait_event(self, method: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        for i, e in enumerate(self.events):
            if e.get("method") == method:
                return self.events.pop(i)
        while time.monotonic() < deadline:
            msg = self._recv()
            if msg.get("method") == method:
                return msg
            self.events.append(msg)
        raise TimeoutError(f"no {method} within {timeout} s")

    def js(self, expression: str) -> Any:
        """Evaluate in the page; the value comes back as JSON."""
        got = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in got:
            raise RuntimeError(f"{expression[:80]}: {got['exceptionDetails']}")
        return got["result"].get("value")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[str]:
    """A headless chromium with remote debugging on a free port; yields its HTTP endpoint."""
    assert CHROMIUM is not None
    profile = tempfile.mkdtemp(prefix="isoproof-chromium-")
    proc = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--no-default-browser-check", "--disable-extensions", "--remote-debugging-port=0",
         f"--user-data-dir={profile}", "--window-size=1280,900", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"chromium did not start (exit {proc.poll()})")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port_file.read_text().split()[0]}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


@contextlib.contextmanager
def page(endpoint: str, url: str, javascript: bool = True) -> Iterator[DevTools]:
    req = urllib.request.Request(f"{endpoint}/json/new?about:blank", method="PUT")
    with urllib.request.urlopen(req, timeout=30) as r:
        target = json.load(r)
    dt = DevTools(target["webSocketDebuggerUrl"])
    try:
        for domain in ("Page", "Runtime", "Log"):
            dt.call(f"{domain}.enable")
        if not javascript:
            dt.call("Emulation.setScriptExecutionDisabled", value=True)
        dt.call("Emulation.setDeviceMetricsOverride", width=1280, height=900,
                deviceScaleFactor=1, mobile=False)  # fmt: skip
        dt.call("Page.navigate", url=url)
        dt.wait_event("Page.loadEventFired")
        yield dt
    finally:
        dt.close()
        with contextlib.suppress(OSError):
            urllib.request.urlopen(f"{endpoint}/json/close/{target['id']}", timeout=10).close()


def console_errors(dt: DevTools) -> list[str]:
    errors = []
    for e in dt.events:
        m, p = e.get("method"), e.get("params", {})
        if m == "Runtime.exceptionThrown":
            errors.append(str(p.get("exceptionDetails", {}).get("text")))
        elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert", "warning"):
            errors.append(" ".join(str(a.get("value")) for a in p.get("args", [])))
        elif m == "Log.entryAdded" and p.get("entry", {}).get("level") in ("error", "warning"):
            errors.append(str(p["entry"].get("text")))
    return errors


def artifacts() -> Path:
    d = Path(os.environ.get("ISOPROOF_ARTIFACTS", ROOT / ".isoproof-results" / "report-browser"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def screenshot(dt: DevTools, name: str) -> Path:
    """The whole page as a reader first sees it (failures open, the rest closed)."""
    shot = dt.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    data = base64.b64decode(shot["data"])
    out = artifacts() / f"{name}.png"
    out.write_bytes(data)
    print(f"report screenshot: {out} ({len(data)} bytes)")
    return out


# --- the reports ----------------------------------------------------------------------------------


def _synth() -> Any:
    spec = importlib.util.spec_from_file_location("reports_synth", DATA / "reports_synth.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("reports")
    out = {}
    pinned = ["--generated-at", "2026-12-03T00:00:00Z"]
    assert cli.main(["--results", str(PASS), "-o", str(d / "pass.html"), *pinned]) == 0
    out["pass"] = d / "pass.html"
    argv = ["--results", str(FAILURES), "--baseline", str(PASS), "-o", str(d / "failures.html")]
    assert cli.main(argv + pinned) == 1  # regressed since the passing run
    out["failures"] = d / "failures.html"
    matrix = _synth().write(d / "matrix.json", dead_leg="6.12-v1")
    assert cli.main(["--matrix", str(matrix), "-o", str(d / "matrix.html"), *pinned]) == 0
    out["matrix"] = d / "matrix.html"
    return out


SIZES = """(() => {
  document.querySelectorAll('details').forEach(d => d.open = true);
  const box = e => { const r = e.getBoundingClientRect(); return [r.width, r.height]; };
  const charts = [...document.querySelectorAll('svg.chart')].map(s => ({
    size: box(s), title: (s.querySelector('title') || {}).textContent || '',
    desc: (s.querySelector('desc') || {}).textContent || '',
    lines: s.querySelectorAll('polyline, rect').length,
    labelled: (s.getAttribute('aria-labelledby') || '').split(' ')
      .every(id => document.getElementById(id))}));
  return {
    properties: document.querySelectorAll('table.props tbody tr').length,
    propertyTable: box(document.querySelector('table.props')),
    verdict: document.querySelector('.verdict').textContent,
    cells: document.querySelectorAll('table.props td.c').length,
    results: [...document.querySelectorAll('details.res')].map(d => box(d)[1]),
    grid: document.querySelectorAll('table.grid tbody tr').length,
    filtersShown: [...document.querySelectorAll('.filters')].every(f => !f.hidden),
    charts};
})()"""


@pytest.mark.parametrize("name", ["pass", "failures", "matrix"])
def test_report_renders_in_chromium(browser: str, reports: dict[str, Path], name: str) -> None:
    with page(browser, reports[name].as_uri()) as dt:
        shot = screenshot(dt, f"report-{name}")
        assert shot.stat().st_size > 50_000
        got = dt.js(SIZES)
        assert got["properties"] == len(properties.PROPERTIES)
        assert got["propertyTable"][0] > 600 and got["propertyTable"][1] > 400
        assert got["cells"] >= len(properties.PROPERTIES)
        assert got["grid"] > 40 and all(h > 20 for h in got["results"])
        assert got["filtersShown"]  # the script ran and showed the grid filters
        assert len(got["charts"]) >= 13
        for c in got["charts"]:
            assert c["size"][0] >= 300 and c["size"][1] >= 100, c
            assert c["title"] and len(c["desc"]) > 30 and c["labelled"] and c["lines"] >= 1, c
        if name == "pass":
            assert got["verdict"].startswith("Isolation holds")
        else:
            assert got["verdict"].startswith("Isolation NOT shown to hold")
        if name == "failures":
            top = dt.js("document.querySelector('#changes .verdict').textContent")
            assert top.startswith("REGRESSED since the baseline: properties 2 regressed")
        assert console_errors(dt) == []


def test_summary_cell_opens_its_evidence(browser: str, reports: dict[str, Path]) -> None:
    """One click from the property summary to the evidence: the cell's link lands inside the
    failed check's result block, which is open."""
    with page(browser, reports["failures"].as_uri()) as dt:
        href = dt.js("document.querySelector('#prop-io').parentElement"
                     ".querySelector('td.p-fail a').getAttribute('href')")  # fmt: skip
        assert href.startswith("#ev-")
        dt.js(
            f"document.querySelector('#prop-io').parentElement.querySelector('a[href=\"{href}\"]').click()"
        )
        time.sleep(0.3)
        where = dt.js(f"""(() => {{ const t = document.querySelector('{href}');
            const d = t.closest('details'); const r = t.getBoundingClientRect();
            return {{hash: location.hash, open: d.open, summary: d.querySelector('summary').textContent,
                     inView: r.top > -2 && r.top < window.innerHeight && window.scrollY > 0}}; }})()""")  # fmt: skip
        assert where["hash"] == href and where["open"] and where["inView"], where
        assert "failed" in where["summary"] and "io_throttle" in dt.js(
            f"document.querySelector('{href}').textContent"
        )
        # A passing check's block is closed until its link is followed; then it opens.
        closed = dt.js("(() => { const d = document.querySelector('details.res.o-passed');"
                       " return d.open ? null : d.querySelector('[id^=ev-]').id; })()")  # fmt: skip
        assert closed
        dt.call("Page.navigate", url=reports["failures"].as_uri() + "#" + closed)
        time.sleep(0.5)
        assert dt.js(f"document.getElementById('{closed}').closest('details').open")
        assert console_errors(dt) == []


def test_keyboard_reaches_the_summary(browser: str, reports: dict[str, Path]) -> None:
    with page(browser, reports["matrix"].as_uri()) as dt:
        focused = []
        for _ in range(4):
            for kind in ("rawKeyDown", "keyUp"):
                dt.call("Input.dispatchKeyEvent", type=kind, key="Tab", code="Tab",
                        windowsVirtualKeyCode=9)  # fmt: skip
            focused.append(dt.js("document.activeElement.textContent.trim()"))
        assert focused[0] == "Skip to the isolation properties"
        assert focused[1:] == ["Properties", "Counts", "Checks"]
        # Back to the skip link and follow it with Enter.
        dt.js("document.querySelector('a.skip').focus()")
        for kind in ("rawKeyDown", "char", "keyUp"):
            dt.call("Input.dispatchKeyEvent", type=kind, key="Enter", code="Enter", text="\r",
                    windowsVirtualKeyCode=13)  # fmt: skip
        time.sleep(0.2)
        assert dt.js("location.hash") == "#properties"
        assert console_errors(dt) == []


def test_report_without_javascript(browser: str, reports: dict[str, Path]) -> None:
    with page(browser, reports["matrix"].as_uri(), javascript=False) as dt:
        # Evaluation from DevTools still works with page scripts disabled.
        got = dt.js(SIZES)
        assert got["properties"] == len(properties.PROPERTIES)
        assert len(got["charts"]) >= 13 and not got["filtersShown"]
        assert all(c["size"][0] >= 300 for c in got["charts"])
        assert console_errors(dt) == []


def test_console_errors_are_seen(browser: str, tmp_path: Path) -> None:
    """The console check can fail: a page with a script error and a console.error is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><p>x</p><script>console.error('isoproof-boom');"
                   "nosuchfunction();</script>")  # fmt: skip
    with page(browser, bad.as_uri()) as dt:
        dt.js("1")  # drain the events that arrived with the load
        errors = console_errors(dt)
    assert any("isoproof-boom" in e for e in errors)
    assert any("nosuchfunction" in e or "Uncaught" in e for e in errors), errors


def test_report_prints_with_every_block_and_chart(browser: str, reports: dict[str, Path]) -> None:
    """In print media the closed result blocks show their contents (CSS ::details-content, no
    script needed), the navigation is dropped, and the page prints to a PDF."""
    with page(browser, reports["pass"].as_uri(), javascript=False) as dt:
        probe = """(() => { const s = document.querySelector('details.res:not([open]) svg.chart');
            return [s.checkVisibility(), s.getBoundingClientRect().height,
                    document.querySelector('nav').checkVisibility()]; })()"""
        shown, _, nav = dt.js(probe)
        assert not shown and nav  # on screen: the block is closed
        dt.call("Emulation.setEmulatedMedia", media="print")
        shown, height, nav = dt.js(probe)
        assert shown and height > 100 and not nav
        pdf = base64.b64decode(dt.call("Page.printToPDF", printBackground=True)["data"])
        assert pdf.startswith(b"%PDF") and len(pdf) > 100_000
        out = artifacts() / "report-pass.pdf"
        out.write_bytes(pdf)
        print(f"report printed: {out} ({len(pdf)} bytes)")
