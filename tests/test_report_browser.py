"""The report in a real headless browser (Debian's chromium) driven over the DevTools protocol: the page
loads with no console errors and no network requests, every image renders, and a full-page screenshot
is saved under the test's temporary directory.

chromium is looked up on PATH; when it is missing and the tests run as root with apt-get, the setup
installs it (`apt-get install -y chromium`); elsewhere the tests skip and say why. Set
SHARDSIFT_NO_BROWSER_INSTALL=1 to never install.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
import urllib.request

import pytest
from test_report import STAGES, _run

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--no-default-browser-check",
         "--disable-extensions", "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
         "--window-size=1280,900"]


def _which() -> str | None:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def _install() -> str:
    """Install Debian's chromium when we may (root, apt-get); return why not otherwise."""
    if os.environ.get("SHARDSIFT_NO_BROWSER_INSTALL"):
        return "SHARDSIFT_NO_BROWSER_INSTALL is set"
    if not shutil.which("apt-get"):
        return "apt-get is not available"
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "not root, so apt-get cannot install it"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "-q", "chromium"]
    try:
        if subprocess.run(cmd, env=env, capture_output=True, timeout=900, check=False).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=600, check=False)
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, check=False)
            if proc.returncode != 0:
                return f"apt-get install chromium failed: {proc.stderr.strip().splitlines()[-1:]}"
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"apt-get install chromium failed: {err}"
    return ""


@pytest.fixture(scope="session")
def browser_path():
    path = _which()
    if path is None:
        why = _install()
        path = _which()
        if path is None:
            pytest.skip(f"no headless browser: chromium is not installed and could not be installed ({why or '?'}); "
                        "install it with `apt-get install -y chromium`")
    pytest.importorskip("websocket", reason="websocket-client (the dev extra) drives the browser")
    return path


class Browser:
    """One headless chromium with one page, spoken to over the DevTools protocol (CDP)."""

    def __init__(self, exe: str, user_dir: str):
        import websocket

        self.proc = subprocess.Popen([exe, *FLAGS, f"--user-data-dir={user_dir}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = os.path.join(user_dir, "DevToolsActivePort")
        deadline = time.monotonic() + 60
        port = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.proc.returncode} before it listened")
            if os.path.exists(port_file):
                lines = open(port_file).read().split()  # noqa: SIM115 - tiny file, read once
                if lines:
                    port = int(lines[0])
                    break
            time.sleep(0.1)
        if port is None:
            raise RuntimeError("chromium did not open its DevTools port within 60 s")
        pages = []
        while time.monotonic() < deadline and not pages:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
                pages = [p for p in json.load(r) if p.get("type") == "page"]
            if not pages:
                time.sleep(0.1)
        self.ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=60, suppress_origin=True)
        self.events: list[dict] = []
        self._id = 0

    def call(self, method: str, **params) -> dict:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def wait_for(self, method: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        for ev in self.events:
            if ev["method"] == method:
                return ev
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv())
            if "method" in msg:
                self.events.append(msg)
                if msg["method"] == method:
                    return msg
        raise TimeoutError(method)

    def load(self, path: str) -> None:
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")
        self.events.clear()
        self.call("Page.navigate", url="file://" + os.path.abspath(path))
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expr: str):
        res = self.call("Runtime.evaluate", expression=expr, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"script error: {res['exceptionDetails']}")
        return res["result"].get("value")

    def errors(self) -> list[str]:
        out = []
        for ev in self.events:
            m, p = ev["method"], ev.get("params", {})
            if m == "Runtime.exceptionThrown":
                out.append(f"exception: {p.get('exceptionDetails', {}).get('text')}")
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(f"console.{p['type']}: {[a.get('value') for a in p.get('args', [])]}")
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")
        return out

    def requests(self) -> list[str]:
        return [ev["params"]["request"]["url"] for ev in self.events if ev["method"] == "Network.requestWillBeSent"]

    def images(self) -> list[list]:
        """[complete, naturalWidth, naturalHeight] of every image, after each has decoded or failed."""
        return json.loads(self.evaluate(
            "Promise.all(Array.from(document.images).map(i => i.decode().then(() => 0, () => 1)))"
            ".then(() => JSON.stringify(Array.from(document.images).map("
            "i => [i.complete, i.naturalWidth, i.naturalHeight])))"))

    def screenshot(self, path: str, max_height: int = 16000) -> tuple[int, int]:
        size = self.call("Page.getLayoutMetrics")["cssContentSize"]
        w, h = int(size["width"]), min(int(size["height"]), max_height)
        res = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                        clip={"x": 0, "y": 0, "width": w, "height": h, "scale": 1})
        with open(path, "wb") as fh:
            fh.write(base64.b64decode(res["data"]))
        return w, h

    def close(self):
        try:
            self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def browser(browser_path, tmp_path):
    b = Browser(browser_path, str(tmp_path / "chromium-profile"))
    try:
        yield b
    finally:
        b.close()


def test_report_renders_in_headless_chromium(browser, tmp_path):
    from shardsift.report import write_report
    from shardsift.sample import write_sample

    write_sample(str(tmp_path / "sample"), n_docs=400, n_shards=2, seed=0)
    _run(tmp_path / "sample" / "pool", tmp_path / "out", stages=STAGES)
    page = write_report(str(tmp_path / "out"), label_column="domain")
    with open(page, encoding="utf-8") as fh:
        n_img = fh.read().count("<img")
    browser.load(page)
    assert browser.errors() == []
    assert [u for u in browser.requests() if not u.startswith(("file:", "data:"))] == []
    imgs = browser.images()
    assert len(imgs) == n_img >= 15
    assert all(done and w > 0 and h > 0 for done, w, h in imgs), imgs
    title = browser.evaluate("document.title")
    assert title.startswith("shardsift report")
    sections = browser.evaluate("Array.from(document.querySelectorAll('section')).map(s => s.id).join(',')")
    assert sections.split(",")[:3] == ["summary", "funnel", "composition"] and "stage-6" in sections
    shot = tmp_path / "report.png"
    w, h = browser.screenshot(str(shot))
    with open(shot, "rb") as fh:
        data = fh.read()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and w >= 800 and h > 3000
    print(f"screenshot: {shot} ({w}x{h})")


def test_browser_checks_catch_errors_and_broken_images(browser, tmp_path):
    """The checks above can fail: a console error, a script exception and a broken image are seen."""
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><img src=\"data:image/png;base64,AAAA\">"
                   "<script>console.error('boom'); undefined_function();</script></body></html>")
    browser.load(str(bad))
    errs = browser.errors()
    assert any("boom" in e for e in errs) and any("exception" in e for e in errs), errs
    assert browser.images() == [[True, 0, 0]]
