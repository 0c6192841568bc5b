"""The relational host: migrates every plugin at start-up, then hands out sessions.

>>> from plugstore.relational import RelationalHost
>>> with RelationalHost("memory://") as host:  # no plugins: nothing to do
...     host.start()
[]
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import partial
from types import TracebackType
from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from plugstore.errors import (
    BackendUnavailableError,
    ConfigurationError,
    StoreError,
    StoreNotOpenError,
)
from plugstore.url import StoreURL
from plugstore.userdata import UserDataHook, failing_hook

from . import migrations, versions
from .engines import DEFERRED, Database
from .plugin import RelationalPlugin, entry_point_plugins_named, unique

#: The lock every host takes before migrating (one name for every plugstore host).
LOCK_NAME = "plugstore.relational.migrations"
#: PostgreSQL advisory locks are numbers: this one is fixed (b"plugstore" as an int64).
PG_LOCK_KEY = int.from_bytes(b"plgstore", "big", signed=True)


class PluginDatabase:
    """One plugin's handle: its ``engine``, its ``metadata`` and :meth:`session`."""

    def __init__(self, plugin: RelationalPlugin, engine: Callable[[], Engine]) -> None:
        self.plugin = plugin
        self._engine_for = engine
        self._sessions: sessionmaker[Session] | None = None
        self._read_sessions: sessionmaker[Session] | None = None

    @property
    def engine(self) -> Engine:
        """The plugin's engine (made on first use: a start-up that only checks versions
        builds none)."""
        return self._engine_for()

    @property
    def name(self) -> str:
        return self.plugin.name

    @property
    def schema(self) -> str:
        return self.plugin.schema

    @property
    def metadata(self) -> Any:
        return self.plugin.metadata

    @contextmanager
    def session(self, *, readonly: bool = False) -> Iterator[Session]:
        """A :class:`~sqlalchemy.orm.Session` in a transaction: committed when the block
        ends, rolled back if it raises, always closed.

        On SQLite a transaction takes the plugin file's write lock when it begins, so
        that one that reads, then writes, waits for other writers instead of failing;
        ``readonly=True`` begins without it (readers never wait), for sessions that only
        read.
        """
        if readonly:
            if self._read_sessions is None:
                deferred = self.engine.execution_options(**{DEFERRED: True})
                self._read_sessions = sessionmaker(bind=deferred, expire_on_commit=False)
            factory = self._read_sessions
        else:
            if self._sessions is None:
                self._sessions = sessionmaker(bind=self.engine, expire_on_commit=False)
            factory = self._sessions
        with factory.begin() as session:
            yield session

    def user_data_hook(self) -> UserDataHook | None:
        """The plugin's :class:`~plugstore.relational.RelationalUserData` on these
        tables, ready to run (``None`` if it declares none).

        ``export`` runs in a read-only session; ``forget`` in one transaction, committed
        when it returns, or rolled back on a dry run or if it raises.
        """
        hooks = self.plugin.user_data
        if hooks is None:
            return None

        def export(user: str) -> Any:
            with self.session(readonly=True) as session:
                return hooks.export(session, user)

        def forget(user: str, dry_run: bool) -> Any:
            if self._sessions is None:
                self._sessions = sessionmaker(bind=self.engine, expire_on_commit=False)
            with self._sessions() as session:
                session.begin()
                try:
                    counts = hooks.forget(session, user)
                    session.flush()  # a dry run counts what the database would do
                except BaseException:
                    session.rollback()
                    raise
                if dry_run:
                    session.rollback()
                else:
                    session.commit()
                return counts

        return UserDataHook(self.name, export, forget)

    def __repr__(self) -> str:
        return f"<PluginDatabase {self.name} on {self.engine.url!r}>"


