"""`gputui serve --public` in a real headless Chromium, as a person opens it: the page loads, the
fleet table's hosts appear, a key switches tabs, and a wrong token gets nothing of the app.

The browser draws the terminal on a canvas, so the test reads what the app sends it: a script
added before the page's own wraps the page's WebSocket and keeps the text of every frame. The
screenshots are kept under artefacts/browser/ (or $GPUTUI_ARTEFACTS/browser/), which git ignores.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from tests.conftest import need_program

pytestmark = pytest.mark.system

REPO = Path(__file__).resolve().parent.parent
ARTEFACTS = Path(os.environ.get("GPUTUI_ARTEFACTS") or REPO / "artefacts") / "browser"
DEMO_HOSTS = 4  # more GPUs than a per-GPU view shows: the monitor opens on the fleet table

# Runs in the page before textual.js: every frame the app sends, as text, in one string.
KEEP_TERMINAL_TEXT = """
window.gputuiText = "";
const NativeWebSocket = window.WebSocket;
const decoder = new TextDecoder();
window.WebSocket = function (url, protocols) {
  const socket = new NativeWebSocket(url, protocols);
  socket.addEventListener("message", (event) => {
    if (typeof event.data !== "string") {
      window.gputuiText += decoder.decode(event.data, {stream: true});
    }
  });
  return socket;
};
window.WebSocket.prototype = NativeWebSocket.prototype;
"""
# Escape sequences (CSI, OSC, and the two-character ones) between the drawn characters.
ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-_]")


class Served:
    def __init__(self, address: str, process: subprocess.Popen[str]) -> None:
        self.address = address
        self.process = process


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = ["--demo", str(DEMO_HOSTS), "--public", "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(
        [sys.executable, "-m", "gputui.cli", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    first = process.stdout.readline()
    found = re.search(r"http://\S+\?token=\S+", first)
    assert found, first
    try:
        yield Served(found.group(0), process)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    chromium = need_program("chromium", "/usr/bin/chromium", "chromium-browser")
    chromedriver = need_program("chromedriver", "/usr/bin/chromedriver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": KEEP_TERMINAL_TEXT})
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver: webdriver.Chrome, name: str) -> Path:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTEFACTS / name
    assert driver.save_screenshot(str(path)), path
    return path


def terminal_text(driver: webdriver.Chrome) -> str:
    return ESCAPES.sub("", str(driver.execute_script("return window.gputuiText || ''")))


def wait_for(what: str, check: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"no {what} after {timeout_s:g} s"
        time.sleep(0.2)


def test_a_wrong_token_gets_nothing_of_the_app(served: Served, browser: webdriver.Chrome) -> None:
    browser.delete_all_cookies()
    wrong = re.sub(r"token=\S+", "token=not-the-token", served.address)
    for address in (wrong, served.address.split("?")[0]):
        browser.get(address)
        body = browser.find_element(By.TAG_NAME, "body").text
        assert body == (
            "gputui: the access token is missing or wrong: open the address printed at start"
        )
        assert browser.find_elements(By.CSS_SELECTOR, "#terminal, script") == []
    time.sleep(1)
    assert terminal_text(browser) == ""
    screenshot(browser, "refused.png")


def test_the_page_shows_the_fleet_and_a_key_switches_tabs(
    served: Served, browser: webdriver.Chrome
) -> None:
    browser.get(served.address)
    names = [f"sim-{i:03d}" for i in range(1, DEMO_HOSTS + 1)]
    wait_for("fleet table", lambda: all(name in terminal_text(browser) for name in names))
    drawn = terminal_text(browser)
    assert f"{DEMO_HOSTS} hosts {DEMO_HOSTS * 8} GPUs" in drawn
    assert re.search(r"HOST +STATE", drawn), drawn[-2000:]
    assert "Fleet failure risk" not in drawn  # the Risk tab is not drawn until shown
    screenshot(browser, "fleet.png")

    # Keys go where a person's go: the terminal's input element, focused by the page.
    browser.find_element(By.CSS_SELECTOR, ".xterm-helper-textarea").send_keys("3")
    wait_for("risk tab", lambda: "Fleet failure risk" in terminal_text(browser)[len(drawn) :])
    assert f"{DEMO_HOSTS * 8} GPUs monitored on {DEMO_HOSTS} hosts" in terminal_text(browser)
    screenshot(browser, "risk.png")
