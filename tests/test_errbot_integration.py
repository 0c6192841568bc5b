"""The Errbot integration without Errbot: the storage contract, mutable() tracking, the
atomic helpers, and import/export of Shelf data directories.  (Real Errbot runs in
tests/real_errbot, in its own venv.)"""

from __future__ import annotations

import configparser
import contextlib
import gc
import importlib.metadata
import importlib.util
import pickle
import subprocess
import sys
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import plugstore
from plugstore.codecs import PickleCodec, SignedPickleCodec, pickled_int
from plugstore.errors import (
    ConfigurationError,
    ConflictError,
    DecodeError,
    EncodeError,
    InvalidKeyError,
    InvalidNamespaceError,
    StoreNotOpenError,
)
from plugstore.integrations.errbot import (
    ErrbotStorage,
    ErrbotStorageFactory,
    compute,
    errbot_name,
    incr,
    namespace,
    namespace_for,
    plugin_dir,
)

SECRET = "a-test-secret"


class StoreMixin:
    """Errbot's StoreMixin as far as storage goes: mutable() reads, yields, writes back."""

    def __init__(self, storage: ErrbotStorage | None) -> None:
        self._store = storage

    @contextmanager
    def mutable(self, key: str, default: Any = None) -> Iterator[Any]:
        try:
            obj = self._store.get(key)  # type: ignore[union-attr]
        except KeyError:
            obj = default
        yield obj
        self._store.set(key, obj)  # type: ignore[union-attr]


MUTABLE_CODE = StoreMixin.mutable.__wrapped__.__code__  # type: ignore[attr-defined]


@pytest.fixture
def factory(tmp_path: Path) -> Iterator[Any]:
    made: list[ErrbotStorageFactory] = []

    def make(**config: Any) -> ErrbotStorageFactory:
        config.setdefault("url", f"sqlite:///{tmp_path / 'errbot.db'}")
        f = ErrbotStorageFactory(config, mutable_code=MUTABLE_CODE)
        made.append(f)
        return f

    return make


# --------------------------------------------------------------------------- contract


def test_errbot_contract(factory: Any) -> None:
    storage = factory().open("Plugin")
    with pytest.raises(KeyError):
        storage.get("missing")
    with pytest.raises(KeyError):
        storage.remove("missing")
    with pytest.raises(KeyError):
        storage.get("")  # a key plugstore cannot store is simply absent
    with pytest.raises(KeyError):
        storage.remove("nul\x00key")
    with pytest.raises(InvalidKeyError):
        storage.set("", 1)
    storage.set("obj", {"nested": [1, {2, 3}], "ratio": 0.5})
    copy = storage.get("obj")
    copy["nested"].append("local change")
    assert storage.get("obj") == {"nested": [1, {2, 3}], "ratio": 0.5}  # a copy each time
    for i in range(10):
        storage.set(f"k{i}", i)
    assert storage.len() == 11
    for key in storage.keys():  # noqa: SIM118 - a snapshot: deleting through it is safe
        storage.remove(key)
    assert storage.len() == 0
    assert storage.keys() == []


def test_unencodable_values_are_refused_before_writing(factory: Any) -> None:
    storage = factory(codec="json").open("Plugin")
    with pytest.raises(EncodeError):
        storage.set("k", object())
    assert storage.keys() == []
    pickled = factory(url=storage.namespace.store.url.replace("errbot", "p")).open("Plugin")
    with pytest.raises(EncodeError):
        pickled.set("k", lambda: None)
    assert pickled.keys() == []


def test_closed_storage(factory: Any) -> None:
    f = factory()
    storage = f.open("Plugin")
    storage.set("k", 1)
    storage.close()
    assert storage.closed
    for call in (
        lambda: storage.get("k"),
        lambda: storage.set("k", 2),
        lambda: storage.remove("k"),
        storage.keys,
        storage.len,
        storage.close,  # a second close
        lambda: storage.namespace,
    ):
        with pytest.raises(StoreNotOpenError, match="'Plugin' is closed"):
            call()
    assert f.store is None  # the last namespace closed the store
    again = f.open("Plugin")  # ... and the next open reopens it
    assert again.get("k") == 1


