"""Values as the console shows and edits them: the json codec's tagged JSON.

A value is shown as indented JSON in which every type JSON lacks carries the codec's
tag (``{"$t": "set", "v": [1, 2]}``, ``{"$t": "datetime", "v": "..."}``), which is
exactly what an edit accepts back: what the page shows can be saved unchanged, and the
type survives.  A value that is not valid tagged JSON is refused with the reason, and
nothing is written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..codecs import Codec, from_tagged_json, to_tagged_json
from ..errors import DecodeError, EncodeError


class ValueTextError(ValueError):
    """Text typed as a value that is not valid (tagged) JSON; the message says why."""


@dataclass(frozen=True)
class Shown:
    """A stored value as a page shows it."""

    text: str  # indented tagged JSON, or a description when it cannot be shown
    editable: bool  # whether ``text`` saves back to the same value
    kind: str  # the Python type's name, or "undecodable"


def show(codec: Codec, raw: bytes) -> Shown:
    """``raw`` (a stored value) decoded with the store's codec, as tagged JSON."""
    try:
        value = codec.decode(raw)
    except DecodeError as exc:
        reason = f"(cannot be decoded with the {codec.name} codec: {exc})"
        return Shown(reason, False, "undecodable")
    kind = type(value).__name__
    try:
        data = to_tagged_json(value)
    except EncodeError:
        return Shown(repr(value), False, kind)
    return Shown(json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False), True, kind)


def parse(text: str) -> Any:
    """The value typed as ``text``: JSON, with the codec's type tags; else
    :class:`ValueTextError` saying where and why."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueTextError(
            f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno} "
            '(text needs quotes: "like this")'
        ) from None
    try:
        return from_tagged_json(data)
    except DecodeError as exc:
        raise ValueTextError(str(exc)) from None


__all__ = ["Shown", "ValueTextError", "parse", "show"]
