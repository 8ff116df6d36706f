"""The reservation asks the filesystem only for blocks not yet reserved: tmpfs walks every page
of the range it is given, so a range from 0 each time grew with the file (benchmarks/LOG.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tango_receiver.engine import diskspace


def test_each_reservation_asks_only_beyond_what_is_reserved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if diskspace._fallocate is None:
        pytest.skip("no fallocate in this libc")
    asked: list[tuple[int, int]] = []
    real = diskspace._fallocate

    def recording(fd: int, mode: int, offset: int, length: int) -> int:
        if mode == diskspace.FALLOC_FL_KEEP_SIZE:  # a reservation, not release's punch
            asked.append((offset, length))
        return real(fd, mode, offset, length)

    monkeypatch.setattr(diskspace, "_fallocate", recording)
    path = tmp_path / "f.h5"
    path.write_bytes(b"")
    size = [0]
    reserve = diskspace.SpaceReserve(path, lambda: size[0])
    try:
        for _ in range(3):  # each step needs more than the one before reserved
            size[0] += diskspace.STEP_BYTES
            reserve.ensure(diskspace.STEP_BYTES, 1)
    finally:
        reserve.release()
    assert len(asked) >= 3
    ends = [offset + length for offset, length in asked]
    assert [offset for offset, _ in asked] == [0, *ends[:-1]]  # each from the last one's end
    assert all(length > 0 for _, length in asked)
