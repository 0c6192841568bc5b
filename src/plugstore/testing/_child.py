"""Worker processes for the conformance kit's multi-process and crash tests.

Run as ``python -m plugstore.testing._child MODE`` with the JSON spec in the environment
variable ``PLUGSTORE_CHILD_SPEC`` (not argv: it holds the unmasked URL).  It holds the
store URL, options, an optional preamble (code that registers a third-party backend in
the child) and the mode's parameters.  Workers print ``ready``, wait for a line on stdin
(so racers start together), work, and report on stdout.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import plugstore
from plugstore.versioning import Migration


def _open(spec: dict[str, Any]) -> plugstore.Store:
    if spec.get("preamble"):
        exec(spec["preamble"], {"__name__": "__plugstore_child__"})  # noqa: S102 - the test author's own setup code
    return plugstore.open(spec["url"], **spec.get("options", {}))


def incr(spec: dict[str, Any]) -> None:
    """``n`` increments of one key (``incr`` or ``compute``)."""
    with _open(spec) as store:
        ns = store.namespace(spec["namespace"])
        print("ready", flush=True)
        sys.stdin.readline()
        for _ in range(spec["n"]):
            if spec.get("how") == "compute":
                ns.compute(spec["key"], lambda v: v + 1, 0)
            else:
                ns.incr(spec["key"])
        print("done", flush=True)


def add(spec: dict[str, Any]) -> None:
    """``ns.add(prefix<i>, who)`` for i in 0..n-1; print the keys this process won."""
    with _open(spec) as store:
        ns = store.namespace(spec["namespace"])
        print("ready", flush=True)
        sys.stdin.readline()
        keys = [f"{spec['prefix']}{i}" for i in range(spec["n"])]
        won = [key for key in keys if ns.add(key, spec["who"])]
        print(" ".join(won), flush=True)


def locked(spec: dict[str, Any]) -> None:
    """``n`` get-then-set increments of one key, each inside ``ns.lock(key)``."""
    with _open(spec) as store:
        ns = store.namespace(spec["namespace"])
        print("ready", flush=True)
        sys.stdin.readline()
        key = spec["key"]
        for _ in range(spec["n"]):
            with ns.lock(key, timeout=120):
                ns[key] = ns.get(key, 0) + 1
        print("done", flush=True)


def lock_holder(spec: dict[str, Any]) -> None:
    """Take ``ns.lock(key, lease=...)``, say ``held``, and wait to be killed."""
    with _open(spec) as store:
        ns = store.namespace(spec["namespace"])
        lock = ns.lock(spec["key"], timeout=30, lease=spec["lease"]).acquire()
        print("held", flush=True)
        sys.stdin.readline()
        lock.release()


def versioned(spec: dict[str, Any]) -> None:
    """Open namespace ``versioned`` at version 2 (its data is unstamped): the migration
    counts its runs in ``namespace`` and moves every key into scope ``v=2``; print how
    many keys that scope then holds."""
    with _open(spec) as store:
        runs = store.namespace(spec["namespace"])

        def to_v2(m: Migration) -> None:
            runs.incr("migrations")
            time.sleep(0.3)  # hold the lock while the others arrive
            for key, value in m.items():
                m.namespace.scope(v=2)[key] = value
                del m.namespace[key]

        print("ready", flush=True)
        sys.stdin.readline()
        ns = store.namespace(spec["versioned"], version=2, migrations={2: to_v2})
        print("done", len(ns.scope(v=2)), flush=True)


def writer(spec: dict[str, Any]) -> None:
    """Write ``prefix<i>`` keys forever, printing ``i`` once each write has returned."""
    with _open(spec) as store:
        ns = store.namespace(spec["namespace"])
        print("ready", flush=True)
        pad = "x" * spec.get("pad", 100)
        i = 0
        while True:
            ns[f"{spec['prefix']}{i}"] = {"i": i, "pad": pad}
            if i % 7 == 0:
                ns.incr(f"{spec['prefix']}counter")
            print(i, flush=True)
            i += 1


def replacer(spec: dict[str, Any]) -> None:
    """Replace scopes ``guild=1, member=1`` and ``member=2`` with the conformance kit's
    alternating generations, rounds 1..n: odd rounds one scope then the other, even
    rounds one batch of both; while another process reads them."""
    from .scope_ops_behaviours import generation

    with _open(spec) as store:
        ns = store.namespace(spec["namespace"])
        scope, twin = ns.scope(guild=1, member=1), ns.scope(guild=1, member=2)
        print("ready", flush=True)
        sys.stdin.readline()
        for n in range(1, spec["n"] + 1):
            if n % 2:
                scope.replace(generation(n))
                twin.replace(generation(n))
            else:
                with ns.batch() as batch:
                    batch.replace(scope, generation(n))
                    batch.replace(twin, generation(n))
        print("done", flush=True)


def async_incr(spec: dict[str, Any]) -> None:
    """``tasks`` asyncio tasks, each making ``n`` increments of one key with
    ``plugstore.aio``."""
    import asyncio

    async def work(ns: Any) -> None:
        for _ in range(spec["n"]):
            await ns.incr(spec["key"])

    asyncio.run(_async_race(spec, work))


def async_locked(spec: dict[str, Any]) -> None:
    """``tasks`` asyncio tasks, each making ``n`` get-then-set increments of one key
    inside ``ns.lock(key)``, with ``plugstore.aio``."""
    import asyncio

    async def work(ns: Any) -> None:
        key = spec["key"]
        for _ in range(spec["n"]):
            async with ns.lock(key, timeout=120):
                await ns.set(key, await ns.get(key, 0) + 1)

    asyncio.run(_async_race(spec, work))


async def _async_race(spec: dict[str, Any], work: Any) -> None:
    import asyncio

    import plugstore.aio

    if spec.get("preamble"):
        exec(spec["preamble"], {"__name__": "__plugstore_child__"})  # noqa: S102 - the test author's own setup code
    async with plugstore.aio.open(spec["url"], **spec.get("options", {})) as store:
        ns = store.namespace(spec["namespace"])
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        await asyncio.gather(*(work(ns) for _ in range(spec["tasks"])))
    print("done", flush=True)


def apply(spec: dict[str, Any]) -> None:
    """Once released, apply ``ops`` (``["set", key, value]``, ``["delete", key]``,
    ``["expire", key, seconds]``, ``["scope_set", {level: id}, key, value]``) in order,
    then print ``done``: another process's writes, for readers that cache."""
    with _open(spec) as store:
        ns = store.namespace(spec["namespace"])
        print("ready", flush=True)
        sys.stdin.readline()
        for op, *args in spec["ops"]:
            if op == "set":
                ns[args[0]] = args[1]
            elif op == "delete":
                del ns[args[0]]
            elif op == "expire":
                ns.expire(args[0], args[1])
            elif op == "scope_set":
                ns.scope(**args[0])[args[1]] = args[2]
            else:
                raise ValueError(f"unknown op {op!r}")
        print("done", flush=True)


def main() -> None:
    mode, raw = sys.argv[1], os.environ["PLUGSTORE_CHILD_SPEC"]
    modes = {
        "incr": incr,
        "add": add,
        "writer": writer,
        "locked": locked,
        "lock_holder": lock_holder,
        "versioned": versioned,
        "replacer": replacer,
        "async_incr": async_incr,
        "async_locked": async_locked,
        "apply": apply,
    }
    modes[mode](json.loads(raw))


if __name__ == "__main__":
    main()
