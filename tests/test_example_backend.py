"""Run the documented third-party backend example (examples/minimal_backend) in CI.

It implements only the five required Bucket methods, so this also proves that the
generic incr/compute/batch/scan versions in plugstore.Bucket honour the contract.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from plugstore import ExpiryNotSupportedError

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "minimal_backend"
sys.path.insert(0, str(EXAMPLE))

from minimal_backend import MinimalBackend  # noqa: E402
from test_minimal_conformance import TestMinimalBackend  # noqa: E402

import plugstore  # noqa: E402
from plugstore.registry import unregister  # noqa: E402

__all__ = ["TestMinimalBackend"]


# -- the generic add/expire/persist of plugstore.Bucket -------------------------------------


def test_generic_add_expire_persist_on_a_backend_without_expiry() -> None:
    """Without expiry: add without a deadline goes through cas, persist is "is it
    present", and anything with a deadline is refused at the bucket too."""

    plugstore.register("minimal-generic", MinimalBackend)
    try:
        with plugstore.open("minimal-generic://") as store:
            bucket = store.backend.bucket("n")
            assert bucket.add("k", b"1", None) is True
            assert bucket.add("k", b"2", None) is False
            assert bucket.get("k") == b"1"
            assert bucket.persist("k") is True
            assert bucket.persist("absent") is False
            with pytest.raises(ExpiryNotSupportedError, match="cannot expire keys"):
                bucket.add("new", b"1", 1e10)
            with pytest.raises(ExpiryNotSupportedError, match="cannot expire keys"):
                bucket.expire("k", 1e10)
            assert bucket.get("new") is None
    finally:
        unregister("minimal-generic")


def test_a_backend_claiming_expiry_must_override_the_deadline_forms() -> None:
    """``expiry = True`` without native add/expire/persist: the deadline forms raise a
    plugstore error telling the backend's author what to override, and write nothing
    (no read-then-write emulation); add without a deadline still works through cas."""

    class HalfDone(MinimalBackend):
        name = "half-done"
        expiry = True

    plugstore.register("half-done", HalfDone)
    try:
        with plugstore.open("half-done://") as store:
            ns = store.namespace("n")
            ns["k"] = 1
            for call, method in [
                (lambda: ns.add("new", 1, ttl=60), "add"),
                (lambda: ns.expire("k", 60), "expire"),
                (lambda: ns.persist("k"), "persist"),
                (lambda: ns.scope(g=1).add("new", 1, ttl=60), "add"),
            ]:
                with pytest.raises(ExpiryNotSupportedError) as caught:
                    call()
                message = str(caught.value)
                assert f"Bucket.{method}" in message
                assert "override" in message
                assert "HalfDone" in message or "MinimalBucket" in message
            assert "new" not in ns
            assert ns["k"] == 1
            assert ns.add("new", 2) is True  # no deadline: the generic cas form
            assert ns.add("new", 3) is False
            assert ns["new"] == 2
    finally:
        unregister("half-done")