def test_the_store_closes_with_the_last_namespace(factory: Any) -> None:
    f = factory()
    a, b = f.open("A"), f.open("B")
    store = f.store
    assert store is not None
    assert store.is_open
    a.close()
    assert store.is_open
    assert b.len() == 0
    b.close()
    assert not store.is_open
    with pytest.raises(InvalidNamespaceError, match=r"Errbot plugin 'é+'"):
        f.open("é" * 22)  # 132 characters once escaped
    assert f.store is None  # a failed first open leaves nothing open


# --------------------------------------------------------------------------- names

ODD_NAMES = [
    "Test hooks for webhooks testing",
    "a b",
    "a_b",
    "A b",
    "a%20b",
    ".hidden",
    "-dash",
    "a/b",
    "..",
    "名前 🔑",
    'quote\'s "double"',
    "*",
    "x" * 128,
]


def test_plugins_of_any_name_store_apart_and_round_trip(factory: Any) -> None:
    f = factory()
    opened = [f.open(name) for name in ODD_NAMES]
    for i, storage in enumerate(opened):
        storage.set("who", ODD_NAMES[i])
        storage.set("n", i)
    store = f.store
    assert store is not None
    assert set(store.namespaces()) == {namespace_for(n) for n in ODD_NAMES}
    assert len(store.namespaces()) == len(ODD_NAMES)  # no two names share a namespace
    for storage in opened:
        storage.close()
    # A later start (a new factory over the same store) finds each plugin's data.
    again = factory()
    for i, name in enumerate(ODD_NAMES):
        storage = again.open(name)
        assert storage.name == name
        assert storage.get("who") == name
        assert storage.get("n") == i
        assert namespace(StoreMixinWith(storage)).name == namespace_for(name)
        assert errbot_name(storage.namespace.name) == name


class StoreMixinWith(StoreMixin):
    """A plugin object holding ``storage`` (what namespace() looks at)."""


def test_names_that_are_namespaces_keep_them() -> None:
    for name in ("core", "repomgr", "text_backend", "ACLs", "Memo", "Plugin_1.v2-x"):
        assert namespace_for(name) == name
        assert errbot_name(name) == name
    assert namespace_for("Test hooks for webhooks testing") == (
        "Test%20hooks%20for%20webhooks%20testing"
    )
    assert [namespace_for(n) for n in ("a b", "a_b", "A b", "a%20b")] == [
        "a%20b",
        "a_b",
        "A%20b",
        "a%2520b",
    ]


def test_a_name_too_long_for_a_namespace_is_a_clear_error_naming_the_plugin(
    factory: Any,
) -> None:
    name = "Webhooks: " + "ü" * 20
    with pytest.raises(InvalidNamespaceError) as raised:
        factory().open(name)
    message = str(raised.value)
    assert repr(name) in message
    assert "134 characters, over the limit of 128" in message
    assert "shorter Name in its .plug file" in message
    with pytest.raises(InvalidNamespaceError, match="no Errbot plugin stores there"):
        errbot_name("%41")  # 'A' is spelled A: no name maps to %41


def test_messages_name_the_plugin_not_the_escaped_namespace(factory: Any) -> None:
    storage = factory().open("My plugin")
    assert "<ErrbotStorage 'My plugin' (namespace 'My%20plugin') of sqlite:" in repr(storage)
    storage.close()
    with pytest.raises(StoreNotOpenError, match="'My plugin' is closed"):
        storage.get("k")


