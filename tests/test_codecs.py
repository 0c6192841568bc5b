"""Codec behaviour beyond round trips (those are in the conformance kit)."""

from __future__ import annotations

import collections
import datetime as dt
import enum
import json
import pickle
import zoneinfo
from typing import Any, NamedTuple

import pytest

import plugstore
from plugstore.codecs import (
    JSONCodec,
    PickleCodec,
    SignedPickleCodec,
    from_tagged_json,
    get_codec,
    to_tagged_json,
)
from plugstore.errors import ConfigurationError, DecodeError, EncodeError


class Color(enum.IntEnum):
    RED = 1


class Point(NamedTuple):
    x: int
    y: int


class Evil:
    """Unpickling this would run code; a safe codec must never get that far."""

    def __reduce__(self) -> Any:
        return (exec, ("import sys; sys.modules['__main__'].PWNED = True",))


@pytest.mark.parametrize("codec", [JSONCodec(), PickleCodec(), SignedPickleCodec("s")])
@pytest.mark.parametrize("value", [0, 1, -1, 2**63 - 1, -(2**63), 10**40])
def test_ints_are_canonical_decimal_text_in_every_codec(codec: Any, value: int) -> None:
    assert codec.encode(value) == str(value).encode()
    assert codec.decode(str(value).encode()) == value


def test_json_refuses_subclasses_instead_of_changing_them() -> None:
    codec = JSONCodec()
    for value in (Color.RED, Point(1, 2), collections.OrderedDict(a=1), collections.Counter("a")):
        with pytest.raises(EncodeError):
            codec.encode(value)


def test_json_refuses_unprintable_ints_and_surrogates() -> None:
    codec = JSONCodec()
    with pytest.raises(EncodeError):
        codec.encode([10**5000])  # beyond Python's int-to-str limit
    with pytest.raises(EncodeError):
        codec.encode("\ud800")


def test_json_output_is_strict_json() -> None:
    data = JSONCodec().encode({"inf": float("inf"), "nan": float("nan"), "s": {1}})
    assert b"Infinity" not in data
    assert b"NaN" not in data

    json.loads(data, parse_constant=lambda c: pytest.fail(f"non-standard constant {c}"))


def test_json_decode_never_unpickles() -> None:
    evil = pickle.dumps(Evil())
    with pytest.raises(DecodeError, match="codec='pickle'"):
        JSONCodec().decode(evil)


def test_json_decode_errors_are_decode_errors() -> None:
    codec = JSONCodec()
    for junk in (b"{", b"\xff\xfe", b'{"$t": "nope", "v": 1}', b'{"$t": "bytes", "v": "!!"}'):
        with pytest.raises(DecodeError):
            codec.decode(junk)


def test_user_dicts_that_look_like_tags_round_trip() -> None:
    codec = JSONCodec()
    for value in ({"$t": "tuple", "v": [1, 2]}, {"$t": "x"}, {"v": 1}, [{"$t": "set", "v": []}]):
        assert codec.decode(codec.encode(value)) == value


def test_tagged_json_helpers_are_inverse() -> None:
    value = {"a": (1, {2, 3}), 4: b"\x00"}
    assert from_tagged_json(to_tagged_json(value)) == value


def test_signed_pickle_refuses_tampered_and_unsigned_data() -> None:
    codec = SignedPickleCodec("secret-1")
    good = codec.encode({"x": 1})
    assert codec.decode(good) == {"x": 1}
    tampered = good[:-3] + bytes([good[-3] ^ 1]) + good[-2:]
    with pytest.raises(DecodeError, match="signature"):
        codec.decode(tampered)
    with pytest.raises(DecodeError, match="not signed"):
        codec.decode(pickle.dumps(Evil()))
    with pytest.raises(DecodeError, match="signature"):
        SignedPickleCodec("other-secret").decode(good)
    # a forged payload signed with the wrong key never reaches pickle.loads
    forged = SignedPickleCodec("attacker").encode(Evil())
    with pytest.raises(DecodeError):
        codec.decode(forged)
    import __main__

    assert not hasattr(__main__, "PWNED")


