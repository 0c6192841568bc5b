"""The pure-Python GNU dbm reader, checked against files the real GDBM library wrote.

The files are written by a Python that has ``dbm.gnu`` (``/usr/bin/python3`` with Debian's
python3-gdbm, or this one if it has it), which also dumps what GDBM itself reads back; the
reader must return exactly that.  Without such a Python these tests skip on a developer's
machine and fail in CI, except the ones reading the committed fixture
``tests/fixtures/errbot-gdbm/core.db``, which run everywhere.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import pickle
import random
import shutil
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from plugstore.backends import gdbmfile
from plugstore.backends.dbmformats import _HINTS, Engine, flavour_of, open_engine
from plugstore.backends.gdbmfile import GdbmFileEngine
from plugstore.errors import BackendUnavailableError
from servers import IN_CI

HAVE_GDBM = importlib.util.find_spec("_gdbm") is not None
FIXTURE = Path(__file__).parent / "fixtures" / "errbot-gdbm" / "core.db"

#: What the fixture holds: Errbot-like core settings, pickled by shelve with protocol 2.
CORE = {
    "configs": {
        "Webserver": {"HOST": "127.0.0.1", "PORT": 3141, "SSL": {"enabled": False, "port": 3142}},
        "Help": None,
    },
    "repos": {"errbotio/err-helloworld": {"path": "/data/plugins/err-helloworld"}},
    "plugins_order": ["Webserver", "Help", "ChatRoom"],
    "last_seen": 1700000000,
    "greeting": "héllo, wörld ✓",
}

#: Functions the scripts below share: ``dump`` prints what GDBM reads back, as JSON.
_PRELUDE = """
import base64, dbm.gnu, json, sys
PATH = sys.argv[1]

def dump(path):
    db = dbm.gnu.open(path, "r")
    try:
        out = {base64.b64encode(k).decode(): base64.b64encode(db[k]).decode() for k in db.keys()}
    finally:
        db.close()
    json.dump(out, sys.stdout)
"""

#: Writes through libgdbm directly, for options Python's dbm.gnu does not offer.
_CTYPES = """
import ctypes, ctypes.util

class Datum(ctypes.Structure):
    _fields_ = [("dptr", ctypes.c_char_p), ("dsize", ctypes.c_int)]

lib = ctypes.CDLL(ctypes.util.find_library("gdbm"))
lib.gdbm_open.restype = ctypes.c_void_p
lib.gdbm_open.argtypes = [
    ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p
]
lib.gdbm_store.argtypes = [ctypes.c_void_p, Datum, Datum, ctypes.c_int]
lib.gdbm_delete.argtypes = [ctypes.c_void_p, Datum]
lib.gdbm_close.argtypes = [ctypes.c_void_p]
GDBM_WRCREAT, GDBM_NUMSYNC, GDBM_BSEXACT, GDBM_REPLACE = 2, 0x2000, 0x200, 1

def datum(b):
    return Datum(b, len(b))

def write(path, block_size, flags, items, deletes=()):
    db = lib.gdbm_open(path.encode(), block_size, GDBM_WRCREAT | flags, 0o644, None)
    assert db, "gdbm_open failed"
    for k, v in items:
        assert lib.gdbm_store(db, datum(k), datum(v), GDBM_REPLACE) == 0
    for k in deletes:
        assert lib.gdbm_delete(db, datum(k)) == 0
    lib.gdbm_close(db)
"""


def _find_gdbm_python() -> str | None:
    """A Python that can write GDBM files: this one, or the system's."""
    candidates = [sys.executable] if HAVE_GDBM else []
    candidates += [os.environ.get("PLUGSTORE_GDBM_PYTHON", ""), "/usr/bin/python3"]
    probe = "import dbm.gnu, ctypes.util; assert ctypes.util.find_library('gdbm')"
    for candidate in candidates:
        if candidate and shutil.which(candidate):
            done = subprocess.run([candidate, "-c", probe], capture_output=True, timeout=60)
            if done.returncode == 0:
                return candidate
    return None


