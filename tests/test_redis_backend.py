"""Redis: the conformance kit and server-specific behaviour, against real servers.

The kit runs on the machine's Redis (127.0.0.1:6379), every test under a key prefix of
its own inside a prefix per run, deleted at the end.  Tests that stop, crash, or
password-protect a server start a private ``redis-server`` of their own on a free
loopback port, so the shared one is never disturbed.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import plugstore
from plugstore.backends.redis import glob_escape
from plugstore.errors import BackendUnavailableError, ConfigurationError, PoolExhaustedError
from plugstore.testing import StoreConformance
from servers import IN_CI, assert_down_server_fails_fast, require_server

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


def _make_certs(d: Path) -> tuple[Path, Path, Path, Path]:
    """A CA, a server certificate for 127.0.0.1 signed by it, and an unrelated CA."""

    def openssl(command: str, subject: str = "") -> None:
        argv = ["openssl", *command.split(), *(["-subj", subject] if subject else [])]
        subprocess.run(argv, cwd=d, check=True, capture_output=True, timeout=60)

    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for ca in ("ca", "other-ca"):
        new_ca = f"req -x509 -newkey rsa:2048 -nodes -days 1 -keyout {ca}.key -out {ca}.pem"
        openssl(new_ca, f"/CN=plugstore {ca}")
    openssl("req -newkey rsa:2048 -nodes -keyout server.key -out server.csr", "/CN=127.0.0.1")
    openssl(
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
        "-out server.pem -days 1 -extfile san.ext"
    )
    return d / "ca.pem", d / "server.pem", d / "server.key", d / "other-ca.pem"


def test_tls_rediss_verifies_the_server(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None or shutil.which("openssl") is None:
        if IN_CI:
            pytest.fail("CI must have redis-server and openssl")
        pytest.skip("needs redis-server and openssl")
    ca, cert, key, other_ca = _make_certs(tmp_path)
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
