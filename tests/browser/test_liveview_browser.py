"""The live-view page in a real headless Chromium, driven over the DevTools protocol.

Skips only when no Chromium can be found (.ci/system-deps.sh installs the Debian package);
a Chromium that is there but fails to start is a failure.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import httpx
import numpy as np
import pytest
import websocket
from PIL import Image

from conftest import make_config, wait_series_done
from tango_receiver.api import start_sidecar
from tango_receiver.engine.receiver import Receiver
from tango_receiver.sim.frames import synthetic_frames
from tango_receiver.sim.internal import internal_series

CANDIDATES = ("chromium", "chromium-browser", "google-chrome-stable", "google-chrome")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0")
START_TIMEOUT_S = 30.0
SHAPE = (32, 48)

#: The red channel of the image on display, drawn at its natural size: what a person sees.
PIXELS_JS = """(() => {
  const img = document.getElementById("frame");
  if (!img.complete || !img.naturalWidth) return null;
  const canvas = document.createElement("canvas");
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const context = canvas.getContext("2d");
  context.drawImage(img, 0, 0);
  const rgba = context.getImageData(0, 0, canvas.width, canvas.height).data;
  const red = Array.from(rgba.filter((_, i) => i % 4 === 0));
  return {width: canvas.width, height: canvas.height, red: red};
})()"""


def find_chromium() -> str | None:
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        return explicit
    return next((path for path in map(shutil.which, CANDIDATES) if path), None)


class DevTools:
    """Just enough of the Chrome DevTools protocol: commands in order, exceptions recorded."""

    def __init__(self, ws_url: str) -> None:
        # no Origin header: Chromium refuses DevTools websockets from origins it was not told of
        self.ws = websocket.create_connection(ws_url, timeout=START_TIMEOUT_S, suppress_origin=True)
        self._next_id = 0
        self.exceptions: list[dict] = []

    def call(self, method: str, **params) -> dict:
        self._next_id += 1
        self.ws.send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        while True:  # each recv is bounded by the socket timeout
            message = json.loads(self.ws.recv())
            if message.get("method") == "Runtime.exceptionThrown":
                self.exceptions.append(message["params"]["exceptionDetails"])
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 15.0):
        deadline = time.monotonic() + timeout
        while not (value := self.evaluate(expression)):
            if time.monotonic() > deadline:
                raise AssertionError(f"page never satisfied {expression!r} in {timeout} s; "
                                     f"page says: {self.evaluate('document.body.innerText')!r}")
            time.sleep(0.05)
        return value

    def text(self, selector: str) -> str:
        return self.evaluate(f"document.querySelector({json.dumps(selector)}).textContent")

    def close(self) -> None:
        self.ws.close()


def _devtools_port(profile: Path, process: subprocess.Popen, log: Path) -> int:
    """Chromium writes the port it picked for --remote-debugging-port=0 into the profile."""
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + START_TIMEOUT_S
    while not (port_file.exists() and port_file.read_text().strip()):
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"Chromium did not start (exit {process.poll()}):\n"
                                 f"{log.read_text()[-3000:]}")
        time.sleep(0.05)
    return int(port_file.read_text().splitlines()[0])


@pytest.fixture
def browser(tmp_path):
    binary = find_chromium()
    if binary is None:
        pytest.skip("Chromium not found (Debian package 'chromium', installed by "
                    ".ci/system-deps.sh; or set CHROMIUM=/path/to/chrome): the live-view page "
                    "is not tested in a browser")
    profile = tmp_path / "chromium-profile"
    log = tmp_path / "chromium.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                   stdout=subprocess.DEVNULL, stderr=stderr,
                                   start_new_session=True)
    devtools = None
    try:
        port = _devtools_port(profile, process, log)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as reply:
            targets = json.load(reply)
        page = next(t for t in targets if t["type"] == "page")
        devtools = DevTools(page["webSocketDebuggerUrl"])
        devtools.call("Runtime.enable")
        yield devtools
    finally:
        if devtools is not None:
            devtools.close()
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the group of the browser started above
            process.wait(10)


def _server_png(url: str) -> list[int]:
    png = httpx.get(f"{url}/last_frame", params={"format": "png"}, timeout=10).content
    return np.asarray(Image.open(io.BytesIO(png))).ravel().tolist()


def test_live_view_shows_new_frames_counters_and_state(browser, tmp_path, sender):
    receiver = Receiver(make_config(sender.port, tmp_path))
    receiver.start()
    sidecar = start_sidecar(receiver, "127.0.0.1", 0)
    try:
        browser.call("Page.navigate", url=f"{sidecar.url}/live")
        browser.wait_for("document.querySelector('#state')?.textContent === 'idle'")
        browser.wait_for("document.querySelector('#frame-info').textContent"
                         ".includes('no frame to show yet')")
        assert browser.text("[data-field=frames_received]") == "0"

        sender.send(internal_series(synthetic_frames(3, SHAPE, "uint16", rate=20.0, seed=1),
                                 str(tmp_path / "first.h5")))
        wait_series_done(receiver, 1)
        browser.wait_for("document.getElementById('frame').dataset.frame === '2'")
        first = browser.evaluate(PIXELS_JS)
        assert (first["height"], first["width"]) == SHAPE
        assert first["red"] == _server_png(sidecar.url), "the page shows the latest frame"
        assert len(set(first["red"])) > 10, "an autoscaled frame, not a blank"
        assert browser.text("[data-field=frames_received]") == "3"
        assert browser.text("[data-field=frames_written]") == "3"
        assert browser.text("[data-field=filename]") == str(tmp_path / "first.h5")

        # a slow series: the page follows the state while it runs, and the new frames
        slow = threading.Thread(target=sender.send, daemon=True, kwargs={
            "messages": internal_series(synthetic_frames(6, SHAPE, "uint16", rate=20.0, seed=2),
                                     str(tmp_path / "second.h5")),
            "rate": 5})
        slow.start()
        browser.wait_for("document.querySelector('#state').textContent === 'running'")
        slow.join(15)
        wait_series_done(receiver, 2)
        browser.wait_for("document.getElementById('frame').dataset.frame === '5' && "
                         "document.querySelector('#state').textContent === 'idle'")
        second = browser.evaluate(PIXELS_JS)
        assert second["red"] != first["red"], "the image must change when new frames arrive"
        assert second["red"] == _server_png(sidecar.url)
        browser.wait_for("document.querySelector('[data-field=frames_received]')"
                         ".textContent === '6'")
        assert browser.text("[data-field=series_count]") == "2"
        assert browser.text("[data-field=filename]") == str(tmp_path / "second.h5")
        assert browser.exceptions == []
    finally:
        sidecar.stop()
        receiver.close()
