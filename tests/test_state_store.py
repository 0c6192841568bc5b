"""StateStore: Salmon's state semantics on every built-in backend, threads and processes.

Runs on memory, SQLite and shelf stores (no server needed) and on the machine's
PostgreSQL and Redis, each test in a table or key prefix of its own inside a schema or
prefix per run, removed at the end (:class:`Servers`, also used by ``test_salmon.py``).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import plugstore
from plugstore import testing
from plugstore.errors import DecodeError, InvalidKeyError, StoreNotOpenError
from plugstore.keys import MAX_KEY_BYTES
from plugstore.state import FIRST_STATE, StateStore
from servers import require_server

PG_HOST, PG_PORT = "127.0.0.1", 5432
PG_BASE = f"postgresql://postgres@{PG_HOST}:{PG_PORT}/test"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
REDIS_BASE = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"

LOCAL = ["memory", "sqlite", "shelf"]
SERVERS = ["postgresql", "redis"]
MULTIPROCESS = ["sqlite", "shelf", "postgresql", "redis"]


class Servers:
    """Store URLs for tests: files under the test's tmp_path, or a place of the test's own
    on the shared PostgreSQL (a table in a schema per instance) and Redis (a key prefix
    per test inside a prefix per instance).  :meth:`cleanup` removes what was used."""

    def __init__(self) -> None:
        run = uuid.uuid4().hex[:12]
        self.schema = f"psstate_{run}"
        self.prefix = f"psstate:{run}:"
        self.used: set[str] = set()

    def url(self, backend: str, tmp_path: Path) -> str:
        """A fresh store URL for ``backend``, private to the test owning ``tmp_path``."""
        tag = f"{zlib.crc32(str(tmp_path).encode()):08x}"
        if backend == "memory":
            return "memory://"
        if backend == "sqlite":
            return f"sqlite:///{tmp_path / 'states.sqlite3'}"
        if backend == "shelf":
            return f"shelf:///{tmp_path / 'shelf'}"
        if backend == "postgresql":
            require_server("PostgreSQL", PG_HOST, PG_PORT)
            self.used.add(backend)
            return f"{PG_BASE}?schema={self.schema}&table=t_{tag}"
        if backend == "redis":
            require_server("Redis", REDIS_HOST, REDIS_PORT)
            self.used.add(backend)
            return f"{REDIS_BASE}?prefix={self.prefix}{tag}:"
        raise ValueError(backend)

    def cleanup(self) -> None:
        """Drop the schema and delete the keys this instance handed out."""
        if "postgresql" in self.used:
            import psycopg
            from psycopg import sql

            with psycopg.connect(f"host={PG_HOST} port={PG_PORT} dbname=test user=postgres") as c:
                c.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.schema))
                )
        if "redis" in self.used:
            import redis

            from plugstore.backends.redis import glob_escape

            client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT)
            doomed = list(client.scan_iter(match=glob_escape(self.prefix) + "*", count=1000))
            for start in range(0, len(doomed), 1000):
                client.unlink(*doomed[start : start + 1000])
            client.close()


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    places = Servers()
    yield places
    places.cleanup()


@pytest.fixture(params=LOCAL + SERVERS)
def url(request: pytest.FixtureRequest, servers: Servers, tmp_path: Path) -> str:
    return servers.url(request.param, tmp_path)


@pytest.fixture
def store(url: str) -> Iterator[plugstore.Store]:
    with plugstore.open(url) as opened:
        yield opened


@pytest.fixture
def states(store: plugstore.Store) -> StateStore:
    return StateStore(store.namespace("states"))


K = "app.handlers.signup"


# -- Salmon's semantics --------------------------------------------------------------------


def test_a_pair_never_set_is_in_start(states: StateStore) -> None:
    assert states.get(K, "ana@example.com") == FIRST_STATE == "START"
    assert len(states) == 0
    assert list(states.namespace) == []  # reading wrote nothing


def test_set_get_and_start_deletes_the_entry(states: StateStore) -> None:
    ns = states.namespace
    states.set(K, "ana@example.com", "CONFIRMING")
    states.set(K, "bob@example.com", "POSTING")
    states.set("other.module", "ana@example.com", "END")
    assert states.get(K, "ana@example.com") == "CONFIRMING"
    assert states.get(K, "bob@example.com") == "POSTING"
    assert states.get("other.module", "ana@example.com") == "END"
    assert states.get("other.module", "bob@example.com") == "START"
    assert len(states) == 3
    states.set(K, "ana@example.com", "POSTING")
    assert states.get(K, "ana@example.com") == "POSTING"

    states.set(K, "ana@example.com", "START")
    assert states.get(K, "ana@example.com") == "START"
    assert repr([K, "ana@example.com"]) not in ns  # really gone, not stored as "START"
    assert sorted(ns) == sorted(
        [repr([K, "bob@example.com"]), repr(["other.module", "ana@example.com"])]
    )
    states.set(K, "ana@example.com", "START")  # deleting an absent pair is fine
    assert len(ns) == 2
    assert dict(states.states()) == {
        repr([K, "bob@example.com"]): "POSTING",
        repr(["other.module", "ana@example.com"]): "END",
    }


ODD_SENDERS = [
    "ana@example.com",
    "jösé@exämple.com",
    "日本語@例え.テスト",
    "emoji 🐟 <fish@example.com>",
    "nul\x00byte@example.com",
    'O\'Brien "quoted" @example.com',
    "back\\slash\nnew line\ttab",
    "lone \ud800 surrogate",
    "'",
    '"',
    "[1, 2]",
]


@pytest.mark.parametrize("sender", ODD_SENDERS, ids=range(len(ODD_SENDERS)))
def test_storage_key_is_exactly_repr_of_key_and_sender(states: StateStore, sender: str) -> None:
    ns = states.namespace
    for key in (K, "modüle.ünïcode", "a'b\"c\x00d"):
        states.set(key, sender, "WAITING")
        storage_key = repr([key, sender])
        assert StateStore.key(key, sender) == storage_key
        assert ast.literal_eval(storage_key) == [key, sender]
        assert list(ns) == [storage_key]
        assert ns[storage_key] == "WAITING"
        assert states.get(key, sender) == "WAITING"
        assert states.get(key, sender + " ") == "START"
        states.set(key, sender, "START")
        assert list(ns) == []


def test_clear_forgets_every_state_and_only_this_namespace(store: plugstore.Store) -> None:
    states = StateStore(store.namespace("states"))
    other = store.namespace("other")
    other["keep"] = "me"
    for i in range(30):
        states.set(K, f"s{i}@example.com", f"S{i % 3}")
    assert len(states) == 30
    states.clear()
    assert len(states) == 0
    assert states.get(K, "s1@example.com") == "START"
    assert dict(other) == {"keep": "me"}
    states.set(K, "s1@example.com", "AGAIN")  # usable after clear
    assert dict(states.states()) == {repr([K, "s1@example.com"]): "AGAIN"}


def test_transition_semantics(states: StateStore) -> None:
    ns, s = states.namespace, "ana@example.com"
    assert states.transition(K, s, "CONFIRMING", "POSTING") is False  # absent is START
    assert list(ns) == []
    assert states.transition(K, s, "START", "CONFIRMING") is True  # insert
    assert states.get(K, s) == "CONFIRMING"
    assert states.transition(K, s, "START", "OTHER") is False  # no longer absent
    assert states.transition(K, s, "CONFIRMING", "POSTING") is True  # replace
    assert states.transition(K, s, "CONFIRMING", "END") is False
    assert states.get(K, s) == "POSTING"
    assert states.transition(K, s, "POSTING", "POSTING") is True  # no-op, still checked
    assert states.transition(K, s, "END", "END") is False
    assert states.transition(K, s, "POSTING", "START") is True  # delete
    assert list(ns) == []
    assert states.transition(K, s, "POSTING", "START") is False
    assert states.transition(K, s, "START", "START") is True


# -- bad input and misuse: clear errors, nothing written --------------------------------------


@pytest.mark.parametrize("bad", [5, "", None, b"STATE", ["A"], type("S", (str,), {})("SUB")])
def test_bad_state_is_a_type_error_and_writes_nothing(states: StateStore, bad: Any) -> None:
    ns = states.namespace
    with pytest.raises(TypeError, match="non-empty str"):
        states.set(K, "new@example.com", bad)
    assert list(ns) == []
    states.set(K, "old@example.com", "KEPT")
    with pytest.raises(TypeError):
        states.set(K, "old@example.com", bad)
    with pytest.raises(TypeError):
        states.transition(K, "old@example.com", "KEPT", bad)
    with pytest.raises(TypeError):
        states.transition(K, "old@example.com", bad, "NEW")
    assert dict(ns) == {repr([K, "old@example.com"]): "KEPT"}


def test_over_long_key_is_invalid_key_error(states: StateStore) -> None:
    ns = states.namespace
    overhead = len(repr([K, ""]).encode())
    fits = "é" * ((MAX_KEY_BYTES - overhead) // 2) + "x" * ((MAX_KEY_BYTES - overhead) % 2)
    assert len(StateStore.key(K, fits).encode()) == MAX_KEY_BYTES
    states.set(K, fits, "LONG")
    assert states.get(K, fits) == "LONG"
    too_long = fits + "x"
    for call in (
        lambda: states.set(K, too_long, "LONG"),
        lambda: states.set(K, too_long, "START"),
        lambda: states.get(K, too_long),
        lambda: states.transition(K, too_long, "START", "LONG"),
    ):
        with pytest.raises(InvalidKeyError, match=str(MAX_KEY_BYTES)):
            call()
    assert list(ns) == [StateStore.key(K, fits)]


@pytest.mark.parametrize("stored", [5, None, "", ["START"], {"state": "A"}, b"A"])
def test_a_stored_value_that_is_no_state_is_a_decode_error(states: StateStore, stored: Any) -> None:
    ns, s = states.namespace, "ana@example.com"
    ns[StateStore.key(K, s)] = stored
    with pytest.raises(DecodeError, match="not written by a StateStore"):
        states.get(K, s)
    with pytest.raises(DecodeError):
        states.transition(K, s, "START", "A")
    assert ns[StateStore.key(K, s)] == stored  # left as it was
    states.set(K, s, "FIXED")  # overwriting it is allowed
    assert states.get(K, s) == "FIXED"


def test_closed_store_raises_store_not_open(url: str) -> None:
    store = plugstore.open(url)
    states = StateStore(store.namespace("states"))
    states.set(K, "a@example.com", "A")
    store.close()
    calls: list[Callable[[], object]] = [
        lambda: states.get(K, "a@example.com"),
        lambda: states.set(K, "a@example.com", "B"),
        lambda: states.set(K, "a@example.com", "START"),
        lambda: states.transition(K, "a@example.com", "A", "B"),
        states.clear,
        lambda: len(states),
        lambda: list(states.states()),
    ]
    for call in calls:
        with pytest.raises(StoreNotOpenError):
            call()
    if not url.startswith("memory://"):  # nothing was written after close
        with plugstore.open(url) as again:
            assert StateStore(again.namespace("states")).get(K, "a@example.com") == "A"


def test_closed_namespace_raises_store_not_open(store: plugstore.Store) -> None:
    states = StateStore(store.namespace("states"))
    states.namespace.close()
    with pytest.raises(StoreNotOpenError):
        states.get(K, "a@example.com")
    with pytest.raises(StoreNotOpenError):
        states.set(K, "a@example.com", "A")


# -- threads ---------------------------------------------------------------------------------


def _run_threads(n: int, work: Callable[[int], None]) -> None:
    errors: list[BaseException] = []

    def guarded(i: int) -> None:
        try:
            work(i)
        except BaseException as exc:  # reported below
            errors.append(exc)

    pool = [threading.Thread(target=guarded, args=(i,)) for i in range(n)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=240)
    assert errors == []
    assert not any(t.is_alive() for t in pool)


def test_transition_wins_exactly_once_when_8_threads_race(states: StateStore) -> None:
    # Every shape of the compare-and-set: insert (START->A), replace, delete (->START).
    steps = [("START", "A"), ("A", "B"), ("B", "START")] * 5
    n = 8
    barrier = threading.Barrier(n)
    results = [[False] * len(steps) for _ in range(n)]

    def race(i: int) -> None:
        for step, (old, new) in enumerate(steps):
            barrier.wait(timeout=60)
            results[i][step] = states.transition(K, "shared@example.com", old, new)

    _run_threads(n, race)
    winners = [sum(results[i][step] for i in range(n)) for step in range(len(steps))]
    assert winners == [1] * len(steps)
    assert list(states.namespace) == []


def test_threads_setting_distinct_senders_lose_nothing(states: StateStore) -> None:
    n, per_thread = 8, 60

    def work(i: int) -> None:
        for j in range(per_thread):
            sender = f"t{i}-{j}@example.com"
            states.set(K, sender, "A")
            states.set(K, sender, f"B{j}")
            if j % 2 == 0:
                states.set(K, sender, "START")

    _run_threads(n, work)
    expected = {
        StateStore.key(K, f"t{i}-{j}@example.com"): f"B{j}"
        for i in range(n)
        for j in range(per_thread)
        if j % 2
    }
    assert dict(states.states()) == expected
    assert len(states) == n * per_thread // 2


# -- processes -------------------------------------------------------------------------------

_SPEC_ENV = "PLUGSTORE_STATE_RACE_SPEC"
_RACER = """
import json, os, sys
import plugstore
from plugstore.state import StateStore

