"""Codecs turn values into the bytes a backend stores, and back.

* :class:`JSONCodec` (``"json"``, the default) is safe: loading data never runs code.  It
  is plain JSON plus tags for what JSON lacks (tuple, set, frozenset, bytes, bytearray,
  datetime/date/time/timedelta, Decimal, UUID, complex, non-finite floats and dicts whose
  keys are not all strings).  Exact types only: a subclass (``OrderedDict``, a
  namedtuple, an ``IntEnum``) is refused rather than silently changed into its base.
* :class:`PickleCodec` (``"pickle"``) stores any picklable object.  Loading a pickle can
  run arbitrary code, so it is never the default: choose it only for data you trust.
* :class:`SignedPickleCodec` (``"signed-pickle"``) prefixes every pickle with an
  HMAC-SHA256 under a secret you configure and refuses to unpickle anything whose
  signature does not match.

Every codec stores a top-level ``int`` as canonical decimal text, so a backend's native
counter (SQL arithmetic, Redis INCRBY, DynamoDB ADD) and ``get`` always agree.  Those
integers are not signed: they can never execute code, but anyone who can write to the
engine can change them.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import pickle
import re
import uuid
import zoneinfo
from abc import ABC, abstractmethod
from collections.abc import Callable
from decimal import Decimal
from typing import Any, ClassVar

import orjson

from .errors import ConfigurationError, DecodeError, EncodeError

_DECIMAL_INT = re.compile(rb"-?(?:0|[1-9][0-9]*)\Z")
_INT_START = frozenset(b"-0123456789"[i : i + 1] for i in range(11))


class Codec(ABC):
    """Turns a value into bytes and back.  Implementations must be thread-safe."""

    #: The name used in URLs and options (``?codec=json``) and recorded in dumps.
    name: ClassVar[str]

    @abstractmethod
    def encode(self, value: Any) -> bytes:
        """Return the bytes for ``value`` or raise :class:`EncodeError`."""

    @abstractmethod
    def decode(self, data: bytes) -> Any:
        """Return the value stored as ``data`` or raise :class:`DecodeError`."""

    def check_readable(self, data: bytes) -> None:
        """Raise :class:`DecodeError` if ``data`` cannot be read by this codec.

        Never runs code: tools call it on bytes from untrusted files.  The default
        decodes, which is safe for codecs that cannot run code.
        """
        self.decode(data)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


# --------------------------------------------------------------------------- JSON

_TAG = "$t"


def _tag(kind: str, value: Any) -> dict[str, Any]:
    return {_TAG: kind, "v": value}


def _float_to_json(value: float) -> Any:
    if value != value or value in (float("inf"), float("-inf")):
        return _tag("float", repr(value))
    return value


#: Types JSON carries as they are; checked inline to avoid a call per element.
_PLAIN: frozenset[type] = frozenset({str, int, bool, type(None)})
#: What _to_json copies as is: ints are checked against the fast encoder's range.
_AS_IS: frozenset[type] = frozenset({str, bool, type(None)})
#: orjson's integer range.  Integers outside it are stored tagged, so every document
#: holding one contains a tag and is decoded by the exact (stdlib) path.
_FAST_INT_MIN, _FAST_INT_MAX = -(2**63), 2**64 - 1


def _to_json(value: Any) -> Any:
    t = type(value)
    if t in _AS_IS:
        return value
    if t is int:
        return value if _FAST_INT_MIN <= value <= _FAST_INT_MAX else _tag("int", str(value))
    if t is float:
        return _float_to_json(value)
    if t is list:
        return [v if type(v) in _AS_IS else _to_json(v) for v in value]
    if t is dict:
        if all(type(k) is str for k in value) and _TAG not in value:
            return {k: v if type(v) in _AS_IS else _to_json(v) for k, v in value.items()}
        return _tag("dict", [[_to_json(k), _to_json(v)] for k, v in value.items()])
    encoder = _ENCODERS.get(t)
    if encoder is None:
        raise EncodeError(
            f"the json codec cannot store {t.__module__}.{t.__qualname__} values "
            "(convert it to a supported type, or use the pickle codec for trusted data)"
        )
    return encoder(value)


def _plain_offset(tz: dt.tzinfo) -> bool:
    """Whether ISO text carries ``tz`` exactly: an unnamed fixed-offset ``timezone``."""
    if type(tz) is not dt.timezone:
        return False
    offset = tz.utcoffset(None)
    return offset is not None and tz.tzname(None) == dt.timezone(offset).tzname(None)


def _sub_second_offset(tz: dt.tzinfo | None) -> list[int] | None:
    """``[days, seconds, microseconds]`` of a fixed offset with a fraction of a second,
    which ISO text cannot carry back on Python 3.11 (``fromisoformat`` drops it)."""
    offset = None if tz is None else tz.utcoffset(None)
    if offset is None or not offset.microseconds:
        return None
    return [offset.days, offset.seconds, offset.microseconds]


def _with_offset(parts: list[int]) -> dt.timezone:
    return dt.timezone(dt.timedelta(days=parts[0], seconds=parts[1], microseconds=parts[2]))


def _datetime_to_json(value: dt.datetime) -> Any:
    tz = value.tzinfo
    if tz is None or _plain_offset(tz):
        offset = _sub_second_offset(tz)
        if offset is not None:
            naive = value.replace(tzinfo=None).isoformat()
            return _tag("odatetime", [naive, offset, value.fold])
        if not value.fold:
            return _tag("datetime", value.isoformat())
        return _tag("zdatetime", [value.isoformat(), None, value.fold])
    if isinstance(tz, zoneinfo.ZoneInfo) and tz.key:
        local = value.replace(tzinfo=None).isoformat()
        return _tag("zdatetime", [local, tz.key, value.fold])
    raise EncodeError(
        f"the json codec stores datetimes naive, with a fixed UTC offset or a named "
        f"zoneinfo zone; {type(tz).__name__} {tz!r} would not come back exactly "
        "(convert it, or use the pickle codec for trusted data)"
    )


def _time_to_json(value: dt.time) -> Any:
    tz = value.tzinfo
    if tz is None or _plain_offset(tz):
        offset = _sub_second_offset(tz)
        if offset is not None:
            return _tag("otime", [value.replace(tzinfo=None).isoformat(), offset, value.fold])
        if not value.fold:
            return _tag("time", value.isoformat())
        return _tag("ztime", [value.isoformat(), value.fold])
    raise EncodeError(
        f"the json codec stores times naive or with a fixed UTC offset; {tz!r} would not "
        "come back exactly (use a datetime with a zoneinfo zone instead)"
    )


def _zdatetime(v: list[Any]) -> dt.datetime:
    local, key, fold = v
    value = dt.datetime.fromisoformat(local)
    return value.replace(tzinfo=zoneinfo.ZoneInfo(key) if key else value.tzinfo, fold=fold)


_ENCODERS: dict[type, Callable[[Any], Any]] = {
    tuple: lambda v: _tag("tuple", [_to_json(x) for x in v]),
    set: lambda v: _tag("set", [_to_json(x) for x in v]),
    frozenset: lambda v: _tag("frozenset", [_to_json(x) for x in v]),
    bytes: lambda v: _tag("bytes", base64.b64encode(v).decode("ascii")),
    bytearray: lambda v: _tag("bytearray", base64.b64encode(v).decode("ascii")),
    dt.datetime: lambda v: _datetime_to_json(v),
    dt.date: lambda v: _tag("date", v.isoformat()),
    dt.time: lambda v: _time_to_json(v),
    dt.timedelta: lambda v: _tag("timedelta", [v.days, v.seconds, v.microseconds]),
    Decimal: lambda v: _tag("decimal", str(v)),
    uuid.UUID: lambda v: _tag("uuid", str(v)),
    complex: lambda v: _tag("complex", [repr(v.real), repr(v.imag)]),
}

_DECODERS: dict[str, Callable[[Any], Any]] = {
    "tuple": tuple,
    "set": set,
    "frozenset": frozenset,
    "bytes": lambda v: base64.b64decode(v, validate=True),
    "bytearray": lambda v: bytearray(base64.b64decode(v, validate=True)),
    "datetime": dt.datetime.fromisoformat,
    "date": dt.date.fromisoformat,
    "time": dt.time.fromisoformat,
    "zdatetime": _zdatetime,
    "ztime": lambda v: dt.time.fromisoformat(v[0]).replace(fold=v[1]),
    "odatetime": lambda v: dt.datetime.fromisoformat(v[0]).replace(
        tzinfo=_with_offset(v[1]), fold=v[2]
    ),
    "otime": lambda v: dt.time.fromisoformat(v[0]).replace(tzinfo=_with_offset(v[1]), fold=v[2]),
    "timedelta": lambda v: dt.timedelta(days=v[0], seconds=v[1], microseconds=v[2]),
    "decimal": Decimal,
    "uuid": uuid.UUID,
    "complex": lambda v: complex(float(v[0]), float(v[1])),
    "float": float,
    "int": int,
    "dict": lambda v: {k: x for k, x in v},
}


def _from_json_object(obj: dict[str, Any]) -> Any:
    kind = obj.get(_TAG)
    if kind is None or len(obj) != 2 or "v" not in obj:
        return obj
    decoder = _DECODERS.get(kind)
    if decoder is None:
        raise DecodeError(f"unknown type tag {kind!r} in stored JSON")
    return decoder(obj["v"])


def to_tagged_json(value: Any) -> Any:
    """Return a JSON-compatible structure for ``value`` (the json codec's tagging).

    Used by dumps and the CLI so what they print is exactly what the codec carries.
    """
    try:
        return _to_json(value)
    except RecursionError as exc:
        raise EncodeError("value is nested too deeply or contains a reference cycle") from exc


def from_tagged_json(data: Any) -> Any:
    """Inverse of :func:`to_tagged_json` for an already-parsed JSON structure."""
    try:
        return _JSON_TAG_DECODER.decode(_encode_json(data))
    except Exception as exc:  # malformed tags raise all sorts
        raise DecodeError(f"invalid tagged JSON: {exc}") from None


def _is_plain(value: Any, _plain: frozenset[type] = _PLAIN, _tag: str = _TAG) -> bool:
    """Whether ``value`` needs no tags: the fast encoder (orjson) may take it as it is.

    A walk that allocates nothing.  Dict keys are not checked here: orjson itself
    refuses any key that is not exactly ``str`` (subclasses included), and the caller
    then falls back to tagging.  Values must be checked, because orjson would silently
    turn a tuple, an enum, a UUID or a datetime into something else, and a non-finite
    float into null.
    """
    t = type(value)
    if t in _plain:
        return True
    if t is dict:
        for v in value.values():
            tv = type(v)
            if tv in _plain:
                continue
            if tv is list:  # one level inlined: lists of scalars are the common case
                for x in v:
                    if type(x) not in _plain and not _is_plain(x):
                        return False
            elif not _is_plain(v):
                return False
        return _tag not in value
    if t is list:
        for v in value:  # noqa: SIM110 - a plain loop is faster than all() over a genexpr
            if type(v) not in _plain and not _is_plain(v):
                return False
        return True
    if t is float:
        return bool(value - value == 0.0)  # False for inf and nan
    return False


# Built once.  json.dumps/json.loads rebuild an encoder or decoder per call (and the
# stdlib encoder rebuilds its C accelerator per call), which costs more than encoding a
# small value; these call the C accelerators directly where the interpreter has them.
_JSON_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_JSON_TAG_DECODER = json.JSONDecoder(object_hook=_from_json_object)
_JSON_PLAIN_DECODER = json.JSONDecoder()
_c_encoder = getattr(json.encoder, "c_make_encoder", None)
if _c_encoder is not None:
    _C_ENCODE = _c_encoder(
        None,  # no cycle markers: _is_plain/_to_json already refuse cycles (RecursionError)
        _JSON_ENCODER.default,
        json.encoder.encode_basestring,  # ensure_ascii=False
        None,
        ":",
        ",",
        False,
        False,
        False,  # allow_nan=False: non-finite floats are tagged before they get here
    )

    def _encode_json(value: Any) -> str:
        return "".join(_C_ENCODE(value, 0))
else:  # pragma: no cover - interpreters without the C accelerator

    def _encode_json(value: Any) -> str:
        return _JSON_ENCODER.encode(value)


_scan_plain = _JSON_PLAIN_DECODER.scan_once  # type: ignore[attr-defined]
_scan_tagged = _JSON_TAG_DECODER.scan_once  # type: ignore[attr-defined]


_orjson_dumps = orjson.dumps
#: Joining with an empty piece always builds a new, exact-size bytes object: the
#: cheapest copy CPython offers (bytes(x) and x + b"" return x itself).
_copy_bytes = b"".join
_orjson_loads = orjson.loads
_CONTAINER_START = (0x7B, 0x5B)  # "{" and "[": an object or an array


_TAG_MARK = b'"$t"'


def _loads(data: bytes) -> Any:
    # orjson turns integers beyond 64 bits into floats; ours only occur tagged, so only
    # tagged text (and a bare top-level integer, handled by the caller) needs the stdlib.
    if 36 in data and data.find(_TAG_MARK) >= 0:
        return _decode_json(data.decode("utf-8"), True)
    return orjson.loads(data)


def _decode_json(text: str, tagged: bool) -> Any:
    try:
        value, end = (_scan_tagged if tagged else _scan_plain)(text, 0)
    except StopIteration:
        raise ValueError("not a JSON document") from None
    if end != len(text):
        # leading/trailing whitespace or garbage: let the full decoder judge it
        return (_JSON_TAG_DECODER if tagged else _JSON_PLAIN_DECODER).decode(text)
    return value


class JSONCodec(Codec):
    """Safe default codec: JSON with type tags.  Never executes code on load."""

    name = "json"

    def encode(self, value: Any) -> bytes:
        try:
            if type(value) is int:  # canonical decimal text, shared with native counters
                return str(value).encode("ascii")
            # Copied into an exact-size bytes object: orjson returns its oversized output
            # buffer shrunk in place, and a store keeps what it encodes, so without the
            # copy every kept value pins fresh heap (measured: 3.7 us vs 0.9 us a value).
            if _is_plain(value):
                try:
                    return _copy_bytes((_orjson_dumps(value), b""))
                except TypeError:  # an integer beyond orjson's range: tag it below
                    pass
            return _copy_bytes((_orjson_dumps(_to_json(value)), b""))
        except EncodeError:
            raise
        except RecursionError as exc:
            raise EncodeError("value is nested too deeply or contains a reference cycle") from exc
        except (TypeError, ValueError) as exc:
            # orjson.JSONEncodeError (a TypeError): lone surrogates, nesting over 254 levels
            raise EncodeError(f"the json codec cannot store this value: {exc}") from exc

    def decode(self, data: bytes) -> Any:
        # No "$" byte means no tag (36 is "$"; an int operand makes this a memchr, ten
        # times cheaper than searching for the bytes '"$t"').
        if data and data[0] in _CONTAINER_START and (36 not in data or data.find(_TAG_MARK) < 0):
            try:  # the common case: an untagged object or array
                return _orjson_loads(data)
            except ValueError as exc:
                raise DecodeError(f"stored bytes are not valid plugstore JSON: {exc}") from None
        if data[:1] in _INT_START and _DECIMAL_INT.match(data):
            try:
                return int(data)  # a top-level int, exact at any size
            except ValueError as exc:  # beyond Python's int-from-text digit limit
                raise DecodeError(f"stored integer cannot be read: {exc}") from None
        if data[:1] == b"\x80" or data[:4] == SignedPickleCodec._MAGIC:
            raise DecodeError(
                "the stored bytes are a pickle, not JSON: open the store with "
                "codec='pickle' (or 'signed-pickle') if, and only if, you trust this data"
            )
        try:
            return _loads(data)
        except DecodeError:
            raise
        except Exception as exc:  # malformed tags raise all sorts
            raise DecodeError(f"stored bytes are not valid plugstore JSON: {exc}") from None


# ------------------------------------------------------------------------- pickle


class PickleCodec(Codec):
    """Stores any picklable object.  Unpickling runs code: use only for trusted data."""

    name = "pickle"

    def __init__(self, protocol: int = pickle.DEFAULT_PROTOCOL) -> None:
        self.protocol = protocol

    def _dumps(self, value: Any) -> bytes:
        if type(value) is int:
            return str(value).encode("ascii")
        try:
            return pickle.dumps(value, protocol=self.protocol)
        except RecursionError as exc:
            raise EncodeError("value is nested too deeply to pickle") from exc
        except Exception as exc:  # PicklingError, TypeError, AttributeError (local objects)
            raise EncodeError(f"the pickle codec cannot store this value: {exc}") from exc

    def _loads(self, data: bytes) -> Any:
        if _DECIMAL_INT.match(data):
            return int(data)
        try:
            return pickle.loads(data)
        except Exception as exc:
            raise DecodeError(f"stored bytes are not a loadable pickle: {exc}") from None

    def encode(self, value: Any) -> bytes:
        return self._dumps(value)

    def decode(self, data: bytes) -> Any:
        return self._loads(data)

    def check_readable(self, data: bytes) -> None:
        """Only the framing can be checked: unpickling to find out would run the data."""
        if not (_DECIMAL_INT.match(data) or data[:1] == b"\x80"):
            raise DecodeError("the bytes are neither a stored integer nor a pickle")

    def from_pickle(self, data: bytes) -> bytes:
        """What this codec stores for a value another program pickled, without unpickling.

        A pickled plain ``int`` becomes decimal text, like every int this codec stores, so
        native counters work on it; any other pickle is kept as it is (and signed, by the
        signed codec).  Used to import Errbot's shelve files.
        """
        number = pickled_int(data)
        if number is not None:
            with contextlib.suppress(ValueError):  # beyond int-to-str's digit limit: keep it
                return str(number).encode("ascii")
        return self._seal(data)

    def to_pickle(self, data: bytes, protocol: int = 2) -> bytes:
        """A plain pickle of the value stored as ``data``, without unpickling it.

        Stored ints are pickled with ``protocol``; signatures are checked and removed.
        The inverse of :meth:`from_pickle`: used to export to Errbot's shelve files.
        """
        self.check_readable(data)
        payload = self._verified_payload(data)
        if _DECIMAL_INT.match(payload):
            return pickle.dumps(int(payload), protocol=protocol)
        return payload

    def _seal(self, payload: bytes) -> bytes:
        return payload

    def _verified_payload(self, data: bytes) -> bytes:
        return data


class SignedPickleCodec(PickleCodec):
    """Pickle with an HMAC-SHA256 signature; tampered or foreign pickles are refused."""

    name = "signed-pickle"
    _MAGIC = b"PSG1"
    _DIGEST_SIZE = 32

    def __init__(self, secret: str | bytes, protocol: int = pickle.DEFAULT_PROTOCOL) -> None:
        super().__init__(protocol)
        if isinstance(secret, str):
            secret = secret.encode("utf-8")
        if not secret:
            raise ConfigurationError("the signed-pickle codec needs a non-empty secret")
        self._secret = secret

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()

    def encode(self, value: Any) -> bytes:
        payload = self._dumps(value)
        if _DECIMAL_INT.match(payload):
            return payload
        return self._seal(payload)

    def _seal(self, payload: bytes) -> bytes:
        return self._MAGIC + self._sign(payload) + payload

    def check_readable(self, data: bytes) -> None:
        """Verify the signature (and nothing else): no unpickling."""
        self._verified_payload(data)

    def decode(self, data: bytes) -> Any:
        return self._loads(self._verified_payload(data))

    def _verified_payload(self, data: bytes) -> bytes:
        """The pickle inside ``data`` once its signature checks out (``data`` for an int)."""
        if _DECIMAL_INT.match(data):
            return data
        head = len(self._MAGIC) + self._DIGEST_SIZE
        if data[: len(self._MAGIC)] != self._MAGIC or len(data) <= head:
            raise DecodeError("refusing to unpickle: the stored value is not signed")
        signature, payload = data[len(self._MAGIC) : head], data[head:]
        if not hmac.compare_digest(signature, self._sign(payload)):
            raise DecodeError(
                "refusing to unpickle: the signature does not match (tampered data or a "
                "different secret)"
            )
        return payload

    def __repr__(self) -> str:  # never show the secret
        return f"<{type(self).__name__} {self.name!r} secret=***>"


_PICKLED_INT_OPS = frozenset({"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4"})


def pickled_int(data: bytes) -> int | None:
    """The ``int`` that ``data`` pickles, if it is exactly one plain int; else ``None``.

    Read from the opcodes (``pickletools``), so nothing is unpickled and no code runs.
    ``True``/``False`` and int subclasses are not plain ints.
    """
    import pickletools

    ops: list[tuple[str, Any]] = []
    try:
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name not in ("PROTO", "FRAME"):
                ops.append((opcode.name, arg))
            if len(ops) > 2:
                return None
    except Exception:  # not a pickle at all: genops raises ValueError and friends
        return None
    if len(ops) != 2 or ops[0][0] not in _PICKLED_INT_OPS or ops[1][0] != "STOP":
        return None
    number = ops[0][1]
    return number if type(number) is int else None  # protocol 0 "I01" is True


def get_codec(codec: str | Codec | None = None, *, secret: str | bytes | None = None) -> Codec:
    """Return a codec from a name (``json``, ``pickle``, ``signed-pickle``) or an instance."""
    if isinstance(codec, Codec):
        return codec
    name = (codec or "json").lower().replace("_", "-")
    if name == "json":
        return JSONCodec()
    if name == "pickle":
        return PickleCodec()
    if name in ("signed-pickle", "pickle-signed"):
        if secret is None:
            raise ConfigurationError(
                "codec 'signed-pickle' needs a secret: pass secret=... or set PLUGSTORE_SECRET"
            )
        return SignedPickleCodec(secret)
    raise ConfigurationError(
        f"unknown codec {codec!r}: choose 'json' (default), 'pickle' or 'signed-pickle'"
    )


__all__ = [
    "Codec",
    "JSONCodec",
    "PickleCodec",
    "SignedPickleCodec",
    "from_tagged_json",
    "get_codec",
    "pickled_int",
    "to_tagged_json",
]