class RelationalHost:
    """The plugins' tables on one database: PostgreSQL, MariaDB or SQLite.

    ``url`` is a store URL (``sqlite:///path``, ``postgresql://...``, ``mysql://...``,
    ``memory://``); ``plugins`` are :class:`RelationalPlugin` objects; with
    ``entry_points=True`` the installed ones (entry-point group ``plugstore.relational``)
    are added.  :meth:`start` migrates them all to their heads; then ``host["name"]``
    is that plugin's :class:`PluginDatabase`.

    Two hosts starting at once, in any processes, apply each migration exactly once:
    they migrate under a database lock (PostgreSQL advisory lock, MariaDB ``GET_LOCK``,
    SQLite a write transaction on the plugin's file).  When every plugin is already at
    its head, start-up takes no lock and writes nothing.
    """

    def __init__(
        self,
        url: str | StoreURL,
        plugins: Iterable[RelationalPlugin] = (),
        *,
        entry_points: bool = False,
        lock_timeout: float = 60.0,
        echo: bool = False,
    ) -> None:
        self.database = Database.parse(url)
        found: list[RelationalPlugin] = list(plugins)
        #: Entry points that could not be loaded, one line each.
        self.problems: list[str] = []
        self._broken: list[tuple[str, str]] = []  # (entry-point name, problem)
        if entry_points:
            installed, self._broken = entry_point_plugins_named()
            self.problems = [line for _, line in self._broken]
            found += [p for p in installed if all(p.name != q.name for q in found)]
        self.plugins = unique(found)
        self.lock_timeout = lock_timeout
        self._echo = echo
        self._engines: dict[str | None, Engine] = {}
        self._handles: dict[str, PluginDatabase] = {}
        self._closed = False

    @property
    def url(self) -> StoreURL:
        return self.database.url

    @property
    def kind(self) -> str:
        """``"sqlite"``, ``"postgresql"`` or ``"mysql"``."""
        return self.database.kind

    def engine_for(self, plugin: RelationalPlugin) -> Engine:
        """The engine ``plugin``'s tables are reached through (shared on a server; on
        SQLite one per plugin file)."""
        if self._closed:
            raise StoreNotOpenError("the relational host is closed")
        key = plugin.schema if self.kind == "sqlite" else None
        engine = self._engines.get(key)
        if engine is None:
            engine = self.database.engine(key, echo=self._echo)
            self._engines[key] = engine
        return engine

    def add(self, plugin: RelationalPlugin) -> None:
        """Register one more plugin (before :meth:`start`)."""
        self.plugins = unique([*self.plugins, plugin])

    def start(self, names: Iterable[str] | None = None) -> list[migrations.Applied]:
        """Migrate every plugin (or those called ``names``) to its head and open it;
        return what was applied (nothing when all were at their heads).  A failing
        migration raises :class:`~plugstore.relational.MigrationError` naming the plugin
        and revision."""
        chosen = self.select(names)
        applied = self.upgrade([p.name for p in chosen])
        for plugin in chosen:
            self._handles[plugin.name] = PluginDatabase(plugin, partial(self.engine_for, plugin))
        return applied

    def upgrade(
        self, names: Iterable[str] | None = None, target: str = "heads"
    ) -> list[migrations.Applied]:
        """Migrate the plugins called ``names`` (default: all) to ``target`` under the
        migration lock; return what was applied."""
        chosen = self.select(names)
        if target == "heads":  # the fast path: who is behind, without Alembic
            cache = versions.load_cache()
            before = dict(cache)
            wanted = {p.name: versions.cached_heads(p, cache) for p in chosen}
            versions.save_cache(cache, before)
            at = self._versions(chosen)
            chosen = [p for p in chosen if at[p.name] != wanted[p.name]]
        return self._run_locked(
            chosen, lambda conn, p: migrations.upgrade(conn, p, self.kind, target)
        )

    def downgrade(self, name: str, target: str) -> migrations.Applied:
        """Migrate plugin ``name`` back to ``target`` (a revision, ``-1``, or ``base``)."""
        [plugin] = self.select([name])
        [applied] = self._run_locked(
            [plugin], lambda conn, p: migrations.downgrade(conn, p, self.kind, target)
        ) or [migrations.Applied(name, None, None, ())]
        return applied

    def status(self, names: Iterable[str] | None = None) -> list[migrations.Status]:
        """Where each plugin is: its revision, its head, how many revisions are pending."""
        rows = []
        chosen = self.select(names)
        at = self._versions(chosen)
        for plugin in chosen:
            script = migrations.script_directory(plugin)
            rows.append(migrations.status(plugin, script, at[plugin.name]))
        return rows

    def select(self, names: Iterable[str] | None) -> list[RelationalPlugin]:
        """The registered plugins called ``names`` (all when ``None``)."""
        if names is None:
            return list(self.plugins)
        by_name = {p.name: p for p in self.plugins}
        chosen = []
        for name in names:
            if name not in by_name:
                known = ", ".join(sorted(by_name)) or "none"
                raise ConfigurationError(f"no relational plugin {name!r} (registered: {known})")
            chosen.append(by_name[name])
        return chosen

    def _run_locked(
        self,
        plugins: list[RelationalPlugin],
        step: Callable[[Connection, RelationalPlugin], migrations.Applied],
    ) -> list[migrations.Applied]:
        applied: list[migrations.Applied] = []
        if not plugins:
            return applied
        if self.kind == "sqlite":
            for plugin in plugins:  # the plugin's own file is the lock
                with self._connect(plugin) as conn:
                    applied.append(step(conn, plugin))
        else:
            with self._connect(plugins[0]) as conn, self._locked(conn):
                for plugin in plugins:
                    applied.append(step(conn, plugin))
        return [a for a in applied if a.steps]

    def _versions(self, plugins: list[RelationalPlugin]) -> dict[str, tuple[str, ...]]:
        if not plugins:
            return {}
        try:
            return versions.read_versions(
                self.database, plugins, lambda: self.engine_for(plugins[0]).connect()
            )
        except (OperationalError, sqlite3.OperationalError) as exc:
            raise BackendUnavailableError(_unavailable(self, exc)) from None

    @contextmanager
    def _connect(self, plugin: RelationalPlugin) -> Iterator[Connection]:
        try:
            with self.engine_for(plugin).connect() as conn:
                yield conn
        except OperationalError as exc:
            raise BackendUnavailableError(_unavailable(self, exc)) from None

    @contextmanager
    def _locked(self, conn: Connection) -> Iterator[None]:
        """Hold the migration lock (PostgreSQL advisory lock, MariaDB ``GET_LOCK``) on
        ``conn``; a holder that dies releases it with its session."""
        deadline = time.monotonic() + self.lock_timeout
        if self.kind == "postgresql":
            take = text("SELECT pg_try_advisory_lock(:key)").bindparams(key=PG_LOCK_KEY)
            release = text("SELECT pg_advisory_unlock(:key)").bindparams(key=PG_LOCK_KEY)
        else:
            take = text("SELECT GET_LOCK(:name, 1)").bindparams(name=LOCK_NAME)
            release = text("SELECT RELEASE_LOCK(:name)").bindparams(name=LOCK_NAME)
        while not conn.execute(take).scalar():
            conn.commit()
            if time.monotonic() >= deadline:
                raise migrations.MigrationError(
                    f"another process has held the migration lock for more than "
                    f"{self.lock_timeout:g}s"
                )
            time.sleep(0.05)
        conn.commit()
        try:
            yield
        finally:
            if conn.in_transaction():
                conn.rollback()
            try:
                conn.execute(release)
                conn.commit()
            except DBAPIError:
                pass  # the connection is gone, and the lock with it

    def user_data_hooks(self) -> list[UserDataHook]:
        """The user-data hooks of every registered plugin that declares one, without
        migrating anything.

        A started plugin's hook runs on its tables.  Otherwise the plugin's revision is
        read: a plugin never migrated here keeps nothing (no hook); one at its head
        gets its hook; one behind its head, an entry point that could not be loaded, or
        a database that cannot be reached give a hook that fails saying why (see
        :func:`~plugstore.userdata.failing_hook`), so that no plugin is left out
        unseen.
        """
        hooks = [failing_hook(f"entry point {name}", line) for name, line in self._broken]
        declared = [p for p in self.plugins if p.user_data is not None]
        unstarted = [p for p in declared if p.name not in self._handles]
        try:
            at = self._versions(unstarted)
        except StoreError as exc:  # the database itself: no plugin's rows can be reached
            return hooks + [failing_hook(p.name, str(exc)) for p in declared]
        cache = versions.load_cache()
        before = dict(cache)
        for plugin in declared:
            handle = self._handles.get(plugin.name)
            if handle is None:
                if not at[plugin.name]:
                    continue  # no tables here: nothing stored about anyone
                try:
                    head = versions.cached_heads(plugin, cache)
                except Exception as exc:  # a broken migrations directory: this plugin only
                    reason = f"cannot read its migrations: {type(exc).__name__}: {exc}"
                    hooks.append(failing_hook(plugin.name, reason))
                    continue
                if at[plugin.name] != head:
                    current = ",".join(at[plugin.name])
                    reason = (
                        f"its tables in {self.url} are at revision {current}, not its head "
                        f"{','.join(head)}: run 'plugstore db upgrade' first"
                    )
                    hooks.append(failing_hook(plugin.name, reason))
                    continue
                handle = PluginDatabase(plugin, partial(self.engine_for, plugin))
            hook = handle.user_data_hook()
            if hook is not None:
                hooks.append(hook)
        versions.save_cache(cache, before)
        return hooks

    def __getitem__(self, name: str) -> PluginDatabase:
        if self._closed:
            raise StoreNotOpenError("the relational host is closed")
        try:
            return self._handles[name]
        except KeyError:
            if any(p.name == name for p in self.plugins):
                raise ConfigurationError(
                    f"plugin {name!r} is registered but the host has not started: "
                    "call start() first"
                ) from None
            raise KeyError(name) from None

    def session(self, name: str) -> Any:
        """Plugin ``name``'s :meth:`PluginDatabase.session`."""
        return self[name].session()

    def close(self) -> None:
        """Close every pooled connection.  Idempotent."""
        self._closed = True
        engines, self._engines = self._engines, {}
        for engine in engines.values():
            engine.dispose()

    def __enter__(self) -> RelationalHost:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _unavailable(host: RelationalHost, exc: Exception) -> str:
    orig = getattr(exc, "orig", exc)
    reason = str(orig).strip().splitlines()[0] if str(orig).strip() else "cannot connect"
    return f"cannot reach the plugin database {host.url}: {reason}"
