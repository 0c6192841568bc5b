"""SQLAlchemy engines for plugin schemas, made from plugstore store URLs.

The same store URL that opens a key-value store names the database the plugins' tables
live in:

* ``postgresql://...``: one engine; each plugin's schema is a PostgreSQL schema.
* ``mysql://`` / ``mariadb://...``: one engine; each plugin's schema is a database of
  its own on the same server (MariaDB's schemas are databases).
* ``sqlite:///path/store.sqlite3``: each plugin's schema is a file beside the store's
  file, ``store.pl_<name>.sqlite3``, attached as ``pl_<name>`` on every connection.
  SQLite lets a connection attach only a few files (10 in common builds), so each
  plugin has its own small pool whose connections attach just that plugin's file; a
  write transaction then locks only that plugin's file, never the key-value store.
* ``memory://`` (or ``sqlite://``): the same, in memory, for tests and throwaway runs.

An SQLite transaction starts with ``BEGIN IMMEDIATE`` (the write lock up front): with
``BEGIN`` a transaction that reads, then writes, fails at once with "database is locked"
when another process wrote in between; with the lock taken up front it waits
(``timeout``, default 30 s) like any other writer.  So transactions on one plugin's file
run one at a time: keep them short.  Read-only work uses the execution option
:data:`DEFERRED` (``session(readonly=True)``), whose plain ``BEGIN`` never waits (WAL).

Engines are fork-safe: a forked child drops the pooled connections it inherited (without
closing them, which would close the parent's) and opens its own.
"""

from __future__ import annotations

import os
import random
import sqlite3
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Engine, create_engine, event
from sqlalchemy.pool import QueuePool, StaticPool

from plugstore.errors import ConfigurationError
from plugstore.url import StoreURL

from .names import plugin_of_schema

#: Store options that configure the key-value table, not the plugins' databases.
_KEY_VALUE_ONLY = frozenset(
    {
        "schema",
        "table",
        "retry_timeout",
        "pool_min",
        "synchronous",
        "codec",
        "secret",
        "secret_env",
        "max_value_size",
        "plugin_dirs",
    }
)
_MYSQL_SSL = ("ssl_ca", "ssl_cert", "ssl_key", "ssl_verify_cert", "ssl_verify_identity")
_FORK_SAFE: weakref.WeakSet[Engine] = weakref.WeakSet()
#: Execution option: on SQLite, begin without the write lock (read-only work).
DEFERRED = "plugstore_deferred"


@dataclass(frozen=True)
class Database:
    """Where plugin schemas live, parsed from a store URL.

    ``kind`` is ``"sqlite"``, ``"postgresql"`` or ``"mysql"``; ``path`` is the SQLite
    store file (``None`` in memory).
    """

    kind: str
    url: StoreURL
    path: Path | None = None
    timeout: float = 30.0
    pool_size: int = 5
    connect_args: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def parse(cls, url: str | StoreURL) -> Database:
        """Parse a store URL; :class:`ConfigurationError` for one with no SQL behind it."""
        parsed = url if isinstance(url, StoreURL) else StoreURL.parse(url)
        name = parsed.backend_name
        query = {k: v for k, v in parsed.query.items() if k not in _KEY_VALUE_ONLY}
        pool_size = _number(query.pop("pool_max", "5"), "pool_max", int)
        if name == "memory" or (name == "sqlite" and parsed.path in ("", ":memory:")):
            _no_options(query, parsed)
            return cls("sqlite", parsed, None, pool_size=1)
        if name == "sqlite":
            timeout = _number(query.pop("timeout", "30"), "timeout", float)
            path = Path(os.path.expanduser(query.pop("path", parsed.file_path)))
            _no_options(query, parsed)
            return cls("sqlite", parsed, path, timeout, pool_size)
        if name in ("postgresql", "postgres"):
            # The libpq parameters the key-value backend passes through, and no others.
            from plugstore.backends.postgresql import LIBPQ_PASSTHROUGH

            unknown = set(query) - LIBPQ_PASSTHROUGH - {"connect_timeout"}
            _no_options(dict.fromkeys(unknown), parsed)
            return cls("postgresql", parsed, pool_size=pool_size, connect_args=_pg_args(query))
        if name in ("mysql", "mariadb"):
            args = _mysql_args(query, parsed)
            return cls("mysql", parsed, pool_size=pool_size, connect_args=args)
        raise ConfigurationError(
            f"{parsed.backend_name}:// stores have no SQL database for plugin tables: use a "
            "sqlite://, postgresql:// or mysql:// URL"
        )

    @property
    def driver_url(self) -> URL:
        """The SQLAlchemy URL (the password is masked whenever it is printed)."""
        u = self.url
        if self.kind == "postgresql":
            return URL.create(
                "postgresql+psycopg", u.username, u.password, u.host, u.port, u.path or None
            )
        if self.kind == "mysql":
            password = dict(self.connect_args).get("password", u.password)
            return URL.create(
                "mysql+pymysql",
                u.username,
                password,
                u.host or "localhost",
                u.port,
                u.path or None,
                {"charset": "utf8mb4"},
            )
        return URL.create("sqlite+pysqlite", database=":memory:")

    def file_for(self, schema: str) -> str:
        """The SQLite file holding ``schema`` (``":memory:"`` for an in-memory store)."""
        if self.path is None:
            return ":memory:"
        suffix = self.path.suffix or ".sqlite3"
        return str(self.path.with_name(f"{self.path.stem}.{schema}{suffix}"))

    def engine(self, schema: str | None = None, *, echo: bool = False) -> Engine:
        """A new pooled engine: for the server, or (SQLite) for ``schema``'s file."""
        if self.kind == "sqlite":
            if schema is None:
                raise ValueError("an SQLite engine is made for one plugin schema")
            engine = self._sqlite_engine(schema, echo)
        else:
            extra: dict[str, Any] = {}
            if self.kind == "mysql":
                # MariaDB drops idle connections after wait_timeout (8 h by default).
                extra = {"pool_pre_ping": True, "pool_recycle": 3600}
            engine = create_engine(
                self.driver_url,
                connect_args={k: v for k, v in self.connect_args if k != "password"},
                pool_size=self.pool_size,
                echo=echo,
                **extra,
            )
        _FORK_SAFE.add(engine)
        return engine

    def _sqlite_engine(self, schema: str, echo: bool) -> Engine:
        target = self.file_for(schema)
        timeout = self.timeout

        def connect() -> sqlite3.Connection:
            conn = sqlite3.connect(
                ":memory:", timeout=timeout, isolation_level=None, check_same_thread=False
            )
            try:
                _attach(conn, target, schema, timeout)
            except BaseException:
                conn.close()
                raise
            return conn

        if target == ":memory:":
            # One connection for the engine's life: an in-memory database lives as
            # long as the connection that made it.
            engine = create_engine(
                self.driver_url, creator=connect, poolclass=StaticPool, echo=echo
            )
        else:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(
                self.driver_url,
                creator=connect,
                poolclass=QueuePool,
                pool_size=self.pool_size,
                echo=echo,
            )

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            deferred = conn.get_execution_options().get(DEFERRED)
            conn.exec_driver_sql("BEGIN" if deferred else "BEGIN IMMEDIATE")

        return engine


