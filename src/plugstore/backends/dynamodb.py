"""``dynamodb://TABLE?region=...&endpoint_url=...`` -- Amazon DynamoDB through boto3.

* **Layout**: single-table design.  Partition key = namespace, sort key = key (both
  strings; attribute names ``namespace``/``key`` by default, options ``pk``/``sk``).  A
  value is the Binary attribute ``value``; a counter made by ``incr`` is the Number
  attribute ``counter`` instead (so ``ADD`` works on it natively, and ``get`` returns its
  decimal text, which every codec reads as an int).  ``version`` is a write token: a
  random number that every write replaces, so a tool can make its own conditional
  writes on it (optimistic locking) without comparing whole values.  Sort keys compare
  as UTF-8 bytes, that is in code point order, as on every other backend.  The table is
  made by ``plugstore dynamodb create-table`` or Terraform (``plugstore dynamodb
  terraform`` prints the matching resource), or on open with the ``create=true`` option.
* **Operations**: ``get`` is a strongly consistent ``GetItem``; ``set`` a ``PutItem``;
  ``incr`` an ``UpdateItem ... ADD`` whose condition keeps the result inside int64 (a
  value stored as text is converted once, conditionally); compare-and-set a
  ``ConditionExpression`` on the old value; ``set_many`` ``BatchWriteItem`` (25 per
  request) and ``get_many`` ``BatchGetItem`` (100 per request), unprocessed items
  retried with backoff; listings and counts a paginated ``Query`` on the namespace
  (with ``begins_with`` for prefixes), never a ``Scan``.  Only ``namespaces()`` scans
  the table (there is no other way to list partition keys).
* **Expiry**: an item with a deadline carries it twice: ``expires_at``, the exact epoch
  seconds that every read checks (``GetItem`` results client-side, ``Query``/``Scan``
  with a ``FilterExpression``, conditional writes in their condition), and ``expires``,
  the same rounded up to whole seconds: the table's TTL attribute, which
  ``create-table`` and the Terraform output enable.  DynamoDB's own sweep deletes
  expired items within days; ``purge`` deletes them now (a conditional delete each).
* **Limits**: an item holds at most 400 KB, names and keys included, so the largest
  value is 400 KB minus room for the longest namespace and key; larger values raise
  ``ValueTooLargeError`` before any request.
* **Retries**: botocore's standard mode retries throttling and transient errors -- but
  only for requests that give the same result applied twice (reads, ``set``, batches).
  ``incr``, compare-and-set, ``remove``, ``add``, ``expire`` and ``persist`` go through a
  client with botocore's retries off: throttling (the server refused, nothing applied)
  is retried here with backoff; a lost reply raises
  :class:`~plugstore.errors.BackendUnavailableError`, because an ``ADD`` sent twice
  counts twice, and a conditional write whose first attempt applied would fail its
  condition the second time and answer False.
* **Credentials and region** come from the standard AWS chain (environment, shared
  config and credentials files, ``profile`` option, instance or task role); they are
  never part of the URL, a message or ``info()``.

Options: ``region``, ``endpoint_url`` (a local server such as ``plugstore dev dynamodb``),
``profile``, ``pk``/``sk`` (key attribute names), ``create`` (create the table on open
if missing, on-demand billing), ``connect_timeout`` (default 5), ``read_timeout``
(default 10), ``max_attempts`` (botocore attempts for safe requests, default 8),
``pool_max`` (HTTP connections, default 20).
"""

from __future__ import annotations

import ipaddress
import math
import random
import re
import secrets
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

import boto3
import botocore
import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

from .. import forks
from ..backend import DEFAULT_MAX_VALUE_SIZE, Backend, Bucket, Options, retry_schedule
from ..errors import (
    BackendUnavailableError,
    BatchNotAtomicError,
    ConfigurationError,
    ConflictError,
    NotAnIntegerError,
)
from ..keys import INT64_MAX, INT64_MIN, check_counter, parse_counter
from ..url import StoreURL
from .dynamodb_schema import (
    COUNTER,
    DEFAULT_PK,
    DEFAULT_SK,
    EXPIRES,
    EXPIRES_AT,
    VALUE,
    VERSION,
    billing,
    check_keys,
    check_table,
    key_schema,
    time_to_live,
)
from .sqltable import not_an_integer

T = TypeVar("T")

#: DynamoDB's item limit (names and values of every attribute).
ITEM_LIMIT = 400 * 1024
#: Largest namespace and key plugstore accepts, in bytes (see plugstore.keys).
_MAX_NAMESPACE, _MAX_KEY = 128, 1024
BATCH_WRITE, BATCH_GET = 25, 100
#: TransactWriteItems' limits: actions per transaction, and their total size.
TRANSACT_ITEMS, TRANSACT_BYTES = 100, 4 * 1024 * 1024
#: Error codes meaning "refused, nothing was applied: try again later".
_THROTTLED = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TransactionConflictException",
    }
)
_CHECK_FAILED = "ConditionalCheckFailedException"
_PLACEHOLDER = re.compile(r"#[a-z]\b")
_SET_VALUE = "SET #v = :v, #r = :t REMOVE #n"
#: The condition of an item that has not expired (``:now`` from the store clock).
_LIVE = "(attribute_not_exists(#e) OR #e > :now)"


