"""Reaching the test servers: a missing server skips on a laptop and fails in CI."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

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


def assert_locks_leave_statements_their_connections(url: str) -> None:
    """``url`` has a one-connection statement pool (``pool_max=1``): a lock holder still
    reads and writes while another thread waits for the same lock, because lock
    sessions live in a pool of their own (PostgreSQL, MariaDB)."""
    import threading
    import time

    import plugstore

    with plugstore.open(url) as store:
        ns = store.namespace("n")
        errors: list[BaseException] = []

        def wait_for(key: str) -> None:
            try:
                with ns.lock(key, timeout=30):
                    ns.incr("waited")
            except BaseException as exc:
                errors.append(exc)

        with ns.lock("a", timeout=5), ns.lock("b", timeout=5):
            waiter = threading.Thread(target=wait_for, args=("a",))
            waiter.start()
            time.sleep(0.3)  # queued behind us
            ns["k"] = 1  # the statement pool's one connection is free for the holder
            assert ns["k"] == 1
        waiter.join(30)
        assert errors == []
        assert ns["waited"] == 1


def assert_an_exhausted_lock_pool_says_so(url: str) -> None:
    """``url`` has ``lock_pool_max=2``: a third lock held at once fails at once with
    PoolExhaustedError naming the pool and its option; statements still run."""
    import plugstore
    from plugstore.errors import PoolExhaustedError

    with plugstore.open(url) as store:
        ns = store.namespace("n")
        with ns.lock("a", timeout=5), ns.lock("b", timeout=5):
            for timeout in (0, 0.3):
                with pytest.raises(PoolExhaustedError) as err:
                    ns.lock("c", timeout=timeout).acquire()  # both lock sessions are ours
                assert "all 2 lock sessions" in str(err.value)
                assert "lock_pool_max" in str(err.value)
            ns["k"] = 1  # statements have connections of their own
        with ns.lock("c", timeout=5):
            pass  # sessions are given back on release


def make_certs(d: Path) -> tuple[Path, Path, Path, Path]:
    """A CA, a server certificate for 127.0.0.1 signed by it, and an unrelated CA."""

    def openssl(command: str, subject: str = "") -> None:
        argv = ["openssl", *command.split(), *(["-subj", subject] if subject else [])]
        subprocess.run(argv, cwd=d, check=True, capture_output=True, timeout=60)

    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for ca in ("ca", "other-ca"):
        new_ca = f"req -x509 -newkey rsa:2048 -nodes -days 1 -keyout {ca}.key -out {ca}.pem"
        openssl(new_ca, f"/CN=plugstore {ca}")
    openssl("req -newkey rsa:2048 -nodes -keyout server.key -out server.csr", "/CN=127.0.0.1")
    openssl(
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
        "-out server.pem -days 1 -extfile san.ext"
    )
    return d / "ca.pem", d / "server.pem", d / "server.key", d / "other-ca.pem"


CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def require_browser() -> None:
    """Skip (on a developer's machine) or fail (with CI=true) without Debian's headless
    Chromium, its driver and Selenium: the console's browser tests need all three."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    if not missing:
        return
    message = f"browser tests need {', '.join(missing)}"
    if IN_CI:
        pytest.fail(f"{message}: .ci/run installs chromium and chromium-driver")
    pytest.skip(f"{message} (apt install chromium chromium-driver; pip install selenium)")
