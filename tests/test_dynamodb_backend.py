"""DynamoDB: the conformance kit and backend-specific behaviour, against a local moto server.

AWS is unreachable from the tests: a fixture starts ``plugstore dev dynamodb`` (moto's
DynamoDB-compatible server, requests serialised) on a free loopback port in a subprocess
-- the command users run -- and every test works in a table of its own.
"""

from __future__ import annotations

import json
import os
import random
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
    # The async race: 4 processes x 8 tasks x 15, each incr and locked increment.
    async_ops = 15

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
    versions = {item["version"]["N"] for item in items}
    assert len(versions) == len(items)  # a fresh write token per item


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

    uncapped = local.url_for(table_for(tmp_path), create="true").replace(
        "&max_value_size=150000", ""
    )
    with plugstore.open(uncapped) as store:
        backend: Any = store.backend
        assert store.max_value_size == backend.max_value_size == 408_333
        # the backend's own limit: the longest namespace and key, with a deadline, still
        # fit one item
        worst_item = 128 + 1024 + len("namespace") + len("key") + len("value") + len("version")
        worst_item += len("expires_at") + len("expires")
        assert backend.max_value_size + worst_item + 3 * 21 <= ITEM_LIMIT  # 21: a number
        assert backend.max_value_size > 400_000
        ns = store.namespace("n")
        sent = operations(store)
        with pytest.raises(ValueTooLargeError):
            ns["big"] = "x" * (backend.max_value_size - 1)  # 2 more bytes of JSON quotes
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
        assert "does not exist" not in str(err.value)  # unreachable, not a missing table
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


# -- retries: what DynamoDB does under load, which moto never does -----------------------
# moto neither throttles nor leaves batch items unprocessed, so these tests script the
# server's answers with botocore's Stubber on a real backend's clients.


def _stubbed_store(local: LocalDynamoDB, tmp_path: Path) -> tuple[plugstore.Store, Any, Any]:
    from botocore.stub import Stubber

    store = plugstore.open(local.url_for(table_for(tmp_path), create="true"))
    backend: Any = store.backend
    return store, Stubber(backend._client(False)), Stubber(backend._client(True))


def _throttled(stub: Any, operation: str, times: int) -> None:
    for _ in range(times):
        stub.add_client_error(
            operation, "ProvisionedThroughputExceededException", http_status_code=400
        )


def test_throttled_incr_is_retried_until_accepted(local: LocalDynamoDB, tmp_path: Path) -> None:
    store, _, once = _stubbed_store(local, tmp_path)
    with store:
        _throttled(once, "update_item", 3)  # refused three times: nothing applied
        once.add_response("update_item", {"Attributes": {"counter": {"N": "7"}}})
        with once:
            assert store.namespace("n").incr("c", 7) == 7
        once.assert_no_pending_responses()


def test_a_lost_reply_is_never_resent_for_incr(local: LocalDynamoDB, tmp_path: Path) -> None:
    """An ADD whose reply was lost may have counted: raise, never send it again."""
    from botocore.exceptions import ReadTimeoutError

    from plugstore.errors import BackendUnavailableError

    with plugstore.open(local.url_for(table_for(tmp_path), create="true")) as store:
        backend: Any = store.backend
        ns = store.namespace("n")
        sent: list[str] = []

        def lose_reply(**kwargs: Any) -> None:
            sent.append("UpdateItem")
            raise ReadTimeoutError(endpoint_url=local.endpoint)

        events = backend._client(True).meta.events
        events.register("before-send.dynamodb.UpdateItem", lose_reply)
        with pytest.raises(BackendUnavailableError):
            ns.incr("c")
        assert sent == ["UpdateItem"]  # one attempt, not botocore's usual retries
        events.unregister("before-send.dynamodb.UpdateItem", lose_reply)
        assert ns.incr("c") == 1


