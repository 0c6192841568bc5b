"""DynamoDB: the conformance kit and backend-specific behaviour, against a local moto server.

AWS is unreachable from the tests: a fixture starts moto's DynamoDB-compatible server
(``python -m moto.server``) on a free loopback port for the module, and every test
works in a table of its own.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from plugstore.testing import StoreConformance

HOST = "127.0.0.1"


class LocalDynamoDB:
    """``plugstore dev dynamodb`` in a subprocess: the command users run, used from here."""

    def __init__(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env["AWS_EC2_METADATA_DISABLED"] = "true"  # never look beyond loopback
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "plugstore.cli", "dev", "dynamodb", "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()  # printed once the table exists
        if not self.url.startswith("dynamodb://"):
            self.stop()
            raise RuntimeError(f"plugstore dev dynamodb did not start: {self.url!r}")
        self.endpoint = self.url.split("endpoint_url=", 1)[1].split("&", 1)[0]

    def url_for(self, table: str, **options: str) -> str:
        extra = "".join(f"&{k}={v}" for k, v in options.items())
        return self.url.replace("dynamodb://plugstore?", f"dynamodb://{table}?", 1) + extra

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def local() -> Iterator[LocalDynamoDB]:
    pytest.importorskip("moto.server", reason="moto[server] is not installed")
    server = LocalDynamoDB()
    yield server
    server.stop()


def table_for(tmp_path: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", tmp_path.name)[:40]
    return f"t_{name}_{zlib.crc32(str(tmp_path).encode()):08x}"


class TestDynamoDB(StoreConformance):
    @pytest.fixture(autouse=True)
    def _local(self, local: LocalDynamoDB) -> None:
        self.local = local

    def make_url(self, tmp_path: Path) -> str:
        return self.local.url_for(table_for(tmp_path), create="true")
