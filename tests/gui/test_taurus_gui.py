"""Taurus GUIs on a receiver during a series, under Xvfb, opened as a beamline user opens them:
a TaurusForm of every attribute, a TaurusDevicePanel, and the live image in taurus_pyqtgraph's
TaurusImageItem (the widget README recommends). Nothing they show may stall the Qt event loop.

Needs Xvfb and the libraries of Qt's xcb platform plugin (.ci/system-deps.sh installs them) and
the ``gui`` extra (PyQt5, taurus_pyqtgraph); skips, saying which is missing, without them.
Screenshots of every window are kept in test-artefacts/gui/.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tango_receiver.sim.frames import synthetic_frames
from tango_receiver.sim.internal import internal_series
from tango_receiver.tango.database import DatabaseServer
from tango_servers import entry, registered_server

ARTEFACTS = Path(__file__).resolve().parents[2] / "test-artefacts" / "gui"
NAME = "stins-gui"
SHAPE = (1024, 1024)  # 2 MB frames, the largest the image attributes publish unbinned
RATE = 20.0  # frames/s
WATCH_S = 20.0  # how long the event loop is watched during the series
TICK_S = 0.05
MAX_LATE_S = 0.5
# what QApplication needs to start on the display; run in a child first, since Qt aborts the
# process where its platform plugin cannot load
QT_PROBE = "from PyQt5.QtWidgets import QApplication; QApplication(['probe'])"


def _missing_gui_packages() -> str:
    for module in ("PyQt5.QtWidgets", "pyqtgraph", "taurus_pyqtgraph"):
        try:
            __import__(module)
        except ImportError as exc:
            return f"{module} not importable ({exc}): pip install -e '.[gui]'"
    return ""


@pytest.fixture(scope="module")
def display() -> Iterator[str]:
    """An Xvfb display of its own, on which Qt starts; skips saying what is missing."""
    missing = _missing_gui_packages()
    if missing:
        pytest.skip(missing)
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        pytest.skip("Xvfb not installed (.ci/system-deps.sh installs it and Qt's libraries)")
    read, write = os.pipe()
    server = subprocess.Popen(
        [xvfb, "-displayfd", str(write), "-screen", "0", "1600x1200x24", "-nolisten", "tcp"],
        pass_fds=(write,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    try:
        ready, _, _ = select.select([read], [], [], 30)
        number = os.read(read, 64).decode().strip() if ready else ""
        if not number:
            pytest.skip("Xvfb gave no display number within 30 s")
        name = f":{number}"
        env = dict(os.environ, DISPLAY=name, QT_QPA_PLATFORM="xcb")
        probe = subprocess.run(
            [sys.executable, "-c", QT_PROBE], env=env, capture_output=True, text=True, timeout=60
        )
        if probe.returncode != 0:
            pytest.skip(
                "Qt cannot start on Xvfb (.ci/system-deps.sh installs the libraries "
                f"its xcb plugin loads): {probe.stderr.strip()[-500:]}"
            )
        yield name
    finally:
        os.close(read)
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)


@pytest.fixture(scope="module")
def qapp(display):
    """The process's one Qt application, on the Xvfb display."""
    os.environ.update(DISPLAY=display, QT_QPA_PLATFORM="xcb")
    from taurus.qt.qtgui.application import TaurusApplication

    app = TaurusApplication.instance() or TaurusApplication([], cmd_line_parser=None)
    yield app
    app.closeAllWindows()


def lateness(app, seconds: float) -> list[float]:
    """How late each tick of a TICK_S timer came while the event loop ran for ``seconds``."""
    from taurus.external.qt import Qt

    ticks = [time.monotonic()]
    timer = Qt.QTimer()
    timer.setInterval(int(TICK_S * 1000))
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    Qt.QTimer.singleShot(int(seconds * 1000), app.quit)
    timer.start()
    app.exec_()
    timer.stop()
    ticks.append(time.monotonic())  # a loop frozen at the end is late too
    return [later - earlier - TICK_S for earlier, later in zip(ticks[:-1], ticks[1:], strict=True)]


