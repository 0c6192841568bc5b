"""Reaching the test servers: a missing server skips on a laptop and fails in CI."""

from __future__ import annotations

import os
import socket

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_server(name: str, host: str, port: int) -> None:
    """Skip (on a developer's machine) or fail (with CI=true) when nothing listens."""
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError as exc:
        message = f"{name} is not reachable at {host}:{port} ({exc})"
        if IN_CI:
            pytest.fail(f"{message}: CI must run every backend's tests (.ci/run starts it)")
        pytest.skip(f"{message}; start it to run these tests")


def assert_down_server_fails_fast(url: str, where: str = "127.0.0.1:1") -> None:
    """Opening ``url`` (nothing listens at ``where``; its password contains "s3cr3t")
    raises BackendUnavailableError within 10 s, naming the address, never the password."""
    import time

    import plugstore
    from plugstore.errors import BackendUnavailableError

    started = time.monotonic()
    with pytest.raises(BackendUnavailableError) as err:
        plugstore.open(url)
    assert time.monotonic() - started < 10
    message = str(err.value)
    assert where in message
    assert "s3cr3t" not in message
    assert "s3cr3t" not in repr(err.value)
