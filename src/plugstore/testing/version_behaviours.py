"""Conformance behaviours of versioned namespaces, quarantine and lock renewal.

Mixed into :class:`plugstore.testing.StoreConformance`; the fixtures (``ns``, ``store``)
and child-process helpers come from there.  Versioning and quarantine are built on the
bucket contract and the engine lock, so these tests prove them on every backend.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from plugstore import (
    ConfigurationError,
    DataVersionError,
    DecodeError,
    LockLostError,
    LockTimeoutError,
    Namespace,
    Store,
    StoreError,
)
from plugstore.quarantine import QUARANTINE_NAMESPACE, entries, restore, set_aside
from plugstore.scopekeys import VERSION_KEY
from plugstore.versioning import Migration, migrate

#: Bytes no codec decodes: not JSON, not a pickle, not a stored integer, not signed.
GARBAGE = b"\x00\xffnot a value"
#: The namespace a version test declares.
VERSIONED = "conformance-versioned"


def _to_channels(m: Migration) -> None:
    """Version 2: every plain key moves into the scope channel="general"."""
    general = m.namespace.scope(channel="general")
    for key, value in m.items():
        if not key.startswith("\x1f"):
            general[key] = value
            del m.namespace[key]


def _doubled(m: Migration) -> None:
    """Version 3: every int in channel "general" is doubled."""
    general = m.namespace.scope(channel="general")
    for key, value in list(general.items()):
        general[key] = value * 2


def _refuse(m: Migration) -> None:
    raise AssertionError(f"{m!r} must not run")


class VersionBehaviours:
    """Versioned namespaces migrate once and stamp; undecodable values are set aside."""

    # provided by StoreConformance
    _need_multiprocess: Any
    _children: Any

    # -- versions -------------------------------------------------------------------------

    def test_versioned_namespace_migrates_step_by_step_and_stamps(self, store: Store) -> None:
        old = store.namespace(VERSIONED)
        old.update(alice=1, bob=2)
        ran: list[tuple[int, int]] = []

        def step(fn: Any) -> Any:
            def run(m: Migration) -> None:
                ran.append((m.from_version, m.to_version))
                fn(m)

            return run

        ns = store.namespace(
            VERSIONED, version=3, migrations={2: step(_to_channels), 3: step(_doubled)}
        )
        assert ran == [(1, 2), (2, 3)]  # unstamped data is version 1
        assert ns.data_version == 3
        assert dict(ns.scope(channel="general").items()) == {"alice": 2, "bob": 4}
        assert list(ns) == []
        assert len(ns) == 0
        assert ns._bucket.get(VERSION_KEY) == b"3"  # stored in the namespace itself
        assert ns.quarantine  # on by default for versioned namespaces
        # Up to date: nothing runs again, through the store or directly.
        again = store.namespace(VERSIONED, version=3, migrations={2: _refuse, 3: _refuse})
        assert again.data_version == 3
        assert migrate(ns, 3, {2: _refuse, 3: _refuse}) == 3
        # Plain clear and the global scope's clear_all keep the stamp.
        ns["plain"] = 1
        ns.clear()
        assert ns.scope().clear_all() == 2
        assert ns.data_version == 3
        assert ns._bucket.count() == 1
        assert VERSIONED in store.namespaces()  # dump and copy see it, stamp included

    def test_empty_namespace_is_stamped_without_migrating(self, store: Store) -> None:
        ns = store.namespace(VERSIONED, version=4, migrations={2: _refuse, 3: _refuse})
        assert ns.data_version == 4
        assert store.namespace("conformance-plain").data_version is None

    def test_data_newer_than_the_code_refuses_to_open(self, store: Store) -> None:
        store.namespace(VERSIONED, version=5)["k"] = "written by v5"
        for ns_version in (1, 4):
            with pytest.raises(DataVersionError, match=r"data version 5.*up to " + str(ns_version)):
                store.namespace(VERSIONED, version=ns_version)
        assert store.namespace(VERSIONED)["k"] == "written by v5"  # untouched

    def test_missing_or_bad_migrations_are_refused_before_anything_runs(self, store: Store) -> None:
        store.namespace(VERSIONED)["k"] = 1  # unstamped data: version 1
        with pytest.raises(ConfigurationError, match="migrations to 2"):
            store.namespace(VERSIONED, version=3, migrations={3: _refuse})
        plain = store.namespace(VERSIONED)
        assert plain.data_version is None
        assert plain["k"] == 1
        bad: list[tuple[Any, Any]] = [
            (0, {}),
            (True, {}),
            ("2", {}),
            (2.0, {}),
            (2, {1: _doubled}),
            (2, {3: _doubled}),
            (2, {"2": _doubled}),
            (2, {2: "not callable"}),
        ]
        for version, migrations in bad:
            with pytest.raises(ConfigurationError):
                store.namespace(VERSIONED, version=version, migrations=migrations)
        with pytest.raises(ValueError, match="version"):
            store.namespace(VERSIONED, migrations={2: _doubled})
        assert plain.data_version is None
        assert plain["k"] == 1

    def test_a_failed_step_keeps_the_last_stamp_and_frees_the_lock(self, store: Store) -> None:
        store.namespace(VERSIONED).update(alice=1)

        def broken(m: Migration) -> None:
            raise RuntimeError("step 3 broke")

        with pytest.raises(RuntimeError, match="step 3 broke"):
            store.namespace(VERSIONED, version=3, migrations={2: _to_channels, 3: broken})
        ns = store.namespace(VERSIONED)
        assert ns.data_version == 2  # step 2 is done and stamped
        with ns.lock(VERSION_KEY, timeout=0):
            pass  # the migration lock was released
        fixed = store.namespace(VERSIONED, version=3, migrations={2: _refuse, 3: _doubled})
        assert fixed.scope(channel="general")["alice"] == 2  # only step 3 ran

    @pytest.mark.slow
    def test_processes_opening_an_old_namespace_migrate_it_once(
        self, store: Store, ns: Namespace
    ) -> None:
        from plugstore.testing import release_together

        self._need_multiprocess(store)
        store.namespace(VERSIONED).update({f"k{i}": i for i in range(50)})
        spec = {"versioned": VERSIONED}
        outputs = release_together(self._children(store, "versioned", [spec] * 4))
        # Each child saw the migrated data; the migration ran in exactly one of them.
        assert [out.split() for out in outputs] == [["done", "50"]] * 4
        assert ns["migrations"] == 1
        assert store.namespace(VERSIONED).data_version == 2

    # -- quarantine -----------------------------------------------------------------------

    def test_undecodable_values_are_set_aside_and_read_as_absent(
        self, store: Store, caplog: pytest.LogCaptureFixture
    ) -> None:
        ns = store.namespace(VERSIONED, quarantine=True)
        ns.update(good=1, other=2)
        scope = ns.scope(user=7)
        scope["fine"] = "yes"
        bucket = ns._bucket
        reads: list[tuple[str, Any]] = [
            ("getitem", lambda: ns["bad"]),
            ("get", lambda: ns.get("bad", "dflt")),
            ("in-scan", lambda: dict(ns.items())),
            ("get_many", lambda: ns.get_many(["bad", "good"])),
            ("compute", lambda: ns.compute("bad", lambda v: v, "fresh")),
            ("pop", lambda: ns.pop("bad", "gone")),
            ("setdefault", lambda: ns.setdefault("bad", "dflt")),
            ("scope get", lambda: scope.get("bad", "dflt")),
            ("scope items", lambda: dict(scope.items())),
        ]
        expected = {
            "getitem": KeyError,
            "get": "dflt",
            "in-scan": {"good": 1, "other": 2},
            "get_many": {"good": 1},
            "compute": "fresh",
            "pop": "gone",
            "setdefault": "dflt",
            "scope get": "dflt",
            "scope items": {"fine": "yes"},
        }
        for label, read in reads:
            target = scope._full("bad") if label.startswith("scope") else "bad"
            bucket.set(target, GARBAGE)
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="plugstore.quarantine"):
                if expected[label] is KeyError:
                    with pytest.raises(KeyError):
                        read()
                else:
                    assert read() == expected[label], label
            assert any(repr(target) in r.getMessage() for r in caplog.records), label
            if label in ("compute", "setdefault"):
                assert bucket.get(target) is not None  # the read wrote a fresh value
                bucket.remove(target)
            assert bucket.get(target) is None, label
        found = list(entries(store, VERSIONED))
        assert len(found) == len(reads)
        assert {e.raw for e in found} == {GARBAGE}  # the exact bytes are kept
        assert {e.key for e in found} == {"bad", scope._full("bad")}
        assert all(e.namespace == VERSIONED and e.error for e in found)
        assert QUARANTINE_NAMESPACE not in store.namespaces()
        # Restoring puts the bytes back, unless the key holds a value again.
        first, second = found[0], found[1]
        assert restore(store, first)
        assert bucket.get(first.key) == GARBAGE
        bucket.set(second.key, b"1")
        assert not restore(store, second)
        assert bucket.get(second.key) == b"1"
        assert len(list(entries(store, VERSIONED))) == len(reads) - 1

    def test_without_quarantine_a_bad_value_raises_and_stays(self, ns: Namespace) -> None:
        ns["good"] = 1
        ns._bucket.set("bad", GARBAGE)
        assert not ns.quarantine
        for read in (lambda: ns["bad"], lambda: ns.get("bad"), lambda: dict(ns.items())):
            with pytest.raises(DecodeError):
                read()
        with pytest.raises(DecodeError):
            ns.pop("bad")  # decoded before deleting: nothing is lost
        assert ns._bucket.get("bad") == GARBAGE

    def test_a_wrong_codec_sets_nothing_aside(self, store: Store) -> None:
        ns = store.namespace(VERSIONED, quarantine=True)
        for key in ("a", "b", "c", "d"):
            ns._bucket.set(key, GARBAGE)  # every value unreadable: the codec is wrong
        with pytest.raises(DecodeError, match="wrong codec"):
            ns["a"]
        assert ns._bucket.count() == 4
        assert list(entries(store)) == []

    def test_a_value_rewritten_meanwhile_is_kept(self, store: Store) -> None:
        ns = store.namespace(VERSIONED, quarantine=True)
        ns["good"] = 1
        ns._bucket.set("k", GARBAGE)
        ns["k"] = "rewritten"  # after the bad read, before it is set aside
        now = set_aside(ns, "k", GARBAGE, DecodeError("bad"))
        assert now is not None
        assert store.codec.decode(now) == "rewritten"
        assert list(entries(store)) == []

    # -- lock renewal ---------------------------------------------------------------------

    def test_lock_renewal_extends_the_lease(self, ns: Namespace) -> None:
        lock = ns.lock("k", lease=1.0).acquire()
        time.sleep(0.6)
        lock.renew(lease=30)
        time.sleep(0.6)  # past the first lease: held only thanks to the renewal
        with pytest.raises(LockTimeoutError):
            ns.lock("k", timeout=0).acquire()
        lock.release()
        with pytest.raises(StoreError, match="not held"):
            lock.renew()
        with ns.lock("k", timeout=0) as again, pytest.raises(ValueError, match="lease"):
            again.renew(lease=0)

    def test_renewing_a_lost_lease_raises(self, store: Store, ns: Namespace) -> None:
        if not store.backend.lease_locks:
            pytest.skip(f"{store.backend.name} locks end with the session, not a lease")
        first = ns.lock("k", lease=0.3).acquire()
        with ns.lock("k", timeout=10), pytest.raises(LockLostError):  # taken over
            first.renew()
        with pytest.raises(LockLostError):
            first.release()
