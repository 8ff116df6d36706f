"""The live page draws the series' ROIs over the image, where they lie in the frame."""

from __future__ import annotations

from test_liveview_browser import SHAPE, browser  # noqa: F401  (the fixture)

from conftest import make_config, wait_series_done
from tango_receiver.api import start_sidecar
from tango_receiver.engine.receiver import Receiver
from tango_receiver.sim.frames import synthetic_frames
from tango_receiver.sim.internal import internal_series

#: each ROI's rectangle in the SVG's coordinates (image pixels), and its label
BOXES_JS = """Array.from(document.querySelectorAll('#rois g')).map(g => {
  const r = g.querySelector('rect');
  return [g.dataset.roi, ...['x', 'y', 'width', 'height'].map(k => Number(r.getAttribute(k))),
          g.querySelector('text').textContent];
})"""


def test_the_live_page_draws_the_rois(browser, tmp_path, sender):  # noqa: F811
    table = {"spot": [4, 10, 6, 20], "band": [20, 32, 0, 48]}
    receiver = Receiver(make_config(sender.port, tmp_path, rois=table))
    receiver.start()
    sidecar = start_sidecar(receiver, "127.0.0.1", 0)
    try:
        browser.call("Page.navigate", url=f"{sidecar.url}/live")
        frames = synthetic_frames(2, SHAPE, "uint16", rate=5.0, seed=3)
        sender.send(internal_series(frames, str(tmp_path / "rois.h5")))
        wait_series_done(receiver, 1)
        browser.wait_for("document.querySelectorAll('#rois g').length === 2")
        sums = {name: frames[1][r0:r1, c0:c1].sum() for name, (r0, r1, c0, c1) in table.items()}
        assert browser.evaluate(BOXES_JS) == [
            ["spot", 6, 4, 14, 6, f"spot {sums['spot']}"],
            ["band", 0, 20, 48, 12, f"band {sums['band']}"],
        ]
        assert (
            browser.evaluate("document.getElementById('rois').getAttribute('viewBox')")
            == f"0 0 {SHAPE[1]} {SHAPE[0]}"
        )
        assert browser.exceptions == []
    finally:
        sidecar.stop()
        receiver.close()
