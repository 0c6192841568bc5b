"""Server backends against their raw drivers, on the loopback servers, in the same run.

Each workload times plugstore and the driver it is built on doing the same round trips:
a set and a get per op, then one batch of writes and one batch read.  The raw side uses
its driver the plain way (one connection, the driver's own batch path), JSON-encoding
the same values, so the ratio is plugstore's whole cost: pool, codec, namespace layout.
"""

from __future__ import annotations

import json
import random
import socket
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import plugstore
from harness import Contender, Result, Settings, Value, make_data, measure, set_get, timed

PG_DSN = "host=127.0.0.1 port=5432 dbname=test user=postgres"
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
MYSQL_URL = "mysql://root@127.0.0.1:3306/test"
REDIS_URL = "redis://127.0.0.1:6379/0"
#: Keys per IN list / MGET, as the backends use.
CHUNK = 1000


def _name(d: Path) -> str:
    """A table name (or key prefix) unique to this contender run."""
    return "bench_" + "".join(c if c.isalnum() else "_" for c in d.name).lower()


def unavailable(host: str, port: int, module: str) -> str | None:
    """Why a server cannot be used (its port is closed, its driver missing), or ``None``:
    the check made before a server workload."""
    try:
        socket.create_connection((host, port), timeout=2).close()
        __import__(module)
    except (OSError, ImportError) as exc:
        return str(exc)
    return None


def redis_purge(prefix: str) -> int:
    """Delete every Redis key under ``prefix``; return how many there were."""
    import redis

    r = redis.Redis(host="127.0.0.1", port=6379)
    try:
        pattern = "".join(f"\\{c}" if c in "*?[]\\" else c for c in prefix) + "*"
        doomed = list(r.scan_iter(match=pattern, count=1000))
        for start in range(0, len(doomed), 1000):
            r.unlink(*doomed[start : start + 1000])
        return len(doomed)
    finally:
        r.close()


def timed_ops(
    sets: Callable[[], Any],
    gets: Callable[[], Any],
    set_many: Callable[[], Any],
    get_many: Callable[[], Any],
    last_value: Value,
    count: int,
    incrs: Callable[[], int] | None = None,
) -> dict[str, float]:
    """Time the per-op loops, then the batches, checking each did all of its work."""
    times = set_get(sets, gets, last_value)
    if incrs is not None:
        times["incr"], total = timed(incrs)
        if total != count:
            raise AssertionError(f"incr counted {total}, not {count}")
    times["set_many"], _ = timed(set_many)
    times["get_many"], got = timed(get_many)
    if len(got) != count:
        raise AssertionError("get_many did not return every key")
    return times


def plugstore_ops(
    ns: Any, keys: Sequence[str], values: Sequence[Value], *, with_incr: bool = False
) -> dict[str, float]:
    """plugstore's side of a server workload: the batch writes keys prefixed with "b"."""
    batch = [(f"b{k}", v) for k, v in zip(keys, values, strict=True)]
    return timed_ops(
        lambda: [ns.__setitem__(k, v) for k, v in zip(keys, values, strict=True)],
        lambda: [ns[k] for k in keys][-1],
        lambda: ns.set_many(batch),
        lambda: ns.get_many([k for k, _ in batch]),
        values[-1],
        len(keys),
        (lambda: [ns.incr("counter") for _ in keys][-1]) if with_incr else None,
    )


def plugstore_contender(
    url_for: Callable[[Path], str], cleanup: Callable[[plugstore.Store], None]
) -> Contender:
    """plugstore on a server: per-op set/get, then set_many/get_many of the same size."""

    def run(d: Path, keys: Sequence[str], values: Sequence[Value]) -> dict[str, float]:
        store = plugstore.open(url_for(d))
        ns = store.namespace("bench")
        try:
            return plugstore_ops(ns, keys, values)
        finally:
            cleanup(store)
            store.close()

    return run


def _drop_table(store: plugstore.Store) -> None:
    store.backend.drop()  # type: ignore[attr-defined]