def test_signed_pickle_needs_a_secret_and_hides_it() -> None:
    with pytest.raises(ConfigurationError):
        SignedPickleCodec("")
    with pytest.raises(ConfigurationError, match="secret"):
        get_codec("signed-pickle")
    assert "hunter2" not in repr(get_codec("signed-pickle", secret="hunter2"))


def test_pickle_codec_errors() -> None:
    codec = PickleCodec()
    with pytest.raises(EncodeError):
        codec.encode(lambda: 1)
    with pytest.raises(DecodeError):
        codec.decode(b"\x80\x05garbage")


def test_get_codec_names() -> None:
    assert get_codec(None).name == "json"
    assert get_codec("PICKLE").name == "pickle"
    assert get_codec("signed_pickle", secret="s").name == "signed-pickle"
    with pytest.raises(ConfigurationError, match="unknown codec"):
        get_codec("yaml")


def test_store_codec_from_url_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    with plugstore.open("memory://?codec=pickle") as store:
        assert store.codec.name == "pickle"
    monkeypatch.setenv("PLUGSTORE_SECRET", "from-env")
    with plugstore.open("memory://", codec="signed-pickle") as store:
        ns = store.namespace("n")
        ns["k"] = {1, 2}
        assert ns["k"] == {1, 2}
        raw = store.backend.bucket("n").get("k")
        assert raw is not None
        assert raw.startswith(b"PSG1")


@pytest.mark.parametrize(
    "value",
    [
        [10**20, "x"],
        {"a": 2**64, "b": -(2**63) - 1},
        {"n": 2**63 - 1, "m": -(2**63)},
        "digits 12345678901234567890 in a string",
        [0.1234567890123456789, 1e-320, -0.0],
        {"$t": 1, "v": 2},
        {"plain": [1, 2], "tuple": (1, 2)},
    ],
    ids=repr,
)
def test_json_fast_and_exact_paths_agree(value: Any) -> None:
    """The C fast path (orjson) must never change a value the stdlib path keeps exact."""
    codec = JSONCodec()
    data = codec.encode(value)
    got = codec.decode(data)
    assert got == value
    assert type(got) is type(value)
    assert json.loads(data) is not None  # what is stored is standard JSON


def test_json_decodes_text_written_by_other_json_writers() -> None:
    codec = JSONCodec()
    assert codec.decode(b' {"a": [1, 2.5, null, true]} ') == {"a": [1, 2.5, None, True]}
    assert codec.decode(b"123456789012345678901234567890") == 123456789012345678901234567890


def test_json_codec_names_the_right_codec_for_signed_pickles() -> None:
    signed = SignedPickleCodec("s").encode({"x": 1})
    with pytest.raises(DecodeError, match="signed-pickle"):
        JSONCodec().decode(signed)


class Tone(str, enum.Enum):
    LOW = "low"


class Name(str):
    pass


@pytest.mark.parametrize(
    "value",
    [{Tone.LOW: 1}, {Name("a"): 1}, {Color.RED: "x"}, {"ok": {Name("nested"): 1}}],
    ids=repr,
)
def test_json_refuses_subclass_dict_keys(value: Any) -> None:
    """The fast path leaves key checks to orjson; subclass keys must still be refused."""
    with pytest.raises(EncodeError):
        JSONCodec().encode(value)


def test_json_encoded_values_are_compact_exact_size_bytes() -> None:
    data = JSONCodec().encode({"n": 1, "tags": ["a", "b"]})
    assert type(data) is bytes
    assert data == b'{"n":1,"tags":["a","b"]}'


def test_json_nesting_limit_is_a_clear_encode_error() -> None:
    codec = JSONCodec()
    value: Any = 1
    for _ in range(254):
        value = [value]
    assert codec.decode(codec.encode(value)) == value
    with pytest.raises(EncodeError):
        codec.encode([value])


