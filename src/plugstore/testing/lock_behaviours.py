"""Conformance behaviours of the engine-held lock (``ns.lock``).

Mixed into :class:`plugstore.testing.StoreConformance`, whose fixtures and child-process
helpers these tests use.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, ClassVar

import pytest

from plugstore import (
    ConfigurationError,
    InvalidKeyError,
    LockLostError,
    LockTimeoutError,
    Namespace,
    Store,
    StoreError,
    StoreNotOpenError,
)
from plugstore.locks import LOCKS_NAMESPACE

from ._threads import race_threads

NS = "conformance"  # the kit's namespace: the store fixture drops it after each test


class LockBehaviours:
    """``ns.lock(key)`` excludes threads and processes, and a dead holder frees it."""

    #: Locked get-then-set increments per process in the 4-process race.
    lock_ops: ClassVar[int] = 500

    # provided by StoreConformance
    _need_multiprocess: Any
    _children: Any
    open_store: Any

    def test_lock_excludes_other_holders_and_times_out(self, store: Store, ns: Namespace) -> None:
        other_ns = store.namespace("conformance-other")
        with ns.lock("k", timeout=5) as lock:
            assert lock.held
            with pytest.raises(LockTimeoutError):
                ns.lock("k", timeout=0).acquire()
            started = time.monotonic()
            with pytest.raises(LockTimeoutError):
                ns.lock("k", timeout=0.3).acquire()
            assert time.monotonic() - started >= 0.25  # it waited, then gave up
            with ns.lock("k2", timeout=0), other_ns.lock("k", timeout=0):
                pass  # other keys, and the same key elsewhere, are other locks
            assert ns._bucket.count() == 0  # a lock is not data of its namespace
            assert LOCKS_NAMESPACE not in store.namespaces()
        assert not lock.held
        with ns.lock("k", timeout=0):
            pass  # released on exit

    def test_lock_misuse_is_refused(self, store: Store, ns: Namespace) -> None:
        lock = ns.lock("k")
        with pytest.raises(StoreError, match="not held"):
            lock.release()
        with lock, pytest.raises(StoreError, match="already held"):
            lock.acquire()
        bad_keys: list[Any] = ["", "a\x00", 1, None]
        for bad in bad_keys:
            with pytest.raises(InvalidKeyError):
                ns.lock(bad)
        with pytest.raises(ValueError, match="timeout"):
            ns.lock("k", timeout=-1)
        with pytest.raises(ValueError, match="lease"):
            ns.lock("k", lease=0)
        scope_lock = ns.scope(guild=1).lock("k", timeout=0)
        with scope_lock, ns.lock("k", timeout=0):
            pass  # a scope's key is another lock than the plain key
        store.close()
        with pytest.raises(StoreNotOpenError):
            ns.lock("k")
        with pytest.raises(StoreNotOpenError):
            scope_lock.acquire()

    def test_threads_locked_get_then_set_exact(self, ns: Namespace) -> None:
        threads, per_thread = 6, 40

        def step() -> None:
            with ns.lock("counter", timeout=60):
                value = ns.get("counter", 0)
                time.sleep(0)  # invite a switch inside the critical section
                ns["counter"] = value + 1

        race_threads(threads, per_thread, step)
        assert ns["counter"] == threads * per_thread

    def test_lease_runs_out_and_release_reports_the_loss(self, store: Store, ns: Namespace) -> None:
        if not store.backend.lease_locks:
            pytest.skip(f"{store.backend.name} locks end with the session, not a lease")
        first = ns.lock("k", lease=0.3).acquire()
        started = time.monotonic()
        with ns.lock("k", timeout=10):  # waits out the lease, then takes over
            assert time.monotonic() - started < 10
        with pytest.raises(LockLostError):
            first.release()

    def test_closing_a_store_frees_the_session_locks_it_holds(
        self, store: Store, ns: Namespace, store_url: str
    ) -> None:
        """Where locks are sessions, not leases, closing a store ends the sessions of
        the locks it still holds: another store takes them at once (not when the
        process exits), and the late release reports the loss."""
        if store.backend.lease_locks:
            pytest.skip(f"{store.backend.name} locks are leases: they run out, closed or not")
        holder = self.open_store(store_url)
        lock = holder.namespace(NS).lock("k", timeout=0).acquire()
        with pytest.raises(LockTimeoutError):
            ns.lock("k", timeout=0).acquire()
        holder.close()
        with ns.lock("k", timeout=5) as taken:
            assert taken.held
        with pytest.raises(LockLostError):
            lock.release()

    def test_a_lapsed_holder_releasing_late_frees_nothing(
        self, store: Store, ns: Namespace
    ) -> None:
        """A holder of this process whose lease ran out is taken over, here too (the
        queue in the process does not wait for it longer than the engine does), and its
        late release leaves the new holder's lock held."""
        if not store.backend.lease_locks:
            pytest.skip(f"{store.backend.name} locks end with the session, not a lease")
        first = ns.lock("k", lease=0.3).acquire()
        second = ns.lock("k", timeout=10).acquire()  # waits out the lease, then takes over
        with pytest.raises(LockLostError):
            first.release()
        with pytest.raises(LockTimeoutError):
            ns.lock("k", timeout=0).acquire()  # still the second holder's
        second.release()
        with ns.lock("k", timeout=0):
            pass

    def test_lock_serves_waiting_threads_in_arrival_order(self, ns: Namespace) -> None:
        """First come, first served among the threads of a process, on every engine:
        they queue in the process before the engine (and on the lease engines the entry's
        queue orders processes the same way)."""
        order: list[str] = []
        errors: list[BaseException] = []

        def take(name: str) -> None:
            try:
                with ns.lock("k", timeout=30):
                    order.append(name)
                    time.sleep(0.1)  # the next waiters poll meanwhile
            except BaseException as exc:
                errors.append(exc)

        holder = ns.lock("k").acquire()
        threads = [threading.Thread(target=take, args=(name,)) for name in "abcd"]
        for thread in threads:
            thread.start()
            time.sleep(0.3)  # each one queued before the next arrives
        holder.release()
        for thread in threads:
            thread.join(60)
        assert errors == []
        assert order == list("abcd")  # first come, first served

    def test_lock_waiters_do_not_starve_the_holder(self, store: Store, store_url: str) -> None:
        """Ten threads of one process take turns with one lock -- each takes it, reads,
        writes and releases -- on a store with a small connection pool (where the
        backend has one): waiting threads must not take the connections the holder
        needs for its own reads and writes.  No timing is asserted; on an engine where
        waiters starve the holder, its reads fail or the waiters time out."""
        small = self._open_small_pool(store_url)
        try:
            ns = small.namespace(NS)
            threads, rounds = 10, 3
            taken = [0] * threads
            errors: list[BaseException] = []
            barrier = threading.Barrier(threads)

            def work(index: int) -> None:
                try:
                    barrier.wait()
                    for _ in range(rounds):
                        with ns.lock("turns", timeout=60):
                            taken[index] += 1
                            value = ns.get("count", 0)
                            time.sleep(0.01)  # the others pile up behind the holder
                            ns["count"] = value + 1
                except BaseException as exc:  # reported below
                    errors.append(exc)

            pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
            for thread in pool:
                thread.start()
            for thread in pool:
                thread.join()
            assert errors == [], errors[:3]
            assert taken == [rounds] * threads  # every thread got its turns
            assert ns["count"] == threads * rounds
        finally:
            small.close()

    def _open_small_pool(self, store_url: str) -> Store:
        """The store under test with a 2-connection pool if the backend takes a
        ``pool_max`` option (fewer connections than the threads that use them)."""
        try:
            small: Store = self.open_store(store_url, pool_max=2)
        except ConfigurationError as exc:
            if "pool_max" not in str(exc):
                raise
            small = self.open_store(store_url)
        return small

    def test_forked_child_takes_a_lock_its_parent_held_at_the_fork(
        self, store: Store, ns: Namespace
    ) -> None:
        """The process-local queue in front of the engine lock is not inherited: a child
        forked while its parent held the lock takes it once the parent releases it."""
        self._need_multiprocess(store)
        if not hasattr(os, "fork"):
            pytest.skip("no fork on this platform")
        lock = ns.lock("k", timeout=5).acquire()
        readable, writable = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: wait for the parent's release, then take the lock
            code = 1
            try:
                os.close(writable)
                os.read(readable, 1)
                with ns.lock("k", timeout=20):
                    code = 0
            finally:
                os._exit(code)
        os.close(readable)
        lock.release()
        os.write(writable, b"x")
        os.close(writable)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        with ns.lock("k", timeout=5):
            pass  # and the parent's queue still works

    def test_a_forked_child_leaving_its_parents_lock_does_not_free_it(
        self, store: Store, ns: Namespace, store_url: str
    ) -> None:
        """A child forked inside a ``with ns.lock(...)`` block that leaves the block (or
        releases its copy), uses the store and closes it frees nothing: the lock stays
        the parent's, other holders keep waiting, and the parent's own release works."""
        self._need_multiprocess(store)
        if not hasattr(os, "fork"):
            pytest.skip("no fork on this platform")
        lock = ns.lock("k", timeout=5).acquire()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                lock.release()  # the child's copy: must not reach the engine
                ns.get("other")  # the child's own connections now
                store.close()  # ends the child's sessions, never the parent's
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        other = self.open_store(store_url)
        try:
            with pytest.raises(LockTimeoutError):
                other.namespace(ns.name).lock("k", timeout=0.3).acquire()
            lock.release()  # still ours: no LockLostError
            with other.namespace(ns.name).lock("k", timeout=5):
                pass
        finally:
            other.close()

    @pytest.mark.slow
    def test_processes_locked_get_then_set_exact(self, store: Store, ns: Namespace) -> None:
        from plugstore.testing import release_together

        self._need_multiprocess(store)
        spec = {"key": "locked", "n": self.lock_ops}
        release_together(self._children(store, "locked", [spec] * 4))
        assert ns["locked"] == 4 * self.lock_ops

    @pytest.mark.slow
    def test_lock_of_a_killed_holder_is_freed(self, store: Store, ns: Namespace) -> None:
        self._need_multiprocess(store)
        lease = 2.0
        (proc,) = self._children(store, "lock_holder", [{"key": "k", "lease": lease}])
        try:
            assert proc.stdout.readline().strip() == "held", proc.stderr.read()
            with pytest.raises(LockTimeoutError):
                ns.lock("k", timeout=0.2).acquire()  # really held by the child
        finally:
            proc.kill()  # SIGKILL: no release, no close
            proc.wait()
        killed = time.monotonic()
        with ns.lock("k", timeout=lease + 30):
            waited = time.monotonic() - killed
        # Freed at once when the session ends, or when the lease runs out: never later
        # (the slack covers a slow, shared machine).
        assert waited < lease + 5, waited