def test_factory_configuration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    assert ErrbotStorageFactory({"url": url}).open("P").namespace.store.codec.name == "pickle"
    chosen = ErrbotStorageFactory({"url": url + "?codec=json"}).open("P")
    assert chosen.namespace.store.codec.name == "json"  # the URL's codec is respected
    signed = ErrbotStorageFactory({"url": url, "codec": "signed-pickle", "secret": SECRET})
    assert signed.open("P").namespace.store.codec.name == "signed-pickle"
    with pytest.raises(ConfigurationError, match="strict"):
        ErrbotStorageFactory({"url": url, "strict": "yes"})
    with pytest.raises(ConfigurationError, match="unknown option"):
        ErrbotStorageFactory({"url": url, "bogus": 1}).open("P")
    with pytest.raises(ConfigurationError, match="secret"):
        ErrbotStorageFactory({"url": url, "codec": "signed-pickle"}).open("P")
    # No URL: PLUGSTORE_URL, else plugstore.db in Errbot's BOT_DATA_DIR.
    monkeypatch.delenv("PLUGSTORE_URL")
    storage = ErrbotStorageFactory({}, data_dir=str(tmp_path / "data")).open("P")
    storage.set("k", "v")
    assert (tmp_path / "data" / "plugstore.db").is_file()
    monkeypatch.setenv("PLUGSTORE_URL", f"sqlite:///{tmp_path / 'env.db'}")
    ErrbotStorageFactory({}, data_dir=str(tmp_path / "data")).open("P").set("k", "v")
    assert (tmp_path / "env.db").is_file()


def test_repr_never_shows_a_password() -> None:
    storage = ErrbotStorage.__new__(ErrbotStorage)
    with plugstore.open("memory://") as store:
        storage.__init__(store.namespace("P"))  # type: ignore[misc]
        assert repr(storage) == "<ErrbotStorage 'P' of memory:// (open)>"


# --------------------------------------------------------------------------- mutable()


def test_mutable_write_back_is_skipped_when_unchanged(factory: Any) -> None:
    storage = factory().open("Plugin")
    plugin = StoreMixin(storage)
    storage.set("config", {"level": 1})
    with plugin.mutable("config") as config:
        assert config == {"level": 1}
        storage.set("config", {"level": 2})  # another command, meanwhile
    assert storage.get("config") == {"level": 2}  # not reverted
    with plugin.mutable("config") as config:
        config["level"] = 3
    assert storage.get("config") == {"level": 3}
    with plugin.mutable("absent", []):  # Errbot writes a missing key's default
        pass
    assert storage.get("absent") == []


def test_default_mode_mutable_overwrites_like_errbot(factory: Any) -> None:
    storage = factory().open("Plugin")
    plugin = StoreMixin(storage)
    storage.set("n", {"v": 0})
    with plugin.mutable("n") as n:
        storage.set("n", {"v": 100})
        n["v"] += 1
    assert storage.get("n") == {"v": 1}  # Errbot's semantics: last writer wins


def test_strict_mutable_raises_on_a_concurrent_change(factory: Any) -> None:
    storage = factory(strict=True).open("Plugin")
    plugin = StoreMixin(storage)
    storage.set("n", [0])

    def change(key: str, theirs: Any) -> None:
        with plugin.mutable(key, []) as mine:
            storage.set(key, theirs)  # another writer, between mutable()'s get and set
            mine.append(1)

    with pytest.raises(ConflictError, match="changed by another writer"):
        change("n", [100])
    assert storage.get("n") == [100]  # theirs kept
    with pytest.raises(ConflictError):
        change("new", ["created meanwhile"])  # absent when read: insert-only
    assert storage.get("new") == ["created meanwhile"]
    storage.set("n", {"v": 100})
    with plugin.mutable("n") as n:  # no one else: applied
        n["v"] += 1
    assert storage.get("n") == {"v": 101}
    # Outside mutable() a set is a plain set, even in strict mode.
    storage.get("n")
    storage.set("n", {"v": 0})
    assert storage.get("n") == {"v": 0}


