"""The process-local gate in front of every engine lock (plugstore.locks._Gate).

The conformance kit checks what users see on every backend; these check the gate's own
rules directly: first come first served, the timeout, and a holder whose lease ran out.
"""

from __future__ import annotations

import threading
import time

from plugstore.locks import _Gate


def _waiter(
    gate: _Gate, token: object, timeout: float | None, got: list[object]
) -> threading.Thread:
    def run() -> None:
        if gate.acquire(token, timeout):
            got.append(token)

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(0.05)  # queued before the next one arrives
    return thread


def test_release_hands_the_gate_to_the_longest_waiter() -> None:
    gate, owner, got = _Gate(), object(), []
    assert gate.acquire(owner, 0)
    a, b = object(), object()
    threads = [_waiter(gate, a, 5, got), _waiter(gate, b, 5, got)]
    assert not gate.acquire(object(), 0)  # taken, and a try does not queue
    gate.release(owner)
    threads[0].join(5)
    assert got == [a]  # b still waits: the gate went to a alone
    gate.release(a)
    threads[1].join(5)
    assert got == [a, b]
    gate.release(b)
    assert gate.acquire(object(), 0)  # free again


def test_a_waiter_gives_up_after_its_timeout() -> None:
    gate, owner = _Gate(), object()
    gate.acquire(owner, 0)
    started = time.monotonic()
    assert not gate.acquire(object(), 0.2)
    assert time.monotonic() - started >= 0.15
    gate.release(owner)
    assert gate.acquire(object(), 0)  # the quitter left no place behind


def test_a_lapsed_owner_is_passed_and_its_late_release_changes_nothing() -> None:
    gate, owner, got = _Gate(), object(), []
    gate.acquire(owner, 0)
    gate.hold_until(owner, time.monotonic() + 0.2)
    waiter = object()
    thread = _waiter(gate, waiter, 5, got)
    thread.join(5)
    assert got == [waiter]  # let through once the owner's lease ran out
    gate.release(owner)  # late: the gate is the waiter's now
    assert not gate.acquire(object(), 0)
    gate.release(waiter)
    assert gate.acquire(object(), 0)


def test_a_renewed_lease_keeps_waiters_out() -> None:
    gate, owner, got = _Gate(), object(), []
    gate.acquire(owner, 0)
    gate.hold_until(owner, time.monotonic() + 0.2)
    thread = _waiter(gate, object(), 5, got)
    gate.hold_until(owner, time.monotonic() + 60)  # renewed before it ran out
    time.sleep(0.4)
    assert got == []
    gate.release(owner)
    thread.join(5)
    assert len(got) == 1


def test_when_the_head_gives_up_the_next_waiter_passes_a_lapsed_owner() -> None:
    """The second waiter does not watch the owner's lease; once the head leaves, it
    heads the line and must pass the owner when its lease runs out, not only when its
    own (long) timeout ends."""
    gate, owner, got = _Gate(), object(), []
    gate.acquire(owner, 0)
    started = time.monotonic()
    gate.hold_until(owner, started + 0.5)
    quitter, patient = object(), object()
    threads = [_waiter(gate, quitter, 0.1, got), _waiter(gate, patient, 20, got)]
    for thread in threads:
        thread.join(30)
    assert got == [patient]
    assert time.monotonic() - started < 10  # at the lease's end, not at its timeout's
