"""Shelf specifics: Errbot interop, locking across processes, crash safety.

The generic dict behaviour is in the conformance kit.
"""

from __future__ import annotations

import dbm
import dbm.dumb
import importlib.util
import json
import os
import pickle
import random
import shelve
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import plugstore
from plugstore.errors import (
    BackendUnavailableError,
    ConfigurationError,
    DecodeError,
    NotAnIntegerError,
    StoreDamagedError,
)
from plugstore.testing import FakeClock, PicklableThing


def url(d: Path) -> str:
    return f"shelf:///{d}"


def errbot_shelf(d: Path, namespace: str) -> shelve.Shelf[Any]:
    """Open a namespace exactly the way Errbot's Shelf storage does."""
    return shelve.DbfilenameShelf(os.path.join(str(d), namespace + ".db"), protocol=2)


def run_child(code: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def generation(d: Path, namespace: str) -> int:
    raw = (d / f"{namespace}.db.lock").read_bytes()
    return int(struct.unpack("<Q", raw[:8])[0])


# -- configuration ---------------------------------------------------------------------


def test_url_forms_and_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with plugstore.open("shelf:///rel/data") as store:  # three slashes: relative
        store.namespace("n")["k"] = 1
    assert (tmp_path / "rel/data/n.db.dir").is_file()
    with plugstore.open(f"shelf:///{tmp_path / 'abs'}") as store:  # four: absolute
        store.namespace("n")["k"] = 2
        assert store.backend.path == tmp_path / "abs"  # type: ignore[attr-defined]
    # Errbot's STORAGE_CONFIG style: a backend name plus basedir (or path)
    with plugstore.open("Shelf", basedir=str(tmp_path / "abs")) as store:
        assert store.namespace("n")["k"] == 2
    with plugstore.open("shelve", path=str(tmp_path / "rel/data")) as store:
        assert store.namespace("n")["k"] == 1
    with plugstore.open(f"shelf:///{tmp_path / 'abs'}?dbm=dumb&fsync=true") as store:
        assert store.info()["dbm_for_new_files"] == "dbm.dumb"
        assert store.info()["fsync"] == "true"
        store.namespace("n")["k"] = 3
        assert store.namespace("n")["k"] == 3


def test_bad_configuration(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="needs a directory"):
        plugstore.open("shelf")
    with pytest.raises(ConfigurationError, match="disagree"):
        plugstore.open("shelf", path=str(tmp_path / "a"), basedir=str(tmp_path / "b"))
    with pytest.raises(ConfigurationError, match="unknown dbm flavour"):
        plugstore.open(url(tmp_path), dbm="berkeley")
    with pytest.raises(ConfigurationError, match="unknown option"):
        plugstore.open(url(tmp_path), base_dir=str(tmp_path))
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(BackendUnavailableError):
        plugstore.open(url(tmp_path / "a-file"))


@pytest.mark.skipif(importlib.util.find_spec("_gdbm") is not None, reason="gdbm is present")
def test_asking_for_a_missing_flavour_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"no dbm\.gnu module"):
        plugstore.open(url(tmp_path), dbm="gnu")


# -- Errbot compatibility --------------------------------------------------------------


def test_reads_what_errbot_wrote(tmp_path: Path) -> None:
    thing = PicklableThing("bob", ["admin"])
    with errbot_shelf(tmp_path, "Karma") as shelf:
        shelf["scores"] = {"alice": 3, "bob": [1, 2]}
        shelf["who"] = thing
        shelf["ключ"] = ("tu", "ple")
        shelf["count"] = 41  # Errbot pickles ints too
    with plugstore.open(url(tmp_path), codec="pickle") as store:
        assert store.namespaces() == ["Karma"]
        ns = store.namespace("Karma")
        assert sorted(ns) == sorted(["scores", "who", "ключ", "count"])
        assert ns["scores"] == {"alice": 3, "bob": [1, 2]}
        assert ns["who"] == thing
        assert ns["ключ"] == ("tu", "ple")
        assert ns["count"] == 41
        # A pickled int is not a counter: documented, and the fix is to rewrite it once.
        with pytest.raises(NotAnIntegerError):
            ns.incr("count")
        ns["count"] = ns["count"]
        assert ns.incr("count") == 42


def test_errbot_reads_what_we_wrote(tmp_path: Path) -> None:
    thing = PicklableThing("eve", [])
    with plugstore.open(url(tmp_path), codec="pickle") as store:
        ns = store.namespace("Notes")
        ns["text"] = "hello"
        ns.set_many({"nested": {"a": [1, (2, 3)], "b": None}, "obj": thing, "é/ü": 1.5})
        ns["int"] = 7
    with errbot_shelf(tmp_path, "Notes") as shelf:
        assert shelf["text"] == "hello"
        assert shelf["nested"] == {"a": [1, (2, 3)], "b": None}
        assert shelf["obj"] == thing
        assert shelf["é/ü"] == 1.5
        # The documented caveat: every codec stores a top-level int as decimal text.
        with pytest.raises(pickle.UnpicklingError):
            shelf["int"]
        # Errbot keeps writing to the same files (stock dbm.dumb: in place, appends).
        shelf["text"] = "hi"
        shelf["from-errbot"] = ["x"] * 300
        del shelf["nested"]
    with plugstore.open(url(tmp_path), codec="pickle") as store:
        ns = store.namespace("Notes")
        assert ns["text"] == "hi"
        assert ns["from-errbot"] == ["x"] * 300
        assert "nested" not in ns
        assert ns["obj"] == thing