def test_safe_requests_survive_transient_failures(local: LocalDynamoDB, tmp_path: Path) -> None:
    from botocore.exceptions import ConnectionClosedError

    with plugstore.open(local.url_for(table_for(tmp_path), create="true")) as store:
        backend: Any = store.backend
        ns = store.namespace("n")
        ns["k"] = "v"
        failures = [1, 2]

        def flaky(**kwargs: Any) -> None:
            if failures:
                failures.pop()
                raise ConnectionClosedError(endpoint_url=local.endpoint)

        backend._client(False).meta.events.register("before-send.dynamodb.GetItem", flaky)
        assert ns["k"] == "v"  # botocore retried twice
        assert failures == []


def test_unprocessed_batch_items_are_sent_again(local: LocalDynamoDB, tmp_path: Path) -> None:
    store, safe, _ = _stubbed_store(local, tmp_path)
    table = table_for(tmp_path)
    with store:
        ns = store.namespace("n")
        first_left = {"namespace": {"S": "n"}, "key": {"S": "b"}}
        put_b = {
            "PutRequest": {"Item": {**first_left, "value": {"B": b"2"}, "version": {"N": "1"}}}
        }
        safe.add_response("batch_write_item", {"UnprocessedItems": {table: [put_b]}})
        safe.add_response(
            "batch_write_item",
            {"UnprocessedItems": {}},
            expected_params={"RequestItems": {table: [put_b]}},
        )
        get_a = {"namespace": {"S": "n"}, "key": {"S": "a"}}
        safe.add_response(
            "batch_get_item",
            {
                "Responses": {table: [{**get_a, "value": {"B": b"1"}}]},
                "UnprocessedKeys": {table: {"Keys": [first_left], "ConsistentRead": True}},
            },
        )
        left_keys = {"Keys": [first_left], "ConsistentRead": True}
        safe.add_response(
            "batch_get_item",
            {"Responses": {table: [{**first_left, "counter": {"N": "2"}}]}},
            expected_params={"RequestItems": {table: left_keys}},  # exactly what was left
        )
        with safe:
            ns.set_many({"a": 1, "b": 2})
            assert ns.get_many(["a", "b"]) == {"a": 1, "b": 2}
        safe.assert_no_pending_responses()


# -- tooling ----------------------------------------------------------------------------


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "plugstore.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )


@pytest.mark.parametrize(
    ("flags", "billing", "pitr"),
    [([], "PAY_PER_REQUEST", False), (["--provisioned", "5", "3", "--pitr"], "PROVISIONED", True)],
)
def test_terraform_output_matches_the_table_create_table_makes(
    local: LocalDynamoDB, tmp_path: Path, flags: list[str], billing: str, pitr: bool
) -> None:
    hcl2 = pytest.importorskip("hcl2")
    table = table_for(tmp_path)
    created = cli("dynamodb", "create-table", local.url_for(table), *flags)
    assert created.returncode == 0, created.stderr
    assert f"table {table} is ACTIVE ({billing})" in created.stdout
    again = cli("dynamodb", "create-table", local.url_for(table), *flags)  # idempotent
    assert again.returncode == 0, again.stderr

    printed = cli("dynamodb", "terraform", "--table", table, *flags)
    assert printed.returncode == 0, printed.stderr
    resource = _plain(hcl2.loads(printed.stdout))["resource"][0]["aws_dynamodb_table"]
    resource = resource["plugstore"]

    client = raw_client(local)
    described = client.describe_table(TableName=table)["Table"]
    keys = {k["KeyType"]: k["AttributeName"] for k in described["KeySchema"]}
    assert resource["name"] == described["TableName"]
    assert resource["hash_key"] == keys["HASH"] == "namespace"
    assert resource["range_key"] == keys["RANGE"] == "key"
    attributes = {(a["name"], a["type"]) for a in resource["attribute"]}
    assert attributes == {
        (a["AttributeName"], a["AttributeType"]) for a in described["AttributeDefinitions"]
    }
    mode = described.get("BillingModeSummary", {}).get("BillingMode", "PROVISIONED")
    assert resource["billing_mode"] == mode == billing
    if billing == "PROVISIONED":
        throughput = described["ProvisionedThroughput"]
        assert resource["read_capacity"] == throughput["ReadCapacityUnits"] == 5
        assert resource["write_capacity"] == throughput["WriteCapacityUnits"] == 3
    backups = client.describe_continuous_backups(TableName=table)["ContinuousBackupsDescription"]
    status = backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"]
    enabled = resource["point_in_time_recovery"][0]["enabled"]
    assert enabled is pitr
    assert (status == "ENABLED") is pitr
    ttl = client.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    assert resource["ttl"] == [{"attribute_name": "expires", "enabled": True}]
    assert (ttl["AttributeName"], ttl["TimeToLiveStatus"]) == ("expires", "ENABLED")
    assert "TTL enabled on expires" in created.stdout
    with plugstore.open(local.url_for(table)) as store:  # and the backend accepts it
        store.namespace("n")["k"] = 1


