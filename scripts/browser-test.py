#!/usr/bin/env python3
"""Browser test of the web UI in headless Chromium (Debian's `chromium` + `chromium-driver`).

Starts the api (on the tiny model committed under crates/classifier/tests/fixtures, or
MODEL_PATH/RESULTS_DIR if set) and the ui from target/debug, drives Chromium over WebDriver
(plain HTTP, standard library only): types a review, submits with the keyboard, and checks the
label and confidence; says the result is wrong and checks the thanks; uploads a CSV, checks the
preview, sends a corrected copy back; opens the model and monitoring pages. The api logs to a
SQLite prediction log in a temporary folder. Screenshots of every page at laptop and phone
widths go to docs/screenshots/.

With SECOND_TEXTS=FILE (one text per line) the script sends those texts to the api before the
monitoring page, as a burst of traffic unlike the model's training data, so that the page
shows a drift.

    sudo apt-get install chromium chromium-driver
    cargo build -p api -p ui && scripts/browser-test.py
"""

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "docs" / "screenshots"
FIXTURE = ROOT / "crates/classifier/tests/fixtures/tiny-distilbert"
REVIEW = "A wonderful, heart-warming film. The cast is superb and I loved every minute."
WIDTHS = {"laptop": (1280, 900), "phone": (390, 844)}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ok(url, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    sys.exit(f"FAIL: {url} did not answer 200 within {seconds}s")


class WebDriver:
    """The few W3C WebDriver commands this test needs."""

    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}"
        args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--hide-scrollbars", "--force-device-scale-factor=1"]
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome",
                                                 "goog:chromeOptions": {"args": args}}}}
        self.session = self.call("POST", "/session", caps)["sessionId"]

    def call(self, method, path, body=None):
        if hasattr(self, "session") and not path.startswith("/session/") and path != "/session":
            path = f"/session/{self.session}{path}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return json.load(r)["value"]
        except urllib.error.HTTPError as e:
            sys.exit(f"FAIL: WebDriver {method} {path}: {e.read().decode()[:500]}")

    def get(self, url):
        self.call("POST", "/url", {"url": url})

    def find(self, css):
        found = self.call("POST", "/element", {"using": "css selector", "value": css})
        return next(iter(found.values()))

    def text(self, css):
        return self.call("GET", f"/element/{self.find(css)}/text")

    def type(self, css, keys):
        self.call("POST", f"/element/{self.find(css)}/value", {"text": keys})

    def click(self, css):
        self.call("POST", f"/element/{self.find(css)}/click", {})

    def keys(self, *keys):
        actions = [{"type": "keyDown", "value": k} for k in keys]
        actions += [{"type": "keyUp", "value": k} for k in reversed(keys)]
        self.call("POST", "/actions", {"actions": [{"type": "key", "id": "kb", "actions": actions}]})

    def active_id(self):
        return self.call("POST", "/execute/sync",
                         {"script": "return document.activeElement.id", "args": []})

    def resize(self, width, height):
        self.call("POST", "/window/rect", {"width": width, "height": height})

    def screenshot(self, name):
        """Full-page screenshot: the window is grown to the page's height first."""
        width = self.call("GET", "/window/rect")["width"]
        height = self.call("POST", "/execute/sync", {
            "script": "return document.documentElement.scrollHeight", "args": []})
        self.resize(width, min(int(height) + 120, 4000))
        png = base64.b64decode(self.call("GET", "/screenshot"))
        (SHOTS / f"{name}.png").write_bytes(png)
        return len(png)

    def quit(self):
        self.call("DELETE", f"/session/{self.session}")


def main():
    debug = ROOT / "target" / "debug"
    for binary in ("api", "ui"):
        if not (debug / binary).exists():
            sys.exit(f"FAIL: {debug / binary} is missing: run `cargo build -p api -p ui` first")
    chromedriver = shutil.which("chromedriver")
    if not chromedriver:
        sys.exit("FAIL: chromedriver not found: sudo apt-get install chromium chromium-driver")
    SHOTS.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="sentiment-browser-"))
    api_port, ui_port, wd_port = free_port(), free_port(), free_port()
    env = dict(os.environ, RUST_LOG="warn")
    env.setdefault("MODEL_PATH", str(FIXTURE))
    env.setdefault("RESULTS_DIR", str(work / "results"))
    env.setdefault("PREDICTION_LOG", f"sqlite://{work / 'results' / 'predictions.db'}")
    procs = [
        subprocess.Popen([debug / "api"], env=dict(env, APP_PORT=str(api_port))),
        subprocess.Popen([debug / "ui"], env=dict(env, UI_PORT=str(ui_port),
                                                  API_URL=f"http://127.0.0.1:{api_port}")),
        subprocess.Popen([chromedriver, f"--port={wd_port}"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL),
    ]
    try:
        wait_ok(f"http://127.0.0.1:{api_port}/health")
        wait_ok(f"http://127.0.0.1:{ui_port}/health")
        wait_ok(f"http://127.0.0.1:{wd_port}/status")
        ui = f"http://127.0.0.1:{ui_port}"
        wd = WebDriver(wd_port)
        try:
            run(wd, ui, work, f"http://127.0.0.1:{api_port}")
        finally:
            wd.quit()
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)
    print("PASS")


