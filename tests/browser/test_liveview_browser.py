"""The live-view page in a real headless Chromium, driven over the DevTools protocol.

Skips only when no Chromium can be found (.ci/system-deps.sh installs the Debian package);
a Chromium that is there but fails to start is a failure.
"""

from __future__ import annotations

import base64
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

from conftest import make_config, wait_series_done
from tango_receiver.api import start_sidecar
from tango_receiver.engine.receiver import Receiver
from tango_receiver.sim.frames import synthetic_frames
from tango_receiver.sim.internal import internal_series

CANDIDATES = ("chromium", "chromium-browser", "google-chrome-stable", "google-chrome")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)
START_TIMEOUT_S = 30.0
SHAPE = (32, 48)

#: The image on display as a person sees it: the canvas's red channel (grey: the level), and
#: the colour bar's first and last colour.
PIXELS_JS = """(() => {
  const canvas = document.getElementById("frame");
  if (!canvas.dataset.frame) return null;
  const rgba = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  const bar = document.getElementById("colorbar").getContext("2d")
    .getImageData(0, 0, 256, 1).data;
  return {width: canvas.width, height: canvas.height,
          red: Array.from(rgba.filter((_, i) => i % 4 === 0)),
          bar: [Array.from(bar.slice(0, 3)), Array.from(bar.slice(1020, 1023))]};
})()"""
#: Screenshots are kept here (gitignored) for a person or CI to look at.
ARTEFACTS = Path(__file__).resolve().parents[2] / "test-artefacts"


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
        result = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 15.0):
        deadline = time.monotonic() + timeout
        while not (value := self.evaluate(expression)):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"page never satisfied {expression!r} in {timeout} s; "
                    f"page says: {self.evaluate('document.body.innerText')!r}"
                )
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
            raise AssertionError(
                f"Chromium did not start (exit {process.poll()}):\n{log.read_text()[-3000:]}"
            )
        time.sleep(0.05)
    return int(port_file.read_text().splitlines()[0])


@pytest.fixture
def browser(tmp_path):
    binary = find_chromium()
    if binary is None:
        pytest.skip(
            "Chromium not found (Debian package 'chromium', installed by "
            ".ci/system-deps.sh; or set CHROMIUM=/path/to/chrome): the live-view page "
            "is not tested in a browser"
        )
    profile = tmp_path / "chromium-profile"
    log = tmp_path / "chromium.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
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


def _server_frame(url: str) -> np.ndarray:
    npy = httpx.get(f"{url}/last_frame", params={"format": "npy"}, timeout=10).content
    return np.load(io.BytesIO(npy))


def grey_levels(
    frame: np.ndarray, low: float | None = None, high: float | None = None
) -> list[int]:
    """The page's grey scale, computed apart: low..high (default min..max) to 0..255, rounded
    half up, clipped below and above."""
    values = frame.astype(np.float64).ravel()
    low = values.min() if low is None else low
    high = values.max() if high is None else high
    scaled = np.floor((values - low) * 255 / (high - low) + 0.5)
    return np.where(values <= low, 0, np.where(values >= high, 255, scaled)).astype(int).tolist()


@pytest.fixture
def live(tmp_path, sender):
    """A receiver on the test's sender with its REST sidecar: (receiver, sidecar URL)."""
    receiver = Receiver(make_config(sender.port, tmp_path))
    receiver.start()
    sidecar = start_sidecar(receiver, "127.0.0.1", 0)
    try:
        yield receiver, sidecar.url
    finally:
        sidecar.stop()
        receiver.close()


def set_control(browser, element: str, value) -> None:
    """What a person's edit does: set the control, then its change event."""
    prop = "checked" if isinstance(value, bool) else "value"
    browser.evaluate(
        f"(() => {{ const e = document.getElementById({json.dumps(element)}); "
        f"e.{prop} = {json.dumps(value)}; "
        f"e.dispatchEvent(new Event('change')); }})()"
    )


def point_at(browser, x: int, y: int) -> None:
    """Move the mouse over the centre of frame pixel (x, y), as the browser delivers it."""
    box = browser.evaluate(
        "(() => { const c = document.getElementById('frame'); "
        "const r = c.getBoundingClientRect(); "
        "return [r.left, r.top, r.width / c.width, r.height / c.height]; })()"
    )
    left, top, sx, sy = box
    browser.call(
        "Input.dispatchMouseEvent",
        type="mouseMoved",
        x=left + (x + 0.5) * sx,
        y=top + (y + 0.5) * sy,
    )


