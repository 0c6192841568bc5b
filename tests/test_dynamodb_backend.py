"""DynamoDB: the conformance kit and backend-specific behaviour, against a local moto server.

AWS is unreachable from the tests: a fixture starts ``plugstore dev dynamodb`` (moto's
DynamoDB-compatible server, requests serialised) on a free loopback port in a subprocess
-- the command users run -- and every test works in a table of its own.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import plugstore
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
    # moto serves ~300 requests/s here, one at a time: 10 threads x 200 contended
    # compute() calls took two minutes.  50 each still races every thread on one key.
    thread_ops = 50

    @pytest.fixture(autouse=True)
    def _local(self, local: LocalDynamoDB) -> None:
        self.local = local

    def make_url(self, tmp_path: Path) -> str:
        return self.local.url_for(table_for(tmp_path), create="true")


def raw_client(local: LocalDynamoDB) -> Any:
    import boto3

    return boto3.client(
        "dynamodb",
        endpoint_url=local.endpoint,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def operations(store: plugstore.Store) -> list[str]:
    """Record the DynamoDB operation names every client of ``store`` sends from now on."""
    sent: list[str] = []
    backend: Any = store.backend
    for once in (False, True):
        backend._client(once).meta.events.register(
            "before-call.dynamodb.*", lambda model, **_: sent.append(model.name)
        )
    return sent


def test_layout_one_item_per_key_counters_as_numbers(local: LocalDynamoDB, tmp_path: Path) -> None:
    table = table_for(tmp_path)
    with plugstore.open(local.url_for(table, create="true")) as store:
        ns = store.namespace("plugin.a")
        ns["text"] = "hello"
        ns["n"] = 41  # stored as the bytes b"41" ...
        assert ns.incr("n") == 42  # ... and turned into a Number by the first incr
        assert ns.incr("fresh", 5) == 5
        assert ns["n"] == 42
        assert type(ns["fresh"]) is int
        ns["n"] = "back to text"
    items = raw_client(local).scan(TableName=table)["Items"]
    by_key = {item["key"]["S"]: item for item in items}
    assert {item["namespace"]["S"] for item in items} == {"plugin.a"}
    assert by_key["text"]["value"] == {"B": b'"hello"'}
    assert by_key["fresh"]["counter"] == {"N": "5"}
    assert "value" not in by_key["fresh"]
    assert by_key["n"]["value"] == {"B": b'"back to text"'}
    assert "counter" not in by_key["n"]
    assert int(by_key["n"]["version"]["N"]) == 3  # set, incr's conversion, set


def test_listing_and_counting_query_one_partition_never_scan(
    local: LocalDynamoDB, tmp_path: Path
) -> None:
    with plugstore.open(local.url_for(table_for(tmp_path), create="true")) as store:
        ns = store.namespace("n")
        ns.set_many({f"user:{i:04d}": i for i in range(120)} | {"other": 1})
        store.namespace("elsewhere")["x"] = 1
        sent = operations(store)
        assert len(ns) == 121
        assert sorted(ns.scan_keys("user:00")) == [f"user:{i:04d}" for i in range(100)]
        assert dict(ns.scan("user:011")) == {f"user:011{i}": 110 + i for i in range(10)}
        assert ns.get_many(["user:0001", "missing", "other"]) == {"user:0001": 1, "other": 1}
        ns.clear()
        assert len(ns) == 0
        assert store.namespace("elsewhere")["x"] == 1
        assert "Scan" not in sent
        assert {"Query", "BatchGetItem", "BatchWriteItem"} <= set(sent)


def test_too_large_values_are_refused_before_any_request(
    local: LocalDynamoDB, tmp_path: Path
) -> None:
    from plugstore.backends.dynamodb import ITEM_LIMIT
    from plugstore.errors import ValueTooLargeError

    with plugstore.open(local.url_for(table_for(tmp_path), create="true")) as store:
        backend: Any = store.backend
        # the backend's own limit: the longest namespace and key still fit one item
        worst_item = 128 + 1024 + len("namespace") + len("key") + len("value") + len("version")
        assert backend.max_value_size + worst_item + 21 <= ITEM_LIMIT  # 21: a version number
        assert backend.max_value_size > 400_000
        ns = store.namespace("n")
        sent = operations(store)
        with pytest.raises(ValueTooLargeError):
            ns["big"] = "x" * (backend.max_value_size + 1)
        with pytest.raises(ValueTooLargeError):
            ns.set_many({"ok": 1, "big": "x" * (backend.max_value_size + 1)})
        assert sent == []


def test_missing_table_and_wrong_keys_are_clear_errors(local: LocalDynamoDB) -> None:
    from plugstore.errors import BackendUnavailableError, ConfigurationError

    with pytest.raises(BackendUnavailableError, match="create-table"):
        plugstore.open(local.url_for("no_such_table"))
    raw_client(local).create_table(
        TableName="other_keys",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    with pytest.raises(ConfigurationError, match=r"'namespace' \(string, partition\)"):
        plugstore.open(local.url_for("other_keys"))


def test_unreachable_endpoint_fails_fast_without_credentials_in_messages() -> None:
    from plugstore.errors import BackendUnavailableError

    secret = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"
    env = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLEKEYID1234", "AWS_SECRET_ACCESS_KEY": secret}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError) as err:
            plugstore.open(
                "dynamodb://t_unreachable?region=us-east-1&endpoint_url=http://127.0.0.1:1"
                "&max_attempts=2&connect_timeout=2"
            )
        assert time.monotonic() - started < 20
        assert "127.0.0.1:1" in str(err.value)
        for text in (str(err.value), repr(err.value)):
            assert secret not in text
            assert "AKIAEXAMPLEKEYID1234" not in text
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_options_are_validated() -> None:
    from plugstore.errors import ConfigurationError

    for bad in ("dynamodb://ab?region=x", "dynamodb://bad%20name?region=x"):
        with pytest.raises(ConfigurationError, match="table name"):
            plugstore.open(bad)
    with pytest.raises(ConfigurationError, match="attribute name"):
        plugstore.open("dynamodb://table?region=x&pk=value")
    with pytest.raises(ConfigurationError, match="different"):
        plugstore.open("dynamodb://table?region=x&pk=a&sk=a")
    with pytest.raises(ConfigurationError, match="unknown option"):
        plugstore.open("dynamodb://table?region=x&aws_secret_access_key=nope")


def test_forked_child_never_touches_the_parents_connections(
    local: LocalDynamoDB, tmp_path: Path
) -> None:
    import gc

    with plugstore.open(local.url_for(table_for(tmp_path), create="true")) as store:
        ns = store.namespace("n")
        ns.incr("parent")
        parent_clients = (store.backend._client(False), store.backend._client(True))  # type: ignore[attr-defined]
        pid = os.fork()
        if pid == 0:
            signal.alarm(30)
            code = 0
            try:
                ns.incr("child")
                mine = store.backend._client(False)  # type: ignore[attr-defined]
                code = 4 if mine in parent_clients else 0
                gc.collect()
            except BaseException:
                code = 3
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        for i in range(5):  # incr is never retried: a broken connection would raise here
            ns.incr(f"after-{i}")
        assert ns["child"] == 1