def run(wd, ui, work, api):
    wd.resize(*WIDTHS["laptop"])
    wd.get(ui + "/")
    assert wd.text("label[for=text]") == "Text to analyze", "the text area has a label"
    # Keyboard only: Tab reaches the text area, typing fills it, Ctrl+Enter is not needed:
    # Tab to the button and press Enter.
    wd.call("POST", "/execute/sync", {"script": "document.body.focus()", "args": []})
    for _ in range(10):
        if wd.active_id() == "text":
            break
        wd.keys("\ue004")  # Tab
    assert wd.active_id() == "text", "Tab reaches the text area"
    wd.type("#text", REVIEW)
    wd.keys("\ue004")  # Tab to the Analyze button
    wd.keys("\ue007")  # Enter
    time.sleep(0.5)
    verdict = wd.text("#result .verdict").lower()
    confidence = wd.text("#result .score .num")
    assert verdict in ("positive", "negative"), f"label shown: {verdict!r}"
    assert confidence.endswith("%") and 50.0 <= float(confidence[:-1]) <= 100.0, confidence
    assert REVIEW in wd.text("#result .quote"), "the submitted text is shown"
    print(f"analyze: {verdict} {confidence}")
    # Say it is wrong: the other label's button, then the thanks in its place.
    wd.click("#feedback form:nth-of-type(2) button")
    time.sleep(0.5)
    thanks = wd.text("#feedback .thanks")
    assert "recorded as" in thanks and "correction" in thanks, thanks
    print(f"feedback: {thanks}")
    # A second analysis, from an example, so the session history shows.
    wd.click(".examples li:nth-child(2) button")
    time.sleep(0.5)
    for label, size in WIDTHS.items():
        wd.resize(*size)
        wd.get(ui + "/")
        print(f"screenshot analyze-{label}: {wd.screenshot(f'analyze-{label}')} bytes")

    csv_path = work / "reviews.csv"
    csv_path.write_text(
        "id,review,stars\n"
        '1,"Loved it, a joy from start to finish",5\n'
        '2,"Dull, slow and far too long",1\n'
        '3,"The acting was superb",4\n'
        "4,,3\n"
        '5,"Worst film of the year",1\n')
    wd.resize(*WIDTHS["laptop"])
    wd.get(ui + "/batch")
    wd.type("#file", str(csv_path))
    column = wd.find("#column")
    wd.call("POST", f"/element/{column}/clear", {})
    wd.type("#column", "review")
    wd.click("form[enctype] button[type=submit]")
    time.sleep(1.0)
    preview = wd.text("table")
    assert "Loved it" in preview and "sentiment" in preview, preview[:300]
    href = wd.call("GET", f"/element/{wd.find('a[href*=download]')}/attribute/href")
    assert "/batch/download/" in href, href
    print("batch: preview and download link shown")
    # Send a corrected copy back: the first classified row relabelled.
    with urllib.request.urlopen(href if href.startswith("http") else ui + href) as r:
        classified = r.read().decode()
    lines = classified.splitlines()
    assert lines[0].endswith(",prediction_id"), lines[0]
    corrected = work / "corrected.csv"
    first = lines[1] + ",negative"
    corrected.write_text("\n".join([lines[0] + ",label", first] + lines[2:]) + "\n")
    wd.type("#corrections", str(corrected))
    wd.click("form[action='/batch/feedback'] button")
    time.sleep(1.0)
    sent = wd.text("#feedback-result")
    assert "1 corrections sent" in sent, sent
    print(f"batch corrections: {sent.splitlines()[0]}")
    for label, size in WIDTHS.items():
        wd.resize(*size)
        print(f"screenshot batch-{label}: {wd.screenshot(f'batch-{label}')} bytes")

    wd.resize(*WIDTHS["laptop"])
    wd.get(ui + "/model")
    page = wd.text("main")
    assert "positive" in page.lower() and "negative" in page.lower(), "labels on the model page"
    for label, size in WIDTHS.items():
        wd.resize(*size)
        wd.get(ui + "/model")
        print(f"screenshot model-{label}: {wd.screenshot(f'model-{label}')} bytes")

    send_second_texts(api)
    wd.resize(*WIDTHS["laptop"])
    wd.get(ui + "/monitoring?hours=1")
    page = wd.text("main")
    assert "Accuracy on feedback" in page and "Predictions" in page, page[:500]
    charts = wd.call("POST", "/execute/sync", {
        "script": "return document.querySelectorAll('main svg.chart').length", "args": []})
    assert charts >= 2, f"{charts} charts"
    print(f"monitoring: {charts} charts; " + " | ".join(
        line for line in page.splitlines() if "PSI" in line or "corrections" in line))
    for label, size in WIDTHS.items():
        wd.resize(*size)
        wd.get(ui + "/monitoring?hours=1")
        print(f"screenshot monitoring-{label}: {wd.screenshot(f'monitoring-{label}')} bytes")


def send_second_texts(api):
    """A burst of other text straight to the api (SECOND_TEXTS), for a visible drift."""
    path = os.environ.get("SECOND_TEXTS")
    if not path:
        return
    texts = [t for t in Path(path).read_text().splitlines() if t.strip()]
    for i in range(0, len(texts), 32):
        body = json.dumps({"inputs": texts[i:i + 32]}).encode()
        req = urllib.request.Request(api + "/predict", data=body,
                                     headers={"content-type": "application/json"})
        urllib.request.urlopen(req, timeout=120).read()
    print(f"sent {len(texts)} other texts to the api")


if __name__ == "__main__":
    main()