@pytest.mark.parametrize(
    "junk",
    [
        b'{"$t": "timedelta", "v": [9999999999, 0, 0]}',
        b'{"$t": "decimal", "v": "abc"}',
        b'{"$t": "uuid", "v": "nope"}',
        b'{"$t": "date", "v": "2026-13-45"}',
        b'{"$t": "dict", "v": [[[1], 2]]}',
        b"9" * 5000,
    ],
    ids=lambda b: b[:30].decode(),
)
def test_malformed_stored_json_is_always_a_decode_error(junk: bytes) -> None:
    with pytest.raises(DecodeError):
        JSONCodec().decode(junk)


def test_top_level_int_beyond_the_digit_limit_is_an_encode_error() -> None:
    with pytest.raises(EncodeError):
        JSONCodec().encode(10**5000)


PARIS = zoneinfo.ZoneInfo("Europe/Paris")


@pytest.mark.parametrize(
    "value",
    [
        dt.datetime(2026, 10, 25, 2, 30, tzinfo=PARIS),
        dt.datetime(2026, 10, 25, 2, 30, tzinfo=PARIS, fold=1),
        dt.datetime(2026, 1, 1, fold=1),
        dt.datetime(2026, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
        dt.time(1, 2, fold=1),
        dt.time(1, 2, tzinfo=dt.timezone(dt.timedelta(hours=-3))),
    ],
    ids=repr,
)
def test_json_keeps_zones_and_fold_exactly(value: Any) -> None:
    codec = JSONCodec()
    got = codec.decode(codec.encode(value))
    assert got == value
    assert got.tzinfo == value.tzinfo
    assert type(got.tzinfo) is type(value.tzinfo)
    assert got.fold == value.fold


@pytest.mark.parametrize(
    "value",
    [
        dt.datetime(2026, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1), "CET")),
        dt.time(1, 2, tzinfo=PARIS),
    ],
    ids=repr,
)
def test_json_refuses_zones_it_cannot_keep(value: Any) -> None:
    with pytest.raises(EncodeError):
        JSONCodec().encode(value)


@pytest.mark.parametrize(
    "offset", [dt.timedelta(microseconds=1), -dt.timedelta(hours=3, seconds=1, microseconds=5)]
)
def test_json_keeps_offsets_with_a_fraction_of_a_second(offset: dt.timedelta) -> None:
    """Python 3.11's fromisoformat drops an offset's microseconds (found by the kit's
    hypothesis round trip); such offsets are stored apart from the ISO text."""
    codec = JSONCodec()
    tz = dt.timezone(offset)
    for value in (
        dt.datetime(2000, 1, 1, tzinfo=tz),
        dt.datetime(2000, 1, 1, 1, 30, fold=1, tzinfo=tz),
        dt.time(1, 2, 3, 4, tzinfo=tz),
    ):
        back = codec.decode(codec.encode(value))
        assert back == value
        assert back.utcoffset() == offset
        assert back.fold == value.fold


def _cyclic() -> list[Any]:
    value: list[Any] = []
    value.append(value)
    return value


def _deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("encode", "value", "cause"),
    [
        (JSONCodec().encode, "\ud800", TypeError),  # orjson refuses lone surrogates
        (JSONCodec().encode, 10**5000, ValueError),  # beyond the int-to-str digit limit
        (JSONCodec().encode, {1: _cyclic()}, RecursionError),  # the tagging walk recurses
        (to_tagged_json, _cyclic(), RecursionError),
        (PickleCodec().encode, lambda: 1, Exception),  # PicklingError / AttributeError
        (PickleCodec().encode, _deep(100_000), RecursionError),
    ],
    ids=["surrogate", "huge-int", "json-cycle", "tagged-cycle", "lambda", "pickle-deep"],
)
def test_encode_errors_keep_their_cause(encode: Any, value: Any, cause: type) -> None:
    # The original exception stays reachable (__cause__) for whoever debugs the failure.
    with pytest.raises(EncodeError) as info:
        encode(value)
    assert isinstance(info.value.__cause__, cause)
    assert not isinstance(info.value.__cause__, EncodeError)
