"""The MariaDB backend's PyMySQL connection that parses each column description once
(``plugstore.backends.mysqlconn``), against the real server: it must read every result
exactly as PyMySQL's own connection does, and actually reuse what it parsed."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pymysql
import pytest

import plugstore
from plugstore.backends import mysqlconn
from servers import require_server

HOST, PORT, USER, DB = "127.0.0.1", 3306, "root", "test"
OPTIONS: dict[str, Any] = {
    "host": HOST,
    "port": PORT,
    "user": USER,
    "password": "",
    "database": DB,
    "charset": "utf8mb4",
    "autocommit": True,
    "binary_prefix": True,
}


@pytest.fixture
def table() -> Iterator[str]:
    require_server("MariaDB", HOST, PORT)
    name = f"mc_{uuid.uuid4().hex[:12]}"
    yield name
    with pymysql.connect(**OPTIONS) as conn, conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS `{name}`")


def _results(conn: Any, statements: list[tuple[str, Any]]) -> list[tuple[Any, Any, int]]:
    out = []
    with conn.cursor() as cur:
        for query, params in statements:
            affected = cur.execute(query, params)
            out.append((cur.description, cur.fetchall(), affected))
    return out


def test_results_read_exactly_as_pymysql_reads_them(table: str) -> None:
    """Every column type the backend (or a caller of its connection) meets, twice over (the
    second time from the cache), reads as PyMySQL's own connection reads it."""
    assert mysqlconn.SUPPORTED, "this PyMySQL lacks what the cached parse needs"
    with pymysql.connect(**OPTIONS) as conn, conn.cursor() as cur:
        cur.execute(
            f"CREATE TABLE `{table}` (namespace VARCHAR(128) CHARACTER SET ascii NOT NULL, "
            "`key` VARBINARY(1024) NOT NULL, value LONGBLOB NOT NULL, "
            "version BIGINT NOT NULL DEFAULT 1, expires_at DOUBLE NULL, "
            "note TEXT CHARACTER SET utf8mb4, price DECIMAL(10, 2), at DATETIME(6), "
            "PRIMARY KEY (namespace, `key`))"
        )
        cur.executemany(
            "INSERT INTO {t} VALUES (%s, %s, %s, %s, %s, %s, %s, %s)".replace("{t}", table),
            [
                ("ns", "k\u00e9", b"\0\xff", 3, 1765000000.25, "caf\u00e9 \u20ac", "12.5",
                 "2026-01-02 03:04:05.678"),
                ("ns", "plain", b"{}", 1, None, None, None, None),
            ],
        )  # fmt: skip
    statements: list[tuple[str, Any]] = [
        ("SELECT value, expires_at FROM {t} WHERE namespace = %s AND `key` = %s",
         ("ns", "plain")),
        ("SELECT * FROM {t} ORDER BY `key`", None),
        ("SELECT `key`, value, expires_at FROM {t} WHERE `key` IN %s",
         (("plain", "k\u00e9"),)),
        ("SELECT count(*), SUM(version), MAX(price) FROM {t}", None),
        ("SELECT 1, -2.5, 'text', _binary'bin', NULL, JSON_OBJECT('a', 1), NOW() > 0",
         None),
        ("SELECT GET_LOCK(%s, 0), RELEASE_LOCK(%s)", ("mc-lock", "mc-lock")),
        ("UPDATE {t} SET version = version + 1 WHERE namespace = 'none'", None),
        ("SELECT @@max_allowed_packet, VERSION(), DATABASE()", None),
    ]  # fmt: skip
    statements = [(query.replace("{t}", table), params) for query, params in statements]
    statements += statements
    with pymysql.connect(**OPTIONS) as plain, mysqlconn.connect(**OPTIONS) as cached:
        assert type(cached) is mysqlconn.Connection
        assert _results(cached, statements) == _results(plain, statements)


