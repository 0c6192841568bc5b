"""``plugstore copy`` of 100,000 keys through every server backend and back.

sqlite -> postgresql -> mysql -> redis -> sqlite, each hop a real ``plugstore copy``
subprocess; after every hop the destination's key count and a checksum over every
namespace, key and stored byte match the source.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import plugstore
from servers import require_server

RUN = uuid.uuid4().hex[:12]
PG = f"postgresql://postgres@127.0.0.1:5432/test?schema=pscopy_{RUN}"
MYSQL_DB = f"pscopy_{RUN}"
MYSQL = f"mysql://root@127.0.0.1:3306/{MYSQL_DB}"
REDIS = f"redis://127.0.0.1:6379/0?prefix=pscopy:{RUN}:"


@pytest.fixture(scope="module")
def servers() -> Iterator[None]:
    require_server("PostgreSQL", "127.0.0.1", 5432)
    require_server("MariaDB", "127.0.0.1", 3306)
    require_server("Redis", "127.0.0.1", 6379)
    import pymysql

    admin = pymysql.connect(host="127.0.0.1", user="root", password="", autocommit=True)
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{MYSQL_DB}`")
    try:
        yield
    finally:
        import psycopg
        import redis

        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{MYSQL_DB}`")
        admin.close()
        with psycopg.connect("host=127.0.0.1 dbname=test user=postgres", autocommit=True) as pg:
            pg.execute(f"DROP SCHEMA IF EXISTS pscopy_{RUN} CASCADE")
        client = redis.Redis(host="127.0.0.1", port=6379)
        doomed = list(client.scan_iter(match=f"pscopy:{RUN}:*", count=1000))
        for start in range(0, len(doomed), 1000):
            client.unlink(*doomed[start : start + 1000])


def checksum(url: str) -> tuple[int, str]:
    """(keys, sha256 over every namespace, key and stored byte, in sorted order)."""
    digest = hashlib.sha256()
    total = 0
    with plugstore.open(url) as store:
        for name in sorted(store.namespaces()):
            for key, raw in sorted(store.backend.bucket(name).items()):
                digest.update(f"{name}\0{key}\0".encode() + raw + b"\0")
                total += 1
    return total, digest.hexdigest()


@pytest.mark.slow
@pytest.mark.usefixtures("servers")
def test_copy_100k_keys_through_every_server_backend(tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path / 'source.db'}"
    with plugstore.open(source) as store:
        for n in range(5):
            store.namespace(f"plugin{n}").set_many(
                {f"key:{i:06d}": {"n": n, "i": i, "tags": ("x", i % 7)} for i in range(20_000)}
            )
        # and the awkward ones: unicode, glob and SQL metacharacters, binary values
        odd = store.namespace("odd.ns-1")
        odd.set_many({"ké\U0001f600": b"\x00\xff", "*?[x]": "'; DROP", "}:i": 2**62})
    expected = checksum(source)
    assert expected[0] == 100_003
    back = f"sqlite:///{tmp_path / 'back.db'}"
    env = {**os.environ, "COLUMNS": "100"}
    hops = [source, PG, MYSQL, REDIS, back]
    for src, dst in itertools.pairwise(hops):
        result = subprocess.run(
            [sys.executable, "-m", "plugstore.cli", "copy", src, dst],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
            check=False,
        )
        assert result.returncode == 0, (src, dst, result.stderr)
        assert checksum(dst) == expected, f"{src} -> {dst}"