def _batch_rows(keys: Sequence[str], values: Sequence[Value]) -> list[tuple[str, bytes]]:
    return [(f"b{k}", json.dumps(v).encode()) for k, v in zip(keys, values, strict=True)]


def server_result(
    key: str,
    title: str,
    subject: str,
    peer: str,
    probe: tuple[str, int, str],
    url_for: Callable[[Path], str],
    cleanup: Callable[[plugstore.Store], None],
    raw: Contender,
    s: Settings,
    tmp: Path,
    notes: list[str],
) -> Result:
    """Run one server workload, or report it skipped if its server or driver is missing."""
    host, port, module = probe
    try:
        socket.create_connection((host, port), timeout=2).close()
        __import__(module)
    except (OSError, ImportError) as exc:
        return Result(key, title, subject, [], notes=[f"skipped: {peer} unavailable ({exc})"])
    n = max(1, s.n // 2)  # a round trip per op: fewer ops keep the run short
    keys, values = make_data(n)
    contenders = [(subject, n, plugstore_contender(url_for, cleanup)), (peer, n, raw)]
    res = Result(key, title, subject, measure(contenders, keys, values, tmp, s.repeat))
    res.ratio_bar(peer, "set", 0.8)
    res.ratio_bar(peer, "get", 0.8)
    res.ratio_bar(peer, "set_many", 0.7)
    res.ratio_bar(peer, "get_many", 0.7)
    res.notes += notes
    return res


# ------------------------------------------------------------------------- postgresql


def raw_psycopg(d: Path, keys: Sequence[str], values: Sequence[Value]) -> dict[str, float]:
    import psycopg

    table = _name(d) + "_raw"
    conn = psycopg.connect(PG_DSN, autocommit=True)
    conn.execute(f"CREATE TABLE {table} (key text PRIMARY KEY, value bytea NOT NULL)")
    upsert = (
        f"INSERT INTO {table} (key, value) VALUES (%s, %s) "
        "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
    )

    def sets() -> None:
        for k, v in zip(keys, values, strict=True):
            conn.execute(upsert, (k, json.dumps(v).encode()))

    def gets() -> Any:
        for k in keys:
            row = conn.execute(f"SELECT value FROM {table} WHERE key = %s", (k,)).fetchone()
            if row is None:
                raise KeyError(k)
            out = json.loads(row[0])
        return out

    def set_many() -> None:
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany(upsert, _batch_rows(keys, values))

    def get_many() -> dict[str, Any]:
        rows = conn.execute(
            f"SELECT key, value FROM {table} WHERE key = ANY(%s)", ([f"b{k}" for k in keys],)
        ).fetchall()
        return {k: json.loads(v) for k, v in rows}

    try:
        return timed_ops(sets, gets, set_many, get_many, values[-1], len(keys))
    finally:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.close()


def w_postgresql(s: Settings, tmp: Path) -> Result:
    subject, peer = "plugstore postgresql", "raw psycopg"
    return server_result(
        "postgresql",
        "6. postgresql backend vs raw psycopg (autocommit upsert per op; executemany; = ANY)",
        subject,
        peer,
        ("127.0.0.1", 5432, "psycopg"),
        lambda d: f"{PG_URL}?table={_name(d)}",
        _drop_table,
        raw_psycopg,
        s,
        tmp,
        [
            "raw: one psycopg connection, autocommit, table (key text PRIMARY KEY, value bytea), "
            "json.dumps(v).encode() / json.loads in the loop; loopback server",
            "plugstore: a pooled connection per op, (namespace, key) primary key, version column",
        ],
    )


# ------------------------------------------------------------------------------ mysql


def raw_pymysql(d: Path, keys: Sequence[str], values: Sequence[Value]) -> dict[str, float]:
    import pymysql

    table = _name(d) + "_raw"
    conn = pymysql.connect(
        host="127.0.0.1", port=3306, user="root", password="", database="test",
        autocommit=True, charset="utf8mb4", binary_prefix=True,
    )  # fmt: skip
    cur = conn.cursor()
    cur.execute(f"CREATE TABLE {table} (k VARBINARY(255) PRIMARY KEY, value LONGBLOB NOT NULL)")
    upsert = (
        f"INSERT INTO {table} (k, value) VALUES (%s, %s) "
        "ON DUPLICATE KEY UPDATE value = VALUES(value)"
    )

    def sets() -> None:
        for k, v in zip(keys, values, strict=True):
            cur.execute(upsert, (k, json.dumps(v).encode()))

    def gets() -> Any:
        for k in keys:
            cur.execute(f"SELECT value FROM {table} WHERE k = %s", (k,))
            row = cur.fetchone()
            if row is None:
                raise KeyError(k)
            out = json.loads(row[0])
        return out

    def set_many() -> None:
        conn.begin()
        cur.executemany(upsert, _batch_rows(keys, values))
        conn.commit()

    def get_many() -> dict[str, Any]:
        wanted = [f"b{k}" for k in keys]
        found: dict[str, Any] = {}
        for start in range(0, len(wanted), CHUNK):
            cur.execute(
                f"SELECT k, value FROM {table} WHERE k IN %s", (wanted[start : start + CHUNK],)
            )
            found.update((k.decode(), json.loads(v)) for k, v in cur.fetchall())
        return found

    try:
        return timed_ops(sets, gets, set_many, get_many, values[-1], len(keys))
    finally:
        cur.execute(f"DROP TABLE IF EXISTS {table}")
        conn.close()


def w_mysql(s: Settings, tmp: Path) -> Result:
    subject, peer = "plugstore mysql", "raw PyMySQL"
    return server_result(
        "mysql",
        "7. mysql backend (MariaDB) vs raw PyMySQL (autocommit upsert per op; executemany; IN)",
        subject,
        peer,
        ("127.0.0.1", 3306, "pymysql"),
        lambda d: f"{MYSQL_URL}?table={_name(d)}",
        _drop_table,
        raw_pymysql,
        s,
        tmp,
        [
            "raw: one PyMySQL connection, autocommit, table (k VARBINARY(255) PRIMARY KEY, "
            "value LONGBLOB), json.dumps(v).encode() / json.loads in the loop; loopback server",
            "plugstore: a pooled connection per op (column descriptions parsed once per "
            "connection), (namespace, key) primary key, version and expires_at columns",
        ],
    )


# ------------------------------------------------------------------------------ redis


def _redis_prefix(d: Path) -> str:
    return f"bench:{_name(d)}:{uuid.uuid4().hex[:6]}:"


def raw_redis(d: Path, keys: Sequence[str], values: Sequence[Value]) -> dict[str, float]:
    import redis

    r = redis.Redis(host="127.0.0.1", port=6379)
    prefix = _redis_prefix(d)
    names = [f"{prefix}{k}" for k in keys]

    def sets() -> None:
        for name, v in zip(names, values, strict=True):
            r.set(name, json.dumps(v).encode())

    def gets() -> Any:
        for name in names:
            raw = r.get(name)
            if raw is None:
                raise KeyError(name)
            out = json.loads(raw)
        return out

    def set_many() -> None:
        batch = [(f"{prefix}{k}", v) for k, v in _batch_rows(keys, values)]
        pipe = r.pipeline(transaction=True)
        for start in range(0, len(batch), CHUNK):
            pipe.mset(dict(batch[start : start + CHUNK]))
        pipe.execute()

    def get_many() -> dict[str, Any]:
        wanted = [f"{prefix}b{k}" for k in keys]
        found = {}
        for start in range(0, len(wanted), CHUNK):
            chunk = wanted[start : start + CHUNK]
            for name, raw in zip(chunk, r.mget(chunk), strict=True):
                if raw is not None:
                    found[name] = json.loads(raw)
        return found

    try:
        return timed_ops(sets, gets, set_many, get_many, values[-1], len(keys))
    finally:
        doomed = list(r.scan_iter(match=prefix.replace("*", r"\*") + "*", count=1000))
        for start in range(0, len(doomed), CHUNK):
            r.unlink(*doomed[start : start + CHUNK])
        r.close()


def _drop_bench_namespace(store: plugstore.Store) -> None:
    store.drop_namespace("bench")


def w_redis(s: Settings, tmp: Path) -> Result:
    subject, peer = "plugstore redis", "raw redis-py"
    return server_result(
        "redis",
        "8. redis backend vs raw redis-py (SET/GET per op; MSET in MULTI; MGET)",
        subject,
        peer,
        ("127.0.0.1", 6379, "redis"),
        lambda d: f"{REDIS_URL}?prefix={_redis_prefix(d)}",
        _drop_bench_namespace,
        raw_redis,
        s,
        tmp,
        [
            "raw: redis.Redis() with its default pool, SET/GET of json.dumps(v).encode(), "
            "MSET chunks in one MULTI, MGET chunks; loopback server",
            "plugstore: set is one EVALSHA (SET + ZADD to the namespace index), get is GET; "
            "set_many adds the index ZADDs to the same MULTI",
        ],
    )


# --------------------------------------------------------------------------- dynamodb


def _local_dynamodb() -> tuple[Any, str]:
    """plugstore's local DynamoDB (moto, serialised) on a free loopback port, in a thread."""
    import threading

    from plugstore.dev_dynamodb import LOOPBACK, make_server

    server = make_server(LOOPBACK, 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://{LOOPBACK}:{server.server_port}"


def _local_session() -> Any:
    import boto3

    dummy = "local"  # the local emulator checks no credentials
    return boto3.session.Session(
        aws_access_key_id=dummy, aws_secret_access_key=dummy, region_name="us-east-1"
    )


def plugstore_dynamodb(endpoint: str) -> Contender:
    """set/get/incr per op, set_many/get_many, on a fresh table per repeat."""

    def run(d: Path, keys: Sequence[str], values: Sequence[Value]) -> dict[str, float]:
        url = f"dynamodb://{_name(d)}?region=us-east-1&endpoint_url={endpoint}&create=true"
        store = plugstore.open(url)
        ns = store.namespace("bench")
        try:
            return plugstore_ops(ns, keys, values, with_incr=True)
        finally:
            store.backend.drop()  # type: ignore[attr-defined]
            store.close()

    return run


def raw_boto3(endpoint: str) -> Contender:
    """The same work with boto3 directly: put_item, get_item, update_item ADD,
    Table.batch_writer() and batch_get_item."""

    def run(d: Path, keys: Sequence[str], values: Sequence[Value]) -> dict[str, float]:

        from plugstore.backends.dynamodb_schema import key_schema

        session = _local_session()
        client = session.client("dynamodb", endpoint_url=endpoint)
        table = _name(d) + "_raw"
        client.create_table(
            TableName=table, BillingMode="PAY_PER_REQUEST", **key_schema("namespace", "key")
        )

        def key_of(k: str) -> dict[str, Any]:
            return {"namespace": {"S": "bench"}, "key": {"S": k}}

        def sets() -> None:
            for k, v in zip(keys, values, strict=True):
                item = {**key_of(k), "value": {"B": json.dumps(v).encode()}}
                client.put_item(TableName=table, Item=item)

        def gets() -> Any:
            for k in keys:
                item = client.get_item(TableName=table, Key=key_of(k), ConsistentRead=True)
                out = json.loads(item["Item"]["value"]["B"])
            return out

        def incrs() -> int:
            # The request plugstore's incr sends: ADD, a new write token, and the
            # condition that keeps the total in int64 (and off a value stored as bytes).
            for _ in keys:
                reply = client.update_item(
                    TableName=table,
                    Key=key_of("counter"),
                    UpdateExpression="ADD #n :d SET #r = :t",
                    ConditionExpression="attribute_not_exists(#v) AND "
                    "(attribute_not_exists(#n) OR #n BETWEEN :lo AND :hi)",
                    ExpressionAttributeNames={"#n": "counter", "#v": "value", "#r": "version"},
                    ExpressionAttributeValues={
                        ":d": {"N": "1"},
                        ":lo": {"N": str(-(2**63))},
                        ":hi": {"N": str(2**63 - 2)},
                        ":t": {"N": str(random.getrandbits(63))},
                    },
                    ReturnValues="UPDATED_NEW",
                )
            return int(reply["Attributes"]["counter"]["N"])

        def set_many() -> None:
            resource_table = session.resource("dynamodb", endpoint_url=endpoint).Table(table)
            with resource_table.batch_writer() as writer:
                for k, v in zip(keys, values, strict=True):
                    writer.put_item(
                        Item={"namespace": "bench", "key": f"b{k}", "value": json.dumps(v).encode()}
                    )

        def get_many() -> dict[str, Any]:
            found = {}
            wanted = [key_of(f"b{k}") for k in keys]
            for start in range(0, len(wanted), 100):
                request = {table: {"Keys": wanted[start : start + 100], "ConsistentRead": True}}
                while request:
                    reply = client.batch_get_item(RequestItems=request)
                    for item in reply["Responses"].get(table, ()):
                        found[item["key"]["S"]] = json.loads(item["value"]["B"])
                    request = reply.get("UnprocessedKeys") or {}
            return found

        try:
            return timed_ops(sets, gets, set_many, get_many, values[-1], len(keys), incrs)
        finally:
            client.delete_table(TableName=table)

    return run


def bare_add(endpoint: str) -> Contender:
    """update_item ADD with no condition: what an unchecked counter costs (no bar)."""

    def run(d: Path, keys: Sequence[str], values: Sequence[Value]) -> dict[str, float]:

        from plugstore.backends.dynamodb_schema import key_schema

        client = _local_session().client("dynamodb", endpoint_url=endpoint)
        table = _name(d) + "_add"
        client.create_table(
            TableName=table, BillingMode="PAY_PER_REQUEST", **key_schema("namespace", "key")
        )

        def incrs() -> int:
            for _ in keys:
                reply = client.update_item(
                    TableName=table,
                    Key={"namespace": {"S": "bench"}, "key": {"S": "counter"}},
                    UpdateExpression="ADD #n :one",
                    ExpressionAttributeNames={"#n": "counter"},
                    ExpressionAttributeValues={":one": {"N": "1"}},
                    ReturnValues="UPDATED_NEW",
                )
            return int(reply["Attributes"]["counter"]["N"])

        try:
            seconds, total = timed(incrs)
            if total != len(keys):
                raise AssertionError("bare ADD lost a count")
            return {"incr": seconds}
        finally:
            client.delete_table(TableName=table)

    return run


def w_dynamodb(s: Settings, tmp: Path) -> Result:
    key, subject, peer = "dynamodb", "plugstore dynamodb", "raw boto3"
    title = (
        "9. dynamodb backend vs raw boto3 on a local moto server (put/get/update ADD; "
        "batch_writer; batch_get_item)"
    )
    try:
        server, endpoint = _local_dynamodb()
    except ImportError as exc:
        return Result(key, title, subject, [], notes=[f"skipped: moto unavailable ({exc})"])
    try:
        n = max(1, s.n // 16)  # the emulator handles ~300 requests/s, one at a time
        keys, values = make_data(n)
        contenders = [
            (subject, n, plugstore_dynamodb(endpoint)),
            (peer, n, raw_boto3(endpoint)),
            ("raw boto3 bare ADD", n, bare_add(endpoint)),
        ]
        res = Result(key, title, subject, measure(contenders, keys, values, tmp, s.repeat))
    finally:
        server.shutdown()
    for op in ("set", "get", "incr", "set_many"):
        res.ratio_bar(peer, op, 0.8)
    res.notes += [
        "server: plugstore dev dynamodb's (moto's DynamoDB, requests serialised) in this "
        "process; the server's time per request dominates both sides",
        "raw: boto3 client put_item / get_item(ConsistentRead) / update_item ADD with "
        "plugstore's int64 condition, Table.batch_writer(), batch_get_item; "
        "json.dumps/loads in the loop",
        "info: 'raw boto3 bare ADD' is an update_item ADD with no condition at all; moto "
        "evaluates conditions in Python, so this is what the range check costs there (no bar)",
        "plugstore: set is put_item (value and a write token); incr is update_item ADD "
        "with the int64 condition; batches of 25 / 100",
    ]
    return res
