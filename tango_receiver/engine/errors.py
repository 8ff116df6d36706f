"""Error and warning text as an operator reads it: one line, no pointers, nothing raw.

HDF5 reports a failed write as several lines with buffer addresses and timestamps, and a text may
quote a wire value; Status, REST and the log each show such a text as it is given. So every text
the receiver publishes passes here: whitespace runs become one space, HDF5's noise fields go,
and any control character left is escaped, so that a header can neither break nor forge a line.
"""

from __future__ import annotations

import re

#: HDF5's ``file write failed`` fields that say nothing to an operator (and vary run to run).
_NOISE = re.compile(
    r",?\s*\b(time|buf|file descriptor|total write size|bytes this sub-write|"
    r"bytes actually written|offset)\s*=\s*[^,)]*"
)
_POINTER = re.compile(r"\b0x[0-9a-fA-F]+\b")
_SPACE = re.compile(r"\s+")
MAX_CHARS = 1000


def one_line(text: str) -> str:
    """``text`` on one readable line, at most MAX_CHARS long."""
    text = _POINTER.sub("", _NOISE.sub("", text))
    text = _SPACE.sub(" ", text).strip().replace(":,", ":")
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= MAX_CHARS else text[: MAX_CHARS - 3] + "..."
