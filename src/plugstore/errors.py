"""The exception hierarchy.

Every error plugstore raises on purpose derives from :class:`StoreError`.  Where a
builtin exception already carries the meaning (a bad key is a ``ValueError``, an
unencodable value a ``TypeError``), the specific class derives from it too, so code
written against plain dicts keeps working.  A missing key is a plain ``KeyError``.

The lifecycle names (``StoreNotOpenError``, ``StoreAlreadyOpenError``) are the ones
Errbot's storage layer uses, so adapters can re-raise them unchanged.
"""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every plugstore error."""


class StoreNotOpenError(StoreError):
    """The store (or namespace) is closed: open it, or stop using it after close()."""


class StoreAlreadyOpenError(StoreError):
    """open() was called on a store that is already open."""


class ConflictError(StoreError):
    """A concurrent writer changed the value between read and write.

    Raised by ``Namespace.mutable`` when its atomic write-back loses the race, and by
    ``Namespace.compute`` after it ran out of retries.  Nothing was written.
    """


class LockTimeoutError(StoreError, TimeoutError):
    """A lock stayed taken by another holder for the whole timeout."""


class LockLostError(StoreError):
    """A lock was taken from its holder before release (lease run out, connection lost).

    The critical section it guarded may have overlapped with another holder's.
    """


class DataVersionError(StoreError):
    """A namespace holds data stamped with a version newer than the code declares."""


class InvalidKeyError(StoreError, ValueError):
    """A key is not acceptable on every backend (type, empty, NUL, length, encoding)."""


class UndeclaredKeyError(InvalidKeyError):
    """A strict scope level was asked for a key that has no registered default."""


class InvalidNamespaceError(StoreError, ValueError):
    """A namespace name is not acceptable (see ``plugstore.keys`` for the rules)."""


class ValueTooLargeError(StoreError, ValueError):
    """The encoded value exceeds the backend's size limit.  Nothing was written."""


class CodecError(StoreError):
    """Base class of encoding and decoding failures."""


class EncodeError(CodecError, TypeError):
    """The codec cannot represent this value.  Nothing was written."""


class DecodeError(CodecError, ValueError):
    """Stored bytes cannot be decoded by this codec (wrong codec, corrupt or tampered)."""


class NotAnIntegerError(StoreError, TypeError):
    """``incr`` met a stored value that is not a 64-bit integer, or would overflow one."""


class ConfigurationError(StoreError, ValueError):
    """A URL or option is malformed or contradictory."""


class BackendNotFoundError(StoreError, LookupError):
    """No backend is registered under this name or URL scheme."""


class MissingDependencyError(BackendNotFoundError, ImportError):
    """The backend exists but its optional dependencies are not installed.

    The message carries the exact ``pip install`` line that fixes it.
    """


class BackendUnavailableError(StoreError, ConnectionError):
    """The engine cannot be reached or used (refused, timed out, locked, unwritable)."""


class StoreDamagedError(BackendUnavailableError):
    """The store's files are damaged (a corrupt page, a torn index): plugstore refuses to
    guess what they held.  The message names the file and what to do: restore it from a
    backup, or save what is still readable (``plugstore dump``) and repair the rest."""


class PoolExhaustedError(BackendUnavailableError):
    """Every connection of a client-side pool stayed in use for the whole wait.

    The engine itself may be fine: this process asked for more connections at once than
    its pool holds.  The message names the pool, its size and the option that raises
    it.  A :class:`BackendUnavailableError`, as pool exhaustion was reported before it
    had its own class.
    """


class NotReplicatedError(BackendUnavailableError):
    """A write was applied, but fewer replicas than asked for confirmed it in time.

    Raised by a Redis Cluster store opened with ``wait=N`` when ``WAIT`` counts fewer
    than N replicas within ``wait_timeout``: the master holds the write (readers see
    it), but it may be lost if that master fails before a replica has it.  Running an
    idempotent write again is safe; an ``incr`` may have been counted.
    """


class ExpiryNotSupportedError(StoreError, NotImplementedError):
    """A ``ttl`` was given, but the store's backend cannot expire keys.

    Every built-in backend can; a third-party one says so with ``Backend.expiry = True``.
    Nothing was written.
    """


class BatchNotAtomicError(StoreError):
    """A batch asked to be atomic cannot be made atomic on this store.

    The backend has no atomic batch (``Backend.atomic_batches`` is false), or the batch
    exceeds what the engine can do in one transaction (DynamoDB: 100 items, 4 MB).
    Nothing was written: split the batch, or pass ``atomic=False`` to apply it in steps.
    """


__all__ = [
    "BackendNotFoundError",
    "BackendUnavailableError",
    "BatchNotAtomicError",
    "CodecError",
    "ConfigurationError",
    "ConflictError",
    "DecodeError",
    "EncodeError",
    "ExpiryNotSupportedError",
    "InvalidKeyError",
    "InvalidNamespaceError",
    "LockLostError",
    "LockTimeoutError",
    "MissingDependencyError",
    "NotAnIntegerError",
    "NotReplicatedError",
    "PoolExhaustedError",
    "StoreAlreadyOpenError",
    "StoreDamagedError",
    "StoreError",
    "StoreNotOpenError",
    "UndeclaredKeyError",
    "ValueTooLargeError",
]