@pytest.fixture(scope="module")
def gdbm_python() -> str:
    python = _find_gdbm_python()
    if python is None:
        message = (
            "no Python with dbm.gnu to write test files (install python3-gdbm so that "
            "/usr/bin/python3 -c 'import dbm.gnu' works, or set PLUGSTORE_GDBM_PYTHON)"
        )
        if IN_CI:
            pytest.fail(f"{message}: CI must run the GDBM reader's tests")
        pytest.skip(message)
    return python


def _run(python: str, path: Path, body: str) -> dict[bytes, bytes]:
    """Run ``body`` (with ``PATH`` set to ``path``) under ``python``; return its dump."""
    script = _PRELUDE + _CTYPES + textwrap.dedent(body) + "\ndump(PATH)\n"
    done = subprocess.run(
        [python, "-c", script, str(path)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    raw = json.loads(done.stdout)
    return {base64.b64decode(k): base64.b64decode(v) for k, v in raw.items()}


def _read(path: Path) -> dict[bytes, bytes]:
    engine = GdbmFileEngine(str(path))
    try:
        out = {}
        for key in engine.keys():  # noqa: SIM118 - an Engine is not iterable
            value = engine.get(key)
            assert value is not None
            out[key] = value
        assert engine.count() == len(out)
        return out
    finally:
        engine.close()


def _header(path: Path) -> gdbmfile._Header:
    data = path.read_bytes()
    order = gdbmfile.byte_order(data)
    assert order is not None
    return gdbmfile._header(data, order)


def _directory(path: Path) -> list[int]:
    """The bucket offsets of a little-endian, 64-bit file's directory."""
    header = _header(path)
    return list(struct.unpack_from(f"<{1 << header.dir_bits}q", path.read_bytes(), header.dir_at))


# -- files GDBM wrote -----------------------------------------------------------------


def test_empty_database(gdbm_python: str, tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    assert _run(gdbm_python, path, 'dbm.gnu.open(PATH, "c").close()') == {}
    assert flavour_of(str(path)) == "dbm.gnu"
    engine = GdbmFileEngine(str(path))
    assert engine.keys() == []
    assert engine.count() == 0
    assert engine.get(b"anything") is None


def test_a_few_keys(gdbm_python: str, tmp_path: Path) -> None:
    path = tmp_path / "few.db"
    expected = _run(
        gdbm_python,
        path,
        """
        db = dbm.gnu.open(PATH, "c")
        db[b"alpha"] = b"1"
        db[b"beta"] = b"two"
        db["gamma"] = "drei"
        db[b"k"] = b"short key"
        db[b"a-longer-key-than-four-bytes"] = b"v" * 300
        db.close()
        """,
    )
    assert expected == {
        b"alpha": b"1",
        b"beta": b"two",
        b"gamma": b"drei",
        b"k": b"short key",
        b"a-longer-key-than-four-bytes": b"v" * 300,
    }
    assert _read(path) == expected
    engine = GdbmFileEngine(str(path))
    assert engine.get(b"beta") == b"two"
    assert engine.get(b"bet") is None
    assert engine.get(b"alphabet") is None


def test_twenty_thousand_keys_split_buckets_and_grow_the_directory(
    gdbm_python: str, tmp_path: Path
) -> None:
    path = tmp_path / "many.db"
    expected = _run(
        gdbm_python,
        path,
        """
        db = dbm.gnu.open(PATH, "c")
        for i in range(20000):
            db[b"key-%d" % i] = b"value-%d-" % i + b"x" * (i % 97)
        db.close()
        """,
    )
    assert len(expected) == 20000
    assert len(set(_directory(path))) > 100  # the first bucket split over and over
    engine = GdbmFileEngine(str(path))
    assert engine.count() == 20000
    for i in range(20000):
        key = b"key-%d" % i
        assert engine.get(key) == expected[key]
    assert engine.get(b"key-20000") is None
    assert _read(path) == expected


def test_small_blocks_and_numsync_header(gdbm_python: str, tmp_path: Path) -> None:
    """512-byte blocks (many splits) and GDBM 1.21's extended header, via libgdbm itself."""
    items = {b"k%05d" % i: b"v" * (i % 700) for i in range(3000)}
    for name, flags in (("plain", "GDBM_BSEXACT"), ("numsync", "GDBM_BSEXACT | GDBM_NUMSYNC")):
        path = tmp_path / f"{name}.db"
        expected = _run(
            gdbm_python,
            path,
            f"""
            items = [(b"k%05d" % i, b"v" * (i % 700)) for i in range(3000)]
            write(PATH, 512, {flags}, items, [k for k, _ in items[::7]])
            """,
        )
        assert expected == {k: v for i, (k, v) in enumerate(items.items()) if i % 7}
        header = _header(path)
        assert header.block_size == 512
        assert header.dir_size > 512  # the directory doubled: more buckets than it had room for
        magic = struct.unpack("<I", path.read_bytes()[:4])[0]
        assert magic == (gdbmfile.NUMSYNC_MAGIC64 if name == "numsync" else gdbmfile.MAGIC64)
        assert flavour_of(str(path)) == "dbm.gnu"  # whichdb does not know the numsync magic
        assert _read(path) == expected


def test_values_larger_than_a_block_and_empty_ones(gdbm_python: str, tmp_path: Path) -> None:
    path = tmp_path / "big.db"
    expected = _run(
        gdbm_python,
        path,
        """
        db = dbm.gnu.open(PATH, "c")
        db[b"big"] = bytes(range(256)) * 400  # 100 KiB
        db[b"bigger"] = b"\\xfe" * (1 << 20)
        db[b"empty"] = b""
        db[b""] = b"the empty key"
        db[b"after"] = b"small"
        db.close()
        """,
    )
    assert len(expected[b"big"]) == 102400
    assert expected[b"empty"] == b""
    assert expected[b""] == b"the empty key"
    assert _read(path) == expected


def test_binary_keys_and_values_with_every_byte(gdbm_python: str, tmp_path: Path) -> None:
    path = tmp_path / "binary.db"
    expected = _run(
        gdbm_python,
        path,
        """
        db = dbm.gnu.open(PATH, "c")
        everything = bytes(range(256))
        for i in range(256):
            db[bytes([i])] = everything[i:] + everything[:i]
            db[bytes([i, 255 - i, 0, i])] = bytes([i]) * i
        db[everything] = everything[::-1]
        db[b"\\x00\\x00\\x00\\x00\\x00"] = b"\\x00"
        db.close()
        """,
    )
    assert len(expected) == 256 * 2 + 2
    assert expected[bytes(range(256))] == bytes(range(255, -1, -1))
    assert _read(path) == expected


def test_overwritten_and_deleted_keys(gdbm_python: str, tmp_path: Path) -> None:
    path = tmp_path / "churn.db"
    expected = _run(
        gdbm_python,
        path,
        """
        import random
        rng = random.Random(7)
        db = dbm.gnu.open(PATH, "c")
        for rnd in range(6):
            for i in range(800):
                db[b"key-%d" % i] = b"%d:" % rnd + bytes([rng.randrange(256)]) * rng.randrange(2000)
            for i in range(rnd, 800, 3):
                if b"key-%d" % i in db:
                    del db[b"key-%d" % i]
            db.sync()
        for i in range(0, 800, 5):
            db[b"key-%d" % i] = b"final"
        db.close()
        """,
    )
    assert 0 < len(expected) < 800
    assert expected[b"key-0"] == b"final"
    assert _read(path) == expected


def test_new_file_flag_and_reorganize(gdbm_python: str, tmp_path: Path) -> None:
    path = tmp_path / "reorg.db"
    expected = _run(
        gdbm_python,
        path,
        """
        db = dbm.gnu.open(PATH, "c")
        for i in range(2000):
            db[b"old-%d" % i] = b"o" * 500
        db.close()
        db = dbm.gnu.open(PATH, "n")  # truncates: the old keys are gone
        for i in range(3000):
            db[b"new-%d" % i] = b"n%d" % i * (i % 50)
        for i in range(0, 3000, 2):
            del db[b"new-%d" % i]
        db.reorganize()
        db[b"after-reorganize"] = b"yes"
        db.close()
        """,
    )
    assert not any(k.startswith(b"old-") for k in expected)
    assert len(expected) == 1501
    assert _read(path) == expected


def test_errbot_shelve_protocol_2(gdbm_python: str, tmp_path: Path) -> None:
    path = tmp_path / "core.db"
    expected = _run(
        gdbm_python,
        path,
        f"""
        import dbm, shelve
        assert dbm._defaultmod is None or dbm._defaultmod.__name__ == "dbm.gnu"
        shelf = shelve.DbfilenameShelf(PATH, protocol=2)  # what Errbot's Shelf storage does
        shelf.update({CORE!r})
        shelf["scratch"] = "gone"
        del shelf["scratch"]
        shelf.close()
        """,
    )
    assert {k.decode("utf-8"): pickle.loads(v) for k, v in expected.items()} == CORE
    assert all(v[:2] == b"\x80\x02" for v in expected.values())  # protocol 2 pickles
    assert flavour_of(str(path)) == "dbm.gnu"
    engine = open_engine("dbm.gnu", str(path), create=False, fsync=False, readonly=True)
    try:
        got = {k: engine.get(k) for k in engine.keys()}  # noqa: SIM118
    finally:
        engine.close()
    assert got == expected
    assert _read(path) == expected


def test_fixture_matches_what_gdbm_reads(gdbm_python: str, tmp_path: Path) -> None:
    copy = tmp_path / "core.db"
    shutil.copyfile(FIXTURE, copy)  # GDBM opens read-only, but never touch the fixture
    assert _run(gdbm_python, copy, "") == _read(FIXTURE)


def test_file_locked_by_a_running_writer_is_refused(gdbm_python: str, tmp_path: Path) -> None:
    path = tmp_path / "live.db"
    _run(gdbm_python, path, 'db = dbm.gnu.open(PATH, "c"); db[b"k"] = b"v"; db.close()')
    holder = subprocess.Popen(
        [
            gdbm_python,
            "-c",
            "import dbm.gnu, sys; db = dbm.gnu.open(sys.argv[1], 'w'); print('open', flush=True);"
            " sys.stdin.read(); db.close()",
            str(path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "open\n"
        with pytest.raises(BackendUnavailableError, match=r"live\.db is locked .*running Errbot"):
            GdbmFileEngine(str(path))
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=60)
    assert _read(path) == {b"k": b"v"}


# -- the committed fixture (runs without any gdbm) -------------------------------------


def test_committed_errbot_fixture_reads_without_gdbm() -> None:
    assert flavour_of(str(FIXTURE)) == "dbm.gnu"
    raw = _read(FIXTURE)
    assert {k.decode("utf-8"): pickle.loads(v) for k, v in raw.items()} == CORE
    engine = open_engine("dbm.gnu", str(FIXTURE), create=False, fsync=False, readonly=True)
    try:
        assert sorted(engine.keys()) == sorted(k.encode() for k in CORE)
        assert pickle.loads(engine.get(b"configs") or b"") == CORE["configs"]
    finally:
        engine.close()


def test_writes_are_refused_with_the_hint(tmp_path: Path) -> None:
    path = tmp_path / "core.db"
    shutil.copyfile(FIXTURE, path)
    before = path.read_bytes()
    engine = GdbmFileEngine(str(path))
    for write in (lambda: engine.put(b"k", b"v"), lambda: engine.delete(b"configs")):
        with pytest.raises(BackendUnavailableError) as err:
            write()
        message = str(err.value)
        assert str(path) in message
        assert "no dbm.gnu module" in message
        assert "can read it but not write it" in message
        assert _HINTS["dbm.gnu"] in message
    engine.begin()
    engine.commit()
    engine.rollback()
    assert engine.refresh() is False  # the caller reopens, so rereads, a changed file
    engine.close()
    assert path.read_bytes() == before


@pytest.mark.skipif(HAVE_GDBM, reason="this Python has dbm.gnu, which opens the file instead")
def test_open_engine_without_dbm_gnu(tmp_path: Path) -> None:
    path = tmp_path / "core.db"
    shutil.copyfile(FIXTURE, path)
    engine = open_engine("dbm.gnu", str(path), create=False, fsync=False, readonly=True)
    assert isinstance(engine, GdbmFileEngine)
    engine.close()
    with pytest.raises(BackendUnavailableError, match=r"no dbm\.gnu module.*can still read it"):
        open_engine("dbm.gnu", str(path), create=False, fsync=False)
    (tmp_path / "bad.db").write_bytes(FIXTURE.read_bytes()[:5000])
    with pytest.raises(BackendUnavailableError) as err:
        open_engine("dbm.gnu", str(tmp_path / "bad.db"), create=False, fsync=False, readonly=True)
    assert str(err.value).startswith(f"{tmp_path / 'bad.db'} is not a readable GNU dbm file")
    (tmp_path / "bad.db").unlink()
    assert sorted(os.listdir(tmp_path)) == ["core.db"]


# -- damaged files ----------------------------------------------------------------------


def _opens(path: Path) -> bool:
    """Whether ``path`` reads; if not, the error must be the clean one, naming the file."""
    error: BackendUnavailableError | None = None
    try:
        GdbmFileEngine(str(path)).close()
    except BackendUnavailableError as exc:
        error = exc
    assert error is None or str(path) in str(error)
    return error is None


def _assert_unreadable(path: Path, match: str = "not a readable GNU dbm file") -> str:
    with pytest.raises(BackendUnavailableError, match=match) as err:
        GdbmFileEngine(str(path))
    assert str(path) in str(err.value)
    return str(err.value)


def test_truncated_files(tmp_path: Path) -> None:
    data = FIXTURE.read_bytes()
    header = _header(FIXTURE)
    # Every structure (header, directory, bucket, records) lies before the file's end,
    # and GDBM's records are written last: cut inside each of them.
    cuts = [
        0,
        3,
        4,
        20,
        header.block_size + 8,
        header.dir_at + header.dir_size + 100,
        len(data) - 1,
    ]
    index = gdbmfile._read_index(data)
    cuts.append(max(end for _, end in index.values()) - 1)  # inside the last value
    for cut in cuts:
        path = tmp_path / f"cut-{cut}.db"
        path.write_bytes(data[:cut])
        if _opens(path):
            # Only cutting unused space at the end may leave every record whole.
            assert cut >= max(end for _, end in index.values())
    assert "GDBM magic number" in _assert_unreadable(tmp_path / "cut-0.db")
    assert "shorter than a GDBM header" in _assert_unreadable(tmp_path / "cut-20.db")


def test_garbage_with_a_valid_magic(tmp_path: Path) -> None:
    rng = random.Random(1)
    for i, magic in enumerate(gdbmfile.MAGICS):
        for order in ("<", ">"):
            path = tmp_path / f"garbage-{i}{'le' if order == '<' else 'be'}.db"
            body = bytes(rng.randrange(256) for _ in range(4096))
            path.write_bytes(struct.pack(order + "I", magic) + body)
            assert flavour_of(str(path)) == "dbm.gnu"
            _assert_unreadable(path)
            path.write_bytes(struct.pack(order + "I", magic) + b"\x00" * 60)
            _assert_unreadable(path, "bad header")


def test_damaged_structures_raise_only_backend_errors(tmp_path: Path) -> None:
    """Overwrite bytes all over a real file: it reads, or fails cleanly naming itself."""
    data = FIXTURE.read_bytes()
    header = _header(FIXTURE)
    rng = random.Random(3)
    path = tmp_path / "damaged.db"
    failures = 0
    positions = [8, 16, 20, 24, 28, header.dir_at, header.dir_at + 4]
    positions += [rng.randrange(len(data) - 8) for _ in range(300)]
    for pos in positions:
        for junk in (
            b"\xff\xff\xff\x7f\xff\xff\xff\x7f",
            bytes(rng.randrange(256) for _ in range(8)),
        ):
            path.write_bytes(data[:pos] + junk + data[pos + 8 :])
            failures += not _opens(path)
    assert failures > 20


def test_records_pointing_elsewhere_are_caught(tmp_path: Path) -> None:
    data = bytearray(FIXTURE.read_bytes())
    header = _header(FIXTURE)
    layout = header.layout
    bucket = struct.unpack_from("<q", data, header.dir_at)[0]
    element = struct.Struct("<" + layout.element)
    slots = [
        bucket + layout.table_at + i * element.size
        for i in range(header.bucket_elems)
        if struct.unpack_from("<i", data, bucket + layout.table_at + i * element.size)[0] != -1
    ]
    assert len(slots) == len(CORE)
    hash_value, key_start, at, key_size, data_size = element.unpack_from(data, slots[0])
    cases = {
        "points at a record of another key": (hash_value, key_start, at + 1, key_size, data_size),
        "beyond the end of the file": (hash_value, key_start, at, key_size, 1 << 30),
        "is damaged": (hash_value, key_start, at, -5, data_size),
    }
    for i, (problem, fields) in enumerate(cases.items()):
        damaged = bytearray(data)
        element.pack_into(damaged, slots[0], *fields)
        path = tmp_path / f"damaged-{i}.db"
        path.write_bytes(bytes(damaged))
        _assert_unreadable(path, problem)
    # The same record twice.
    damaged = bytearray(data)
    damaged[slots[1] : slots[1] + element.size] = data[slots[0] : slots[0] + element.size]
    path = tmp_path / "twice.db"
    path.write_bytes(bytes(damaged))
    _assert_unreadable(path, "stored twice")
    # A copy of the bucket for the upper half of the hash values: the elements of the
    # lower half are now in the wrong bucket.
    damaged = data + data[bucket : bucket + header.bucket_size]
    entries = 1 << header.dir_bits
    struct.pack_into(
        f"<{entries // 2}q",
        damaged,
        header.dir_at + entries // 2 * 8,
        *[len(data)] * (entries // 2),
    )
    path = tmp_path / "split.db"
    path.write_bytes(bytes(damaged))
    _assert_unreadable(path, "in the wrong bucket for its hash value")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailableError, match=r"cannot read dbm\.gnu file .*nope\.db"):
        GdbmFileEngine(str(tmp_path / "nope.db"))


# -- read-only opening of the other flavours ---------------------------------------------


def _put_and_commit(engine: Engine) -> None:
    engine.put(b"k2", b"v2")
    engine.commit()


def _delete_and_commit(engine: Engine) -> None:
    engine.delete(b"k")
    engine.commit()


def test_readonly_sqlite3_and_dumb_never_write(tmp_path: Path) -> None:
    for kind in ("dbm.sqlite3", "dbm.dumb"):
        folder = tmp_path / kind
        folder.mkdir()
        base = str(folder / "ns.db")
        engine = open_engine(kind, base, create=True, fsync=False)
        engine.begin()
        engine.put(b"k", b"v")
        engine.commit()
        engine.close()
        # The database's own files never change; reading a WAL-mode SQLite database
        # read-only may leave its -wal and -shm sidecars behind, as any reader would.
        before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.iterdir()}
        engine = open_engine(kind, base, create=True, fsync=False, readonly=True)
        try:
            assert engine.keys() == [b"k"]
            assert engine.get(b"k") == b"v"
            for write in (_put_and_commit, _delete_and_commit):
                with pytest.raises(BackendUnavailableError, match=r"read-only|readonly"):
                    write(engine)
            engine.commit()
        finally:
            engine.close()
        after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.iterdir()}
        for sidecar in ("ns.db-wal", "ns.db-shm"):
            if sidecar not in before:
                after.pop(sidecar, None)
        assert after == before
        with pytest.raises(BackendUnavailableError):
            open_engine(kind, str(folder / "absent.db"), create=True, fsync=False, readonly=True)
        assert not any(p.name.startswith("absent") for p in folder.iterdir())
