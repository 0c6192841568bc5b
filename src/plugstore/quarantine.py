"""Setting undecodable values aside instead of breaking the plugin that reads them.

A namespace opened with ``quarantine=True`` (every versioned namespace is) treats a value
its codec cannot decode -- a truncated write from an old version, bytes another program
put there -- as follows: the stored bytes are copied, exactly, into a record in the
namespace :data:`QUARANTINE_NAMESPACE`, the entry is deleted from the plugin's
namespace (a compare-and-set, so a concurrent rewrite is never lost), a warning naming
the namespace and key is logged, and the read carries on as if the key were absent.
``plugstore doctor`` lists the records, and :func:`restore` puts entries back.

A misconfigured store must not empty itself into quarantine: opened with the wrong codec
(or the wrong signing secret), *every* value fails to decode.  So before moving a value
aside, a few other values of the namespace are decoded as a sample; if there are some
and none of them decodes either, nothing is moved and the read raises
:class:`~plugstore.errors.DecodeError` saying the codec is probably wrong.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import DecodeError
from .locks import lock_digest
from .scopekeys import META_LEAD
from .steps import Steps, call, run

if TYPE_CHECKING:
    from .namespace import Namespace
    from .nscore import NamespaceCore
    from .store import Store

#: Where set-aside values are kept, one JSON record per value.
QUARANTINE_NAMESPACE = "_plugstore.quarantine"
#: How many other values are decoded to tell a bad value from a wrong codec.
SAMPLE_SIZE = 8

log = logging.getLogger("plugstore.quarantine")


@dataclass(frozen=True)
class QuarantinedEntry:
    """One set-aside value: where it was, its exact bytes, why and when."""

    record_key: str
    namespace: str
    key: str
    raw: bytes
    error: str
    when: str
    codec: str


def _codec_looks_wrong_steps(ns: NamespaceCore, key: str) -> Steps[int]:
    """How many other values were sampled if none of them decodes (a wrong codec or
    secret, probably), else 0."""
    sampled = 0
    for other, raw in (yield call(ns._bucket, "items_page", "", SAMPLE_SIZE + 2)):
        if other == key or other.startswith(META_LEAD):
            continue
        try:
            ns._codec.decode(raw)
        except DecodeError:
            sampled += 1
        else:
            return 0
    return sampled


def set_aside_steps(
    ns: NamespaceCore, key: str, raw: bytes, error: DecodeError
) -> Steps[bytes | None]:
    """Move the undecodable ``raw`` at ``key`` into quarantine and return what ``key``
    holds now: ``None`` once moved, or the newer bytes another writer stored meanwhile
    (nothing moved then).  Raises ``error`` (with a hint) if the codec looks wrong."""
    sampled = yield from _codec_looks_wrong_steps(ns, key)
    if sampled:
        raise DecodeError(
            f"{error} (key {key!r} of namespace {ns._name!r}); none of {sampled} other "
            f"values sampled decode with the {ns._codec.name!r} codec either, so the "
            "store is probably opened with the wrong codec or secret: nothing was set aside"
        ) from error
    records = ns._sibling(QUARANTINE_NAMESPACE)
    # Grouped by namespace and key; a random tail keeps concurrent set-asides apart.
    record_key = f"{ns._name}:{lock_digest(key, size=10)}:{secrets.token_hex(4)}"
    record = {
        "namespace": ns._name,
        "key": key,
        "raw": base64.b64encode(raw).decode("ascii"),
        "error": str(error),
        "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "codec": ns._codec.name,
    }
    yield call(records, "set", record_key, json.dumps(record).encode())  # the copy first
    if (yield call(ns._bucket, "cas", key, raw, None)):
        log.warning(
            "plugstore: the value of %r in namespace %r cannot be decoded (%s); it was "
            "moved to %s (see `plugstore doctor`) and reads as absent",
            key,
            ns._name,
            error,
            QUARANTINE_NAMESPACE,
        )
        return None
    yield call(records, "remove", record_key)  # rewritten meanwhile: keep the new value
    current: bytes | None = yield call(ns._bucket, "get", key)
    return current


def set_aside(ns: Namespace, key: str, raw: bytes, error: DecodeError) -> bytes | None:
    """:func:`set_aside_steps`, run with blocking calls."""
    return run(set_aside_steps(ns, key, raw, error))


def _parse(record_key: str, raw: bytes) -> QuarantinedEntry | None:
    try:
        fields: Any = json.loads(raw)
        return QuarantinedEntry(
            record_key=record_key,
            namespace=str(fields["namespace"]),
            key=str(fields["key"]),
            raw=base64.b64decode(fields["raw"], validate=True),
            error=str(fields.get("error", "")),
            when=str(fields.get("when", "")),
            codec=str(fields.get("codec", "")),
        )
    except (ValueError, KeyError, TypeError):
        return None  # not a record this version wrote: listed by nobody, touched by nobody


def entries(store: Store, namespace: str | None = None) -> Iterator[QuarantinedEntry]:
    """The quarantined entries of ``store`` (of one namespace, if given), oldest key
    order aside: in record-key order, i.e. grouped by namespace and key."""
    bucket = store.backend.bucket(QUARANTINE_NAMESPACE)
    prefix = "" if namespace is None else f"{namespace}:"
    for record_key, raw in bucket.items(prefix):
        entry = _parse(record_key, raw)
        if entry is not None and (namespace is None or entry.namespace == namespace):
            yield entry


def find(store: Store, record_key: str) -> QuarantinedEntry | None:
    """The quarantined entry stored under ``record_key``, or ``None`` if there is none
    (restored or discarded meanwhile, or not a record this version wrote)."""
    raw = store.backend.bucket(QUARANTINE_NAMESPACE).get(record_key)
    return None if raw is None else _parse(record_key, raw)


def discard(store: Store, entry: QuarantinedEntry) -> bool:
    """Drop a quarantined value for good; return whether its record was still there."""
    return store.backend.bucket(QUARANTINE_NAMESPACE).remove(entry.record_key)


def restore(store: Store, entry: QuarantinedEntry) -> bool:
    """Put a quarantined value back where it was, unless that key holds a value again;
    return whether it was restored.  The record is removed once restored."""
    target = store.backend.bucket(entry.namespace)
    if not target.cas(entry.key, None, entry.raw):
        return False
    store.backend.bucket(QUARANTINE_NAMESPACE).remove(entry.record_key)
    return True


__all__ = [
    "QUARANTINE_NAMESPACE",
    "QuarantinedEntry",
    "discard",
    "entries",
    "find",
    "restore",
    "set_aside",
]
