"""Versioned namespaces: a plugin declares its data version, plugstore migrates old data.

``store.namespace("karma", version=2, migrations={2: to_v2})`` returns the namespace
once its data is at version 2:

* the version is stamped inside the namespace (the meta entry
  :data:`~plugstore.scopekeys.VERSION_KEY`, hidden from the mapping views), so dump,
  copy and drop carry it with the data;
* data at an older version is migrated step by step -- ``migrations[n]`` takes it from
  ``n - 1`` to ``n`` -- by whichever process opens it first, under the namespace's
  engine-held lock (renewed while the migration runs), and the version is stamped after
  each step, so a migration cut off midway resumes at the step it was in;
* an unstamped namespace holding data is version 1 (the layout before the plugin
  declared versions); an empty one is stamped at once, with nothing to migrate;
* data stamped newer than the code raises :class:`DataVersionError` -- the plugin would
  misread it.

Steps may run again after a crash midway, so each should tolerate finding part of its
work already done (move entries with ``pop``/``setdefault``-style operations, for one).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import ConfigurationError, DataVersionError, StoreError
from .keys import check_prefix, parse_counter
from .namespace import _ABSENT
from .scopekeys import META_LEAD, VERSION_KEY
from .steps import Steps, call, run

if TYPE_CHECKING:
    from .locks import Lock
    from .namespace import Namespace
    from .nscore import NamespaceCore

#: A migration runs with a lease this long, renewed every third of it.
MIGRATION_LEASE = 60.0
#: A migration step shows a progress bar (on stderr) from this many entries on.
PROGRESS_MIN = 10_000
#: Entries read per request by :meth:`Migration.items`.
_PAGE = 500

T = TypeVar("T")
log = logging.getLogger("plugstore.versioning")


class Migration:
    """What a migration step receives: the namespace and the versions it goes between.

    ``fn(m)`` upgrades the data of ``m.namespace`` from ``m.from_version`` to
    ``m.to_version``; :meth:`items` streams what is stored, with a progress bar for
    large namespaces.
    """

    def __init__(self, namespace: Namespace, from_version: int, to_version: int) -> None:
        self.namespace = namespace
        self.from_version = from_version
        self.to_version = to_version

    def __repr__(self) -> str:
        return (
            f"<Migration of {self.namespace.name!r} from {self.from_version} to {self.to_version}>"
        )

    def items(self, prefix: str = "") -> Iterator[tuple[str, Any]]:
        """Every stored ``(key, value)`` whose key starts with ``prefix``, as stored
        when this call began: plain keys, and scoped entries under their stored keys
        (:func:`plugstore.scopekeys.parse_scoped_key` reads them).  Writing and deleting
        while iterating is safe: keys written meanwhile are not visited, and a deleted
        key is skipped unless its page of values (500) had already been read."""
        ns = self.namespace
        keys = [k for k in ns._b().keys(check_prefix(prefix)) if not k.startswith(META_LEAD)]
        label = f"{ns.name}: v{self.from_version} -> v{self.to_version}"
        for start in self.progress(range(0, len(keys), _PAGE), len(keys), label, _PAGE):
            chunk = keys[start : start + _PAGE]
            found = ns._b().get_many(chunk)
            for key in chunk:
                raw = found.get(key)
                if raw is not None:
                    _, value = ns._load(key, raw)
                    if value is not _ABSENT:
                        yield key, value

    def progress(
        self, iterable: Iterable[T], total: int, label: str = "migrating", step: int = 1
    ) -> Iterator[T]:
        """Yield from ``iterable``, showing a progress bar on stderr when ``total`` is at
        least :data:`PROGRESS_MIN` (each item counts ``step`` toward ``total``)."""
        return progress(iterable, total, label, step)


def progress(
    iterable: Iterable[T], total: int, label: str = "migrating", step: int = 1
) -> Iterator[T]:
    """Yield from ``iterable``, showing a progress bar on stderr when ``total`` is at
    least :data:`PROGRESS_MIN` (each item counts ``step`` toward ``total``)."""
    if total < PROGRESS_MIN:
        yield from iterable
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task(label, total=total)
        for item in iterable:
            yield item
            bar.advance(task, step)
        bar.update(task, completed=total)


def read_version_steps(ns: NamespaceCore) -> Steps[int | None]:
    """The data version stamped in ``ns``, or ``None`` if it has none."""
    raw = yield call(ns._b(), "get", VERSION_KEY)
    if raw is None:
        return None
    try:
        return parse_counter(raw)
    except Exception as exc:
        raise StoreError(
            f"namespace {ns._name!r} holds an unreadable data version {raw[:20]!r}"
        ) from exc


def read_version(ns: Namespace) -> int | None:
    """The data version stamped in ``ns``, or ``None`` if it has none."""
    return run(read_version_steps(ns))


def stamp_steps(ns: NamespaceCore, version: int) -> Steps[None]:
    """Stamp ``version`` in ``ns`` (a counter: every codec reads it)."""
    yield call(ns._b(), "set", VERSION_KEY, str(version).encode("ascii"))


def start_steps(
    ns: NamespaceCore, version: int, migrations: Mapping[int, Any]
) -> Steps[int | None]:
    """Under the migration lock: the version to migrate from, or ``None`` when there is
    nothing to migrate (up to date, or empty and now stamped).  Raises for data that is
    too new or a missing migration."""
    found = yield from read_version_steps(ns)  # another process may have migrated meanwhile
    if found is None:
        bucket = ns._b()
        holds_data = (yield call(bucket, "count", "")) > (yield call(bucket, "count", META_LEAD))
        found = 1 if holds_data else version
        if found == version:
            yield from stamp_steps(ns, version)
            return None
    if found == version:
        return None
    if found > version:
        raise too_new(ns._name, found, version)
    missing = [n for n in range(found + 1, version + 1) if n not in migrations]
    if missing:
        raise ConfigurationError(
            f"namespace {ns._name!r} holds data version {found}; reaching {version} "
            f"needs migrations to {', '.join(map(str, missing))}, which were not given"
        )
    return found


def check_migrations(version: object, migrations: Mapping[int, Callable[[Migration], None]]) -> int:
    """Validate a declaration; return the version."""
    if type(version) is not int or version < 1:
        raise ConfigurationError(f"version must be an int >= 1, not {version!r}")
    for step, fn in migrations.items():
        if type(step) is not int or not 2 <= step <= version:
            raise ConfigurationError(
                f"migration keys are the versions they lead to, 2..{version}; got {step!r}"
            )
        if not callable(fn):
            raise ConfigurationError(f"migration to version {step} is not callable: {fn!r}")
    return version


def too_new(name: str, found: int, version: int) -> DataVersionError:
    """The error for data stamped ``found``, newer than the code's ``version``."""
    return DataVersionError(
        f"namespace {name!r} holds data version {found}, but this code knows versions "
        f"up to {version}: it was written by a newer release of the plugin (upgrade the "
        "plugin, or restore data from before the upgrade)"
    )


