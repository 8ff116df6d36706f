"""Typed models of the wire fields the engine acts on, checked where a message is decoded.

A header's fields steer the engine: the filename picks the file, ``nimages`` where a stream's end
falls, ``series_id`` what Status and the file say. A decoder that passed them on unchecked let a
header with ``"nimages": "5"`` kill the engine thread. The model refuses such a field with a
reason that names it and its value; nothing of the package is imported here, so every decoder
and the messages themselves can use it.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
)

#: Stream positions and frame numbers fit the int64 ``sequence_number`` dataset.
MAX_NUMBER = 2**63 - 1
#: Longer than any path a filesystem takes (PATH_MAX is 4096): a longer one is a lie.
MAX_FILENAME = 4096
MAX_SERIES_ID = 256
MAX_CHANNEL_NAME = 64
#: Unicode categories that would let a wire value forge or break a log line or Status:
#: control characters (newline, NUL, ESC), format characters and line/paragraph separators.
_UNPRINTABLE = frozenset({"Cc", "Cf", "Zl", "Zp"})


def printable(text: str) -> str:
    """Refuse text that would break a log line, Status, or a C path (NUL)."""
    bad = next((c for c in text if unicodedata.category(c) in _UNPRINTABLE), None)
    if bad is not None:
        raise ValueError(f"control character {bad!r} at position {text.index(bad)}")
    return text


Number = Annotated[StrictInt, Field(ge=0, le=MAX_NUMBER)]
Text = Annotated[StrictStr, AfterValidator(printable)]


class HeaderFields(BaseModel):
    """What a series header may carry, after its decoder mapped the wire form onto it."""

    model_config = ConfigDict(frozen=True)

    msg_number: Number
    filename: Annotated[Text, Field(max_length=MAX_FILENAME)]
    save_raw: StrictBool
    series_id: (
        Annotated[StrictInt, Field(ge=-MAX_NUMBER, le=MAX_NUMBER)]
        | Annotated[StrictFloat, Field(allow_inf_nan=False)]
        | Annotated[Text, Field(max_length=MAX_SERIES_ID)]
        | None
    )
    nimages: Number | None


def channel_name(value: Any) -> str:
    """A channel's name becomes an HDF5 dataset name: a short printable word, no path."""
    if not (
        isinstance(value, str)
        and 0 < len(value) <= MAX_CHANNEL_NAME
        and value.isprintable()
        and "/" not in value
        and value not in (".", "..")
    ):
        raise ValueError(
            f"channel name must be 1 to {MAX_CHANNEL_NAME} printable characters "
            f"without '/', got {value!r:.80}"
        )
    return value


def check_header(**fields: Any) -> None:
    """ValueError naming the first bad field and its value (escaped: it came off the wire)."""
    try:
        HeaderFields(**fields)
    except ValidationError as exc:
        raise ValueError(describe(exc, "header")) from None


def describe(exc: ValidationError, what: str) -> str:
    """One line: ``header field 'nimages' = '5': Input should be a valid integer``. Of a
    union's errors the one past the type check says most ("control character ...")."""
    errors = exc.errors(include_url=False)
    first = [e for e in errors if e["loc"][:1] == errors[0]["loc"][:1]]
    error = next((e for e in first if not e["type"].endswith("_type")), first[0])
    field = ".".join(str(p) for p in error["loc"][:1])
    return f"{what} field {field!r} = {error['input']!r:.120}: {error['msg']}"
