"""The REST sidecar: every endpoint, its error cases, and a real series over real sockets."""

from __future__ import annotations

import io
import pickle
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from conftest import make_config, wait_series_done
from tango_receiver.api import start_sidecar
from tango_receiver.api.app import FrameFormat, negotiate
from tango_receiver.codecs.bslz4 import encode_chunk
from tango_receiver.engine.receiver import Receiver
from tango_receiver.sim.frames import synthetic_frames
from tango_receiver.sim.internal import internal_series
from tango_receiver.sim.sender import Sender

SHAPE = (32, 48)
#: The last frame of the served series: a ramp with a wide range, so autoscale and log scale
#: give different, predictable pictures.
RAMP = (np.arange(SHAPE[0] * SHAPE[1], dtype=np.uint32) ** 2).reshape(SHAPE)


@contextmanager
def serving(receiver: Receiver) -> Iterator[httpx.Client]:
    """The receiver's sidecar on a free port, and a client for it: the real server, not a mock."""
    sidecar = start_sidecar(receiver, "127.0.0.1", 0)
    try:
        with httpx.Client(base_url=sidecar.url, timeout=10) as http:
            yield http
    finally:
        sidecar.stop()


@pytest.fixture
def idle_receiver(tmp_path, sender):
    """A receiver that has seen nothing yet."""
    receiver = Receiver(make_config(sender.port, tmp_path))
    yield receiver
    receiver.close()


