"""The demo, small: each run replaces the previous run's files, and ``--keep-running`` leaves
database, device, REST and a slow stream up until Ctrl-C, with lines that reach them."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import pytest

from conftest import wait_for
from tango_receiver.demo import DEMO_FILE, LIVE_FILE, clean_previous_run

START_S = 240.0  # database and device server starting on a loaded two-core machine


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def test_a_run_removes_the_previous_runs_files_and_keeps_the_database(tmp_path, capsys):
    (tmp_path / "tango-db").mkdir()
    (tmp_path / "tango-db" / "tango_database.db").write_bytes(b"kept")
    for name in ("eiger_tango_demo_20261201_101010.h5", DEMO_FILE, LIVE_FILE):
        (tmp_path / name).write_bytes(b"x" * 1000)
    (tmp_path / "mine.h5").write_bytes(b"not the demo's")
    clean_previous_run(tmp_path)
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [
        "mine.h5",
        "tango_database.db",
    ]
    assert "removed 3 file(s) of an earlier run" in capsys.readouterr().out


@pytest.fixture
def demo(tmp_path):
    """``demo --frames 20 --keep-running`` in its own session, with its output collected."""
    (tmp_path / "eiger_tango_demo_20261201_101010.h5").write_bytes(b"x" * 100_000)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tango_receiver",
            "demo",
            "--directory",
            str(tmp_path),
            "--frames",
            "20",
            "--keep-running",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env=os.environ | {"LOG_LEVEL": "WARNING"},
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()
    try:
        yield process, lines
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # the session started above: demo + children
        process.wait(30)
        reader.join(10)


def test_keep_running_until_ctrl_c(tmp_path, demo):
    process, lines = demo
    wait_for(
        lambda: any(line.startswith("  Taurus") for line in lines) or process.poll() is not None,
        START_S,
        "the demo to print how to reach it",
    )
    out = "".join(lines)
    assert process.poll() is None, out
    assert "every frame equal to the one sent: True" in out
    assert not (tmp_path / "eiger_tango_demo_20261201_101010.h5").exists()
    assert (tmp_path / DEMO_FILE).exists()
    rest = re.search(r"live view +(\S+)/live", out).group(1)
    python_line = re.search(r"Python +(.+)", out).group(1)
    assert re.search(r"Taurus +TANGO_HOST=\S+ taurus form tango_receiver/eiger/eiger-sim", out)

    # the slow stream: a second series, into the live file, while everything stays up
    wait_for(lambda: get_json(f"{rest}/stats")["series_count"] >= 2, 60, "a slow series")
    first = get_json(f"{rest}/stats")["frames_received"]
    wait_for(lambda: get_json(f"{rest}/stats")["frames_received"] > first, 10, "frames to come")
    assert (tmp_path / LIVE_FILE).exists()
    with urllib.request.urlopen(f"{rest}/live", timeout=5) as page:
        assert page.status == 200
    pasted = subprocess.run(
        [sys.executable, "-c", python_line], capture_output=True, text=True, timeout=60
    )
    assert pasted.returncode == 0 and re.fullmatch(r"(ON|RUNNING) \d+\n", pasted.stdout), (
        pasted.stderr
    )

    process.send_signal(signal.SIGINT)  # Ctrl-C
    assert process.wait(60) == 0, "".join(lines)
    with pytest.raises(urllib.error.URLError):
        get_json(f"{rest}/status")  # the device server and its REST sidecar are gone


def test_a_plain_run_tears_down_and_says_how_to_keep_it_running(tmp_path):
    (tmp_path / DEMO_FILE).write_bytes(b"an earlier run's")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tango_receiver",
            "demo",
            "--directory",
            str(tmp_path),
            "--frames",
            "5",
        ],
        capture_output=True,
        text=True,
        timeout=START_S,
        env=os.environ | {"LOG_LEVEL": "WARNING"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "removed 1 file(s) of an earlier run" in result.stdout
    assert re.search(r"\S*tango-receiver demo --keep-running\n", result.stdout)
    assert sorted(p.name for p in tmp_path.glob("*.h5")) == [DEMO_FILE]
