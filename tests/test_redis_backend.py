"""Redis: the conformance kit and server-specific behaviour, against real servers.

The kit runs on the machine's Redis (127.0.0.1:6379), every test under a key prefix of
its own inside a prefix per run, deleted at the end.  Tests that stop, crash, or
password-protect a server start a private ``redis-server`` of their own on a free
loopback port, so the shared one is never disturbed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import plugstore
import plugstore.aio as aio
from plugstore.aio.runtime import Runtime
from plugstore.backend import Options
from plugstore.backends.redis import RedisBackend, glob_escape
from plugstore.backends.redis_aio import RedisAsyncBucket, RedisAsyncDriver
from plugstore.errors import (
    BackendUnavailableError,
    ConfigurationError,
    LockTimeoutError,
    NotAnIntegerError,
    PoolExhaustedError,
    StoreDamagedError,
)
from plugstore.testing import StoreConformance, release_together, spawn_child
from plugstore.url import StoreURL
from servers import IN_CI, assert_down_server_fails_fast, make_certs, require_server

HOST, PORT = "127.0.0.1", 6379
RUN_PREFIX = f"pstest:{uuid.uuid4().hex[:12]}:"
BASE = f"redis://{HOST}:{PORT}/0"


def _client(port: int = PORT, **kwargs: Any) -> Any:
    import redis

    return redis.Redis(host=HOST, port=port, **kwargs)


@pytest.fixture(scope="module", autouse=True)
def _run_prefix() -> Iterator[None]:
    require_server("Redis", HOST, PORT)
    yield
    client = _client()
    doomed = list(client.scan_iter(match=glob_escape(RUN_PREFIX) + "*", count=1000))
    for start in range(0, len(doomed), 1000):
        client.unlink(*doomed[start : start + 1000])


def prefix_for(tmp_path: Path) -> str:
    name = re.sub(r"\W", "_", tmp_path.name).lower()[:40]
    return f"{RUN_PREFIX}{name}_{zlib.crc32(str(tmp_path).encode()):08x}:"


class TestRedis(StoreConformance):
    def make_url(self, tmp_path: Path) -> str:
        return f"{BASE}?prefix={prefix_for(tmp_path)}"


class TestRedisNearCache(TestRedis):
    """The whole kit through the near cache, coherent by RESP3 client tracking."""

    options = {"cache": 1000}  # noqa: RUF012 - read by the kit only


# -- a private server, for the tests that stop, crash or lock one ----------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class PrivateRedis:
    """A redis-server of this test's own: AOF with fsync on every write."""

    def __init__(self, directory: Path, *extra: str) -> None:
        self.port = _free_port()
        self.dir = directory
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = ["redis-server", "--port", str(self.port), "--bind", HOST]
        argv += ["--dir", str(self.dir), "--save", "", "--appendonly", "yes"]
        argv += ["--appendfsync", "always", *self.extra]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection((HOST, self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("the private redis-server did not start") from None
                time.sleep(0.05)

    def kill(self) -> None:
        """Crash it: SIGKILL, no shutdown work at all."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        if IN_CI:
            pytest.fail("CI must have redis-server (.ci/run installs it)")
        pytest.skip("redis-server is not installed")
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    if server.proc is not None:
        os.kill(server.proc.pid, signal.SIGCONT)  # in case a test left it stopped
    server.kill()


# -- layout ----------------------------------------------------------------------------


def test_layout_entries_and_sorted_set_index(tmp_path: Path) -> None:
    prefix = prefix_for(tmp_path)
    with plugstore.open(f"{BASE}?prefix={prefix}") as store:
        ns = store.namespace("a")
        ns["k"] = 1
        ns.incr("k")
        ns["zé\U0001f600"] = "x"
        store.namespace("b")["k"] = "x"
        assert sorted(store.namespaces()) == ["a", "b"]
    client = _client()
    assert client.get(f"{prefix}{{a}}:k:k".encode()) == b"2"
    assert client.get(f"{prefix}{{a}}:k:zé\U0001f600".encode()) == b'"x"'
    assert client.type(f"{prefix}{{a}}:i") == b"zset"
    assert client.zrange(f"{prefix}{{a}}:i", 0, -1) == [b"k", "zé\U0001f600".encode()]
    assert client.zrange(f"{prefix}{{b}}:i", 0, -1) == [b"k"]


def test_namespaces_ignore_lookalike_keys_and_other_prefixes(tmp_path: Path) -> None:
    prefix = prefix_for(tmp_path)
    with plugstore.open(f"{BASE}?prefix={prefix}") as store:
        store.namespace("real")["x}:i"] = 1  # its entry name ends in "}:i" too
        store.namespace("real")["*"] = 2
    with plugstore.open(f"{BASE}?prefix={prefix}sub:") as store:
        store.namespace("other")["k"] = 1
    with plugstore.open(f"{BASE}?prefix={prefix}") as store:
        assert store.namespaces() == ["real"]
        assert sorted(store.namespace("real")) == ["*", "x}:i"]
        assert list(store.namespace("real").scan_keys("*")) == ["*"]  # no glob meaning


def test_glob_escape() -> None:
    assert glob_escape("a*b?c[d]e\\f") == "a\\*b\\?c\\[d\\]e\\\\f"
    assert glob_escape("plain:prefix/") == "plain:prefix/"


def test_len_and_listing_never_scan(tmp_path: Path) -> None:
    """``len``, prefix counts and listings use the index, never SCAN or KEYS."""
    with plugstore.open(f"{BASE}?prefix={prefix_for(tmp_path)}") as store:
        ns = store.namespace("n")
        ns.set_many({f"user:{i:05d}": i for i in range(3000)} | {"other": 0})
        sent: list[bytes] = []
        client = store.backend.client  # type: ignore[attr-defined]
        original = client.execute_command

        def spy(*args: Any, **kwargs: Any) -> Any:
            sent.append(str(args[0]).upper().encode())
            return original(*args, **kwargs)

        client.execute_command = spy
        try:
            assert len(ns) == 3001
            assert ns._b().count("user:") == 3000
            assert sum(1 for _ in ns.scan_keys("user:01")) == 1000
            assert len(list(ns)) == 3001
        finally:
            client.execute_command = original
        assert sent, "the spy saw nothing"
        assert not {b"SCAN", b"KEYS"} & set(sent), sent


def test_incr_is_exact_past_double_precision(tmp_path: Path) -> None:
    """Lua numbers are doubles; the script hands the counter back as text."""
    with plugstore.open(f"{BASE}?prefix={prefix_for(tmp_path)}") as store:
        ns = store.namespace("n")
        big = 2**62 + 1
        assert ns.incr("c", big) == big
        assert ns.incr("c", 2) == big + 2
        assert ns["c"] == big + 2


# -- connections, failures ---------------------------------------------------------------


def test_a_busy_pool_says_so(tmp_path: Path) -> None:
    """Every pooled connection held by other threads is reported as an exhausted pool --
    its size and the option -- not as a server that is unavailable, and not retried."""
    url = f"{BASE}?prefix={prefix_for(tmp_path)}&pool_max=1&connect_timeout=1"
    with plugstore.open(url) as store:
        ns = store.namespace("n")
        pool = store.backend._pool  # type: ignore[attr-defined]
        held = pool.get_connection()
        try:
            started = time.monotonic()
            with pytest.raises(BackendUnavailableError) as err:
                ns["k"] = 1  # retried after a lost connection, but not after this
            assert time.monotonic() - started < 10
            assert isinstance(err.value, PoolExhaustedError), err.value
            assert "all 1 connections" in str(err.value)
            assert "pool_max" in str(err.value)
        finally:
            pool.release(held)
        ns["k"] = 1
        assert ns["k"] == 1


def test_server_down_at_start_fails_fast_and_clearly() -> None:
    assert_down_server_fails_fast("redis://bob:s3cr3t-pw@127.0.0.1:1/0?connect_timeout=2")


def test_password_login_and_masking(private_redis: PrivateRedis, tmp_path: Path) -> None:
    private_redis.kill()
    locked = PrivateRedis(tmp_path, "--requirepass", "hunter2-pw")
    locked.start()
    try:
        url = f"redis://:hunter2-pw@{HOST}:{locked.port}/0"
        with plugstore.open(url) as store:
            store.namespace("n")["k"] = 1
            for text in (repr(store), store.url, str(store.info()), repr(store.namespace("n"))):
                assert "hunter2" not in text
        with plugstore.open(f"redis://{HOST}:{locked.port}/0", password="hunter2-pw") as store:
            assert store.namespace("n")["k"] == 1
        with pytest.raises(BackendUnavailableError) as err:
            plugstore.open(f"redis://:wrong-pw-x@{HOST}:{locked.port}/0")
        assert "wrong-pw-x" not in str(err.value)
    finally:
        locked.kill()


def test_a_user_not_allowed_to_track_cannot_open_a_cache(tmp_path: Path) -> None:
    """An ACL user without ``CLIENT TRACKING``: the store opens without a cache, and
    with one fails within its start time, naming the refused command (and never the
    password)."""
    limited = PrivateRedis(
        tmp_path, "--user", "bot", "on", ">bot-pw-x", "~*", "&*", "+@all", "-client|tracking"
    )
    limited.start()
    try:
        url = f"redis://bot:bot-pw-x@{HOST}:{limited.port}/0?connect_timeout=1"
        with plugstore.open(url) as store:
            store.namespace("n")["k"] = 1
        with pytest.raises(BackendUnavailableError) as err:
            plugstore.open(url, cache=10)
        message = str(err.value)
        assert "could not start listening" in message
        assert "tracking" in message.lower()
        assert "NoPermissionError" in message
        assert "bot-pw-x" not in message
    finally:
        limited.kill()


def test_a_foreign_key_under_the_prefix_is_a_plugstore_error(tmp_path: Path) -> None:
    """Another program wrote a hash where plugstore keeps a value: reads and incr (sync
    and async) raise StoreDamagedError naming the prefix, never redis-py's WRONGTYPE;
    a set replaces it, as SET does."""
    prefix = prefix_for(tmp_path)
    url = f"{BASE}?prefix={prefix}"
    client = _client()
    with plugstore.open(url) as store:
        ns = store.namespace("n")
        ns["ok"] = 1
        client.hset(f"{prefix}{{n}}:k:bad", "field", "1")
        client.zadd(f"{prefix}{{n}}:i", {"bad": 0})
        for read in (lambda: ns["bad"], lambda: ns.get("bad"), lambda: ns.incr("bad")):
            with pytest.raises(StoreDamagedError, match=re.escape(repr(prefix))) as err:
                read()
            assert "prefix of its own" in str(err.value)
        assert ns["ok"] == 1

        async def via_aio() -> None:
            async with aio.open(url) as astore:
                with pytest.raises(StoreDamagedError, match="WRONGTYPE"):
                    await astore.namespace("n").get("bad")
                with pytest.raises(StoreDamagedError):
                    await astore.namespace("n").incr("bad")

        asyncio.run(via_aio())
        ns["bad"] = 2
        assert ns["bad"] == 2


def test_a_server_out_of_memory_is_a_plugstore_error(tmp_path: Path) -> None:
    """A server at maxmemory (noeviction) refuses writes: BackendUnavailableError saying
    so, and reads go on."""
    full = PrivateRedis(tmp_path, "--maxmemory", "3mb", "--maxmemory-policy", "noeviction")
    full.start()
    try:
        with plugstore.open(full.url) as store:
            ns = store.namespace("n")

            def fill() -> None:
                for i in range(200):
                    ns[f"k{i}"] = "x" * 100_000

            with pytest.raises(BackendUnavailableError, match="maxmemory") as err:
                fill()
            assert "OOM" in str(err.value)
            assert ns["k0"] == "x" * 100_000
    finally:
        full.kill()


def test_options_are_validated() -> None:
    for bad in ("a*b", "x{y}", "sp ace", "a" * 101):
        with pytest.raises(ConfigurationError):
            plugstore.open(BASE, prefix=bad)
    with pytest.raises(ConfigurationError, match="number"):
        plugstore.open(f"redis://{HOST}:{PORT}/zero")
    with pytest.raises(ConfigurationError, match="rediss"):
        plugstore.open(f"{BASE}?ssl_ca_certs=/tmp/ca.pem")
    with pytest.raises(ConfigurationError, match="unknown option"):
        plugstore.open(f"{BASE}?prefx=a")


def test_unix_socket(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    sock = tmp_path / "redis.sock"
    server = PrivateRedis(tmp_path, "--unixsocket", str(sock))
    server.start()
    try:
        with plugstore.open(f"redis://localhost/0?unix_socket={sock}") as store:
            store.namespace("n")["k"] = "via socket"
            assert store.info()["server"].endswith(f"at {sock}")
        assert _client(server.port).get(b"plugstore:{n}:k:k") == b'"via socket"'
    finally:
        server.kill()


def test_tls_rediss_verifies_the_server(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None or shutil.which("openssl") is None:
        if IN_CI:
            pytest.fail("CI must have redis-server and openssl")
        pytest.skip("needs redis-server and openssl")
    ca, cert, key, other_ca = make_certs(tmp_path)
    server = PrivateRedis(tmp_path, "--port", "0", "--tls-port", "PORT",
                          "--tls-cert-file", str(cert), "--tls-key-file", str(key),
                          "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no")  # fmt: skip
    server.extra = tuple(str(server.port) if a == "PORT" else a for a in server.extra)
    server.start()
    try:
        url = f"rediss://{HOST}:{server.port}/0"
        with plugstore.open(f"{url}?ssl_ca_certs={ca}") as store:
            store.namespace("n")["k"] = "over TLS"
            assert store.namespace("n")["k"] == "over TLS"
        with pytest.raises(BackendUnavailableError, match="certificate verify failed"):
            plugstore.open(f"{url}?ssl_ca_certs={other_ca}")
        with pytest.raises(BackendUnavailableError):  # plain text to a TLS port
            plugstore.open(f"redis://{HOST}:{server.port}/0?connect_timeout=2&socket_timeout=2")
    finally:
        server.kill()


def test_info_reports_the_servers_durability(private_redis: PrivateRedis) -> None:
    with plugstore.open(private_redis.url) as store:
        assert store.info()["persistence"] == "AOF, appendfsync always"
    with plugstore.open(BASE) as store:  # the shared server keeps nothing (CI's setup)
        persistence = store.info()["persistence"]
    aof = _client().config_get("appendonly")["appendonly"] == b"yes"
    assert persistence.startswith("AOF") == aof


def test_forked_child_never_touches_the_parents_connections(tmp_path: Path) -> None:
    import gc

    with plugstore.open(f"{BASE}?prefix={prefix_for(tmp_path)}") as store:
        ns = store.namespace("n")
        threads = [threading.Thread(target=ns.incr, args=(f"warm{i}",)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        pid = os.fork()
        if pid == 0:
            signal.alarm(20)
            code = 0
            try:
                ns.incr("child")
                gc.collect()
            except BaseException:
                code = 3
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        for i in range(20):  # incr is never retried: a broken connection would raise
            ns.incr(f"after-{i}")
        assert ns["child"] == 1


def test_reopen_reuses_one_pool_and_close_leaves_no_connection(
    private_redis: PrivateRedis,
) -> None:
    def ours() -> int:
        clients = _client(private_redis.port).client_list()
        return sum(1 for c in clients if c.get("name") == "plugstore")

    store = plugstore.open(private_redis.url)
    ns = store.namespace("n")
    ns["k"] = 1
    store.close()
    assert ours() == 0
    store.open()
    assert ns.incr("k") == 2  # a namespace from before the close works again
    assert store.namespace("n")["k"] == 2
    store.close()
    assert ours() == 0


def test_only_safe_operations_are_retried(private_redis: PrivateRedis) -> None:
    """A command whose reply never came: ``incr`` raises and applied once; ``set`` retries.

    The server is frozen (SIGSTOP) so the command is sent but not answered; the client
    times out.  Re-sending the INCR (redis-py's default retry) would apply it twice.
    """
    url = f"{private_redis.url}?socket_timeout=0.5&retry_timeout=20"
    assert private_redis.proc is not None
    pid = private_redis.proc.pid

    def thaw_later() -> threading.Thread:
        t = threading.Thread(target=lambda: (time.sleep(1.5), os.kill(pid, signal.SIGCONT)))
        t.start()
        return t

    with plugstore.open(url) as store:
        ns = store.namespace("n")
        ns["c"] = 0
        os.kill(pid, signal.SIGSTOP)
        thaw = thaw_later()
        with pytest.raises(BackendUnavailableError, match="unavailable"):
            ns.incr("c")
        thaw.join()
        assert ns["c"] == 1  # the frozen INCR ran once, when the server woke up
        os.kill(pid, signal.SIGSTOP)
        thaw = thaw_later()
        ns["k"] = "landed"  # an upsert: retried until the server answers
        thaw.join()
        assert ns["k"] == "landed"
        assert ns["c"] == 1


@pytest.mark.slow
def test_server_crash_mid_run_loses_nothing_acknowledged(private_redis: PrivateRedis) -> None:
    """SIGKILL the server during 10,000 writes; with appendfsync always nothing acked is lost."""
    url = f"{private_redis.url}?retry_timeout=60"
    crashed: list[float] = []

    def crash_and_restart() -> None:
        time.sleep(0.5)
        private_redis.kill()
        time.sleep(1.0)  # stay down a moment: clients must notice and retry
        private_redis.start()
        crashed.append(time.monotonic())

    with plugstore.open(url) as store:
        ns = store.namespace("n")
        worker = threading.Thread(target=crash_and_restart)
        worker.start()
        acked = unavailable = 0
        try:
            for i in range(10_000):
                ns[f"k{i}"] = {"i": i}  # retried through the crash
                acked += 1
                try:
                    ns.incr("counter")  # never retried: may fail while the server is away
                except BackendUnavailableError:
                    unavailable += 1
            loop_done = time.monotonic()
        finally:
            worker.join()
        assert crashed, "the crash and restart did not happen"
        assert crashed[0] < loop_done, "the crash must land while writes run"
        assert acked == 10_000
        assert len(ns) == 10_001
        missing = [i for i in range(10_000) if ns.get(f"k{i}") != {"i": i}]
        assert missing == []
        assert 10_000 - unavailable <= ns["counter"] <= 10_000
        ns.incr("counter")  # the scripts were loaded again after the restart


# -- expiry ------------------------------------------------------------------------------


def test_deadlines_are_redis_own_pexpiretime(tmp_path: Path) -> None:
    """The deadline the store clock computes is the entry's PXAT, kept by incr and
    compare-and-set, dropped by a plain write, mirrored in the namespace's :x set."""
    from plugstore.testing import FakeClock

    prefix = prefix_for(tmp_path)
    clock = FakeClock(time.time())
    client = _client()
    entry, deadlines = (f"{prefix}{{n}}:{part}".encode() for part in ("k:k", "x"))
    with plugstore.open(f"{BASE}?prefix={prefix}", clock=clock) as store:
        ns = store.namespace("n")
        ns.set("k", 0, ttl=3600)
        at = math.floor((clock.now + 3600) * 1000)  # rounded down: never later
        assert client.pexpiretime(entry) == at
        assert client.zscore(deadlines, b"k") == at
        assert ns.ttl("k") == pytest.approx(3600, abs=0.001)
        assert ns.incr("k") == 1  # INCRBY keeps the TTL
        assert ns.compute("k", lambda v: v + 1) == 2  # SET ... KEEPTTL
        assert client.pexpiretime(entry) == at
        ns.set("k", 3, ttl=60)
        assert client.pexpiretime(entry) == math.floor((clock.now + 60) * 1000)
        ns["k"] = 4  # a plain write: no TTL, no longer in :x
        assert client.pexpiretime(entry) == -1
        assert client.zscore(deadlines, b"k") is None
        assert client.exists(deadlines) == 0
        # The server's clock decides: a deadline past on the store clock only is not.
        ns.set("later", 1, ttl=3600)
        clock.advance(7200)
        assert ns["later"] == 1
        assert ns.ttl("later") == 0.0  # what is left by the store clock


def test_redis_deletes_expired_entries_and_counting_sweeps_their_members(
    tmp_path: Path,
) -> None:
    from plugstore.testing import FakeClock

    prefix = prefix_for(tmp_path)
    now = time.time()
    clock = FakeClock(now - 10**6)  # deadlines written now are long past for the server
    client = _client()
    index, deadlines = (f"{prefix}{{n}}:{part}".encode() for part in ("i", "x"))
    with plugstore.open(f"{BASE}?prefix={prefix}", clock=clock) as store:
        ns = store.namespace("n")
        ns.set_many({"a": 1, "b": 2}, ttl=10)
        ns.set("c", 3, ttl=10)
        clock.now = now
        ns.set("live", 4, ttl=3600)
        assert client.exists(f"{prefix}{{n}}:k:a".encode()) == 0  # gone: Redis's own work
        assert client.zcard(index) == 4  # their members wait for a sweep
        assert store.purge() == 3
        assert client.zrange(index, 0, -1) == [b"live"]
        assert client.zrange(deadlines, 0, -1) == [b"live"]
        clock.now = now - 10**6
        ns.set("d", 5, ttl=10)
        clock.now = now
        assert len(ns) == 1  # counting sweeps too
        assert client.zrange(index, 0, -1) == [b"live"]
        assert store.purge() == 0
        assert store.drop_namespace("n") == 1
    assert list(client.scan_iter(match=glob_escape(prefix) + "*")) == []


def test_add_expire_persist_keep_the_index_and_deadline_set_in_line(tmp_path: Path) -> None:
    """add is SET NX (PXAT for a deadline), expire PEXPIREAT, persist PERSIST; each one
    leaves the entry's index member, and its :x member scored by the deadline, matching
    what the entry holds -- also where Redis had expired the entry behind the index."""
    from plugstore.testing import FakeClock

    prefix = prefix_for(tmp_path)
    now = time.time()
    clock = FakeClock(now)
    client = _client()
    index, deadlines = (f"{prefix}{{n}}:{part}".encode() for part in ("i", "x"))

    def entry(key: str) -> bytes:
        return f"{prefix}{{n}}:k:{key}".encode()

    with plugstore.open(f"{BASE}?prefix={prefix}", clock=clock) as store:
        ns = store.namespace("n")
        assert ns.add("a", 1, ttl=3600) is True
        at = math.floor((now + 3600) * 1000)
        assert client.pexpiretime(entry("a")) == at
        assert client.zscore(deadlines, b"a") == at
        assert client.zscore(index, b"a") == 0
        assert ns.add("a", 2, ttl=60) is False
        assert client.pexpiretime(entry("a")) == at  # untouched by the losing add
        assert ns.expire("a", 60) is True
        at = math.floor((now + 60) * 1000)
        assert client.pexpiretime(entry("a")) == at
        assert client.zscore(deadlines, b"a") == at
        assert ns.persist("a") is True
        assert client.pexpiretime(entry("a")) == -1
        assert client.zscore(deadlines, b"a") is None
        assert client.zscore(index, b"a") == 0
        # Expired by Redis, members left behind: add without a deadline takes the key
        # and drops the stale :x member; with one, rescores it.
        clock.now = now - 10**6
        ns.set_many({"b": 1, "c": 1}, ttl=10)
        clock.now = now
        assert client.zcard(deadlines) == 2  # stale members, not swept yet
        assert ns.expire("b", 60) is False  # PEXPIREAT found no entry
        assert ns.persist("b") is False
        assert client.exists(entry("b")) == 0
        assert ns.add("b", 2) is True
        assert client.zscore(deadlines, b"b") is None
        assert client.pexpiretime(entry("b")) == -1
        assert ns.add("c", 2, ttl=3600) is True
        assert client.zscore(deadlines, b"c") == math.floor((now + 3600) * 1000)
        assert client.zrange(index, 0, -1) == [b"a", b"b", b"c"]
        assert store.purge() == 0  # nothing stale was left
        assert dict(ns) == {"a": 1, "b": 2, "c": 2}


# -- the native async driver: plugstore.aio on redis.asyncio ----------------------------


class _NoThreads(concurrent.futures.Executor):
    """An executor that refuses work: what the native driver does must never need one."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"{fn!r} was sent to a thread")

    def run_async(self, loop: Any, fn: Callable[..., Any], *args: Any) -> Any:
        return self.submit(fn, *args)  # what the async store's calls use


def test_async_driver_is_native_and_hops_to_no_thread(tmp_path: Path) -> None:
    """Every namespace operation, lock waits included, runs in the event loop: the
    store's thread pool is swapped for one that refuses work."""
    holder = plugstore.open(f"{BASE}?prefix={prefix_for(tmp_path)}")

    async def main() -> None:
        async with aio.open(f"{BASE}?prefix={prefix_for(tmp_path)}") as astore:
            assert isinstance(astore._driver, RedisAsyncDriver)
            runtime = astore._runtime
            threads, runtime.executor = runtime.executor, _NoThreads()
            try:
                ns = astore.namespace("n")
                assert isinstance(ns._bucket, RedisAsyncBucket)
                await ns.set("k", {"a": 1})
                assert await ns.get("k") == {"a": 1}
                assert await ns.incr("c", 5) == 5
                assert await ns.incr("c", 2**62) == 2**62 + 5  # exact past doubles
                with pytest.raises(NotAnIntegerError):
                    await ns.incr("k")  # the script's refusal, as the sync shell says it
                assert await ns.replace_if("k", await ns.get_raw("k"), 2)
                assert await ns.compute("k", lambda v: v + 1) == 3
                await ns.set("t", 1, ttl=3600)
                ttl = await ns.ttl("t")
                assert ttl is not None
                assert 3590 < ttl <= 3600
                await ns.set_many({f"p{i:04d}": i for i in range(700)}, ttl=3600)
                assert len(await ns.get_many([f"p{i:04d}" for i in range(0, 700, 7)])) == 100
                assert [k async for k in ns.keys("p00")] == [f"p{i:04d}" for i in range(100)]
                assert await ns.count() == 703
                assert sum([1 async for _ in ns.scan("p")]) == 700
                assert await ns._bucket.stored_size("p") == 700 * 5 + 10 + 180 + 600 * 3
                assert await ns.add("a", 1) is True
                assert await ns.add("a", 2, ttl=60) is False
                assert await ns.expire("a", 60) is True
                assert await ns.ttl("a") is not None
                assert await ns.persist("a") is True
                assert await ns.ttl("a") is None
                await ns.delete("a")
                assert await ns.pop("t") == 1
                await ns.delete("k")
                assert not await ns.contains("k")
                async with ns.lock("L", timeout=1):
                    with pytest.raises(LockTimeoutError):
                        holder.namespace("n").lock("L", timeout=0).acquire()
                with holder.namespace("n").lock("L", timeout=5), pytest.raises(LockTimeoutError):
                    await ns.lock("L", timeout=0.3).acquire()  # waited in the loop, no thread
                await ns.clear()
                assert await ns.count() == 0
            finally:
                runtime.executor = threads

    try:
        asyncio.run(main())
    finally:
        holder.close()


def test_async_cancelled_commands_leave_the_pool_sound(tmp_path: Path) -> None:
    """Tasks cancelled at random moments of their commands (values of 200 kB, so replies
    take many reads) leave no connection in use and none holding a stale reply: every
    later read gets its own key's value."""
    values = {f"k{i}": f"{i}:" + "x" * 200_000 for i in range(20)}
    url = f"{BASE}?prefix={prefix_for(tmp_path)}&pool_max=8"

    async def main() -> None:
        async with aio.open(url) as astore:
            ns = astore.namespace("n")
            await ns.set_many(values)
            pool = astore._driver.pool
            assert pool is not None
            rng = random.Random(5)
            busy = cancelled = 0
            for _ in range(8):
                tasks = []
                for i in range(100):
                    key = f"k{i % 20}"
                    op = rng.choice(["get", "set", "incr", "scan", "get_many"])
                    work = {
                        "get": lambda key=key: ns.get(key),
                        "set": lambda key=key: ns.set(key, values[key]),
                        "incr": lambda i=i: ns.incr(f"c{i}"),
                        "scan": lambda: ns.get_many(list(values)[:5]),
                        "get_many": lambda: ns.get_many(list(values)),
                    }[op]()
                    tasks.append(asyncio.ensure_future(work))
                await asyncio.sleep(rng.uniform(0.001, 0.03))
                busy = max(busy, len(pool._in_use_connections))
                for task in tasks:
                    task.cancel()
                results = await asyncio.gather(*tasks, return_exceptions=True)
                cancelled += sum(isinstance(r, asyncio.CancelledError) for r in results)
                assert not [r for r in results if isinstance(r, Exception)]
            assert busy > 0, "no command was under way when its task was cancelled"
            assert cancelled > 0
            await asyncio.sleep(0.2)  # releases redis.asyncio finishes in the background
            assert not pool._in_use_connections
            assert len(pool._available_connections) <= 8
            for _ in range(3):
                keys = list(values)
                rng.shuffle(keys)
                got = await asyncio.gather(*(ns.get(key) for key in keys))
                assert got == [values[key] for key in keys]
            counters = await ns.get_many([f"c{i}" for i in range(100)])
            for key, value in counters.items():
                assert await ns.incr(key) == value + 1

    asyncio.run(main())


def test_async_cancelling_100_tasks_mid_command(private_redis: PrivateRedis) -> None:
    """The server is frozen (SIGSTOP): 10 tasks have sent their command (single ones,
    transactions) and wait for its reply, 90 wait for a connection.  Cancelling all 100
    gives every connection back; once the server thaws, every read gets its own reply
    (a connection kept with a reply still to come would hand it to the next caller)."""
    assert private_redis.proc is not None
    pid = private_redis.proc.pid
    url = f"{private_redis.url}?pool_max=10&socket_timeout=30"

    def ours() -> int:
        clients = _client(private_redis.port).client_list()
        return sum(1 for c in clients if c.get("name") == "plugstore")

    async def main() -> None:
        async with aio.open(url) as astore:
            ns = astore.namespace("n")
            await ns.set_many({f"k{i}": i for i in range(100)})
            await asyncio.gather(*(ns.get(f"k{i}") for i in range(100)))  # 10 connections
            pool = astore._driver.pool
            assert pool is not None
            os.kill(pid, signal.SIGSTOP)
            try:
                work = [
                    lambda i: ns.get(f"k{i}"),
                    lambda i: ns.incr(f"c{i}"),
                    lambda i: ns.ttl(f"k{i}"),  # a MULTI/EXEC transaction
                    lambda i: ns.set_many({f"k{i}": i, f"s{i}": i}),  # one of scripts
                ]
                tasks = [asyncio.ensure_future(work[i % 4](i)) for i in range(100)]
                await asyncio.sleep(0.3)
                assert len(pool._in_use_connections) == 10
                assert not any(task.done() for task in tasks)
                for task in tasks:
                    task.cancel()
                results = await asyncio.gather(*tasks, return_exceptions=True)
                assert all(isinstance(r, asyncio.CancelledError) for r in results)
                await asyncio.sleep(0.1)
                assert not pool._in_use_connections
            finally:
                os.kill(pid, signal.SIGCONT)
            got = await asyncio.gather(*(ns.get(f"k{i}") for i in range(100)))
            assert got == list(range(100))
            ttls = await asyncio.gather(*(ns.ttl(f"k{i}") for i in range(100)))
            assert ttls == [None] * 100
            for i in range(1, 100, 4):
                assert await ns.incr(f"c{i}") in (1, 2)  # the frozen incr ran once or not
            deadline = time.monotonic() + 10
            while ours() > 10 + 1 and time.monotonic() < deadline:  # + the sync pool's
                await asyncio.sleep(0.05)  # the server closes the dropped sockets
            assert ours() <= 11

    asyncio.run(main())


def test_async_lock_try_cut_short_by_cancellation_is_undone(
    private_redis: PrivateRedis,
) -> None:
    """A lock try whose reply a cancellation would lose runs to its end, then the
    cancelled acquisition is undone: nothing is left taken (lock or turn)."""
    assert private_redis.proc is not None
    pid = private_redis.proc.pid
    raw = _client(private_redis.port)
    lock_keys = (b"plugstore:{n}:l:k", b"plugstore:{n}:t:k")

    async def main() -> None:
        async with aio.open(f"{private_redis.url}?socket_timeout=30") as astore:
            ns = astore.namespace("n")
            async with ns.lock("warm", timeout=1):
                pass
            os.kill(pid, signal.SIGSTOP)
            thaw = threading.Timer(0.6, os.kill, (pid, signal.SIGCONT))
            thaw.start()
            try:
                task = asyncio.ensure_future(ns.lock("k", timeout=None).acquire())
                await asyncio.sleep(0.3)  # its try is sent, and unanswered
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            finally:
                thaw.join()
                os.kill(pid, signal.SIGCONT)
            await asyncio.sleep(0.2)  # anything still under way lands
            assert raw.exists(*lock_keys) == 0
            with astore.sync.namespace("n").lock("k", timeout=0):
                pass
            assert not astore._driver._undoing

    asyncio.run(main())


def test_async_cancelled_lock_waiter_gives_its_turn_back(tmp_path: Path) -> None:
    """A waiter holds the lock's next turn while the sync API holds the lock; cancelled,
    it gives the turn back before its task ends (others need not wait for it to lapse)."""
    prefix = prefix_for(tmp_path)
    turn = f"{prefix}{{n}}:t:k".encode()
    raw = _client()

    async def main() -> None:
        async with aio.open(f"{BASE}?prefix={prefix}") as astore:
            sync_ns = astore.sync.namespace("n")
            holder = sync_ns.lock("k", timeout=5).acquire()
            task = asyncio.ensure_future(astore.namespace("n").lock("k", timeout=None).acquire())
            await asyncio.sleep(0.3)
            assert raw.exists(turn) == 1  # the next turn is the waiter's
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert raw.exists(turn) == 0
            holder.release()
            with sync_ns.lock("k", timeout=0):
                pass

    asyncio.run(main())


def test_async_unreachable_server_fails_fast() -> None:
    """Nothing listens on port 1: opening fails within seconds with a plugstore error
    naming the address, never the password -- the store, and the driver alone."""

    url = "redis://bob:s3cr3t-pw@127.0.0.1:1/0"

    async def open_store() -> None:
        await aio.open(f"{url}?connect_timeout=2")

    async def open_driver() -> None:
        backend = RedisBackend(StoreURL.parse(url), Options({"connect_timeout": 2}))
        runtime = Runtime(asyncio.get_running_loop(), 1, "redis://127.0.0.1:1/0")
        try:
            await RedisAsyncDriver(backend, runtime).open()
        finally:
            runtime.shutdown()

    async def main() -> None:
        for opening in (open_store, open_driver):
            started = time.monotonic()
            with pytest.raises(BackendUnavailableError) as err:
                await opening()
            assert time.monotonic() - started < 10
            assert "127.0.0.1:1" in str(err.value)
            assert "s3cr3t" not in str(err.value)
            assert "s3cr3t" not in repr(err.value)

    asyncio.run(main())


def test_async_only_safe_operations_are_retried(private_redis: PrivateRedis) -> None:
    """The sync rules, natively: a frozen server's INCR raises at once (and applies
    once, when it wakes); a set is sent again until it lands."""
    assert private_redis.proc is not None
    pid = private_redis.proc.pid
    url = f"{private_redis.url}?socket_timeout=0.5&retry_timeout=20"

    def freeze() -> threading.Timer:
        os.kill(pid, signal.SIGSTOP)
        thaw = threading.Timer(1.5, os.kill, (pid, signal.SIGCONT))
        thaw.start()
        return thaw

    async def main() -> None:
        async with aio.open(url) as astore:
            ns = astore.namespace("n")
            await ns.set("c", 0)
            thaw = freeze()
            try:
                with pytest.raises(BackendUnavailableError, match="unavailable"):
                    await ns.incr("c")
            finally:
                thaw.join()
            assert await ns.get("c") == 1  # the frozen INCR ran once, when the server woke
            thaw = freeze()
            try:
                await ns.set("k", "landed")  # an upsert: sent again until it lands
            finally:
                thaw.join()
            assert await ns.get("k") == "landed"
            assert await ns.get("c") == 1

    asyncio.run(main())


def test_async_server_gone_mid_use(private_redis: PrivateRedis) -> None:
    url = f"{private_redis.url}?retry_timeout=1&connect_timeout=1"

    async def main() -> None:
        async with aio.open(url) as astore:
            ns = astore.namespace("n")
            await ns.set("k", 1)
            private_redis.kill()
            for call in (lambda: ns.incr("c"), lambda: ns.get("k")):  # at once; retried
                started = time.monotonic()
                with pytest.raises(
                    BackendUnavailableError, match=f"127.0.0.1:{private_redis.port}"
                ):
                    await call()
                assert time.monotonic() - started < 10

    asyncio.run(main())


def test_async_busy_pool_says_so(tmp_path: Path) -> None:
    url = f"{BASE}?prefix={prefix_for(tmp_path)}&pool_max=1&connect_timeout=1"

    async def main() -> None:
        async with aio.open(url) as astore:
            ns = astore.namespace("n")
            pool = astore._driver.pool
            assert pool is not None
            held = await pool.get_connection()
            try:
                with pytest.raises(PoolExhaustedError) as err:
                    await ns.set("k", 1)  # retried after a lost connection, not after this
                assert "all 1 connections" in str(err.value)
                assert "pool_max" in str(err.value)
                assert "tasks" in str(err.value)
            finally:
                await pool.release(held)
            await ns.set("k", 1)
            assert await ns.get("k") == 1

    asyncio.run(main())


def test_async_driver_connects_as_the_sync_one(tmp_path: Path) -> None:
    """Password, database number, unix socket and TLS options reach the async pool."""
    if shutil.which("redis-server") is None or shutil.which("openssl") is None:
        if IN_CI:
            pytest.fail("CI must have redis-server and openssl")
        pytest.skip("needs redis-server and openssl")
    sock = tmp_path / "redis.sock"
    locked = PrivateRedis(tmp_path, "--requirepass", "hunter2-pw", "--unixsocket", str(sock))
    ca, cert, key, _ = make_certs(tmp_path)
    tls = PrivateRedis(tmp_path, "--port", "0", "--tls-port", "PORT",
                       "--tls-cert-file", str(cert), "--tls-key-file", str(key),
                       "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no")  # fmt: skip
    tls.extra = tuple(str(tls.port) if a == "PORT" else a for a in tls.extra)
    locked.start()
    try:
        tls.start()
        urls = {
            f"redis://:hunter2-pw@{HOST}:{locked.port}/3": (locked.port, 3),
            f"redis://:hunter2-pw@localhost/4?unix_socket={sock}": (locked.port, 4),
            f"rediss://{HOST}:{tls.port}/5?ssl_ca_certs={ca}": None,
        }

        async def main(url: str) -> str:
            async with aio.open(url) as astore:
                ns = astore.namespace("n")
                await ns.set("k", url)
                assert await ns.get("k") == url
                text = f"{astore!r} {astore.url} {await astore.info()} {ns!r}"
                assert "hunter2" not in text
                return str(astore.sync.namespace("n")["k"])

        for url, where in urls.items():
            assert asyncio.run(main(url)) == url
            if where is not None:
                port, db = where
                raw = _client(port, password="hunter2-pw", db=db)
                assert raw.get(b"plugstore:{n}:k:k") == json.dumps(url).encode()
    finally:
        locked.kill()
        tls.kill()


@pytest.mark.slow
def test_sync_and_async_processes_share_counters_and_locks(tmp_path: Path) -> None:
    """Two sync processes and two async ones (4 tasks each) race on one key: ``incr``,
    then get-then-set inside ``lock``: no update is lost."""
    url = f"{BASE}?prefix={prefix_for(tmp_path)}"
    base = {"url": url, "options": {}, "namespace": "n"}
    with plugstore.open(url) as store:
        for sync_mode, async_mode, key, n in (
            ("incr", "async_incr", "hits", 100),
            ("locked", "async_locked", "locked", 20),
        ):
            specs = [(sync_mode, {"key": key, "n": 4 * n})] * 2
            specs += [(async_mode, {"key": key, "n": n, "tasks": 4})] * 2
            release_together([spawn_child(mode, {**base, **spec}) for mode, spec in specs])
            assert store.namespace("n")[key] == 2 * 4 * n + 2 * 4 * n, key


def test_scripts_a_server_forgot_are_loaded_again(private_redis: PrivateRedis) -> None:
    """``SCRIPT FLUSH`` (as a restart without persistence does): NOSCRIPT means nothing
    ran, so even ``incr`` is sent again once the scripts are loaded -- by the sync and
    the async shell alike, for single scripts and scripts inside MULTI/EXEC."""
    raw = _client(private_redis.port)

    async def main() -> None:
        async with aio.open(private_redis.url) as astore:
            ans, ns = astore.namespace("n"), astore.sync.namespace("n")
            for step in range(2):
                raw.script_flush()
                assert ns.incr("c") == 2 * step + 1
                raw.script_flush()
                assert await ans.incr("c") == 2 * step + 2
                raw.script_flush()
                ns.set_many({"a": step, "b": step})
                raw.script_flush()
                await ans.set_many({"c2": step, "d": step})
                assert await ans.get_many(["a", "d"]) == {"a": step, "d": step}

    asyncio.run(main())