def _attach(conn: sqlite3.Connection, target: str, schema: str, timeout: float) -> None:
    """Attach ``target`` as ``schema`` and set it up (WAL, foreign keys).

    ``schema`` is a checked plugin schema name; the file name is a bound parameter.
    Switching a new file to WAL takes a lock SQLite's busy handler does not wait for,
    so that step is retried until the timeout, as the key-value backend does.
    """
    if plugin_of_schema(schema) is None:  # never reached with a checked name
        raise ValueError(f"not a plugin schema: {schema!r}")
    conn.execute(f'ATTACH DATABASE ? AS "{schema}"', (target,))
    conn.execute("PRAGMA foreign_keys = ON")
    if target == ":memory:":
        return
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn.execute(f'PRAGMA "{schema}".journal_mode = WAL')
            conn.execute(f'PRAGMA "{schema}".synchronous = NORMAL')
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(random.uniform(0.005, 0.05))


def _pg_args(query: dict[str, str]) -> tuple[tuple[str, Any], ...]:
    args: dict[str, Any] = dict(query)
    args["connect_timeout"] = int(_number(query.get("connect_timeout", "5"), "timeout", float))
    return tuple(sorted(args.items()))


def _mysql_args(query: dict[str, str], url: StoreURL) -> tuple[tuple[str, Any], ...]:
    args: dict[str, Any] = {
        "connect_timeout": _number(query.pop("connect_timeout", "5"), "connect_timeout", float)
    }
    if "read_timeout" in query:
        args["read_timeout"] = _number(query.pop("read_timeout"), "read_timeout", float)
    if "unix_socket" in query:
        args["unix_socket"] = query.pop("unix_socket")
    if "password" in query:
        args["password"] = query.pop("password")
    ssl = {name: query.pop(name) for name in _MYSQL_SSL if name in query}
    if query.pop("ssl_disabled", "").lower() in ("1", "true", "yes"):
        ssl = {}
    elif ssl:
        args["ssl"] = {
            k: (v.lower() in ("1", "true", "yes") if k.startswith("ssl_verify") else v)
            for k, v in ssl.items()
        }
    _no_options(query, url)
    return tuple(sorted(args.items(), key=lambda kv: kv[0]))


def _number(text: str, name: str, kind: type[int] | type[float]) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise ConfigurationError(f"option {name!r} must be a number, not {text!r}") from None
    if value <= 0:
        raise ConfigurationError(f"option {name!r} must be positive")
    return value


def _no_options(query: dict[str, Any], url: StoreURL) -> None:
    if query:
        names = ", ".join(sorted(query))
        raise ConfigurationError(f"unknown option(s) for plugin databases in {url}: {names}")


def _forget_inherited_connections() -> None:
    for engine in list(_FORK_SAFE):
        engine.dispose(close=False)


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_forget_inherited_connections)
