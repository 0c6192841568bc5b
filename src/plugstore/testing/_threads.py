"""A thread race for the conformance kit: start together, repeat a step, report errors."""

from __future__ import annotations

import threading
from collections.abc import Callable


def race_threads(threads: int, per_thread: int, step: Callable[[], object]) -> None:
    """Run ``step`` ``per_thread`` times in each of ``threads`` threads released together
    by a barrier; assert that none of them raised."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads)

    def work() -> None:
        try:
            barrier.wait()
            for _ in range(per_thread):
                step()
        except BaseException as exc:  # reported below
            errors.append(exc)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert errors == []
