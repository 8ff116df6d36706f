"""How the splitter tells a detector's messages apart: control (to every part) or image (to one).

Read from the detector class itself: the message types it decodes (``Detector.types``) and how
it reads a message's type from its first bytes without decoding a blob
(``Detector.message_type``). A class that cannot be split says why (``Detector.unsplittable``).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

from ..detector import Detector, detector_classes
from ..messages import Parts


class SplitError(ValueError):
    """A splitter that cannot run; the text says why (class, ports)."""


class Kind(Enum):
    CONTROL = "control"  # to every part: each must open and close its own file
    IMAGE = "image"  # to one part
    UNKNOWN = "unknown"  # to one part, as an image: its receiver counts it invalid, as it would


Classifier = Callable[[Parts], Kind]


def kinds_of(cls: type[Detector]) -> dict[str, Kind]:
    """The class's message types -> where the splitter sends them."""
    types = cls.types
    return {types.header: Kind.CONTROL, types.end: Kind.CONTROL, types.image: Kind.IMAGE}


def classifier_for(detector_class: str) -> Classifier:
    """How the messages of a detectors.yaml ``class`` are told apart; SplitError when it cannot
    be split."""
    classes = detector_classes()
    cls = classes.get(detector_class)
    if cls is None:
        splittable = [name for name, c in classes.items() if c.unsplittable is None]
        reason = f"unknown class; classes that can be split: {', '.join(splittable)}"
    elif cls.unsplittable is None:
        kinds, message_type = kinds_of(cls), cls.message_type
        return lambda parts: kinds.get(message_type(parts), Kind.UNKNOWN)  # type: ignore[arg-type]
    else:
        reason = cls.unsplittable
    raise SplitError(f"class {detector_class} cannot be split: {reason}")
