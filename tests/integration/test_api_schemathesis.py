"""Schemathesis against the sidecar's own OpenAPI spec: generated requests never get a 5xx, and
every response matches what the spec promises. Runs against the real server over a socket, with
a frame present, so the frame encoders are exercised too."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode

from conftest import make_config, wait_series_done
from tango_receiver.api import start_sidecar
from tango_receiver.engine.receiver import Receiver
from tango_receiver.sim.frames import synthetic_frames
from tango_receiver.sim.internal import internal_series
from tango_receiver.sim.sender import Sender

EXAMPLES_PER_OPERATION = 50


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """The spec as served, and where to send requests: a receiver after one series."""
    root = tmp_path_factory.mktemp("schemathesis")
    with Sender(timeout_s=20) as sender:
        receiver = Receiver(make_config(sender.port, root))
        receiver.start()
        sidecar = start_sidecar(receiver, "127.0.0.1", 0)
        try:
            sender.send(
                internal_series(
                    synthetic_frames(3, (24, 40), "uint16", rate=2.0), str(root / "fuzz.h5")
                )
            )
            wait_series_done(receiver)
            yield schemathesis.openapi.from_url(f"{sidecar.url}/openapi.json"), sidecar.url
        finally:
            sidecar.stop()
            receiver.close()


@pytest.mark.parametrize(
    "mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"]
)
def test_no_server_errors_and_responses_match_the_spec(api, mode):
    # Strategies per operation rather than @schema.parametrize: its fixture-based loader
    # (schemathesis.pytest.from_fixture) relies on a pytest internal that pytest 9 removed.
    schema, base_url = api
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8, [op.label for op in operations]
    for operation in operations:
        if mode is GenerationMode.NEGATIVE and not (operation.query or operation.headers):
            continue  # nothing to get wrong: /status and friends take no input

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.generate],
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def check(case) -> None:
            case.call_and_validate(base_url=base_url)

        check()
