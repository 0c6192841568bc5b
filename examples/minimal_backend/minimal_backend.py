"""A complete third-party plugstore backend in five bucket methods.

It keeps data in a process-local dict.  Everything else a Namespace offers (``incr``,
``compute``, ``mutable``, batches, streaming scans, ``len``) comes from the generic
versions in :class:`plugstore.Bucket`, built on ``cas``.  Register it with an entry
point in your package's ``pyproject.toml``::

    [project.entry-points."plugstore.backends"]
    minimal = "minimal_backend:MinimalBackend"

or ship ``minimal.plug`` beside this file and point ``PLUGSTORE_PLUGIN_PATH`` here.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from plugstore import Backend, Bucket, Options, StoreURL


class MinimalBucket(Bucket):
    backend: MinimalBackend

    def get(self, key: str) -> bytes | None:
        with self.backend.lock:
            return self.backend.data.get((self.namespace, key))

    def set(self, key: str, value: bytes) -> None:
        with self.backend.lock:
            self.backend.data[(self.namespace, key)] = value

    def remove(self, key: str) -> bool:
        with self.backend.lock:
            return self.backend.data.pop((self.namespace, key), None) is not None

    def cas(self, key: str, expected: bytes | None, new: bytes | None) -> bool:
        with self.backend.lock:
            if self.backend.data.get((self.namespace, key)) != expected:
                return False
            if new is None:
                self.backend.data.pop((self.namespace, key), None)
            else:
                self.backend.data[(self.namespace, key)] = new
            return True

    def keys(self, prefix: str = "") -> Iterator[str]:
        with self.backend.lock:  # a snapshot: safe to delete while the caller iterates
            snapshot = [k for ns, k in self.backend.data if ns == self.namespace]
        snapshot.sort()  # the contract: code point order (Python compares str that way)
        return (k for k in snapshot if k.startswith(prefix))


class MinimalBackend(Backend):
    name = "minimal"

    def __init__(self, url: StoreURL, options: Options) -> None:
        super().__init__(url, options)
        self.data: dict[tuple[str, str], bytes] = {}
        self.lock = threading.Lock()

    def open(self) -> None:
        self.data = {}

    def close(self) -> None:
        self.data = {}

    def bucket(self, namespace: str) -> MinimalBucket:
        return MinimalBucket(self, namespace)

    def namespaces(self) -> list[str]:
        with self.lock:
            return sorted({ns for ns, _ in self.data})