def shown_image(item) -> np.ndarray | None:
    image = item.image
    return None if image is None else np.asarray(getattr(image, "magnitude", image))


def model_labels(widget, suffix: str) -> list:
    """The TaurusLabels in ``widget`` whose model ends with ``suffix``."""
    from taurus.qt.qtgui.display import TaurusLabel

    return [
        label
        for label in widget.findChildren(TaurusLabel)
        if label.getModelName().lower().endswith(suffix)
    ]


def process_events_until(app, predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        app.processEvents()
        time.sleep(0.05)
    return True


def test_taurus_form_panel_and_image_stay_responsive(tmp_path, sender, qapp):
    import pyqtgraph
    from taurus.qt.qtgui.panel import TaurusDevicePanel, TaurusForm
    from taurus_pyqtgraph import TaurusImageItem

    frames = synthetic_frames(4, SHAPE, "uint16", rate=3.0)
    count = int(RATE * (WATCH_S + 5))
    config = entry(sender, tmp_path) | {"dtype": "uint16", "shape": list(SHAPE)}
    with (
        DatabaseServer(tmp_path / "tango-db") as database,
        registered_server(tmp_path, database, NAME, config) as (proxy, url),
    ):
        form = TaurusForm()
        form.setModel([f"{url}/{name}" for name in proxy.get_attribute_list()])
        panel = TaurusDevicePanel()
        panel.setModel(url)
        plot = pyqtgraph.PlotWidget()
        item = TaurusImageItem()
        plot.addItem(item)
        item.setModel(f"{url}/last_image")
        windows = {"form": form, "device-panel": panel, "image": plot}
        for window in windows.values():
            window.resize(900, 1100)
            window.show()

        sending = threading.Thread(
            target=sender.send,
            daemon=True,
            kwargs={"messages": list(internal_series(frames, count=count)), "rate": RATE},
        )
        sending.start()
        late = lateness(qapp, WATCH_S)
        sending.join(60)
        assert not sending.is_alive(), "the series was not sent within a minute"

        last = frames[(count - 1) % len(frames)]
        process_events_until(qapp, lambda: np.array_equal(shown_image(item), last), 15)
        (state,) = model_labels(panel, "/state")
        (status,) = model_labels(form, "/status")
        settled = process_events_until(
            qapp, lambda: state.text() == "ON" and status.getDisplayValue().startswith("ON: "), 5
        )
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        for name, window in windows.items():
            window.grab().save(str(ARTEFACTS / f"{name}.png"))
        (ARTEFACTS / "timer.txt").write_text(
            f"{len(late)} ticks of {TICK_S * 1000:.0f} ms over {WATCH_S} s, at most "
            f"{max(late) * 1000:.0f} ms late\n"
        )
        received = proxy.frames_received
        for window in windows.values():
            window.close()
        item.setModel(None)
        form.setModel([])
        panel.setModel("")
        qapp.processEvents()

    assert received == count
    # a form trims a Status wider than its row to '...' (a link to the whole text)
    assert settled, (
        f"after the series, the device panel shows State {state.text()}, the "
        f"form Status {status.getDisplayValue()!r}"
    )
    assert max(late) <= MAX_LATE_S, (
        f"the Qt event loop stalled: a {TICK_S * 1000:.0f} ms timer came {max(late):.2f} s late "
        f"({sum(x > MAX_LATE_S for x in late)} of {len(late)} ticks over {MAX_LATE_S} s)"
    )
    assert len(late) >= WATCH_S / TICK_S / 2, f"only {len(late)} ticks in {WATCH_S} s"
    shown = shown_image(item)
    assert shown is not None and shown.dtype == last.dtype and np.array_equal(shown, last), (
        "TaurusImageItem does not show the last frame sent"
    )
