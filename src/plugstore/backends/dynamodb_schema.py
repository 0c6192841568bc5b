"""What a plugstore DynamoDB table looks like, without importing boto3.

Shared by the backend (which checks a table against it), ``plugstore dynamodb
create-table`` and ``plugstore dynamodb terraform`` (which print or create it).
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..errors import ConfigurationError

TABLE_RE = re.compile(r"[A-Za-z0-9_.-]{3,255}\Z")
ATTR_RE = re.compile(r"[A-Za-z0-9_.-]{1,255}\Z")
#: Item attributes besides the two keys.
VALUE, COUNTER, VERSION = "value", "counter", "version"
#: A key's deadline: exact epoch seconds (what reads filter on), and the same rounded up
#: to whole seconds, the table's TTL attribute (DynamoDB's own sweep reads whole seconds).
EXPIRES_AT, EXPIRES = "expires_at", "expires"
RESERVED = (VALUE, COUNTER, VERSION, EXPIRES_AT, EXPIRES)
DEFAULT_PK, DEFAULT_SK = "namespace", "key"


def check_table(name: str) -> str:
    """``name`` if it is a valid DynamoDB table name, else ``ConfigurationError``."""
    if not TABLE_RE.match(name):
        raise ConfigurationError(
            f"invalid DynamoDB table name {name!r}: 3-255 letters, digits, _ . - "
            "(dynamodb://TABLE?region=...)"
        )
    return name


def check_keys(pk: str, sk: str) -> tuple[str, str]:
    """The key attribute names, validated."""
    for what, attr in (("pk", pk), ("sk", sk)):
        if not ATTR_RE.match(attr) or attr in RESERVED:
            raise ConfigurationError(f"invalid attribute name for {what}: {attr!r}")
    if pk == sk:
        raise ConfigurationError("pk and sk must be different attributes")
    return pk, sk


def key_schema(pk: str, sk: str) -> dict[str, Any]:
    """``KeySchema`` and ``AttributeDefinitions`` for CreateTable."""
    return {
        "KeySchema": [
            {"AttributeName": pk, "KeyType": "HASH"},
            {"AttributeName": sk, "KeyType": "RANGE"},
        ],
        "AttributeDefinitions": [
            {"AttributeName": pk, "AttributeType": "S"},
            {"AttributeName": sk, "AttributeType": "S"},
        ],
    }


def time_to_live() -> dict[str, Any]:
    """The UpdateTimeToLive specification: DynamoDB deletes items past ``expires``."""
    return {"Enabled": True, "AttributeName": EXPIRES}


def billing(provisioned: tuple[int, int] | None) -> dict[str, Any]:
    """The CreateTable billing arguments: on-demand unless (read, write) units are given."""
    if provisioned is None:
        return {"BillingMode": "PAY_PER_REQUEST"}
    read, write = provisioned
    if read < 1 or write < 1:
        raise ConfigurationError("provisioned capacity needs at least 1 read and 1 write unit")
    return {
        "BillingMode": "PROVISIONED",
        "ProvisionedThroughput": {"ReadCapacityUnits": read, "WriteCapacityUnits": write},
    }


def terraform(
    table: str,
    *,
    pk: str = DEFAULT_PK,
    sk: str = DEFAULT_SK,
    provisioned: tuple[int, int] | None = None,
    point_in_time_recovery: bool = False,
    resource: str = "plugstore",
) -> str:
    """An ``aws_dynamodb_table`` resource matching exactly what the backend expects."""
    check_table(table)
    check_keys(pk, sk)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", resource):
        raise ConfigurationError(f"invalid Terraform resource name {resource!r}")
    q = json.dumps  # HCL string literals: JSON's escaping is valid HCL
    mode = billing(provisioned)
    lines = [
        f"resource {q('aws_dynamodb_table')} {q(resource)} {{",
        f"  name         = {q(table)}",
        f"  billing_mode = {q(mode['BillingMode'])}",
    ]
    if provisioned is not None:
        lines += [
            f"  read_capacity  = {provisioned[0]}",
            f"  write_capacity = {provisioned[1]}",
        ]
    lines += [f"  hash_key     = {q(pk)}", f"  range_key    = {q(sk)}", ""]
    for name in (pk, sk):
        lines += ["  attribute {", f"    name = {q(name)}", '    type = "S"', "  }", ""]
    lines += [
        "  ttl {",
        f"    attribute_name = {q(EXPIRES)}",
        "    enabled        = true",
        "  }",
        "",
        "  point_in_time_recovery {",
        f"    enabled = {'true' if point_in_time_recovery else 'false'}",
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"
