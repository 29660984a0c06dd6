"""The HTML monitoring report (monitoring/html_report.py) in a real headless browser.

Debian's ``chromium`` (scripts/test.sh installs it when missing; ``$CHROMIUM`` picks
another binary) is driven over the Chrome DevTools protocol on a pipe
(``--remote-debugging-pipe``: no port, nothing to connect to). The page is opened from a
``file://`` URL and the test checks, from the browser itself:

- the load event fires and ``document.body.dataset.rendered`` (set by the page's script
  after load) equals the number of charts (``data-charts``, and the ``figure.chart``
  elements counted in the DOM);
- every chart has an id, a title and a ``data-chart`` name, and every one of its SVG
  marks has a non-empty layout box (``getBBox``, counted by the page into ``data-drawn``
  and recounted here);
- no console error or warning, no uncaught exception, no browser log error (a
  Content-Security-Policy violation or a failed load would be one);
- no network request but the page itself (every request the page makes is recorded by
  the ``Network`` domain), and the HTML names no ``http(s)://`` resource;
- a full-page screenshot (1400 px wide) is a PNG of that size.

A control page with a broken chart, a console error and a remote image shows that each
of these checks catches what it is meant to. ``UPDATE_DOCS_SCREENSHOT=1`` also saves
the screenshot as docs/monitor-report.png.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import re
import select
import shutil
import struct
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from monitoring import html_report as monitor_report
from monitoring.html_report import write_html
from monitoring.queries import connect
from models.inference_log import LogWriter, log_row
from tests.monitoring.test_queries import SPEC, synthetic_records, write_log

ROOT = Path(__file__).resolve().parents[2]
WIDTH = 1400


def _chromium() -> str | None:
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


class Browser:
    """A headless Chromium driven over ``--remote-debugging-pipe`` (fd 3: commands in,
    fd 4: replies and events out, NUL-separated JSON)."""

    def __init__(self, binary: str, profile: Path, timeout: float = 30.0) -> None:
        self.timeout = timeout
        to_chrome_r, to_chrome_w = os.pipe()
        from_chrome_r, from_chrome_w = os.pipe()
        # high, close-on-exec copies; the child maps them to fd 3 and 4 (dup2 clears close-on-exec)
        child_in = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD_CLOEXEC, 10)
        child_out = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(to_chrome_r)
        os.close(from_chrome_w)

        def fds() -> None:
            os.dup2(child_in, 3)
            os.dup2(child_out, 4)

        profile.mkdir(parents=True, exist_ok=True)
        self.stderr_path = profile / "chromium.stderr"
        args = [
            binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--remote-debugging-pipe", f"--user-data-dir={profile}", "--no-first-run", "--no-default-browser-check",
            "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-extensions",
            "--mute-audio", "--hide-scrollbars", f"--window-size={WIDTH},1000", "about:blank",
        ]
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                         preexec_fn=fds, close_fds=False)
        os.close(child_in)
        os.close(child_out)
        self._w, self._r = to_chrome_w, from_chrome_r
        self._buf = b""
        self._next = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._next += 1
        msg: dict[str, Any] = {"id": self._next, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        while True:
            m = self._recv()
            if m.get("id") == self._next:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m["result"]
            self.events.append(m)

    def wait_for(self, method: str, session: str | None = None) -> dict:
        for i, e in enumerate(self.events):
            if e.get("method") == method and e.get("sessionId") == session:
                return self.events.pop(i)
        while True:
            m = self._recv()
            if m.get("method") == method and m.get("sessionId") == session:
                return m
            self.events.append(m)

    def _recv(self) -> dict:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._r], [], [], max(0.0, left))
            if not ready:
                raise TimeoutError(f"no answer from chromium within {self.timeout} s; stderr: {self._stderr()}")
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                raise EOFError(f"chromium exited ({self.proc.poll()}); stderr: {self._stderr()}")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def _stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def open_page(self, url: str) -> str:
        """A new tab with console, network and log recording on, at ``url``; its session id."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Network", "Log"):
            self.send(f"{domain}.enable", session=session)
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": WIDTH, "height": 1000, "deviceScaleFactor": 1, "mobile": False}, session)
        self.send("Page.navigate", {"url": url}, session)
        self.wait_for("Page.loadEventFired", session)
        return session

    def evaluate(self, session: str, expression: str) -> Any:
        res = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                             "awaitPromise": True}, session)
        if "exceptionDetails" in res:
            raise RuntimeError(res["exceptionDetails"])
        return res["result"].get("value")

    def screenshot(self, session: str) -> bytes:
        size = self.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": WIDTH, "height": int(size["height"]), "scale": 1}
        shot = self.send("Page.captureScreenshot", {"format": "png", "clip": clip, "captureBeyondViewport": True},
                         session)
        return base64.b64decode(shot["data"])

    def problems(self, session: str, page_url: str) -> dict[str, list[str]]:
        """What the page did wrong: console errors / warnings, exceptions, log errors, requests."""
        out: dict[str, list[str]] = {"console": [], "exceptions": [], "log": [], "requests": []}
        for e in self.events:
            if e.get("sessionId") != session:
                continue
            p = e.get("params", {})
            if e["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "warning", "assert"):
                out["console"].append(" ".join(str(a.get("value", a.get("description"))) for a in p.get("args", [])))
            elif e["method"] == "Runtime.exceptionThrown":
                out["exceptions"].append(json.dumps(p.get("exceptionDetails", {}))[:300])
            elif e["method"] == "Log.entryAdded" and p.get("entry", {}).get("level") in ("error", "warning"):
                out["log"].append(p["entry"].get("text", ""))
            elif e["method"] == "Network.requestWillBeSent":
                url = p.get("request", {}).get("url", "")
                if url != page_url and not url.startswith("data:"):
                    out["requests"].append(url)
        return out

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (OSError, EOFError, TimeoutError, RuntimeError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        os.close(self._w)
        os.close(self._r)


#: Per chart: id, name, title, what the page counted, and the marks and their boxes recounted here.
CHARTS_JS = """
(() => Array.from(document.querySelectorAll("figure.chart")).map(f => {
  const marks = Array.from(f.querySelectorAll("svg .mark"));
  return {id: f.id, name: f.dataset.chart, title: f.getAttribute("title"), drawn: f.dataset.drawn,
          points: f.dataset.points, svgs: f.querySelectorAll("svg").length, marks: marks.length,
          boxed: marks.filter(m => { const b = m.getBBox(); return b.width > 0 || b.height > 0; }).length,
          width: f.getBoundingClientRect().width};
}))()
"""
BODY_JS = "({rendered: document.body.dataset.rendered, charts: document.body.dataset.charts, " \
          "title: document.title, width: document.documentElement.scrollWidth})"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    binary = _chromium()
    # never skipped: make test installs chromium (scripts/chromium.sh) and stops if it cannot
    assert binary is not None, "chromium not installed: run `bash scripts/chromium.sh install` (make test does)"
    b = Browser(binary, tmp_path_factory.mktemp("chromium-profile"))
    yield b
    b.close()


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("monitor_report")
    write_log(base / "inference_log")
    con = connect(base / "inference_log")
    return write_html(con, base / "report.html", source="output/fraud/inference_log")


@pytest.mark.parametrize("rows", [1, 2, 5])
def test_a_first_run_with_a_handful_of_rows_gets_a_report(tmp_path, rows):
    """A new deployment's log holds a few rows, often all in one score bin: the page is
    written (it raised ZeroDivisionError on the log-scale histogram), with every chart."""
    recs = [{**r, "fraud_score": 0.01} for r in synthetic_records(per_day=rows)[:rows]]
    writer = LogWriter(tmp_path / "log", SPEC, part=0)
    writer.write([log_row(r, SPEC) for r in recs])
    writer.close()
    page = write_html(connect(tmp_path / "log"), tmp_path / "report.html").read_text()
    assert "chart-score-hist" in page and f"{rows:,} scores" in page


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_report_renders_every_chart_offline(browser, report, tmp_path):
    html = report.read_text()
    assert not re.search(r"https?://", html)  # nothing remote named anywhere (src, href, url(), @import)
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?!#|data:)""", html, re.I)
    assert "default-src 'none'" in html  # and the page forbids loading anything

    url = report.as_uri()
    session = browser.open_page(url)
    body = browser.evaluate(session, BODY_JS)
    charts = browser.evaluate(session, CHARTS_JS)
    assert len(charts) == 6
    assert body["charts"] == body["rendered"] == str(len(charts)), body
    assert [c["id"] for c in charts] == ["chart-predictions", "chart-alert-rate", "chart-score-hist",
                                         "chart-latency", "chart-shadow", "chart-drift"]
    for c in charts:
        assert c["name"] and c["title"] and c["svgs"] == 1, c
        assert c["marks"] > 0 and c["boxed"] == c["marks"] and c["drawn"] == str(c["marks"]), c
        assert int(c["points"]) > 0 and c["width"] > 400, c
    by = {c["name"]: c for c in charts}
    assert int(by["predictions"]["points"]) == 2 * 6 - 1  # one bar per day and version
    assert int(by["drift"]["points"]) == 9  # fraud_score and the top 8 features
    # fraud_model/3 shadows both deciders: agreement and |diff| per day of each pair
    assert int(by["shadow"]["points"]) == 2 * (2 * 6 - 1)
    assert body["width"] <= WIDTH  # nothing overflows sideways

    problems = browser.problems(session, url)
    assert problems == {"console": [], "exceptions": [], "log": [], "requests": []}, problems

    png = browser.screenshot(session)
    w, h = _png_size(png)
    assert w == WIDTH and h > 1000 and len(png) > 50_000
    (tmp_path / "monitor-report.png").write_bytes(png)
    if os.environ.get("UPDATE_DOCS_SCREENSHOT") == "1":
        (ROOT / "docs").mkdir(exist_ok=True)
        (ROOT / "docs" / "monitor-report.png").write_bytes(png)


def test_a_live_run_is_drawn_per_hour_with_shadows_and_without_repeats(browser, tmp_path):
    """A few hours of a live run (tests/monitoring/test_queries.py `write_live_log`): one dot
    per hour, not one per chart; the shadow beside its decider; the repeats removed."""
    from tests.monitoring.test_queries import LIVE_HOURS, write_live_log

    recs, repeats = write_live_log(tmp_path / "log")
    page = write_html(connect(tmp_path / "log"), tmp_path / "live.html")
    session = browser.open_page(page.as_uri())
    body = browser.evaluate(session, BODY_JS)
    by = {c["name"]: c for c in browser.evaluate(session, CHARTS_JS)}
    assert body["charts"] == body["rendered"] == str(len(by)) == "6", body
    assert list(by) == ["predictions", "alert-rate", "score-hist", "latency", "shadow", "drift"]
    assert int(by["predictions"]["points"]) == 2 * LIVE_HOURS  # a bar per hour and version
    assert int(by["alert-rate"]["points"]) == 2 * LIVE_HOURS
    assert int(by["shadow"]["points"]) == 2 * LIVE_HOURS  # fraud_model/2 beside fraud_model/1: agreement, |diff|
    assert all(c["boxed"] == c["marks"] for c in by.values())
    report = json.loads(browser.evaluate(session, "document.body.dataset.report"))
    assert report["bin"] == "hour" and report["bins"] == LIVE_HOURS
    assert report["predictions"] == len(recs) and report["repeats_removed"] == len(repeats)
    assert report["shadows"] == ["fraud_model/1 -> fraud_model/2"]
    text = page.read_text()
    assert "Predictions per hour" in text and 'id="shadow-table"' in text
    assert f"{len(repeats):,} repeats of an event_id removed" in text
    problems = browser.problems(session, page.as_uri())
    assert problems == {"console": [], "exceptions": [], "log": [], "requests": []}, problems


def test_the_checks_catch_a_broken_page(browser, tmp_path):
    """Control: a chart without marks, a console error and a remote image are all seen."""
    page = tmp_path / "broken.html"
    page.write_text(
        '<!doctype html><html><body data-charts="2">'
        '<figure class="chart" id="c1"><svg><rect class="mark" width="10" height="10"/></svg></figure>'
        '<figure class="chart" id="c2"><svg><rect class="mark" width="0" height="0"/></svg></figure>'
        '<img src="http://127.0.0.1:9/x.png"><script>console.error("boom");</script>'
        f"<script>{monitor_report._SCRIPT}</script></body></html>"
    )
    url = page.as_uri()
    session = browser.open_page(url)
    body = browser.evaluate(session, BODY_JS)
    assert body["rendered"] == "1" != body["charts"]
    charts = {c["id"]: c for c in browser.evaluate(session, CHARTS_JS)}
    assert charts["c2"]["drawn"] == "0"
    problems = browser.problems(session, url)
    assert "boom" in problems["console"]
    assert problems["requests"] == ["http://127.0.0.1:9/x.png"]
