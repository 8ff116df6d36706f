"""detectors.yaml: shipped entries load, existing deployments' entries load, errors name things."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tango_receiver.config import ConfigError, load_config, load_receiver, parse_entry
from tango_receiver.detector import detector_for

REPO = Path(__file__).resolve().parents[2]


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


@pytest.mark.parametrize(
    "entry, key, value",
    [
        ({"host": "h", "nworkers": 0}, "nworkers", "0"),
        ({"host": "h", "data_port": 70000}, "data_port", "70000"),
        ({"host": "h", "dset_name": "data"}, "dset_name", "'data'"),
        ({"host": "h", "write_roots": ["relative"]}, "write_roots", "relative"),
        ({"host": "h", "colour": "blue"}, "colour", "'blue'"),
        ({"host": "h", "class": "Eiger", "nexus": {"sample": "x"}}, "nexus.sample", "'x'"),
        (
            {"host": "h", "class": "Pilatus", "nexus": {"goniometer": [{"name": "omega"}]}},
            "nexus.goniometer.0.vector",
            "omega",
        ),
        ({}, "upstream", ""),
    ],
)
def test_errors_name_receiver_key_and_value(entry, key, value):
    with pytest.raises(ConfigError) as err:
        parse_entry("beamline-eiger", entry, "site.yaml")
    text = str(err.value)
    assert "site.yaml" in text and "'beamline-eiger'" in text and key in text and value in text


def test_unknown_receiver_and_unreadable_file(tmp_path):
    path = tmp_path / "d.yaml"
    path.write_text("a:\n  upstream: tcp://127.0.0.1:1\n")
    with pytest.raises(ConfigError, match="no receiver 'b'"):
        load_receiver(path, "b")
    path.write_text(":\n - [")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(path)


@pytest.mark.parametrize(
    "extra, key, value",
    [
        ({"class": "Nonesuch"}, "class", "'Nonesuch'"),
        ({"class": "Eiger", "pipeline": "PilatusPipeline"}, "pipeline", "'PilatusPipeline'"),
        ({"pipeline": "Pipeline9"}, "pipeline", "'Pipeline9'"),
        ({"class": "Eiger", "rotate": True}, "rotate", "True"),
        ({"class": "DectrisStream2", "mask": [[0, 4], [0, 4]]}, "mask", "[[0, 4], [0, 4]]"),
        ({"class": "Pilatus", "mask": [[0, 4], [0, 4, 5]]}, "mask", "[[0, 4], [0, 4, 5]]"),
        ({"class": "Pilatus", "shape": [100, 50], "mask": [[0, 4, 60, 70]]}, "mask", "cols 60:70"),
        (
            {"class": "Pilatus", "shape": [100, 50], "rotate": True, "mask": [[60, 70, 0, 4]]},
            "mask",
            "rows 60:70",
        ),
        ({"class": "Lambda", "nworkers": 2}, "nworkers", "2"),
        ({"nexus": {"sample_name": "lysozyme"}}, "nexus", "class Detector writes plain NeXus"),
        ({"layout": "dectris", "file_suffix": "_part0"}, "layout", "'_part0'"),
        ({"class": "Pilatus", "tot": "/nonexistent/tot.npz"}, "tot", "/nonexistent/tot.npz"),
    ],
)
def test_entries_that_do_not_fit_their_class_are_refused_at_load(tmp_path, extra, key, value):
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump({"cam": {"upstream": "tcp://127.0.0.1:1"} | extra}))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    assert str(path) in text and "receiver 'cam'" in text and f"key {key!r}" in text, text
    assert value in text, text


def test_a_mask_inside_the_frame_loads(tmp_path):
    entry = {
        "upstream": "tcp://127.0.0.1:1",
        "class": "Pilatus",
        "shape": [100, 50],
        "rotate": True,
        "mask": [[0, 10, 90, 100]],
    }  # stored frame: 50 x 100
    assert parse_entry("cam", entry).mask == [[0, 10, 90, 100]]


@pytest.mark.parametrize("command", ["run", "split"])
def test_the_command_line_exits_2_on_an_entry_that_cannot_run(tmp_path, command):
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump({"cam": {"upstream": "tcp://127.0.0.1:1", "class": "Nonesuch"}}))
    extra = ["--parts", "2", "--base-port", "1"] if command == "split" else []
    done = subprocess.run(
        [sys.executable, "-m", "tango_receiver", command, str(path), "cam", *extra],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "key 'class': unknown detector class 'Nonesuch'" in done.stderr
    assert "Traceback" not in done.stderr