def test_json_codec_refuses_pickled_data_with_a_hint(tmp_path: Path) -> None:
    with errbot_shelf(tmp_path, "Plugin") as shelf:
        shelf["k"] = {"some": "state"}
    with plugstore.open(url(tmp_path)) as store:  # the default, safe json codec
        ns = store.namespace("Plugin")
        assert list(ns) == ["k"]  # keys are fine: nothing is unpickled
        with pytest.raises(DecodeError, match=r"codec='pickle'.*trust"):
            ns["k"]
        with pytest.raises(DecodeError):
            ns.get_many(["k"])


def test_on_disk_layout_is_dbm_dumb(tmp_path: Path) -> None:
    with plugstore.open(url(tmp_path), dbm="dumb") as store:
        ns = store.namespace("Layout")
        ns["a"] = "x" * 700  # two blocks
        ns["ключ"] = [1]
        files = sorted(p.name for p in tmp_path.iterdir())
        assert files == ["Layout.db.dat", "Layout.db.dir", "Layout.db.lock"]
        assert dbm.whichdb(str(tmp_path / "Layout.db")) == "dbm.dumb"
    lines = (tmp_path / "Layout.db.dir").read_bytes().decode("latin-1").splitlines()
    assert lines == [
        f"{'a'!r}, (0, 702)",
        f"{'ключ'.encode().decode('latin-1')!r}, (1024, 3)",
    ]
    dat = (tmp_path / "Layout.db.dat").read_bytes()
    assert dat[:702] == b'"' + b"x" * 700 + b'"'
    assert dat[702:1024] == b"\x00" * 322  # padded to dumb's 512-byte blocks
    with dbm.dumb.open(str(tmp_path / "Layout.db"), "r") as raw:  # stock dumb reads it
        assert raw["ключ".encode()] == b"[1]"


def test_overwrites_reuse_space_instead_of_growing(tmp_path: Path) -> None:
    with plugstore.open(url(tmp_path)) as store:
        ns = store.namespace("n")
        for _ in range(1000):
            ns.incr("counter")
        for i in range(200):
            ns["grows"] = "y" * (i * 13 % 2000)  # from 0 to 4 blocks and back
        assert ns["counter"] == 1000
        size = os.path.getsize(tmp_path / "n.db.dat")
    # Append-only would need 1200 blocks; reused free space stays a handful.
    assert size <= 16 * 512, size


def test_index_recovered_from_bak_after_a_stock_dumb_crash(tmp_path: Path) -> None:
    with errbot_shelf(tmp_path, "P") as shelf:
        shelf["a"] = 1
        shelf["b"] = "two"
    # Stock dumb's commit renames .dir to .bak before writing a new .dir; die there.
    os.rename(tmp_path / "P.db.dir", tmp_path / "P.db.bak")
    with plugstore.open(url(tmp_path), codec="pickle") as store:
        ns = store.namespace("P")
        assert dict(ns) == {"a": 1, "b": "two"}
        ns["c"] = [3]
        assert (tmp_path / "P.db.dir").exists()
    with errbot_shelf(tmp_path, "P") as shelf:
        assert dict(shelf) == {"a": 1, "b": "two", "c": [3]}


def test_corrupt_index_is_a_clear_error(tmp_path: Path) -> None:
    with plugstore.open(url(tmp_path)) as store:
        store.namespace("bad")["k"] = 1
        (tmp_path / "bad.db.dir").write_text("'k', (0, \n")
        store.close()
        store.open()
        with pytest.raises(BackendUnavailableError, match=r"bad\.db\.dir is corrupt: line 1 "):
            store.namespace("bad")["k"]


def _three_keys(d: Path) -> bytes:
    """A dumb namespace "n" with keys a, b, c; return its index."""
    with plugstore.open(url(d), dbm="dumb") as store:
        store.namespace("n").update({"a": "x" * 600, "b": "y", "c": "z"})
    index = (d / "n.db.dir").read_bytes()
    assert index.count(b"\n") == 3
    return index


@pytest.mark.parametrize("byte", [b" ", b"x", b",", b"'", b"\x00"])
def test_a_lost_newline_in_a_dumb_index_is_refused(tmp_path: Path, byte: bytes) -> None:
    """One damaged byte runs two entries together: refused like stock dumb refuses it,
    never read as one bogus key with the other two gone."""
    index = _three_keys(tmp_path)
    (tmp_path / "n.db.dir").write_bytes(index.replace(b"\n", byte, 1))
    with pytest.raises(Exception), dbm.dumb.open(str(tmp_path / "n.db"), "r"):  # noqa: B017
        pass  # stock dumb refuses the file (any error will do)
    with plugstore.open(url(tmp_path)) as store:
        ns = store.namespace("n")
        for op in (list, len, lambda ns: ns.get("c"), lambda ns: ns.set("d", 1)):
            with pytest.raises(StoreDamagedError, match=r"n\.db\.dir is corrupt: line 1 .*backup"):
                op(ns)
        assert store.namespaces() == ["n"]  # still listed: it holds data
    assert (tmp_path / "n.db.dir").read_bytes() == index.replace(b"\n", byte, 1)  # untouched