def test_create_table_refuses_a_table_with_other_keys(local: LocalDynamoDB) -> None:
    raw_client(local).create_table(
        TableName="other_keys_cli",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    result = cli("dynamodb", "create-table", local.url_for("other_keys_cli"))
    assert result.returncode == 1
    assert "has keys" in result.stderr
    assert result.stderr.count("\n") == 1  # one line, no traceback
    wrong = cli("dynamodb", "create-table", "redis://127.0.0.1/0")
    assert wrong.returncode != 0
    assert "not a dynamodb:// URL" in wrong.stderr


def test_terraform_refuses_bad_names() -> None:
    for args in (["--table", "x"], ["--table", "good", "--pk", "value"]):
        result = cli("dynamodb", "terraform", *args)
        assert result.returncode == 1
        assert "invalid" in result.stderr


def test_dev_dynamodb_is_usable_from_other_processes(local: LocalDynamoDB) -> None:
    """The fixture's server is ``plugstore dev dynamodb`` in its own process; here a
    third process writes through the printed URL and this one reads it back."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    wrote = cli("-u", local.url, "set", "greetings", "hello", '"from another process"', env=env)
    assert wrote.returncode == 0, wrote.stderr
    with plugstore.open(local.url) as store:
        assert store.namespace("greetings")["hello"] == "from another process"
        assert store.max_value_size == 150_000  # the URL caps values for moto (see dev_dynamodb)


def test_dev_dynamodb_serialises_conditional_writes(local: LocalDynamoDB) -> None:
    """Whether a lost update is moto's or ours.

    Stock moto (``moto_server``) runs requests on parallel threads and checks a
    ConditionExpression and applies the update as separate steps: with raw boto3 and
    no plugstore code at all, 10 threads x 50 compare-and-set loops using plugstore's
    update expression ended at 488 of 500 (moto 5.2.5; the kit's compute race lost 8
    of 500 the same way).  DynamoDB serialises writes to an item, so that is moto's
    miss, not the client's.  ``plugstore dev dynamodb`` runs moto's app one request
    at a time; this test runs the same raw-boto3 loop against it and must be exact.
    """
    import threading

    client = raw_client(local)
    client.create_table(TableName="cas_race", BillingMode="PAY_PER_REQUEST", **_schema())
    key = {"namespace": {"S": "n"}, "key": {"S": "k"}}
    client.put_item(TableName="cas_race", Item={**key, "value": {"B": b"0"}})

    def work() -> None:
        mine = raw_client(local)
        done = 0
        while done < 40:
            old = mine.get_item(TableName="cas_race", Key=key, ConsistentRead=True)
            value = old["Item"]["value"]["B"]
            try:
                mine.update_item(
                    TableName="cas_race",
                    Key=key,
                    UpdateExpression="SET #v = :new, #r = :t REMOVE #n",  # plugstore's cas
                    ConditionExpression="(#v = :old OR #n = :oldn)",
                    ExpressionAttributeNames={"#v": "value", "#r": "version", "#n": "counter"},
                    ExpressionAttributeValues={
                        ":old": {"B": value},
                        ":oldn": {"N": value.decode()},
                        ":new": {"B": str(int(value) + 1).encode()},
                        ":t": {"N": str(random.getrandbits(63))},
                    },
                )
                done += 1
            except mine.exceptions.ConditionalCheckFailedException:
                pass

    threads = [threading.Thread(target=work) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = client.get_item(TableName="cas_race", Key=key, ConsistentRead=True)
    assert final["Item"]["value"]["B"] == b"400"


def _schema() -> dict[str, Any]:
    from plugstore.backends.dynamodb_schema import key_schema

    return key_schema("namespace", "key")


def _plain(parsed: Any) -> Any:
    """python-hcl2 output with string literals unquoted (newer versions keep the quotes)."""
    if isinstance(parsed, dict):
        return {_plain(k): _plain(v) for k, v in parsed.items() if k != "__is_block__"}
    if isinstance(parsed, list):
        return [_plain(v) for v in parsed]
    if isinstance(parsed, str) and len(parsed) >= 2 and parsed[0] == parsed[-1] == '"':
        return json.loads(parsed)
    return parsed


def test_counters_edge_cases(local: LocalDynamoDB, tmp_path: Path) -> None:
    from plugstore.keys import INT64_MAX, INT64_MIN

    with plugstore.open(local.url_for(table_for(tmp_path), create="true")) as store:
        ns = store.namespace("n")
        bucket = ns._b()
        assert ns.incr("c", 0) == 0
        assert ns.incr("c", 0) == 0  # an ADD of 0 changes nothing: still answered
        assert ns.incr("c", 5) == 5
        # compare-and-set against a counter, with its decimal text as the expected bytes
        assert bucket.cas("c", b"4", b"x") is False
        assert bucket.cas("c", b"5", b'"replaced"') is True
        assert ns["c"] == "replaced"
        ns.incr("d", 7)
        assert bucket.cas("d", b"7", None) is True
        assert "d" not in ns
        for start, delta, ok in (
            (INT64_MAX - 1, 1, True),
            (INT64_MAX, 1, False),
            (INT64_MIN + 1, -1, True),
            (INT64_MIN, -1, False),
        ):
            ns.pop("e", None)
            ns.incr("e", start)  # a Number counter
            if ok:
                assert ns.incr("e", delta) == start + delta
            else:
                with pytest.raises(plugstore.errors.NotAnIntegerError):
                    ns.incr("e", delta)
                assert ns["e"] == start


def test_listings_page_through_more_than_one_query_page(
    local: LocalDynamoDB, tmp_path: Path
) -> None:
    """Query pages stop at 1 MB: 40 values of 120 KB take five pages."""
    with plugstore.open(local.url_for(table_for(tmp_path), create="true")) as store:
        ns = store.namespace("big")
        blob = "x" * 120_000
        ns.set_many({f"k{i:02d}": blob for i in range(40)})
        store.namespace("other")["k"] = 1
        sent = operations(store)
        assert len(ns) == 40
        assert sorted(ns) == [f"k{i:02d}" for i in range(40)]
        assert all(value == blob for _, value in ns.items())
        assert sent.count("Query") >= 3 * 4  # several pages for each of the three reads
        assert ns.clear() is None
        assert len(ns) == 0
        assert store.namespace("other")["k"] == 1


def test_dummy_credentials_only_for_loopback_with_nothing_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from plugstore.backend import Options
    from plugstore.backends.dynamodb import DynamoDBBackend
    from plugstore.url import StoreURL

    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))

    def dummy(endpoint: str) -> bool:
        url = StoreURL.parse(f"dynamodb://table?region=us-east-1&endpoint_url={endpoint}")
        return bool(DynamoDBBackend(url, Options(url.query))._local_dummy_credentials())

    for loopback in ("http://127.0.0.1:8000", "http://localhost:8000", "http://127.0.0.2:9"):
        assert dummy(loopback), loopback
    for remote in ("https://dynamodb.eu-west-1.amazonaws.com", "http://10.0.0.5:8000"):
        assert not dummy(remote), remote
    (tmp_path / "credentials").write_text(
        "[default]\naws_access_key_id = AKIAFROMFILE\naws_secret_access_key = x\n"
    )
    assert not dummy("http://127.0.0.1:8000")  # configured credentials are used as they are


def test_identity_ignores_how_the_endpoint_spells_loopback() -> None:
    from plugstore.backend import Options
    from plugstore.backends.dynamodb import DynamoDBBackend
    from plugstore.url import StoreURL

    def identity(url: str) -> tuple[object, ...]:
        parsed = StoreURL.parse(url)
        return DynamoDBBackend(parsed, Options(parsed.query)).identity()

    a = identity("dynamodb://tbl?region=us-east-1&endpoint_url=http://127.0.0.1:8000")
    b = identity("dynamodb://tbl?region=us-east-1&endpoint_url=http://localhost:8000")
    assert a == b
    assert a != identity("dynamodb://tbl?region=us-east-1&endpoint_url=http://127.0.0.1:8001")
    assert identity("dynamodb://tbl?region=eu-west-1") != identity(
        "dynamodb://tbl?region=us-east-1"
    )


# -- expiry ------------------------------------------------------------------------------


def test_deadlines_are_two_attributes_one_of_them_the_tables_ttl(
    local: LocalDynamoDB, tmp_path: Path
) -> None:
    from plugstore.testing import FakeClock

    table = table_for(tmp_path)
    clock = FakeClock(1_700_000_000.25)
    with plugstore.open(local.url_for(table, create="true"), clock=clock) as store:
        ns = store.namespace("n")
        ns.set("k", "v", ttl=10)
        assert ns.incr("c", 3) == 3
        ns.set("c", 41, ttl=60)
        assert ns.incr("c") == 42  # converted to a counter, deadline kept
        ns["plain"] = 1
        assert store.info()["ttl"] == "ENABLED on 'expires'"
        client = raw_client(local)
        key = {"namespace": {"S": "n"}}
        item = client.get_item(TableName=table, Key={**key, "key": {"S": "k"}})["Item"]
        assert item["expires_at"] == {"N": "1700000010.25"}
        assert item["expires"] == {"N": "1700000011"}  # rounded up: never ahead of it
        item = client.get_item(TableName=table, Key={**key, "key": {"S": "c"}})["Item"]
        assert item["counter"] == {"N": "42"}
        assert item["expires_at"] == {"N": "1700000060.25"}
        item = client.get_item(TableName=table, Key={**key, "key": {"S": "plain"}})["Item"]
        assert "expires_at" not in item
        assert "expires" not in item
        clock.now += 60
        assert ns.incr("c") == 1  # expired: a fresh counter, without the deadline
        item = client.get_item(TableName=table, Key={**key, "key": {"S": "c"}})["Item"]
        assert "expires_at" not in item
        assert "expires" not in item
        # until purged (or DynamoDB's sweep), the expired item is still in the table
        assert "Item" in client.get_item(TableName=table, Key={**key, "key": {"S": "k"}})
        assert store.backend.purge() == {"n": 1}
        assert "Item" not in client.get_item(TableName=table, Key={**key, "key": {"S": "k"}})


def test_add_expire_persist_write_both_deadline_attributes(
    local: LocalDynamoDB, tmp_path: Path
) -> None:
    """add with a deadline puts both attributes; expire sets both (and a new write
    token), leaving value or counter alone; persist removes both; add over an expired
    item leaves nothing of it, the counter included."""
    from plugstore.testing import FakeClock

    table = table_for(tmp_path)
    clock = FakeClock(1_700_000_000.25)
    with plugstore.open(local.url_for(table, create="true"), clock=clock) as store:
        ns = store.namespace("n")
        client = raw_client(local)

        def item(key: str) -> dict[str, Any]:
            found: dict[str, Any] = client.get_item(
                TableName=table, Key={"namespace": {"S": "n"}, "key": {"S": key}}
            )["Item"]
            return found

        assert ns.add("a", "v", ttl=10) is True
        assert (item("a")["expires_at"], item("a")["expires"]) == (
            {"N": "1700000010.25"},
            {"N": "1700000011"},
        )
        assert ns.incr("c", 5) == 5
        before = item("c")
        assert ns.expire("c", 60) is True
        after = item("c")
        assert after["counter"] == {"N": "5"}  # still a counter: ADD keeps working
        assert (after["expires_at"], after["expires"]) == (
            {"N": "1700000060.25"},
            {"N": "1700000061"},
        )
        assert after["version"] != before["version"]  # every write replaces the token
        assert ns.incr("c") == 6
        assert ns.persist("c") is True
        assert "expires_at" not in item("c")
        assert "expires" not in item("c")
        assert ns.incr("c") == 7
        clock.now += 10  # "a" expired (still in the table, until purged)
        assert ns.expire("a", 60) is False
        assert ns.persist("a") is False
        assert item("a")["expires_at"] == {"N": "1700000010.25"}  # not touched
        ns.set("c", 0, ttl=5)
        assert ns.incr("c") == 1  # a counter with a deadline
        clock.now += 5
        assert ns.add("c", "text") is True  # over the expired counter
        fresh = item("c")
        assert "counter" not in fresh
        assert "expires_at" not in fresh
        assert ns["c"] == "text"


def test_create_table_turns_ttl_on_for_a_table_made_before(local: LocalDynamoDB) -> None:
    client = raw_client(local)
    client.create_table(TableName="made_before_ttl", BillingMode="PAY_PER_REQUEST", **_schema())
    before = client.describe_time_to_live(TableName="made_before_ttl")
    assert before["TimeToLiveDescription"]["TimeToLiveStatus"] == "DISABLED"
    with plugstore.open(local.url_for("made_before_ttl")) as store:
        ns = store.namespace("n")
        ns.set("k", 1, ttl=60)  # works without DynamoDB's TTL: reads filter
        assert ns.ttl("k") == pytest.approx(60, abs=5)
    result = cli("dynamodb", "create-table", local.url_for("made_before_ttl"))
    assert result.returncode == 0, result.stderr
    assert "TTL enabled on expires" in result.stdout
    after = client.describe_time_to_live(TableName="made_before_ttl")["TimeToLiveDescription"]
    assert (after["AttributeName"], after["TimeToLiveStatus"]) == ("expires", "ENABLED")


def test_write_batch_is_one_transaction_or_refused(local: LocalDynamoDB, tmp_path: Path) -> None:
    """Within TransactWriteItems' limits a batch lands whole; an item DynamoDB refuses
    (over 400 KB) cancels all of it; beyond 100 items it is refused up front."""
    from plugstore import BackendUnavailableError, BatchNotAtomicError

    with plugstore.open(local.url_for(table_for(tmp_path), create="true")) as store:
        ns = store.namespace("n")
        scope = ns.scope(guild=1)
        scope.update(a=1, b=2)
        bucket = store.backend.bucket("n")
        with pytest.raises(BackendUnavailableError, match="TransactWriteItems"):
            bucket.write_batch(
                [("x", b"1", None), ("y", b"z" * 500_000, None)], [], [scope._prefix]
            )
        assert dict(scope) == {"a": 1, "b": 2}
        too_many = [(f"k{i}", b"1", None) for i in range(101)]
        with pytest.raises(BatchNotAtomicError, match="at most 100 items"):
            bucket.write_batch(too_many)
        assert bucket.count("k") == 0
        bucket.write_batch(too_many, atomic=False)
        assert bucket.count("k") == 101
        scope.replace({"c": 3})
        assert dict(scope) == {"c": 3}
        store.drop_namespace("n")