def test_strict_mutable_threads_account_for_every_block(factory: Any) -> None:
    storage = factory(strict=True).open("Plugin")
    plugin = StoreMixin(storage)
    storage.set("c", {"n": 0})
    applied, conflicts = [], []
    start = threading.Barrier(8)

    def work() -> None:
        start.wait()
        for _ in range(100):
            try:
                with plugin.mutable("c") as c:
                    c["n"] += 1
                applied.append(1)
            except ConflictError:
                conflicts.append(1)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(applied) + len(conflicts) == 800
    assert storage.get("c")["n"] == len(applied)


def test_blocks_that_raise_do_not_accumulate(factory: Any) -> None:
    storage = factory(strict=True).open("Plugin")
    plugin = StoreMixin(storage)
    for i in range(ErrbotStorage.pending_limit * 2):
        with pytest.raises(RuntimeError), plugin.mutable(f"k{i}", 0):
            raise RuntimeError("the block failed: nothing is written back")
    assert len(storage._pending()) <= ErrbotStorage.pending_limit
    assert storage.keys() == []


# --------------------------------------------------------------------------- helpers


def test_atomic_helpers(factory: Any) -> None:
    plugin = StoreMixin(factory().open("Plugin"))
    assert incr(plugin, "visits") == 1
    assert incr(plugin, "visits", 5) == 6
    assert compute(plugin, "names", lambda names: [*names, "ann"], []) == ["ann"]
    assert namespace(plugin)["names"] == ["ann"]
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(100):
                incr(plugin, "race")
                compute(plugin, "dict", lambda d: {"n": d["n"] + 1}, {"n": 0})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert namespace(plugin)["race"] == 800
    assert namespace(plugin)["dict"] == {"n": 800}


def test_helpers_refuse_other_storage() -> None:
    class ShelfLike:
        pass

    with pytest.raises(StoreNotOpenError, match="not open"):
        incr(StoreMixin(None), "n")
    with pytest.raises(TypeError, match="STORAGE = 'Plugstore'"):
        compute(StoreMixin(ShelfLike()), "n", lambda v: v)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- packaging


def test_plugin_dir_holds_the_plug_and_its_module() -> None:
    plug = configparser.ConfigParser()
    plug.read(plugin_dir() / "plugstore.plug")
    assert plug["Core"]["Name"] == "Plugstore"
    assert (plugin_dir() / f"{plug['Core']['Module']}.py").is_file()
    (entry,) = importlib.metadata.entry_points(group="errbot.backend_plugins", name="plugstore")
    spec = importlib.util.find_spec(entry.module)
    assert spec is not None
    assert spec.origin is not None
    assert Path(spec.origin).parent == plugin_dir()