@pytest.fixture
def idle_client(idle_receiver):
    with serving(idle_receiver) as http:
        yield http


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A receiver after one complete series whose last frame is RAMP."""
    root = tmp_path_factory.mktemp("served")
    frames = synthetic_frames(4, SHAPE, "uint32", rate=3.0) + [RAMP]
    with Sender(timeout_s=20) as sender:
        receiver = Receiver(make_config(sender.port, root))
        receiver.start()
        try:
            sender.send(internal_series(frames, str(root / "served.h5")))
            wait_series_done(receiver)
            with serving(receiver) as http:
                yield receiver, http
        finally:
            receiver.close()


@pytest.fixture
def client(served):
    receiver, client = served
    receiver.downsample = 1
    yield client
    receiver.downsample = 1


# --- before any frame -----------------------------------------------------------------------
def test_idle_receiver_reports_idle_and_zero_frames(idle_client):
    assert idle_client.get("/status").json() == {"state": "idle"}
    assert idle_client.get("/received_frames").json() == {"value": 0}


@pytest.mark.parametrize("fmt", [None, "pickle", "raw", "npy", "png"])
def test_last_frame_is_404_with_a_reason_before_any_frame(idle_client, fmt):
    response = idle_client.get("/last_frame", params={"format": fmt} if fmt else {})
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"detail": "no frame to show yet"}


def test_downsample_get_and_set(idle_receiver, idle_client):
    assert idle_client.get("/downsample").json() == {"value": 1}
    assert idle_client.post("/downsample", params={"value": 4}).json() == {"value": 4}
    assert idle_client.get("/downsample").json() == {"value": 4}
    assert idle_receiver.downsample == 4


@pytest.mark.parametrize("value", ["0", "-1", "65", "1000", "abc", "2.5", ""])
def test_bad_downsample_is_422_and_changes_nothing(idle_client, value):
    idle_client.post("/downsample", params={"value": 3})
    response = idle_client.post("/downsample", params={"value": value})
    assert response.status_code == 422
    assert response.json()["detail"]
    assert idle_client.get("/downsample").json() == {"value": 3}


def test_downsample_without_value_is_422(idle_client):
    assert idle_client.post("/downsample").status_code == 422


def test_error_state_carries_its_cause(tmp_path, sender):
    receiver = Receiver(make_config(sender.port, tmp_path / "allowed"))
    receiver.start()
    try:
        sender.send(internal_series(synthetic_frames(2, (8, 8), "uint16"), "/elsewhere/x.h5"))
        wait_series_done(receiver)
        with serving(receiver) as http:
            body = http.get("/status").json()
    finally:
        receiver.close()
    assert body["state"] == "error"
    assert "outside the write roots" in body["error"]
    assert set(body) == {"state", "error"}


# --- the latest frame -----------------------------------------------------------------------
def test_pickle_is_the_default_and_keeps_the_existing_form(client):
    for accept in (None, "*/*", "image/pickle"):
        response = client.get("/last_frame", headers={"Accept": accept} if accept else {})
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/pickle"
        assert response.headers["cache-control"] == "no-store"
        header, blob, *rest = pickle.loads(response.content)
        assert rest == []
        assert header["frame"] == 4 and header["shape"] == list(SHAPE)
        assert header["type"] == "uint32" and header["compression"] == "bslz4"
        assert blob == encode_chunk(RAMP)  # as it came, with its 12-byte header


def test_pickle_of_a_compressed_frame_is_never_binned(client):
    """As the system this replaces: only uncompressed uint16 frames are binned in the pickle
    (tests/test_dropin_compat.py); ?format=raw bins every frame."""
    client.post("/downsample", params={"value": 2})
    header, blob = pickle.loads(client.get("/last_frame").content)
    assert header["shape"] == list(SHAPE) and blob == encode_chunk(RAMP)
    assert client.get("/last_frame", params={"format": "raw"}).headers["x-shape"] == "16,24"


@pytest.mark.parametrize(
    "how", [{"params": {"format": "raw"}}, {"headers": {"Accept": "application/octet-stream"}}]
)
def test_raw_frame_with_header_fields_in_response_headers(client, how):
    response = client.get("/last_frame", **how)
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["x-shape"] == "32,48" and response.headers["x-dtype"] == "uint32"
    assert response.headers["x-frame"] == "4" and response.headers["x-msg-number"] == "5"
    assert response.headers["x-downsample"] == "1"
    pixels = np.frombuffer(response.content, dtype=response.headers["x-dtype"])
    assert np.array_equal(pixels.reshape(32, 48), RAMP)


def test_npy_frame_downsampled(client):
    client.post("/downsample", params={"value": 4})
    response = client.get("/last_frame", headers={"Accept": "application/x-npy"})
    assert response.headers["content-type"] == "application/x-npy"
    array = np.load(io.BytesIO(response.content), allow_pickle=False)
    assert array.shape == (8, 12) and response.headers["x-shape"] == "8,12"
    assert np.allclose(array, RAMP.reshape(8, 4, 12, 4).mean(axis=(1, 3)), rtol=1e-6)


def test_png_is_autoscaled_and_log_scale_lifts_low_values(client):
    linear = np.asarray(
        Image.open(io.BytesIO(client.get("/last_frame", params={"format": "png"}).content))
    )
    logged = np.asarray(
        Image.open(
            io.BytesIO(client.get("/last_frame", params={"format": "png", "log": "true"}).content)
        )
    )
    assert linear.shape == logged.shape == SHAPE and linear.dtype == np.uint8
    assert np.abs(linear.astype(int) - np.rint(RAMP / RAMP.max() * 255)).max() <= 1
    expected_log = np.rint(np.log1p(RAMP.astype(float)) / np.log1p(float(RAMP.max())) * 255)
    assert np.abs(logged.astype(int) - expected_log).max() <= 1
    middle = RAMP.size // 4
    assert logged.flat[middle] > linear.flat[middle] + 100


def test_binning_coarser_than_the_frame_gives_one_pixel_not_an_error(client):
    client.post("/downsample", params={"value": 64})
    response = client.get("/last_frame", params={"format": "raw"})
    assert response.status_code == 200
    assert response.headers["x-shape"] == "1,1" and response.headers["x-downsample"] == "32"
    assert np.isclose(
        np.frombuffer(response.content, np.float32)[0], RAMP[:, :32].mean(), rtol=1e-5
    )
    header, _ = pickle.loads(client.get("/last_frame").content)
    assert header["shape"] == list(SHAPE)
    assert client.get("/last_frame", params={"format": "png"}).status_code == 200


@pytest.mark.parametrize(
    "accept, media",
    [
        ("image/png", "image/png"),
        ("image/*", "image/png"),
        ("application/*", "application/octet-stream"),
        ("text/html, image/png;q=0.5, application/x-npy;q=0.9", "application/x-npy"),
        ("image/png;q=0, */*;q=0.1", "image/pickle"),
        ("image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8", "image/png"),
    ],
)
def test_accept_header_negotiation(client, accept, media):
    response = client.get("/last_frame", headers={"Accept": accept})
    assert response.status_code == 200
    assert response.headers["content-type"] == media


def test_format_parameter_overrides_accept(client):
    response = client.get("/last_frame", params={"format": "npy"}, headers={"Accept": "image/png"})
    assert response.headers["content-type"] == "application/x-npy"


@settings(max_examples=300, deadline=None, database=None)
@given(st.text(alphabet=st.sampled_from("image/png*;q=0.5, \t-x"), max_size=40) | st.text())
def test_any_accept_header_gets_a_format_or_none(accept):
    assert negotiate(accept) in (None, *FrameFormat)


@pytest.mark.parametrize("accept", ["text/html", "image/png;q=0", "image/jpeg, text/*", ";;,"])
def test_unservable_accept_is_406(client, accept):
    response = client.get("/last_frame", headers={"Accept": accept})
    assert response.status_code == 406
    assert "image/png" in response.json()["detail"]


@pytest.mark.parametrize(
    "params, status",
    [
        ({"format": "jpeg"}, 422),
        ({"log": "maybe"}, 422),
        ({"channel": "-1"}, 422),
        ({"channel": "x"}, 422),
        ({"format": "raw", "channel": "1"}, 404),
    ],
)
def test_bad_last_frame_parameters_are_4xx(client, params, status):
    response = client.get("/last_frame", params=params)
    assert response.status_code == status
    assert response.json()["detail"]


# --- stats, metrics, page, docs ----------------------------------------------------------------
def test_stats_is_the_snapshot(served, client):
    receiver, _ = served
    body = client.get("/stats").json()
    snap = receiver.snapshot().as_dict()
    for key in ("frame_rate", "data_rate"):  # time-dependent
        body.pop(key), snap.pop(key)
    assert body == snap | {"upstream": list(snap["upstream"]), "messages": list(snap["messages"])}
    assert body["frames_received"] == 5 and body["state"] == "idle"


def test_metrics_in_prometheus_text_format(client):
    response = client.get("/metrics")
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples = {
        (s.name, s.labels.get("state")): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }
    assert samples[("tango_receiver_series_frames_received", None)] == 5
    assert samples[("tango_receiver_series_frames_written", None)] == 5
    assert samples[("tango_receiver_series_started_total", None)] == 1
    assert samples[("tango_receiver_queue_depth", None)] == 0
    assert samples[("tango_receiver_state", "idle")] == 1
    assert samples[("tango_receiver_state", "running")] == 0
    assert samples[("tango_receiver_series_complete", None)] == 1
    assert samples[("tango_receiver_info", None)] == 1


@pytest.mark.parametrize("path", ["/", "/live"])
def test_live_page_is_self_contained(served, client, path):
    receiver, _ = served
    response = client.get(path)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    page = response.text
    assert f"<h1>{receiver.config.name}</h1>" in page
    assert "last_frame?format=raw" in page and 'fetch("stats"' in page
    assert "://" not in page, "the page must load nothing from elsewhere"


def test_openapi_documents_every_endpoint(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert {
        "/status",
        "/received_frames",
        "/downsample",
        "/last_frame",
        "/stats",
        "/metrics",
        "/live",
    } <= set(paths)
    assert set(paths["/downsample"]) == {"get", "post"}
    assert client.get("/docs").status_code == 200


# --- the sidecar over real sockets ------------------------------------------------------------
def test_status_idle_running_idle_over_a_real_series(tmp_path, sender):
    """What a beamline client does: arm, wait up to 5 s for running, poll until idle."""
    count = 20
    receiver = Receiver(make_config(sender.port, tmp_path, api_host="127.0.0.1", api_port=0))
    receiver.start()
    sidecar = start_sidecar(receiver)
    try:
        with httpx.Client(base_url=sidecar.url, timeout=5) as http:
            states = [http.get("/status").json()["state"]]
            frames = synthetic_frames(count, (16, 16), "uint16")
            thread = threading.Thread(
                target=sender.send,
                daemon=True,
                kwargs={"messages": internal_series(frames, str(tmp_path / "slow.h5")), "rate": 20},
            )
            armed = time.monotonic()
            thread.start()
            deadline = armed + 20
            while time.monotonic() < deadline:
                state = http.get("/status").json()["state"]
                if state != states[-1]:
                    states.append(state)
                    if state == "running":
                        running_after = time.monotonic() - armed
                if states[-1] == "idle" and len(states) > 1:
                    break
                time.sleep(0.02)
            received = http.get("/received_frames").json()
            thread.join(5)
    finally:
        sidecar.stop()
        receiver.close()
    assert states == ["idle", "running", "idle"]
    assert running_after < 5
    assert received == {"value": count}


def test_sidecar_listens_on_the_configured_address_and_stops(tmp_path, sender):
    receiver = Receiver(make_config(sender.port, tmp_path, api_host="127.0.0.1", api_port=0))
    try:
        sidecar = start_sidecar(receiver)
        assert sidecar.port > 0 and sidecar.url == f"http://127.0.0.1:{sidecar.port}"
        assert httpx.get(f"{sidecar.url}/status", timeout=5).json() == {"state": "idle"}
        sidecar.stop()
        assert not sidecar.thread.is_alive()
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{sidecar.url}/status", timeout=2)
    finally:
        receiver.close()


def test_port_in_use_fails_at_once_naming_the_address(tmp_path, sender):
    receiver = Receiver(make_config(sender.port, tmp_path))
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"127.0.0.1:{port}"):
            start_sidecar(receiver, "127.0.0.1", port)
    receiver.close()