def test_live_view_shows_new_frames_counters_and_state(browser, tmp_path, sender):
    receiver = Receiver(make_config(sender.port, tmp_path))
    receiver.start()
    sidecar = start_sidecar(receiver, "127.0.0.1", 0)
    try:
        browser.call("Page.navigate", url=f"{sidecar.url}/live")
        browser.wait_for("document.querySelector('#state')?.textContent === 'idle'")
        browser.wait_for(
            "document.querySelector('#frame-info').textContent.includes('no frame to show yet')"
        )
        assert browser.text("[data-field=frames_received]") == "0"

        sender.send(
            internal_series(
                synthetic_frames(3, SHAPE, "uint16", rate=20.0, seed=1), str(tmp_path / "first.h5")
            )
        )
        wait_series_done(receiver, 1)
        browser.wait_for("document.getElementById('frame')?.dataset.frame === '2'")
        first = browser.evaluate(PIXELS_JS)
        assert (first["height"], first["width"]) == SHAPE
        assert first["red"] == grey_levels(_server_frame(sidecar.url)), (
            "the page shows the latest frame"
        )
        assert len(set(first["red"])) > 10, "an autoscaled frame, not a blank"
        assert browser.text("[data-field=frames_received]") == "3"
        assert browser.text("[data-field=frames_written]") == "3"
        assert browser.text("[data-field=filename]") == str(tmp_path / "first.h5")

        # a slow series: the page follows the state while it runs, and the new frames
        slow = threading.Thread(
            target=sender.send,
            daemon=True,
            kwargs={
                "messages": internal_series(
                    synthetic_frames(6, SHAPE, "uint16", rate=20.0, seed=2),
                    str(tmp_path / "second.h5"),
                ),
                "rate": 5,
            },
        )
        slow.start()
        browser.wait_for("document.querySelector('#state').textContent === 'running'")
        slow.join(15)
        wait_series_done(receiver, 2)
        browser.wait_for(
            "document.getElementById('frame')?.dataset.frame === '5' && "
            "document.querySelector('#state').textContent === 'idle'"
        )
        second = browser.evaluate(PIXELS_JS)
        assert second["red"] != first["red"], "the image must change when new frames arrive"
        assert second["red"] == grey_levels(_server_frame(sidecar.url))
        browser.wait_for(
            "document.querySelector('[data-field=frames_received]').textContent === '6'"
        )
        assert browser.text("[data-field=series_count]") == "2"
        assert browser.text("[data-field=filename]") == str(tmp_path / "second.h5")
        assert browser.exceptions == []
    finally:
        sidecar.stop()
        receiver.close()