def _offsets(index: bytes, old: bytes, new: bytes) -> bytes:
    assert index.count(old) == 1, index
    return index.replace(old, new)


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda ix: ix[:-1], "last line .* cut short"),
        (lambda ix: ix[: ix.index(b"(1024")], "last line .* cut short"),
        (lambda ix: ix[: ix.index(b"(1024") + 3] + b"\n", "line 2 is not"),
        (lambda ix: _offsets(ix, b"(1024, 3)", b"(1025, 3)"), "line 2 points at .*block"),
        (lambda ix: _offsets(ix, b"(1024, 3)", b"(2048, 3)"), "line 2 points at .*has only"),
        (lambda ix: _offsets(ix, b"(1024, 3)", b"(1024, 900)"), "line 2 points at .*has only"),
        (lambda ix: _offsets(ix, b"(0, 602)", b"(0, 1030)"), "two entries claim"),
        (lambda ix: _offsets(ix, b"(1024, 3)", b"(-1024, 3)"), "line 2 is not"),
        (lambda ix: _offsets(ix, b"(1024, 3)", b"(1024, 3, 4)"), "line 2 is not"),
        (lambda ix: _offsets(ix, b"'c'", b"b'c'"), "line 3 is not"),
    ],
    ids=[
        "no-final-newline",
        "cut-mid-line",
        "cut-number",
        "unaligned",
        "past-the-end",
        "size-past-the-end",
        "overlap",
        "negative",
        "triple",
        "bytes-key",
    ],
)
def test_a_damaged_dumb_index_is_refused(tmp_path: Path, damage: Any, match: str) -> None:
    index = _three_keys(tmp_path)
    (tmp_path / "n.db.dir").write_bytes(damage(index))
    with plugstore.open(url(tmp_path)) as store, pytest.raises(StoreDamagedError, match=match):
        list(store.namespace("n"))


@pytest.mark.parametrize(
    "damage",
    [lambda ix: b"\x00" * len(ix), lambda ix: ix[1:], lambda ix: b"garbage" + ix],
    ids=["zeroed", "first-byte-lost", "garbage-first"],
)
def test_a_dumb_index_no_longer_starting_with_a_quote_is_refused(
    tmp_path: Path, damage: Any
) -> None:
    """dbm.whichdb calls such an index no dbm at all: the namespace must not read as
    empty or vanish from the listing; every read says it is damaged."""
    index = _three_keys(tmp_path)
    (tmp_path / "n.db.dir").write_bytes(damage(index))
    assert dbm.whichdb(str(tmp_path / "n.db")) is None
    with plugstore.open(url(tmp_path)) as store:
        ns = store.namespace("n")
        for op in (list, len, lambda ns: ns.get("a")):
            with pytest.raises(StoreDamagedError, match=r"n\.db\.dir is corrupt"):
                op(ns)
        assert store.namespaces() == ["n"]


