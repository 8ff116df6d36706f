"""The supported way to consume a receiver's secondary port (README, "Secondary port").

- :func:`decode_image` / :func:`decode_images`: pixels from one image message, for every form
  the receiver forwards (bitshuffle-LZ4 chunks with or without their 12-byte header, raw; one
  array, or several by channel name); bad input is a ValueError, never a crash.
- :class:`Consumer`: the stream as typed messages, with gaps in ``msg_number`` reported.
- ``tango-receiver consume ENDPOINT`` (:mod:`.consume`): the same from the command line.

Nothing here imports the receiver's engine, Tango or FastAPI: a consumer installs the package
and uses this alone.
"""

from .consumer import Consumer, endpoint_of
from .decode import ChannelSpec, channel_specs, decode_image, decode_images
from .messages import (
    HeaderMessage,
    ImageMessage,
    Message,
    Position,
    SeriesEndMessage,
    Unreadable,
    parse,
)

__all__ = [
    "ChannelSpec",
    "Consumer",
    "HeaderMessage",
    "ImageMessage",
    "Message",
    "Position",
    "SeriesEndMessage",
    "Unreadable",
    "channel_specs",
    "decode_image",
    "decode_images",
    "endpoint_of",
    "parse",
]