def test_a_repeated_statement_reuses_its_parsed_descriptions(
    table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backend's connections parse a get's two column descriptions once, not per get
    (PyMySQL's own parses them every time: most of a get's client time)."""
    parsed: list[bytes] = []
    real = pymysql.connections.FieldDescriptorPacket  # type: ignore[attr-defined]

    class Counting(real):  # type: ignore[misc, valid-type]
        def __init__(self, data: bytes, encoding: str) -> None:
            parsed.append(data)
            super().__init__(data, encoding)

    monkeypatch.setattr(pymysql.connections, "FieldDescriptorPacket", Counting)
    with plugstore.open(f"mysql://{USER}@{HOST}:{PORT}/{DB}?table={table}&pool_max=1") as store:
        ns = store.namespace("n")
        ns["k"] = {"v": 1}
        assert ns["k"] == {"v": 1}
        before = len(parsed)
        for i in range(20):
            ns[f"k{i}"] = i
            assert ns[f"k{i}"] == i
            assert ns.get(f"absent{i}") is None
        assert len(parsed) == before  # every get after the first: no description parsed


def test_the_cache_stays_bounded(table: str) -> None:
    """Statements whose column names carry values (``SELECT GET_LOCK('name', 5)``) make
    new descriptions every time: the cache starts afresh instead of growing."""
    with mysqlconn.connect(**OPTIONS) as conn, conn.cursor() as cur:
        for i in range(mysqlconn.CACHE_SIZE + 50):
            cur.execute(f"SELECT {i}")
            assert cur.fetchall() == ((i,),)
            assert cur.description[0][0] == str(i)
        assert 0 < len(conn._plugstore_fields) <= mysqlconn.CACHE_SIZE


@pytest.mark.parametrize(
    "change",
    [
        # a release that drops what the cached parse overrides
        lambda mp: mp.delattr(pymysql.connections.MySQLResult, "_get_descriptions"),
        # a release it was not checked against (it may keep the private names but
        # change what they do)
        lambda mp: mp.setattr(pymysql, "VERSION", (9, 0, 0, "final")),
    ],
    ids=["private-pieces-gone", "unchecked-release"],
)
def test_a_pymysql_it_cannot_trust_gets_its_plain_connection(
    monkeypatch: pytest.MonkeyPatch, change: Any
) -> None:
    """On such a PyMySQL the backend connects with PyMySQL's own connection instead of
    failing or trusting a parse it does not know."""
    import importlib

    change(monkeypatch)
    try:
        importlib.reload(mysqlconn)
        assert not mysqlconn.SUPPORTED
        assert mysqlconn.connect is pymysql.connect
    finally:
        monkeypatch.undo()
        importlib.reload(mysqlconn)
    assert mysqlconn.SUPPORTED
    assert mysqlconn.connect is mysqlconn.Connection


def test_connections_share_one_default_tls_context(table: str) -> None:
    """PyMySQL's default "preferred" TLS context (verify nothing) is built once and shared:
    building it loads the system's CA bundle, 50 ms of CPU per connection with the GIL
    held.  Explicit ``ssl_*`` options still get a context of their own, as PyMySQL builds
    it."""
    import ssl

    first = mysqlconn.Connection(**OPTIONS)
    second = mysqlconn.Connection(**OPTIONS)
    try:
        if getattr(first, "ctx", None) is None:
            pytest.skip("this PyMySQL has no default TLS attempt (before 1.2)")
        assert second.ctx is first.ctx
        assert first.ctx.verify_mode == ssl.CERT_NONE
        assert not first.ctx.check_hostname
        with second.cursor() as cur:  # still a working connection
            cur.execute("SELECT 1")
            assert cur.fetchall() == ((1,),)
    finally:
        first.close()
        second.close()
    explicit = [
        mysqlconn.Connection(**OPTIONS, ssl_verify_cert=True, defer_connect=True) for _ in range(2)
    ]
    assert explicit[0].ctx is not explicit[1].ctx
    assert explicit[0].ctx is not first.ctx
    assert explicit[0].ctx.verify_mode == ssl.CERT_REQUIRED
