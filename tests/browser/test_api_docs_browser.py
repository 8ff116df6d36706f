"""``/docs`` in a real headless Chromium: it renders the receiver's API from what the sidecar
serves alone, as on a beamline network that reaches no other host. (Skips where no Chromium
is found, as the live-view browser test does.)"""

from __future__ import annotations

import time

from test_liveview_browser import browser  # noqa: F401 - the fixture

from conftest import make_config
from tango_receiver.api import start_sidecar
from tango_receiver.engine.receiver import Receiver

RESOURCES_JS = "performance.getEntriesByType('resource').map(entry => entry.name)"
SETTLE_S = 1.0  # for anything the page would fetch once it has rendered (logos, validators)


def test_docs_render_from_the_sidecar_alone(browser, tmp_path):  # noqa: F811
    receiver = Receiver(make_config(1, tmp_path))
    sidecar = start_sidecar(receiver, "127.0.0.1", 0)
    try:
        browser.call("Page.navigate", url=f"{sidecar.url}/docs")
        browser.wait_for(
            "document.querySelectorAll('.opblock').length > 5 && "
            "document.body.innerText.includes('/received_frames')",
            timeout=30,
        )
        time.sleep(SETTLE_S)
        loaded = browser.evaluate(RESOURCES_JS)
        assert any(url.endswith("/openapi.json") for url in loaded), loaded
        assert all(url.startswith(sidecar.url + "/") for url in loaded), loaded
        assert browser.exceptions == []
    finally:
        sidecar.stop()
        receiver.close()