def _number(seconds: float) -> str:
    """A float as a DynamoDB Number, exactly (``repr`` round-trips; epoch seconds never
    take the exponent notation)."""
    return repr(float(seconds))


def write_token() -> dict[str, str]:
    """A fresh ``version``: a random 63-bit number, new on every write (an etag)."""
    return {"N": str(secrets.randbits(63))}


class TableMissing(BackendUnavailableError):
    """The table does not exist (as opposed to: DynamoDB cannot be reached)."""


def _is_loopback(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class DynamoDBBucket(Bucket):
    """One namespace: the items of one partition."""

    backend: DynamoDBBackend

    def __init__(self, backend: DynamoDBBackend, namespace: str) -> None:
        super().__init__(backend, namespace)
        self._t = backend.table
        self._pk, self._sk = backend.pk, backend.sk
        self._ns = {"S": namespace}
        # Every expression names attributes through placeholders: "key" and "value"
        # are DynamoDB reserved words, and pk/sk are user-chosen.
        self._all_names = {
            "#p": self._pk,
            "#s": self._sk,
            "#v": VALUE,
            "#n": COUNTER,
            "#r": VERSION,
            "#e": EXPIRES_AT,
            "#x": EXPIRES,
        }

    def _names(self, *expressions: str) -> dict[str, str]:
        """The placeholders ``expressions`` use (DynamoDB refuses unused ones)."""
        used = set(_PLACEHOLDER.findall(" ".join(expressions)))
        return {k: v for k, v in self._all_names.items() if k in used}

    def _key(self, key: str) -> dict[str, Any]:
        return {self._pk: self._ns, self._sk: {"S": key}}

    def _now(self) -> dict[str, str]:
        return {"N": _number(self.backend.clock())}

    @staticmethod
    def _bytes(item: dict[str, Any]) -> bytes:
        if COUNTER in item:
            return str(int(item[COUNTER]["N"])).encode()
        return bytes(item[VALUE]["B"])

    @staticmethod
    def _deadline(item: dict[str, Any]) -> float | None:
        found = item.get(EXPIRES_AT)
        return None if found is None else float(found["N"])

    def _expired(self, item: dict[str, Any]) -> bool:
        # DynamoDB deletes expired items lazily (within days): reads check the deadline.
        found = item.get(EXPIRES_AT)
        return found is not None and float(found["N"]) <= self.backend.clock()

    # -- single items -----------------------------------------------------------------------

    def _fetch(self, key: str) -> dict[str, Any] | None:
        """The item's value, counter and deadline (strongly consistent), or None."""
        item: dict[str, Any] | None = self.backend.safe(
            "get_item",
            TableName=self._t,
            Key=self._key(key),
            ConsistentRead=True,
            ProjectionExpression="#v, #n, #e",
            ExpressionAttributeNames={"#v": VALUE, "#n": COUNTER, "#e": EXPIRES_AT},
        ).get("Item")
        return item or None

    def get(self, key: str) -> bytes | None:
        item = self._fetch(key)
        return None if item is None or self._expired(item) else self._bytes(item)

    def get_with_deadline(self, key: str) -> tuple[bytes, float | None] | None:
        item = self._fetch(key)
        if item is None or self._expired(item):
            return None
        return self._bytes(item), self._deadline(item)

    def contains(self, key: str) -> bool:
        item = self.backend.safe(
            "get_item",
            TableName=self._t,
            Key=self._key(key),
            ConsistentRead=True,
            ProjectionExpression="#s, #e",
            ExpressionAttributeNames={"#s": self._sk, "#e": EXPIRES_AT},
        ).get("Item")
        return item is not None and not self._expired(item)

    def _item(self, key: str, value: bytes, deadline: float | None) -> dict[str, Any]:
        item = {**self._key(key), VALUE: {"B": value}, VERSION: write_token()}
        if deadline is not None:
            item[EXPIRES_AT] = {"N": _number(deadline)}
            # DynamoDB's own TTL sweep reads whole seconds: rounded up, it never runs
            # ahead of the exact deadline.
            item[EXPIRES] = {"N": str(math.ceil(deadline))}
        return item

    def set(self, key: str, value: bytes) -> None:
        # A whole-item put (replacing a counter, and a deadline, too): the same value
        # again is harmless, so botocore may retry it.
        self.backend.safe("put_item", TableName=self._t, Item=self._item(key, value, None))

    def set_until(self, key: str, value: bytes, deadline: float) -> None:
        self.backend.safe("put_item", TableName=self._t, Item=self._item(key, value, deadline))

    def remove(self, key: str) -> bool:
        # An expired item is absent: it stays for purge (or DynamoDB's sweep).
        condition = f"attribute_exists(#s) AND {_LIVE}"
        return bool(
            self.backend.once(
                "delete_item",
                TableName=self._t,
                Key=self._key(key),
                ConditionExpression=condition,
                ExpressionAttributeNames=self._names(condition),
                ExpressionAttributeValues={":now": self._now()},
            )
        )

    @staticmethod
    def _is(expected: bytes, values: dict[str, Any]) -> str:
        """A condition: the stored value is ``expected`` (as bytes, or as a counter)."""
        values[":old"] = {"B": expected}
        try:
            number = parse_counter(expected)
        except NotAnIntegerError:
            return "#v = :old"
        values[":oldn"] = {"N": str(number)}
        return "(#v = :old OR #n = :oldn)"

    def cas(self, key: str, expected: bytes | None, new: bytes | None) -> bool:
        if expected is None and new is None:
            return not self.contains(key)
        values: dict[str, Any] = {":now": self._now()}
        # absent, or expired; a new item has no deadline
        condition = "(attribute_not_exists(#s) OR #e <= :now)"
        update = _SET_VALUE + ", #e, #x"
        if expected is not None:
            condition = f"{self._is(expected, values)} AND {_LIVE}"
            update = _SET_VALUE  # a live item keeps its deadline
        if new is None:
            return bool(
                self.backend.once(
                    "delete_item",
                    TableName=self._t,
                    Key=self._key(key),
                    ConditionExpression=condition,
                    ExpressionAttributeNames=self._names(condition),
                    ExpressionAttributeValues=values,
                )
            )
        values.update({":v": {"B": new}, ":t": write_token()})
        return bool(
            self.backend.once(
                "update_item",
                TableName=self._t,
                Key=self._key(key),
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames=self._names(update, condition),
                ExpressionAttributeValues=values,
            )
        )

    def add(self, key: str, value: bytes, deadline: float | None) -> bool:
        # A whole-item put (so nothing of an expired item stays), only where no live
        # item is.  Sent once: after a lost reply a repeat would read False.
        condition = "attribute_not_exists(#s) OR #e <= :now"
        return bool(
            self.backend.once(
                "put_item",
                TableName=self._t,
                Item=self._item(key, value, deadline),
                ConditionExpression=condition,
                ExpressionAttributeNames=self._names(condition),
                ExpressionAttributeValues={":now": self._now()},
            )
        )

    def expire(self, key: str, deadline: float) -> bool:
        update = "SET #e = :e, #x = :x, #r = :t"
        return self._update_live(
            key,
            update,
            {
                ":e": {"N": _number(deadline)},
                ":x": {"N": str(math.ceil(deadline))},  # as _item: never ahead of :e
                ":t": write_token(),
            },
        )

    def persist(self, key: str) -> bool:
        return self._update_live(key, "SET #r = :t REMOVE #e, #x", {":t": write_token()})

    def _update_live(self, key: str, update: str, values: dict[str, Any]) -> bool:
        """Apply ``update`` to the live item at ``key``; False if absent or expired."""
        condition = f"attribute_exists(#s) AND {_LIVE}"
        return bool(
            self.backend.once(
                "update_item",
                TableName=self._t,
                Key=self._key(key),
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames=self._names(update, condition),
                ExpressionAttributeValues={**values, ":now": self._now()},
            )
        )

    def incr(self, key: str, delta: int) -> int:
        # The sum must stay in int64: the stored counter must lie in [MIN-d, MAX-d].
        low, high = max(INT64_MIN, INT64_MIN - delta), min(INT64_MAX, INT64_MAX - delta)
        for attempt in retry_schedule():
            result = self.backend.once(
                "update_item",
                TableName=self._t,
                Key=self._key(key),
                UpdateExpression="ADD #n :d SET #r = :t",
                # A live counter keeps its deadline; an expired item is reset below.
                ConditionExpression="attribute_not_exists(#v) AND "
                f"(attribute_not_exists(#n) OR #n BETWEEN :lo AND :hi) AND {_LIVE}",
                ExpressionAttributeNames={
                    "#v": VALUE,
                    "#n": COUNTER,
                    "#r": VERSION,
                    "#e": EXPIRES_AT,
                },
                ExpressionAttributeValues={
                    ":d": {"N": str(delta)},
                    ":lo": {"N": str(low)},
                    ":hi": {"N": str(high)},
                    ":t": write_token(),
                    ":now": self._now(),
                },
                # ALL_NEW, not UPDATED_NEW: an ADD of 0 changes nothing, and moto then
                # leaves the counter out of UPDATED_NEW.  It costs no read capacity.
                ReturnValues="ALL_NEW",
                returns="Attributes",
            )
            if result is not None:
                return int(result[COUNTER]["N"])
            # Refused: expired, the total would leave int64, or the value is bytes.
            total = self._convert_and_add(key, delta)
            if total is not None:
                return total
            attempt()
        raise ConflictError(f"incr on {key!r} kept conflicting with other writers")

    def _convert_and_add(self, key: str, delta: int) -> int | None:
        """Start an expired item afresh as ``delta``, or turn a value stored as decimal
        text into a counter, adding ``delta``.

        Returns the total, or None if the item changed meanwhile (the caller tries
        again); raises ``NotAnIntegerError`` if it holds no integer or the total would
        leave int64.
        """
        item = self._fetch(key)
        if item is None:
            return None  # deleted meanwhile: ADD will create it
        if self._expired(item):
            done = self.backend.once(
                "update_item",
                TableName=self._t,
                Key=self._key(key),
                UpdateExpression="SET #n = :d, #r = :t REMOVE #v, #e, #x",
                ConditionExpression="#e = :e",  # still that expired item
                ExpressionAttributeNames={
                    "#v": VALUE,
                    "#n": COUNTER,
                    "#r": VERSION,
                    "#e": EXPIRES_AT,
                    "#x": EXPIRES,
                },
                ExpressionAttributeValues={
                    ":d": {"N": str(delta)},
                    ":e": item[EXPIRES_AT],
                    ":t": write_token(),
                },
            )
            return delta if done else None
        if COUNTER in item:
            if not INT64_MIN <= int(item[COUNTER]["N"]) + delta <= INT64_MAX:
                raise not_an_integer(key)
            return None  # a counter in range: it changed meanwhile, ADD again
        raw = bytes(item[VALUE]["B"])
        try:
            total = check_counter(parse_counter(raw) + delta)
        except NotAnIntegerError:
            raise not_an_integer(key) from None
        done = self.backend.once(
            "update_item",
            TableName=self._t,
            Key=self._key(key),
            UpdateExpression="SET #n = :total, #r = :t REMOVE #v",
            ConditionExpression=f"#v = :raw AND {_LIVE}",
            ExpressionAttributeNames={
                "#v": VALUE,
                "#n": COUNTER,
                "#r": VERSION,
                "#e": EXPIRES_AT,
            },
            ExpressionAttributeValues={
                ":total": {"N": str(total)},
                ":raw": {"B": raw},
                ":t": write_token(),
                ":now": self._now(),
            },
        )
        return total if done else None

    # -- many items ---------------------------------------------------------------------------

    def _query(self, prefix: str, *, live: bool | None = True, **extra: Any) -> Iterator[Any]:
        """Pages of a consistent Query on this namespace (one request per page): the live
        items (``live=True``), the expired ones (``False``) or all (``None``)."""
        condition = "#p = :ns"
        values: dict[str, Any] = {":ns": self._ns}
        if prefix:
            condition += " AND begins_with(#s, :prefix)"
            values[":prefix"] = {"S": prefix}
        if live is not None:
            extra["FilterExpression"] = _LIVE if live else "#e <= :now"
            values[":now"] = self._now()
        used = (condition, extra.get("ProjectionExpression", ""), extra.get("FilterExpression", ""))
        request = {
            "TableName": self._t,
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": self._names(*used),
            "ExpressionAttributeValues": values,
            "ConsistentRead": True,
            **extra,
        }
        while True:
            page = self.backend.safe("query", **request)
            yield page
            last = page.get("LastEvaluatedKey")
            if not last:
                return
            request["ExclusiveStartKey"] = last

    def keys(self, prefix: str = "") -> Iterator[str]:
        for page in self._query(prefix, ProjectionExpression="#s"):
            for item in page.get("Items", ()):
                yield item[self._sk]["S"]

    def items(self, prefix: str = "") -> Iterator[tuple[str, bytes]]:
        for page in self._query(prefix, ProjectionExpression="#s, #v, #n"):
            for item in page.get("Items", ()):
                yield item[self._sk]["S"], self._bytes(item)

    def count(self, prefix: str = "") -> int:
        return sum(int(page.get("Count", 0)) for page in self._query(prefix, Select="COUNT"))

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        return {key: value for key, (value, _) in self.get_many_with_deadlines(keys).items()}

    def get_many_with_deadlines(self, keys: Sequence[str]) -> dict[str, tuple[bytes, float | None]]:
        found: dict[str, tuple[bytes, float | None]] = {}
        unique = list(dict.fromkeys(keys))  # BatchGetItem refuses duplicate keys
        for start in range(0, len(unique), BATCH_GET):
            request = {
                self._t: {
                    "Keys": [self._key(k) for k in unique[start : start + BATCH_GET]],
                    "ConsistentRead": True,
                    "ProjectionExpression": "#s, #v, #n, #e",
                    "ExpressionAttributeNames": self._names("#s #v #n #e"),
                }
            }
            for response in self.backend.batch("batch_get_item", request, "UnprocessedKeys"):
                for item in response.get("Responses", {}).get(self._t, ()):
                    if not self._expired(item):
                        found[item[self._sk]["S"]] = (self._bytes(item), self._deadline(item))
        return found

    def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        self.set_many_until([(key, value, None) for key, value in items])

    def set_many_until(self, items: Sequence[tuple[str, bytes, float | None]]) -> None:
        # Not atomic: DynamoDB batches are not transactions (a failure part-way leaves
        # the first requests written).  The last value given for a key wins.
        last = {key: (value, deadline) for key, value, deadline in items}
        puts = [{"PutRequest": {"Item": self._item(k, v, d)}} for k, (v, d) in last.items()]
        self._write_batches(puts)

    def _write_batches(self, requests: list[dict[str, Any]]) -> None:
        for start in range(0, len(requests), BATCH_WRITE):
            chunk = {self._t: requests[start : start + BATCH_WRITE]}
            for _ in self.backend.batch("batch_write_item", chunk, "UnprocessedItems"):
                pass

    def clear(self, prefix: str = "") -> int:
        removed = 0
        for page in self._query(prefix, live=None, ProjectionExpression="#p, #s, #e"):
            items = page.get("Items", ())
            doomed = [
                {"DeleteRequest": {"Key": {self._pk: i[self._pk], self._sk: i[self._sk]}}}
                for i in items
            ]
            self._write_batches(doomed)
            removed += sum(1 for i in items if not self._expired(i))  # expired: absent
        return removed

    def write_batch(
        self,
        sets: Sequence[tuple[str, bytes, float | None]],
        removes: Sequence[str] = (),
        clears: Sequence[str] = (),
        *,
        atomic: bool = True,
    ) -> None:
        """One ``TransactWriteItems`` (``atomic=True``): the keys under ``clears`` are
        read first (a Query each) and deleted in the transaction with ``removes``, next
        to a ``Put`` per entry of ``sets``.  A batch beyond one transaction (100 items,
        4 MB) raises ``BatchNotAtomicError`` before anything is written; with
        ``atomic=False`` it goes out as ``BatchWriteItem`` requests instead."""
        writing = {key for key, _, _ in sets}
        doomed = dict.fromkeys(key for key in removes if key not in writing)
        for prefix in clears:
            for page in self._query(prefix, live=None, ProjectionExpression="#s"):
                for item in page.get("Items", ()):
                    key = item[self._sk]["S"]
                    if key not in writing:
                        doomed[key] = None
        items = [self._item(key, value, deadline) for key, value, deadline in sets]
        if not atomic:
            deletes = [{"DeleteRequest": {"Key": self._key(key)}} for key in doomed]
            self._write_batches([*deletes, *({"PutRequest": {"Item": i}} for i in items)])
            return
        actions = len(doomed) + len(items)
        size = sum(len(key.encode()) for key in doomed) + sum(
            len(key.encode()) + len(value) for key, value, _ in sets
        )
        size += actions * (len(self.namespace.encode()) + 100)  # names, token, deadlines
        if actions > TRANSACT_ITEMS or size > TRANSACT_BYTES:
            raise BatchNotAtomicError(
                f"this batch is {actions} items and about {size} bytes; one DynamoDB "
                f"transaction holds at most {TRANSACT_ITEMS} items and {TRANSACT_BYTES} "
                "bytes. Nothing was written: split it, or pass atomic=False to apply it "
                "in steps"
            )
        if not actions:
            return
        transact = [{"Delete": {"TableName": self._t, "Key": self._key(k)}} for k in doomed]
        transact += [{"Put": {"TableName": self._t, "Item": item}} for item in items]
        self.backend.transact(transact)

    def purge(self) -> int:
        purged = 0
        for page in self._query("", live=False, ProjectionExpression="#s, #e"):
            for item in page.get("Items", ()):
                purged += self._delete_expired(item[self._sk]["S"], item[EXPIRES_AT])
        return purged

    def _delete_expired(self, key: str, deadline: dict[str, str]) -> int:
        """Delete ``key`` if it still holds that expired ``deadline`` (1), else 0: a
        batch delete cannot be conditional, and the key may have been written since."""
        return int(
            bool(
                self.backend.once(
                    "delete_item",
                    TableName=self._t,
                    Key=self._key(key),
                    ConditionExpression="#e = :e",
                    ExpressionAttributeNames={"#e": EXPIRES_AT},
                    ExpressionAttributeValues={":e": deadline},
                )
            )
        )


class DynamoDBBackend(Backend):
    """One DynamoDB table for every namespace (partition key = namespace)."""

    name = "dynamodb"
    durable = True
    multiprocess = True
    expiry = True
    atomic_batches = True  # within one transaction's limits (100 items, 4 MB)
    isolated_batches = False  # Query and BatchGetItem may see part of a transaction
    # botocore spends 2-4 ms of CPU per call here, holding the GIL: past ~3 threads more
    # calls only queue for it, and so does the event loop (measured beside an async
    # store's 10 busy tasks: worst tick 21-26 ms at 8 threads, 5-10 ms at 3).
    async_threads = 3

    def __init__(self, url: StoreURL, options: Options) -> None:
        super().__init__(url, options)
        self.table = check_table(options.take("table", url.host or url.path or "", str))
        self.pk, self.sk = check_keys(
            options.take("pk", DEFAULT_PK, str), options.take("sk", DEFAULT_SK, str)
        )
        self.region = options.take("region", None, str)
        self.endpoint_url = options.take("endpoint_url", None, str)
        self.profile = options.take("profile", None, str)
        self.create = options.take("create", False)
        self.connect_timeout = options.take("connect_timeout", 5.0)
        self.read_timeout = options.take("read_timeout", 10.0)
        self.max_attempts = options.take("max_attempts", 8)
        self.pool_max = options.take("pool_max", 20)
        if self.max_attempts < 1 or self.pool_max < 1:
            raise ConfigurationError("max_attempts and pool_max must be at least 1")
        # Room for the longest namespace and key, the attribute names, and the numbers:
        # the version and the deadline's two (at most 21 bytes each) plus 11 spare.
        overhead = _MAX_NAMESPACE + _MAX_KEY + len(self.pk) + len(self.sk)
        overhead += len(VALUE) + len(VERSION) + len(EXPIRES_AT) + len(EXPIRES) + 3 * 21 + 11
        self.max_value_size = min(DEFAULT_MAX_VALUE_SIZE, ITEM_LIMIT - overhead)
        self.where = self.endpoint_url or f"DynamoDB {self.region or '(default region)'}"
        self._safe_client: Any = None
        self._once_client: Any = None
        self._fork_gen = forks.generation
        self._lock = threading.Lock()

    # -- clients ----------------------------------------------------------------------------

    def _clients(self) -> tuple[Any, Any]:
        dummy = "local" if self._local_dummy_credentials() else None
        session = boto3.session.Session(
            aws_access_key_id=dummy,
            aws_secret_access_key=dummy,
            profile_name=self.profile,
            region_name=self.region,
        )
        common = Config(
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            max_pool_connections=self.pool_max,
            user_agent_extra="plugstore",
        )
        # total_max_attempts counts the first attempt (botocore's max_attempts does not).
        retries = {"mode": "standard", "total_max_attempts": self.max_attempts}
        safe = common.merge(Config(retries=retries))  # type: ignore[arg-type]
        once = common.merge(Config(retries={"mode": "standard", "total_max_attempts": 1}))
        make = session.client
        return (
            make("dynamodb", endpoint_url=self.endpoint_url, config=safe),
            make("dynamodb", endpoint_url=self.endpoint_url, config=once),
        )

    def _local_dummy_credentials(self) -> bool:
        """Whether to sign with dummy credentials.

        Only for a loopback endpoint (a local server, which checks none) when no
        credentials are configured on this machine -- environment, profiles, shared
        files, SSO, a credential process; the instance and container roles are not
        asked, so nothing leaves the machine looking for real ones.
        """
        if not self.endpoint_url or not _is_loopback(self.endpoint_url):
            return False
        session = botocore.session.Session(profile=self.profile)
        resolver = session.get_component("credential_provider")
        for remote in ("iam-role", "container-role"):
            resolver.remove(remote)
        try:
            return resolver.load_credentials() is None
        except BotoCoreError:
            return False  # configured, but broken: let boto3 report it

    def open(self) -> None:
        self.connect()
        self._check_table()

    def connect(self) -> None:
        """Make the clients without touching the table (for tooling such as create-table)."""
        try:
            with self._lock:
                self._fork_gen = forks.generation
                self._safe_client, self._once_client = self._clients()
        except NoRegionError:
            raise ConfigurationError(
                "no AWS region: add ?region=... to the URL or set AWS_REGION"
            ) from None
        except BotoCoreError as exc:
            raise self._unavailable(exc) from None

    def close(self) -> None:
        with self._lock:
            safe, once = self._safe_client, self._once_client
            self._safe_client = self._once_client = None
        if self._fork_gen == forks.generation:
            for client in (safe, once):
                if client is not None:
                    client.close()

    def _client(self, once: bool) -> Any:
        if self._fork_gen != forks.generation:
            # A forked child: its own HTTP connections, never the parent's sockets.
            with forks.child_lock:
                if self._fork_gen != forks.generation:
                    self._lock = threading.Lock()
                    forks.keep_inherited((self._safe_client, self._once_client))
                    self._safe_client, self._once_client = self._clients()
                    self._fork_gen = forks.generation
        client = self._once_client if once else self._safe_client
        if client is None:
            raise BackendUnavailableError("the DynamoDB store is closed")
        return client

    def _unavailable(self, exc: BaseException) -> BackendUnavailableError:
        if isinstance(exc, NoCredentialsError):
            detail = "no AWS credentials found (environment, ~/.aws, profile or role)"
        else:
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return BackendUnavailableError(f"{self.where} is unavailable: {detail}")

    # -- requests -------------------------------------------------------------------------------

    def safe(self, operation: str, **request: Any) -> Any:
        """A request that may be repeated: botocore retries it (throttling, lost replies)."""
        try:
            return getattr(self._client(False), operation)(**request)
        except ClientError as exc:
            raise self._refused(exc) from None
        except BotoCoreError as exc:
            raise self._unavailable(exc) from None

    def _refused(self, exc: ClientError) -> Exception:
        """The plugstore error for a request DynamoDB answered with an error."""
        code = _code(exc)
        if code == "ResourceNotFoundException":
            return TableMissing(f"DynamoDB table {self.table!r} does not exist at {self.where}")
        message = str(exc.response.get("Error", {}).get("Message", "")).strip()
        # Throttled past every retry, access denied, an internal error (which may or may
        # not have applied): the store cannot serve the request now.
        return BackendUnavailableError(
            f"{self.where} refused {exc.operation_name}: {code}"
            + (f" ({message.splitlines()[0]})" if message else "")
        )

    def once(self, operation: str, *, returns: str | None = None, **request: Any) -> Any:
        """A request that must not be applied twice.

        Returns True when it was applied (or the ``returns`` part of the response), False
        (or None) when its condition failed.  Throttling -- refused, nothing applied -- is
        retried with backoff; a lost reply raises ``BackendUnavailableError``.
        """
        client = self._client(True)
        delay = 0.05
        for _ in range(self.max_attempts * 4):
            try:
                response = getattr(client, operation)(**request)
                return response.get(returns) if returns else True
            except ClientError as exc:
                code = _code(exc)
                if code == _CHECK_FAILED:
                    return None if returns else False
                if code not in _THROTTLED:
                    raise self._refused(exc) from None
            except BotoCoreError as exc:
                raise self._unavailable(exc) from None
            time.sleep(random.uniform(0, delay))
            delay = min(delay * 2, 2.0)
        raise BackendUnavailableError(f"{self.where}: still throttled after retrying")

    def transact(self, actions: list[dict[str, Any]]) -> None:
        """One ``TransactWriteItems``, all-or-nothing.  Its client request token makes
        a repeat after a lost reply (botocore's retry) take effect once.  After a
        cancellation (a conflict with another transaction) or throttling, nothing was
        applied: the retry is a new request with a new token, never one the service may
        answer from the failed attempt.  ``TransactionInProgressException`` means the
        same token's first attempt is still running: that retry keeps the token."""
        token = secrets.token_hex(16)
        delay = 0.05
        for _ in range(self.max_attempts * 4):
            try:
                self._client(False).transact_write_items(
                    TransactItems=actions, ClientRequestToken=token
                )
                return
            except ClientError as exc:
                code = _code(exc)
                reasons = {
                    str(reason.get("Code", "None"))
                    for reason in exc.response.get("CancellationReasons", ())
                }
                conflict = code == "TransactionCanceledException" and reasons <= {
                    "None",
                    "TransactionConflict",
                    *_THROTTLED,
                }
                if not (conflict or code in _THROTTLED or code == "TransactionInProgressException"):
                    raise self._refused(exc) from None
                if code != "TransactionInProgressException":
                    token = secrets.token_hex(16)  # refused whole: a new request
            except BotoCoreError as exc:
                raise self._unavailable(exc) from None
            time.sleep(random.uniform(0, delay))
            delay = min(delay * 2, 2.0)
        raise BackendUnavailableError(f"{self.where}: a transaction kept conflicting")

    def batch(self, operation: str, request: dict[str, Any], leftover: str) -> Iterator[Any]:
        """Send a batch request, then what it left unprocessed, with backoff, until done."""
        delay = 0.05
        pending: dict[str, Any] = request
        for _ in range(50):
            response = self.safe(operation, RequestItems=pending)
            yield response
            pending = response.get(leftover) or {}
            if not pending:
                return
            time.sleep(random.uniform(0, delay))
            delay = min(delay * 2, 2.0)
        raise BackendUnavailableError(f"{self.where}: a batch stayed unprocessed (throttled)")

    # -- table ---------------------------------------------------------------------------------

    def _check_table(self) -> None:
        try:
            table = self.safe("describe_table", TableName=self.table)["Table"]
        except TableMissing:
            if not self.create:
                raise BackendUnavailableError(
                    f"DynamoDB table {self.table!r} does not exist at {self.where}: create it "
                    "with 'plugstore dynamodb create-table URL', from Terraform "
                    "('plugstore dynamodb terraform'), or open with ?create=true"
                ) from None
            table = self.create_table()
        self._check_schema(table)

    def _check_schema(self, table: dict[str, Any]) -> None:
        expected = key_schema(self.pk, self.sk)
        have_keys = sorted((k["AttributeName"], k["KeyType"]) for k in table["KeySchema"])
        want_keys = sorted((k["AttributeName"], k["KeyType"]) for k in expected["KeySchema"])
        types = {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]}
        if have_keys != want_keys or types.get(self.pk) != "S" or types.get(self.sk) != "S":
            raise ConfigurationError(
                f"DynamoDB table {self.table!r} has keys {have_keys}, but this store needs "
                f"{self.pk!r} (string, partition) and {self.sk!r} (string, sort); set the "
                "pk/sk options to match"
            )

    def create_table(
        self,
        *,
        provisioned: tuple[int, int] | None = None,
        point_in_time_recovery: bool = False,
        wait: float = 300.0,
    ) -> dict[str, Any]:
        """Create the table (idempotent), wait until ACTIVE, return its description."""
        try:
            self._client(False).create_table(
                TableName=self.table, **key_schema(self.pk, self.sk), **billing(provisioned)
            )
        except ClientError as exc:
            if _code(exc) != "ResourceInUseException":  # exists already: checked below
                raise self._refused(exc) from None
        except BotoCoreError as exc:
            raise self._unavailable(exc) from None
        waiter = self._client(False).get_waiter("table_exists")
        try:
            waiter.wait(
                TableName=self.table,
                WaiterConfig={"Delay": 1, "MaxAttempts": max(1, round(wait))},
            )
        except botocore.exceptions.WaiterError as exc:
            raise self._unavailable(exc) from None
        if point_in_time_recovery:
            self.safe(
                "update_continuous_backups",
                TableName=self.table,
                PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
            )
        table: dict[str, Any] = self.safe("describe_table", TableName=self.table)["Table"]
        self._check_schema(table)
        self.enable_time_to_live()
        return table

    def time_to_live(self) -> tuple[str, str | None]:
        """The table's TTL status (``ENABLED``, ``DISABLED``, ...) and attribute."""
        found = self.safe("describe_time_to_live", TableName=self.table)
        description = found.get("TimeToLiveDescription", {})
        return description.get("TimeToLiveStatus", "DISABLED"), description.get("AttributeName")

    def enable_time_to_live(self) -> tuple[str, str | None]:
        """Let DynamoDB delete expired items itself (idempotent).  A table whose TTL is
        on another attribute is left alone: reads filter expired items either way, and
        ``purge`` deletes them."""
        status, attribute = self.time_to_live()
        if status in ("DISABLED", "DISABLING"):
            try:
                self._client(False).update_time_to_live(
                    TableName=self.table, TimeToLiveSpecification=time_to_live()
                )
            except ClientError as exc:
                raise self._refused(exc) from None
            except BotoCoreError as exc:
                raise self._unavailable(exc) from None
            status, attribute = self.time_to_live()
        return status, attribute

    def drop(self) -> None:
        """Delete the table (tests and tooling; not part of the Backend contract)."""
        self.safe("delete_table", TableName=self.table)

    # -- backend API ------------------------------------------------------------------------------

    def bucket(self, namespace: str) -> DynamoDBBucket:
        return DynamoDBBucket(self, namespace)

    def _scan(self, filter_expression: str, projection: str) -> Iterator[dict[str, Any]]:
        """The items of the whole table that pass ``filter_expression`` (``:now`` is the
        store clock), paginated."""
        request: dict[str, Any] = {
            "TableName": self.table,
            "ProjectionExpression": projection,
            "FilterExpression": filter_expression,
            "ExpressionAttributeNames": {"#p": self.pk, "#s": self.sk, "#e": EXPIRES_AT},
            "ExpressionAttributeValues": {":now": {"N": _number(self.clock())}},
            "ConsistentRead": True,  # a namespace written just now is listed
        }
        used = f"{filter_expression} {projection}"
        names = request["ExpressionAttributeNames"]
        request["ExpressionAttributeNames"] = {k: v for k, v in names.items() if k in used}
        while True:
            page = self.safe("scan", **request)
            yield from page.get("Items", ())
            if not page.get("LastEvaluatedKey"):
                return
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def namespaces(self) -> list[str]:
        """Every partition key with a live item: a Scan of the whole table (keys only,
        paginated)."""
        return sorted({item[self.pk]["S"] for item in self._scan(_LIVE, "#p")})

    def purge(self, namespace: str | None = None) -> dict[str, int]:
        """Delete expired items now (DynamoDB's own TTL sweep takes up to days): a Query
        of ``namespace``, or a Scan of the table, then one conditional delete each."""
        if namespace is not None:
            purged = self.bucket(namespace).purge()
            return {namespace: purged} if purged else {}
        counts: dict[str, int] = {}
        for item in self._scan("#e <= :now", "#p, #s, #e"):
            name = item[self.pk]["S"]
            deleted = self.bucket(name)._delete_expired(item[self.sk]["S"], item[EXPIRES_AT])
            if deleted:
                counts[name] = counts.get(name, 0) + deleted
        return counts

    def identity(self) -> tuple[object, ...]:
        endpoint: object = self.endpoint_url
        if self.endpoint_url:
            parts = urlsplit(self.endpoint_url)
            host = "loopback" if _is_loopback(self.endpoint_url) else parts.hostname
            endpoint = (host, parts.port)
        return (self.name, endpoint, self.region, self.table)

    def info(self) -> dict[str, str]:
        table = self.safe("describe_table", TableName=self.table)["Table"]
        ttl, attribute = self.time_to_live()
        billing = table.get("BillingModeSummary", {}).get("BillingMode", "PROVISIONED")
        return {
            **super().info(),
            "endpoint": self.where,
            "driver": f"boto3 {boto3.__version__}, botocore {botocore.__version__}",
            "table": f"{self.table} ({table.get('TableStatus', '?')}, {billing}, "
            f"{table.get('ItemCount', '?')} items)",
            "keys": f"{self.pk} (partition), {self.sk} (sort)",
            "ttl": f"{ttl} on {attribute!r}" if attribute else ttl,
            "max value size": f"{self.max_value_size} bytes",
        }


__all__ = ["DynamoDBBackend", "DynamoDBBucket", "key_schema"]