spec = json.loads(os.environ[sys.argv[1]])
with plugstore.open(spec["url"]) as store:
    states = StateStore(store.namespace("states"))
    print("ready", flush=True)
    sys.stdin.readline()
    names = spec["names"]
    won = [states.transition(spec["key"], spec["sender"], old, new)
           for old, new in zip(names, names[1:])]
    print(json.dumps(won), flush=True)
"""


def release_together(
    procs: list[subprocess.Popen[str]], waiting: list[bool] | None = None
) -> list[Any]:
    """The kit's release of racing processes; each one's stdout is one JSON document."""
    return [json.loads(out) for out in testing.release_together(procs, waiting)]


def _race_processes(url: str, spec: dict[str, Any], n: int) -> list[list[bool]]:
    env = {**os.environ, _SPEC_ENV: json.dumps({"url": url, **spec})}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, _SPEC_ENV],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(n)
    ]
    return release_together(procs)


@pytest.mark.slow
@pytest.mark.parametrize("backend", MULTIPROCESS)
def test_transition_wins_exactly_once_per_step_across_4_processes(
    backend: str, servers: Servers, tmp_path: Path
) -> None:
    """Each process tries every step of BEGIN -> S1 .. S49 -> START -> T1 .. T49 -> END.

    After a process's attempt at step i the pair is at least at step i+1 (it won, or
    someone else did), so every step is attempted while current and, with a true
    compare-and-set, won by exactly one process.  The steps cover replace, delete (to
    START) and insert (from START).  No state repeats: transition() compares states, so
    a pair back in an earlier state would let a late process take that step again.
    """
    url = servers.url(backend, tmp_path)
    names = [
        "BEGIN",
        *(f"S{i}" for i in range(1, 50)),
        "START",
        *(f"T{i}" for i in range(1, 50)),
        "END",
    ]
    key, sender = "app.handlers.race", "shared 🐟 <shared@example.com>"
    with plugstore.open(url) as store:
        StateStore(store.namespace("states")).set(key, sender, "BEGIN")
    started = time.monotonic()
    results = _race_processes(url, {"names": names, "key": key, "sender": sender}, 4)
    elapsed = time.monotonic() - started
    winners_per_step = [sum(won[step] for won in results) for step in range(len(names) - 1)]
    wins_per_process = [sum(won) for won in results]
    assert winners_per_step == [1] * (len(names) - 1), wins_per_process
    with plugstore.open(url) as store:
        states = StateStore(store.namespace("states"))
        assert dict(states.states()) == {StateStore.key(key, sender): "END"}
    print(f"{backend}: wins per process {wins_per_process} in {elapsed:.2f}s")