def test_listings_are_ordered_whatever_order_the_dbm_lists_keys_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gnu and ndbm list keys in hash order: every listing of the bucket sorts them
    (keys, items, scans with a prefix, scopes)."""
    from plugstore.backends import dbmformats

    keys = ["zeta", "a1", "é", "b", "alpha", "q", "mid", "c", "a\U0001f600", "A"]
    with plugstore.open(url(tmp_path), dbm="dumb") as store:
        ns = store.namespace("n")
        ns.update(dict.fromkeys(keys, 0))
        scope = ns.scope(g=1)
        scope.update(dict.fromkeys(keys, 1))
        original = dbmformats.DumbEngine.keys
        monkeypatch.setattr(
            dbmformats.DumbEngine, "keys", lambda self: list(reversed(original(self)))
        )
        assert list(ns) == sorted(keys)
        assert [k for k, _ in ns.items()] == sorted(keys)
        assert list(ns.scan_keys("a")) == sorted(k for k in keys if k.startswith("a"))
        assert list(scope) == sorted(keys)
        assert [k for k, _ in scope.items()] == sorted(keys)


def test_a_dumb_data_file_cut_short_is_refused(tmp_path: Path) -> None:
    _three_keys(tmp_path)
    os.truncate(tmp_path / "n.db.dat", 1000)  # the values at 1024 and 1536 are gone
    with (
        plugstore.open(url(tmp_path)) as store,
        pytest.raises(StoreDamagedError, match=r"line 2 points at .*has only 1000"),
    ):
        store.namespace("n")["a"]


def test_odd_but_valid_dumb_indexes_still_load(tmp_path: Path) -> None:
    """What stock dumb writes (also Python 2's, and on Windows): quoted and escaped keys,
    repeated keys (the last one wins), empty values, CRLF line ends."""
    with dbm.dumb.open(str(tmp_path / "n.db"), "c") as raw:
        raw[b"it's"] = b'"1"'
        raw[b"\n\\"] = b'"2"'
        raw["é".encode()] = b'"3"'
        raw[b"empty"] = b""
    with open(tmp_path / "n.db.dir", "a", encoding="latin-1") as f:
        f.write(repr("it's") + ", (0, 3)\n")  # appended by stock dumb's _addkey: it wins
    text = (tmp_path / "n.db.dir").read_text(encoding="latin-1")
    py2 = text.replace(repr("é".encode().decode("latin-1")), "'\\xc3\\xa9'")  # Python 2's repr
    assert py2 != text
    (tmp_path / "n.db.dir").write_bytes(py2.replace("\n", "\r\n").encode("latin-1"))
    with plugstore.open(url(tmp_path)) as store:
        ns = store.namespace("n")
        assert sorted(ns) == ["\n\\", "empty", "it's", "é"]
        assert ns.get_many(["it's", "\n\\", "é"]) == {"it's": "1", "\n\\": "2", "é": "3"}
        assert ns.get_raw("empty") == b""


# -- a full disk -------------------------------------------------------------------------

_FILLER = """
import json, resource, signal, sys, plugstore
from plugstore.errors import BackendUnavailableError

url, flavour, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
if limit:  # a real limit on file sizes: writes past it fail with EFBIG
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
acked, errors = {}, []  # the stored bytes (as text) of every acknowledged write

def attempt(write, changes):
    try:
        write()
    except BackendUnavailableError as exc:
        errors.append(str(exc))
        return False
    acked.update({k: json.dumps(v) for k, v in changes.items()})  # what the codec stores
    return True

with plugstore.open(url, dbm=flavour) as store:
    ns = store.namespace("n")
    bucket = store.backend.bucket("n")
    # values until the data file cannot grow, then what must be all or nothing
    for i in range(5000):
        value = "v" * (300 + i * 37 % 900)
        if not attempt(lambda: ns.__setitem__(f"v{i}", value), {f"v{i}": value}) and i > 8:
            break
    batch = {f"batch{j}": "b" * 2000 for j in range(3)}
    attempt(lambda: ns.update(batch), batch)
    attempt(lambda: ns.__setitem__("v1", "w" * 5000), {"v1": "w" * 5000})
    # then entries that only grow the index (an empty raw value takes no data space)
    for i in range(5000):
        key = f"k{i:05d}" + "k" * 200
        if attempt(lambda: bucket.set(key, b""), {}):
            acked[key] = ""
        elif len(errors) > 12:
            break
    # the store still reads everything that was acknowledged
    assert {k: ns.get_raw(k) for k in acked} == {k: v.encode() for k, v in acked.items()}
print(json.dumps({"acked": acked, "errors": errors}))
"""


def _fill(d: Path, flavour: str, limit: int) -> tuple[dict[str, bytes], list[str]]:
    done = subprocess.run(
        [sys.executable, "-c", _FILLER, url(d), flavour, str(limit)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr  # only plugstore errors, all caught
    out = json.loads(done.stdout)
    return {k: v.encode() for k, v in out["acked"].items()}, out["errors"]


def _check_after_failures(d: Path, flavour: str, acked: dict[str, bytes]) -> None:
    """Every acknowledged write is there, nothing else is, and the files are sound."""
    assert not list(d.glob("*.tmp"))  # no half-written index or sidecar left behind
    with plugstore.open(url(d)) as store:
        ns = store.namespace("n")
        assert sorted(ns) == sorted(acked)
        assert {k: ns.get_raw(k) for k in acked} == acked
        ns["after"] = "space again"  # writes work once there is room
        assert ns["after"] == "space again"
    if flavour == "dumb":
        with dbm.dumb.open(str(d / "n.db"), "r") as raw:  # stock dumb reads the index
            assert len(raw) == len(acked) + 1
            assert {k: raw[k.encode()] for k in acked} == acked


@pytest.mark.parametrize("flavour", ["dumb", "sqlite3"])
@pytest.mark.skipif(not hasattr(os, "setrlimit") and sys.platform == "win32", reason="POSIX")
def test_writes_past_a_file_size_limit_fail_cleanly(tmp_path: Path, flavour: str) -> None:
    acked, errors = _fill(tmp_path, flavour, 96 * 1024)
    assert len(acked) > 10
    assert len(errors) > 3
    for message in errors:
        assert message.startswith(("shelf: writing", "dbm.sqlite3 file")), message
        assert "size limit" in message or "ulimit -f" in message, message  # SQLite: EIO
    _check_after_failures(tmp_path, flavour, acked)


@pytest.fixture
def small_disk(tmp_path: Path) -> Any:
    """A 256 KiB tmpfs of our own: a disk that really fills up (root only)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


@pytest.mark.parametrize("flavour", ["dumb", "sqlite3"])
def test_a_full_disk_fails_writes_cleanly(small_disk: Path, flavour: str) -> None:
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * 32 * 1024)  # deleted afterwards to make room
    acked, errors = _fill(small_disk, flavour, 0)
    assert len(acked) > 10
    assert len(errors) > 3
    for message in errors:
        assert message.startswith(("shelf: writing", "dbm.sqlite3 file")), message
        assert "disk is full" in message, message
        assert "free some space" in message, message
    filler.unlink()
    _check_after_failures(small_disk, flavour, acked)


_DENIED = """
import json, os, sys, plugstore
from plugstore.errors import BackendUnavailableError

messages = []
with plugstore.open(sys.argv[1]) as store:  # (modules loaded while we may read them)
    if os.geteuid() == 0:  # root may write anything: become nobody
        os.setgid(65534)
        os.setuid(65534)
    for op in (
        lambda: store.namespace("n")["k"],
        lambda: store.namespace("n").__setitem__("k", 2),
        lambda: store.namespace("new")["k"],  # nothing to read: no error
        lambda: store.namespace("new").__setitem__("k", 1),
    ):
        try:
            op()
        except BackendUnavailableError as exc:
            messages.append(str(exc))
        except KeyError:
            messages.append("absent")
print(json.dumps(messages))
"""


