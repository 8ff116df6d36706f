"""detectors.yaml: shipped entries load, existing deployments' entries load, errors name things."""

from __future__ import annotations

from pathlib import Path

import pytest

from tango_receiver.config import ConfigError, load_config, load_receiver, parse_entry
from tango_receiver.detector import detector_for

REPO = Path(__file__).resolve().parents[1]


def test_shipped_detectors_yaml_loads_and_every_class_exists():
    configs = load_config(REPO / "detectors.yaml")
    assert {"eiger-sim", "eiger2-sim", "zyla"} <= set(configs)
    for config in configs.values():
        assert detector_for(config).endpoints()


def test_existing_deployment_entries_load(fixtures_dir):
    configs = load_config(fixtures_dir / "legacy-detectors.yaml")
    eiger = detector_for(configs["example-eiger-loadbalanced"])
    assert eiger.endpoints() == ["tcp://127.0.0.1:9999"] * 2
    assert configs["example-eiger-loadbalanced"].nworkers == 8
    assert detector_for(configs["example-pilatus4"]).endpoints() == ["tcp://127.0.0.1:31001"]
    assert detector_for(configs["example-zyla"]).endpoints() == ["tcp://127.0.0.1:9966"]
    assert configs["example-pilatus"].mask == [[0, 10], [0, 20]]


@pytest.mark.parametrize("entry, key, value", [
    ({"host": "h", "nworkers": 0}, "nworkers", "0"),
    ({"host": "h", "data_port": 70000}, "data_port", "70000"),
    ({"host": "h", "dset_name": "data"}, "dset_name", "'data'"),
    ({"host": "h", "write_roots": ["relative"]}, "write_roots", "relative"),
    ({"host": "h", "colour": "blue"}, "colour", "'blue'"),
    ({}, "upstream", ""),
])
def test_errors_name_receiver_key_and_value(entry, key, value):
    with pytest.raises(ConfigError) as err:
        parse_entry("beamline-eiger", entry, "site.yaml")
    text = str(err.value)
    assert "site.yaml" in text and "'beamline-eiger'" in text and key in text and value in text


def test_unknown_receiver_and_unknown_class(tmp_path):
    path = tmp_path / "d.yaml"
    path.write_text("a:\n  class: Nonesuch\n  upstream: tcp://127.0.0.1:1\n")
    with pytest.raises(ConfigError, match="no receiver 'b'"):
        load_receiver(path, "b")
    with pytest.raises(ValueError, match="unknown detector class 'Nonesuch'"):
        detector_for(load_receiver(path, "a"))
    path.write_text(":\n - [")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(path)