@contextmanager
def _renewing(lock: Lock, every: float) -> Iterator[None]:
    """Keep renewing ``lock``'s lease in a thread while the block runs."""
    stop = threading.Event()
    failure: list[BaseException] = []

    def renew() -> None:
        while not stop.wait(every):
            try:
                lock.renew()
            except BaseException as exc:  # reported when the block ends
                failure.append(exc)
                return

    thread = threading.Thread(target=renew, name="plugstore-migration-lease", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
    if failure:
        raise failure[0]


def migrate(
    ns: Namespace, version: int, migrations: Mapping[int, Callable[[Migration], None]]
) -> int:
    """Bring ``ns`` to ``version`` (see the module docs); return the version it was at."""
    found = read_version(ns)
    if found == version:
        return version
    if found is not None and found > version:
        raise too_new(ns.name, found, version)
    with ns.lock(VERSION_KEY, timeout=None, lease=MIGRATION_LEASE) as lock:
        start = run(start_steps(ns, version, migrations))
        if start is None:
            return version
        with _renewing(lock, MIGRATION_LEASE / 3):
            for step in range(start + 1, version + 1):
                log.info("migrating namespace %r from version %d to %d", ns.name, step - 1, step)
                migrations[step](Migration(ns, step - 1, step))
                run(stamp_steps(ns, step))
    return start


__all__ = [
    "PROGRESS_MIN",
    "DataVersionError",
    "Migration",
    "check_migrations",
    "migrate",
    "read_version",
]