@pytest.fixture
def open_dir() -> Any:
    """A directory every user may enter (a child that drops root to nobody must reach
    it: pytest's own temporary directories are private to their owner)."""
    d = Path(tempfile.mkdtemp(prefix="plugstore-perm-"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        for path in [d, *d.rglob("*")]:
            path.chmod(0o755)
        shutil.rmtree(d)


def _denied(d: Path) -> list[str]:
    return [str(m) for m in json.loads(run_child(_DENIED, url(d / "data")))]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_files_the_bot_may_not_write_give_a_clear_error(open_dir: Path) -> None:
    d = open_dir / "data"
    with plugstore.open(url(d), dbm="dumb") as store:
        store.namespace("n")["k"] = 1
    for name in ("n.db.dat", "n.db.dir"):
        (d / name).chmod(0o444)
    (d / "n.db.lock").chmod(0o666)
    d.chmod(0o555)
    opening, writing, absent, creating = _denied(open_dir)
    for message in (opening, writing):
        assert message.startswith("shelf: opening dbm.dumb file"), message
        assert "n.db.dat): Permission denied; let the user running the bot" in message
    assert absent == "absent"  # nothing there: nothing to refuse
    assert creating.startswith("shelf: opening the lock file"), creating
    assert "new.db.lock): Permission denied; let the user running the bot" in creating
    d.chmod(0o755)
    with plugstore.open(url(d)) as store:
        assert dict(store.namespace("n")) == {"k": 1}  # untouched


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_a_directory_the_bot_may_not_enter_is_never_read_as_empty(open_dir: Path) -> None:
    d = open_dir / "data"
    with plugstore.open(url(d), dbm="dumb") as store:
        store.namespace("n")["k"] = 1
    d.chmod(0o000)  # whether n or new hold data cannot be told: each op says why
    for message in _denied(open_dir):
        assert message.startswith("shelf: "), message
        assert "Permission denied; let the user running the bot" in message, message


# -- flavours ----------------------------------------------------------------------------


@pytest.mark.skipif(importlib.util.find_spec("_gdbm") is not None, reason="gdbm is present")
def test_file_of_a_missing_flavour_fails_clearly(tmp_path: Path) -> None:
    # A GNU dbm header (what whichdb looks at); this Python cannot open such files.
    (tmp_path / "Gnu.db").write_bytes(struct.pack("=l", 0x13579ACE) + b"\x00" * 60)
    (tmp_path / "Junk.db").write_bytes(b"not a database at all")
    with plugstore.open(url(tmp_path)) as store:
        for op in (lambda ns: ns["k"], lambda ns: ns.__setitem__("k", 1), len):
            with pytest.raises(BackendUnavailableError, match=r"is a dbm\.gnu file.*no dbm\.gnu"):
                op(store.namespace("Gnu"))
        with pytest.raises(BackendUnavailableError, match="not a dbm file"):
            store.namespace("Junk").get("k")
        # listed (it holds a namespace), never modified
        assert store.namespaces() == ["Gnu", "Junk"]
    assert (tmp_path / "Gnu.db").read_bytes()[:4] == struct.pack("=l", 0x13579ACE)


def _python313_dbm_sqlite3(path: Path, items: dict[bytes, bytes]) -> None:
    """Write a file the way Python 3.13's dbm.sqlite3 (its default flavour) does."""
    cx = sqlite3.connect(path, isolation_level=None)
    cx.execute("PRAGMA journal_mode = wal")
    cx.execute("CREATE TABLE IF NOT EXISTS Dict (key BLOB UNIQUE NOT NULL, value BLOB NOT NULL)")
    for k, v in items.items():
        cx.execute(
            "REPLACE INTO Dict (key, value) VALUES (CAST(? AS BLOB), CAST(? AS BLOB))", (k, v)
        )
    cx.close()


def test_dbm_sqlite3_files_open_on_any_python(tmp_path: Path) -> None:
    _python313_dbm_sqlite3(tmp_path / "New.db", {b"k": pickle.dumps({"v": 1}, protocol=2)})
    with plugstore.open(url(tmp_path), codec="pickle") as store:
        ns = store.namespace("New")
        assert ns["k"] == {"v": 1}
        ns.set_many({"a": "b", "ключ": [2]})
        assert ns.incr("n", 3) == 3
        assert store.namespaces() == ["New"]
        assert store.drop_namespace("New") == 4
        assert store.namespaces() == []
    # new files in that flavour on request
    with plugstore.open(url(tmp_path), dbm="sqlite3") as store:
        store.namespace("Made")["x"] = 1
    cx = sqlite3.connect(tmp_path / "Made.db")
    assert cx.execute("SELECT key, value FROM Dict").fetchall() == [(b"x", b"1")]
    cx.close()


def test_a_damaged_dbm_sqlite3_file_is_a_store_damaged_error(tmp_path: Path) -> None:
    keys = [f"k{i:04d}" for i in range(400)]
    with plugstore.open(url(tmp_path), dbm="sqlite3") as store:
        store.namespace("n").update(dict.fromkeys(keys, "x" * 300))
    path = tmp_path / "n.db"
    assert not (tmp_path / "n.db-wal").exists()
    cx = sqlite3.connect(path)
    page = cx.execute("PRAGMA page_size").fetchone()[0]
    (root,) = cx.execute("SELECT rootpage FROM sqlite_master WHERE type = 'index'").fetchone()
    cx.close()
    with open(path, "r+b") as f:  # the key index's root page: what listing keys reads
        f.seek((root - 1) * page)
        f.write(b"\xff" * page)
    with plugstore.open(url(tmp_path)) as store:
        ns = store.namespace("n")
        ops = (list, len, lambda ns: list(ns.scan_keys("k")), lambda ns: ns["k0001"], dict)
        for op in ops:
            with pytest.raises(StoreDamagedError, match=r"n\.db is damaged.*backup.*\.recover"):
                op(ns)
        with pytest.raises(StoreDamagedError):
            ns.clear()


def test_a_file_another_process_is_still_creating_is_waited_for(tmp_path: Path) -> None:
    """Seen outside the lock, a new file may still be empty: that is "it exists", and its
    flavour is read under the lock once its creator is done (a conformance race once
    failed with "not a dbm file" here)."""
    (tmp_path / "Mid.db").write_bytes(b"")  # created, not yet written, no lock file yet
    with plugstore.open(url(tmp_path), codec="pickle") as store:
        backend = store.backend
        assert backend._slot("Mid", create=False) is not None  # type: ignore[attr-defined]
        _python313_dbm_sqlite3(tmp_path / "Mid.db", {b"k": pickle.dumps("v", protocol=2)})
        assert store.namespace("Mid")["k"] == "v"


# -- files: what is created, listed and removed ---------------------------------------------


def test_reading_an_absent_namespace_creates_nothing(tmp_path: Path) -> None:
    with plugstore.open(url(tmp_path)) as store:
        ns = store.namespace("ghost")
        assert ns.get("k") is None
        assert len(ns) == 0
        assert list(ns) == []
        assert "k" not in ns
        assert ns.get_many(["a", "b"]) == {}
        with pytest.raises(KeyError):
            del ns["k"]
        ns.clear()
        assert not ns.store.backend.bucket("ghost").cas("k", b"1", b"2")
        assert store.drop_namespace("ghost") == 0
        assert store.namespaces() == []
    assert list(tmp_path.iterdir()) == []


def test_namespaces_listing(tmp_path: Path) -> None:
    with errbot_shelf(tmp_path, "FromErrbot") as shelf:
        shelf["k"] = 1
    for stray in ("README.txt", "Orphan.db.lock", "bad name.db.dat", "x.db.dir.tmp", ".db"):
        (tmp_path / stray).write_text("")
    (tmp_path / "subdir.db").mkdir()
    with plugstore.open(url(tmp_path)) as store:
        for name in ("b-plugin", "A.v2", "9lives"):
            store.namespace(name)["k"] = 1
        store.namespace("emptied")["k"] = 1
        store.namespace("emptied").clear()
        assert store.namespaces() == ["9lives", "A.v2", "FromErrbot", "b-plugin"]
        assert store.drop_namespace("b-plugin") == 1
        assert store.namespaces() == ["9lives", "A.v2", "FromErrbot"]
    leftovers = {p.name for p in tmp_path.iterdir() if p.name.startswith("b-plugin")}
    assert leftovers == {"b-plugin.db.lock"}  # data gone; the lock file stays


def test_set_many_is_one_write(tmp_path: Path) -> None:
    with plugstore.open(url(tmp_path)) as store:
        ns = store.namespace("n")
        ns["first"] = 0
        before = generation(tmp_path, "n")
        ns.update({f"k{i}": i for i in range(200)})
        assert generation(tmp_path, "n") == before + 1
        assert len(ns) == 201
        assert ns.get_many(["k1", "k2"]) == {"k1": 1, "k2": 2}
        assert generation(tmp_path, "n") == before + 1


def test_failed_incr_changes_nothing(tmp_path: Path) -> None:
    with plugstore.open(url(tmp_path)) as store:
        ns = store.namespace("n")
        ns["text"] = "abc"
        before = generation(tmp_path, "n")
        with pytest.raises(NotAnIntegerError):
            ns.incr("text")
        assert ns["text"] == "abc"
        assert generation(tmp_path, "n") == before  # nothing reached the file
        assert ns.incr("fresh") == 1


# -- processes ------------------------------------------------------------------------------

_CHILD_EDIT = """
import sys, plugstore
with plugstore.open(sys.argv[1]) as store:
    ns = store.namespace("shared")
    ns["shared"] = "from child"
    ns["child"] = list(range(100))
    del ns["gone"]
    print(sorted(ns))
"""


def test_a_stale_handle_reloads_before_reading_and_writing(tmp_path: Path) -> None:
    with plugstore.open(url(tmp_path)) as store:
        ns = store.namespace("shared")
        ns.update({"shared": "from parent", "gone": 1, "keep": 2})
        assert ns["shared"] == "from parent"  # our handle is open and loaded
        out = run_child(_CHILD_EDIT, url(tmp_path))
        assert out.strip() == str(["child", "keep", "shared"])
        # reads see the other process's writes
        assert ns["shared"] == "from child"
        assert "gone" not in ns
        assert sorted(ns) == ["child", "keep", "shared"]
        # and a write from a handle that was stale does not drop them
        run_child(_CHILD_EDIT.replace('del ns["gone"]', ""), url(tmp_path))
        ns["parent-after"] = True
        assert ns["child"] == list(range(100))
    with dbm.dumb.open(str(tmp_path / "shared.db"), "r") as raw:
        assert sorted(raw.keys()) == [b"child", b"keep", b"parent-after", b"shared"]


_RACER = """
import sys, plugstore
with plugstore.open(sys.argv[1]) as store:
    ns = store.namespace("race")
    print("ready", flush=True)
    sys.stdin.readline()
    for _ in range(int(sys.argv[2])):
        ns.incr("n")
"""


@pytest.mark.slow
def test_four_processes_incr_exactly(tmp_path: Path) -> None:
    n_procs, per_proc = 4, 500
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, url(tmp_path), str(per_proc)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(n_procs)
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            assert p.stdout.readline().strip() == "ready"
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    with plugstore.open(url(tmp_path)) as store:
        assert store.namespace("race")["n"] == n_procs * per_proc


_WRITER = """
import sys, plugstore
with plugstore.open(sys.argv[1], codec="pickle") as store:
    ns = store.namespace("crash")
    p = sys.argv[2]
    print("ready", flush=True)
    i = 0
    while True:
        ns[p + str(i)] = {"i": i, "pad": "x" * (i * 37 % 1500)}
        ns[p + "last"] = {"i": i, "pad": "z" * (i % 97)}  # overwritten, size changing
        if i % 5 == 0:
            ns.incr(p + "counter")
        if i % 3 == 2:
            del ns[p + str(i - 1)]
        print(i, flush=True)
        i += 1
"""


def _check_round(ns: Any, p: str, acked: int) -> None:
    def value(i: int) -> dict[str, Any]:
        return {"i": i, "pad": "x" * (i * 37 % 1500)}

    for i in range(acked + 1):
        deleted_by = i + 1 if (i + 1) % 3 == 2 else None
        if deleted_by is not None and deleted_by <= acked:
            assert f"{p}{i}" not in ns, i
        elif deleted_by is not None:  # the unacknowledged next step may have run
            assert ns.get(f"{p}{i}", value(i)) == value(i), i
        else:
            assert ns[f"{p}{i}"] == value(i), i
    assert ns.get(f"{p}{acked + 1}", value(acked + 1)) == value(acked + 1)
    assert ns[f"{p}last"] in [{"i": i, "pad": "z" * (i % 97)} for i in (acked, acked + 1)]
    incrs = acked // 5 + 1
    assert ns[f"{p}counter"] in (incrs, incrs + 1)


@pytest.mark.slow
def test_kill_9_loses_no_acknowledged_write(tmp_path: Path) -> None:
    rng = random.Random()
    acked_per_round: list[int] = []
    for round_no in range(8):
        p = f"r{round_no}-"
        proc = subprocess.Popen(
            [sys.executable, "-c", _WRITER, url(tmp_path), p],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        try:
            assert proc.stdout.readline().strip() == "ready"
            stop_after = rng.randint(3, 150)
            acked = -1
            while acked < stop_after:
                line = proc.stdout.readline()
                assert line, proc.stderr.read() if proc.stderr else "writer died"
                acked = int(line)
            # land the kill at a random point of a later write, not always at the start
            time.sleep(rng.uniform(0, 0.004))
        finally:
            os.kill(proc.pid, signal.SIGKILL)  # no cleanup, no close, no flush
            proc.wait()
        # writes acknowledged between our last read and the kill count too
        for line in proc.stdout.read().splitlines(keepends=True):
            if line.endswith("\n"):
                acked = int(line)
        acked_per_round.append(acked)
        # the shelf opens, through plugstore and through stock dbm.dumb (Errbot)
        with plugstore.open(url(tmp_path), codec="pickle") as store:
            ns = store.namespace("crash")
            for done, acked_then in enumerate(acked_per_round):
                _check_round(ns, f"r{done}-", acked_then)
            ours = set(ns)
        with dbm.dumb.open(str(tmp_path / "crash.db"), "r") as raw:
            assert {k.decode() for k in raw.keys()} == ours  # noqa: SIM118
        with errbot_shelf(tmp_path, "crash") as shelf:
            assert shelf[f"{p}0"] == {"i": 0, "pad": ""}


@pytest.mark.skipif(sys.platform == "win32", reason="fork() is POSIX")
def test_forked_child_uses_its_own_handles(tmp_path: Path) -> None:
    with plugstore.open(url(tmp_path)) as store:
        ns = store.namespace("n")
        ns["parent"] = 1
        pid = os.fork()
        if pid == 0:  # child: must not use the parent's lock fd or handle
            try:
                ns.incr("child")
                os._exit(0 if ns["parent"] == 1 else 3)
            except BaseException:
                os._exit(4)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert ns["child"] == 1  # a stale handle here would not see it
        ns["after-fork"] = True
        assert ns["after-fork"] is True


@pytest.mark.skipif(sys.platform == "win32", reason="fork() is POSIX")
def test_fork_while_another_thread_holds_the_lock(tmp_path: Path) -> None:
    with plugstore.open(url(tmp_path)) as store:
        ns = store.namespace("n")
        ns["k"] = 1
        lock = store.backend._lock  # type: ignore[attr-defined]
        held, release = threading.Event(), threading.Event()

        def hold() -> None:
            with lock:
                held.set()
                release.wait(10)

        t = threading.Thread(target=hold)
        t.start()
        held.wait(10)
        pid = os.fork()
        if pid == 0:
            try:
                ns["from-child"] = 1  # would deadlock on the inherited, held lock
                os._exit(0)
            except BaseException:
                os._exit(4)
        _, status = os.waitpid(pid, 0)
        release.set()
        t.join()
        assert os.waitstatus_to_exitcode(status) == 0
        assert ns["from-child"] == 1


# -- expiry ------------------------------------------------------------------------------

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    "damage", [b"{not json", b"[" * 100_000 + b"]" * 100_000], ids=["not-json", "nested-deep"]
)
def test_damaged_deadlines_are_a_store_damaged_error(tmp_path: Path, damage: bytes) -> None:
    with plugstore.open(url(tmp_path)) as store:
        store.namespace("Notes").set("k", 1, ttl=60)
    (tmp_path / "Notes.db.expiry").write_bytes(damage)
    with plugstore.open(url(tmp_path)) as store:
        ns = store.namespace("Notes")
        for op in (lambda: ns.get("k"), lambda: ns.set("j", 2)):
            with pytest.raises(StoreDamagedError, match=r"deadlines in .*damaged.*backup"):
                op()


def test_deadlines_live_beside_the_file_errbot_reads(tmp_path: Path) -> None:
    clock = FakeClock(NOW)
    sidecar = tmp_path / "Notes.db.expiry"
    with plugstore.open(url(tmp_path), codec="pickle", clock=clock) as store:
        ns = store.namespace("Notes")
        ns["plain"] = "kept"
        ns.set("timed", "soon", ttl=60)
        ns.set_many({"a": 1.5, "b": [2]}, ttl=120)
        assert json.loads(sidecar.read_text()) == {
            "timed": NOW + 60,
            "a": NOW + 120,
            "b": NOW + 120,
        }
    # Errbot's view of the dbm file: the values and nothing else
    with errbot_shelf(tmp_path, "Notes") as shelf:
        assert sorted(shelf.keys()) == ["a", "b", "plain", "timed"]
        assert shelf["timed"] == "soon"
    with plugstore.open(url(tmp_path), codec="pickle", clock=clock) as store:
        ns = store.namespace("Notes")
        assert store.namespaces() == ["Notes"]
        clock.now = NOW + 90
        assert sorted(ns) == ["a", "b", "plain"]
        assert store.purge() == 1
        ns["a"] = 1.5  # a plain write clears the deadline
        assert json.loads(sidecar.read_text()) == {"b": NOW + 120}
        clock.now = NOW + 200
        assert store.purge() == 1
        assert not sidecar.exists()  # no deadlines left: no file
    with errbot_shelf(tmp_path, "Notes") as shelf:
        assert sorted(shelf.keys()) == ["a", "plain"]
    with plugstore.open(url(tmp_path), clock=clock) as store:
        store.namespace("Gone").set("k", 1, ttl=10)
        assert (tmp_path / "Gone.db.expiry").exists()
        assert store.drop_namespace("Gone") == 1
        assert not (tmp_path / "Gone.db.expiry").exists()


def test_another_process_sees_deadlines_set_and_cleared(tmp_path: Path) -> None:
    clock = FakeClock(NOW)
    with (
        plugstore.open(url(tmp_path), clock=clock) as one,
        plugstore.open(url(tmp_path), clock=clock) as two,
    ):
        a, b = one.namespace("n"), two.namespace("n")
        a["k"] = 0
        assert b.ttl("k") is None  # b's handle is loaded
        a.set("k", 1, ttl=60)
        assert b.ttl("k") == 60
        assert b.incr("k") == 2  # a live counter keeps its deadline, in a's view too
        assert a.ttl("k") == 60
        b["k"] = 3
        assert a.ttl("k") is None
        b.set("k", 4, ttl=10)
        clock.now = NOW + 10
        assert "k" not in a
        assert one.purge() == 1
        assert "k" not in b


@pytest.mark.parametrize("flavour", ["dumb", "sqlite3"])
def test_another_process_sees_expire_persist_and_add(tmp_path: Path, flavour: str) -> None:
    """expire and persist write only the deadlines sidecar, not the dbm file: they must
    still make every other open handle reload; add over an expired key likewise."""
    clock = FakeClock(NOW)
    with (
        plugstore.open(url(tmp_path), dbm=flavour, clock=clock) as one,
        plugstore.open(url(tmp_path), dbm=flavour, clock=clock) as two,
    ):
        a, b = one.namespace("n"), two.namespace("n")
        a["k"] = "v"
        assert b.ttl("k") is None  # b's handle is loaded
        assert a.expire("k", 60) is True
        assert b.ttl("k") == 60
        assert b.persist("k") is True
        assert a.ttl("k") is None
        assert not (tmp_path / "n.db.expiry").exists()  # no deadline left to keep
        assert b.expire("k", 10) is True
        clock.now = NOW + 10
        assert "k" not in a
        assert a.add("k", "new", ttl=30) is True
        assert b["k"] == "new"
        assert b.ttl("k") == 30
        assert b.add("k", "other") is False
        assert a.expire("absent", 10) is False
        assert one.namespace("none").persist("k") is False  # a namespace without a file
        assert one.namespace("none").expire("k", 10) is False
        assert not [name for name in os.listdir(tmp_path) if name.startswith("none.")]


def test_a_failed_write_loses_a_deadline_never_a_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sidecar is written around the dbm commit: deadlines that go away before it,
    new ones after it.  So a failure (or a crash) between the two can leave a value
    without its deadline, never an old deadline on a value that was not meant to have it."""
    from plugstore.backends import shelf

    clock = FakeClock(NOW)
    with plugstore.open(url(tmp_path), clock=clock) as store:
        ns = store.namespace("n")
        ns.set("k", "timed", ttl=60)
        real_write = shelf.Deadlines._write

        def fail_after_commit(self: Any, items: dict[str, float]) -> None:
            if "fresh" in items:
                raise OSError("disk full")
            real_write(self, items)

        monkeypatch.setattr(shelf.Deadlines, "_write", fail_after_commit)
        with pytest.raises(OSError, match="disk full"):
            ns.set("fresh", "v", ttl=60)
        assert ns["fresh"] == "v"
        assert ns.ttl("fresh") is None  # committed, without its deadline
        monkeypatch.setattr(shelf.Deadlines, "_write", real_write)

        def fail_commit(self: Any) -> None:
            raise OSError("no space for the index")

        engine = type(store.backend._slots["n"].engine)  # type: ignore[attr-defined]
        monkeypatch.setattr(engine, "commit", fail_commit)
        with pytest.raises(OSError, match="no space"):
            ns["k"] = "plain now"  # the deadline of k went first
        monkeypatch.undo()
        assert ns["k"] == "timed"  # the old value, which lost its deadline
        assert ns.ttl("k") is None
        clock.now = NOW + 3600
        assert ns["k"] == "timed"  # it did not expire early; nothing did