def test_importing_plugstore_never_imports_errbot() -> None:
    code = (
        "import sys, plugstore, plugstore.integrations.errbot, plugstore.cli.errbot;"
        "print([m for m in sys.modules if m == 'errbot' or m.startswith('errbot.')])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# --------------------------------------------------------------------------- codecs


@given(
    st.one_of(st.integers(), st.booleans(), st.floats(allow_nan=False), st.text(max_size=3)),
    st.integers(0, pickle.HIGHEST_PROTOCOL),
)
def test_pickled_int_reads_ints_without_unpickling(value: Any, protocol: int) -> None:
    expected = value if type(value) is int else None
    assert pickled_int(pickle.dumps(value, protocol=protocol)) == expected


def test_pickled_int_rejects_what_is_not_one_plain_int() -> None:
    for data in (b"", b"garbage", b"\x80\x02K\x05", pickle.dumps([1]), pickle.dumps((1,))):
        assert pickled_int(data) is None


@pytest.mark.parametrize("codec", [PickleCodec(), SignedPickleCodec(SECRET)], ids=str)
def test_from_and_to_pickle(codec: PickleCodec) -> None:
    for value in ({"a": [1, 2]}, "text", 2**70, -3, True, None):
        pickled = pickle.dumps(value, protocol=2)
        stored = codec.from_pickle(pickled)
        assert codec.decode(stored) == value
        if type(value) is int:
            assert stored == str(value).encode()  # counters work on it
        back = codec.to_pickle(stored)
        assert pickle.loads(back) == value
        if type(value) is not int:
            assert back == pickled  # the very bytes, never re-pickled


def test_to_pickle_refuses_tampered_or_foreign_bytes() -> None:
    signed = SignedPickleCodec(SECRET)
    stored = signed.from_pickle(pickle.dumps("x", protocol=2))
    with pytest.raises(DecodeError, match="signature"):
        signed.to_pickle(stored[:-2] + b"y.")
    with pytest.raises(DecodeError):
        SignedPickleCodec("other").to_pickle(stored)
    with pytest.raises(DecodeError):
        PickleCodec().to_pickle(b"not a pickle")


def test_an_unchanged_value_is_not_written_back_even_if_its_pickle_differs(factory: Any) -> None:
    """Errbot wrote protocol 2; plugstore pickles with a newer protocol: equal values,
    different bytes.  A read-only block must still not write back (nor conflict)."""
    for strict in (False, True):
        storage = factory(strict=strict).open(f"P{int(strict)}")
        plugin = StoreMixin(storage)
        old = pickle.dumps({"acl": ["ann", "bob"]}, protocol=2)
        storage.namespace.store.backend.bucket(storage.namespace.name).set("acl", old)
        with plugin.mutable("acl") as acl:
            assert acl == {"acl": ["ann", "bob"]}
            storage.set("acl", {"acl": ["ann"]})  # someone removes bob meanwhile
        assert storage.get("acl") == {"acl": ["ann"]}


def test_strict_block_whose_read_was_pushed_out_raises(factory: Any) -> None:
    storage = factory(strict=True).open("Plugin")
    plugin = StoreMixin(storage)
    storage.set("votes", {"alice": 1})
    slow = plugin.mutable("votes")
    votes = slow.__enter__()
    # Blocks of another thread never push this thread's reads out...
    worker = threading.Thread(target=lambda: [_raising_block(plugin) for _ in range(100)])
    worker.start()
    worker.join()
    votes["carol"] = 1
    storage.set("votes", {"alice": 1, "bob": 1})  # a concurrent vote
    with pytest.raises(ConflictError, match="changed by another writer"):
        slow.__exit__(None, None, None)
    assert storage.get("votes") == {"alice": 1, "bob": 1}
    # ...but more than pending_limit blocks left open in its own thread do (frames that
    # live on: a dead frame's id is reused and its entry overwritten).  Then the change
    # cannot be checked, and strict mode refuses it rather than overwrite.
    slow = plugin.mutable("votes")
    votes = slow.__enter__()
    left_open = [plugin.mutable(f"k{i}", 0) for i in range(ErrbotStorage.pending_limit)]
    for block in left_open:
        block.__enter__()
    votes["carol"] = 1
    storage.set("votes", {"alice": 1, "bob": 1, "dave": 1})
    with pytest.raises(ConflictError, match="cannot be checked"):
        slow.__exit__(None, None, None)
    assert storage.get("votes") == {"alice": 1, "bob": 1, "dave": 1}


def _raising_block(plugin: StoreMixin) -> None:
    with contextlib.suppress(RuntimeError), plugin.mutable("other", 0):
        raise RuntimeError("the block failed: nothing is written back")


def test_a_block_that_raised_keeps_nothing_alive(factory: Any) -> None:
    storage = factory().open("Plugin")

    class Big:
        pass

    storage.set("big", [1])
    value_refs = []
    for _ in range(3):
        with contextlib.suppress(RuntimeError), StoreMixin(storage).mutable("big") as v:
            holder = Big()
            v.append(holder)
            value_refs.append(weakref.ref(holder))
            del holder
            raise RuntimeError
    del v
    gc.collect()
    assert all(ref() is None for ref in value_refs)