def test_colour_bar_display_range_and_pixel_readout(browser, tmp_path, sender, live):
    receiver, url = live
    browser.call(
        "Emulation.setDeviceMetricsOverride",
        width=1280,
        height=860,
        deviceScaleFactor=1,
        mobile=False,
    )
    browser.call("Page.navigate", url=f"{url}/live")
    sender.send(
        internal_series(
            synthetic_frames(3, SHAPE, "uint16", rate=200.0, seed=3), str(tmp_path / "scale.h5")
        )
    )
    wait_series_done(receiver, 1)
    browser.wait_for("document.getElementById('frame')?.dataset.frame === '2'")
    frame = _server_frame(url)
    low, high = int(frame.min()), int(frame.max())

    # auto range: the frame's min..max, on the colour bar's ends and in the min/max fields
    shown = browser.evaluate(PIXELS_JS)
    assert shown["red"] == grey_levels(frame)
    assert shown["bar"] == [[0, 0, 0], [255, 255, 255]]
    assert (browser.text("#range-min"), browser.text("#range-max")) == (str(low), str(high))
    assert browser.evaluate(
        "[document.getElementById('vmin').value, document.getElementById('vmax').value]"
    ) == [str(low), str(high)]

    # a range typed by hand: auto goes off, pixels outside it clip to the bar's ends
    lo, hi = np.percentile(frame, [25, 75]).round().tolist()
    set_control(browser, "vmin", str(int(lo)))
    set_control(browser, "vmax", str(int(hi)))
    shown = browser.evaluate(PIXELS_JS)
    assert shown["red"] == grey_levels(frame, lo, hi)
    assert browser.evaluate("document.getElementById('auto').checked") is False
    assert (browser.text("#range-min"), browser.text("#range-max")) == (str(int(lo)), str(int(hi)))
    assert browser.text("#range-mid") == str((lo + hi) / 2).removesuffix(".0")

    # a colour map: the bar shows it end to end; log scale keeps the ends, lifts the middle
    set_control(browser, "cmap", "viridis")
    assert browser.evaluate(PIXELS_JS)["bar"] == [[0x44, 0x01, 0x54], [0xFD, 0xE7, 0x25]]
    set_control(browser, "cmap", "grey")
    set_control(browser, "auto", True)
    set_control(browser, "log", True)
    logged = browser.evaluate(PIXELS_JS)["red"]
    assert min(logged) == 0 and max(logged) == 255
    assert np.mean(logged) > np.mean(grey_levels(frame)), "log lifts the low values"
    assert float(browser.text("#range-mid")) < (low + high) / 2
    set_control(browser, "log", False)
    assert (browser.text("#range-min"), browser.text("#range-max")) == (str(low), str(high))

    # the value, x and y under the pointer: x is the column, y the row
    for x, y in ((10, 5), (0, 0), (SHAPE[1] - 1, SHAPE[0] - 1)):
        point_at(browser, x, y)
        assert browser.text("#pixel") == f"x {x} · y {y} · value {frame[y, x]}"

    # binned: detector coordinates of the block, and its mean
    set_control(browser, "downsample", "2")
    browser.wait_for("document.getElementById('frame').width === 24")
    point_at(browser, 7, 3)
    browser.wait_for("document.getElementById('pixel').textContent.includes('mean of 2')")
    text = browser.text("#pixel")
    assert text.startswith("x 14 · y 6 · value ") and text.endswith(" (mean of 2 × 2)")
    value = float(text.split("value ")[1].split(" ")[0])
    assert value == pytest.approx(frame[6:8, 14:16].mean(), rel=1e-4)
    set_control(browser, "downsample", "1")
    browser.wait_for("document.getElementById('frame').width === 48")
    set_control(browser, "cmap", "viridis")
    point_at(browser, 30, 20)

    ARTEFACTS.mkdir(exist_ok=True)
    shot = ARTEFACTS / "liveview.png"
    shot.write_bytes(base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"]))
    print(f"live-view screenshot: {shot}")
    assert browser.exceptions == []


def test_messages_of_earlier_series_age_out(browser, tmp_path, sender, live):
    receiver, url = live
    browser.call("Page.navigate", url=f"{url}/live?message_age_s=3")
    frames = synthetic_frames(2, SHAPE, "uint16", seed=4)
    first = list(internal_series(frames, str(tmp_path / "first.h5")))
    sender.send([first[0], [b"not json"], *first[1:]])  # one invalid message: a warning
    wait_series_done(receiver, 1)
    browser.wait_for(
        "[...document.querySelectorAll('#messages .current')]"
        ".some(line => line.textContent.includes('not JSON'))"
    )

    sender.send(internal_series(frames, str(tmp_path / "second.h5")))
    wait_series_done(receiver, 2)
    browser.wait_for("document.querySelector('[data-field=series_count]').textContent === '2'")
    started = time.monotonic()
    # still read for message_age_s after the next series starts, dimmed, then gone
    assert browser.evaluate(
        "[...document.querySelectorAll('#messages .earlier')]"
        ".some(line => line.textContent.includes('not JSON'))"
    )
    browser.wait_for(
        "!document.getElementById('messages').textContent.includes('not JSON')", timeout=10
    )
    assert 2 < time.monotonic() - started < 6
    assert receiver.snapshot().messages, "the receiver still has it: only the page ages it out"
    assert browser.exceptions == []


def shown(value: np.generic) -> str:
    """How the page writes a value: whole numbers exactly, others to 6 significant digits."""
    number = value.item()
    return str(int(number)) if float(number).is_integer() else f"{number:.6g}"


@pytest.mark.parametrize(
    "dtype, scale, offset",
    [
        ("uint32", 1000, 4_000_000_000),
        ("int32", -7, -1),
        ("float32", 0.25, -3.0),
        ("uint64", 3, 2**40),
        ("float64", 1e-3, 0.0),
        ("float16", 0.5, -8.0),
        ("int8", -1, 60),
    ],
)
def test_pixel_readout_shows_every_pixel_type_exactly(
    browser, tmp_path, sender, live, dtype, scale, offset
):
    receiver, url = live
    frame = (np.arange(SHAPE[0] * SHAPE[1]).reshape(SHAPE) * scale + offset).astype(dtype)
    browser.call("Page.navigate", url=f"{url}/live")
    sender.send(internal_series([frame], str(tmp_path / "types.h5")))
    wait_series_done(receiver, 1)
    browser.wait_for("document.getElementById('frame')?.dataset.frame === '0'")
    point_at(browser, 5, 2)
    assert browser.text("#pixel") == f"x 5 · y 2 · value {shown(frame[2, 5])}"
    assert browser.text("#range-max") == shown(frame.max())
    assert browser.exceptions == []
