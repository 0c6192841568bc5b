"""The ``plugstore`` command: every command, its bad paths, masking, and round trips."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import math
import os
import shutil
import subprocess
import sys
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import IO, Any

import pytest
from click.testing import CliRunner, Result

import plugstore
from plugstore.backends.memory import MemoryBackend
from plugstore.cli import cli
from plugstore.errors import BackendUnavailableError

PASSWORD = "hunter2-Zq9"  # must never appear in any output

# Every type the json codec carries, with odd keys (unicode, spaces, newline, glob chars).
VALUES: dict[str, Any] = {
    "str": "héllo ✓ \n\t 'single' \"double\" $t",
    "empty": "",
    "int": 42,
    "negative": -7,
    "big-int": 2**70,
    "bool": True,
    "none": None,
    "float": 1.5,
    "inf": float("-inf"),
    "list": [1, [2, [3]], {"a": None}],
    "nested dict": {"a": {"b": {"c": [1, 2, {"d": (1, 2)}]}}, "$t": "not a tag"},
    "non-str keys": {1: "one", (1, 2): "tuple key", None: 0},
    "tuple": (1, "a", (2.5, None)),
    "set": {1, 2, 3},
    "frozenset": frozenset({"x", "y"}),
    "bytes": b"\x00\x01\xff",
    "bytearray": bytearray(b"ab"),
    "datetime": dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.timezone.utc),
    "naive datetime": dt.datetime(2020, 1, 1),
    "date": dt.date(2024, 2, 29),
    "time": dt.time(23, 59, 59),
    "timedelta": dt.timedelta(days=-1, seconds=5, microseconds=7),
    "decimal": Decimal("3.14159265358979323846"),
    "uuid": uuid.UUID(int=12345),
    "complex": 1 + 2j,
    "ünïcode kéy": "ok",
    "glob*?[key]": "ok",
    "line\nbreak key": "ok",
}
# What only pickle carries: these must travel as raw records.
PICKLE_ONLY: dict[str, Any] = {
    "fraction": Fraction(1, 3),
    "ordered": OrderedDict([("b", 1), ("a", 2)]),
    "list of fractions": [Fraction(1, 2), 3],
}


def same(a: Any, b: Any) -> bool:
    """Equal values of exactly the same types, all the way down (nan equals nan)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, dict):
        return list(a) == list(b) or (a.keys() == b.keys() and all(same(a[k], b[k]) for k in a))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def assert_same_data(expected: dict[str, Any], actual: dict[str, Any]) -> None:
    assert sorted(actual) == sorted(expected)
    for key, value in expected.items():
        assert same(value, actual[key]), (key, value, actual[key])


@pytest.fixture
def runner() -> CliRunner:
    try:  # click < 8.2 mixes stderr into stdout unless told not to
        return CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    except TypeError:
        return CliRunner()


@pytest.fixture
def run(runner: CliRunner) -> Any:
    def invoke(*args: str, input: str | bytes | IO[Any] | None = None) -> Result:
        return runner.invoke(cli, list(args), input=input, catch_exceptions=False)

    return invoke


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.sqlite3'}"


@pytest.fixture
def mem() -> str:
    """A memory store shared by name in this process, so it outlives one invocation."""
    return f"memory://cli-{uuid.uuid4().hex}"


def one_error_line(result: Result) -> str:
    """The stderr of a failed command: exactly one ``error:`` line, no traceback."""
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr
    return lines[0]


def contents(url: str, **options: Any) -> dict[str, dict[str, Any]]:
    with plugstore.open(url, **options) as store:
        return {name: dict(store.namespace(name).items()) for name in store.namespaces()}


# --------------------------------------------------------------------------- basics


def test_importing_the_cli_does_not_import_rich() -> None:
    code = (
        "import sys, plugstore; assert 'click' not in sys.modules\n"
        "import plugstore.cli; print(sorted(m for m in sys.modules if m.split('.')[0] == 'rich'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_version_and_help(run: Any) -> None:
    result = run("--version")
    assert result.exit_code == 0
    assert plugstore.__version__ in result.stdout
    result = run("--help")
    assert result.exit_code == 0
    for command in ("ls", "get", "set", "rm", "dump", "load", "copy", "purge", "doctor"):
        assert command in result.stdout


def test_default_url_comes_from_the_environment(
    run: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'env.sqlite3'}"
    monkeypatch.setenv("PLUGSTORE_URL", url)
    assert run("set", "notes", "k", "1").exit_code == 0
    assert contents(url) == {"notes": {"k": 1}}


# --------------------------------------------------------------------------- get / set


def test_set_and_get_every_tagged_type(run: Any, db: str) -> None:
    from plugstore.codecs import to_tagged_json

    for key, value in VALUES.items():
        text = json.dumps(to_tagged_json(value))
        result = run("-u", db, "set", "types", key, text)
        assert result.exit_code == 0, result.stderr
        result = run("-u", db, "get", "types", key)
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout) == json.loads(text)
    assert_same_data(VALUES, contents(db)["types"])


def test_set_string_and_stdin(run: Any, db: str) -> None:
    assert run("-u", db, "set", "n", "plain", "--string", "not json").exit_code == 0
    assert run("-u", db, "set", "n", "piped", "-", input='{"a": [1, 2]}').exit_code == 0
    assert contents(db)["n"] == {"plain": "not json", "piped": {"a": [1, 2]}}


def test_get_missing_key_is_one_line_and_exit_1(run: Any, db: str) -> None:
    run("-u", db, "set", "notes", "present", "1")
    result = run("-u", db, "get", "notes", "absent")
    assert result.exit_code == 1
    assert one_error_line(result) == "error: no key 'absent' in namespace 'notes'"
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("tomorrow", "invalid JSON value"),
        ("{'a': 1}", "invalid JSON value"),
        ("[1, 2", "invalid JSON value"),
        ('{"$t": "nope", "v": 1}', "unknown type tag"),
        ('{"$t": "bytes", "v": "!!not base64"}', "invalid tagged JSON"),
        ('{"$t": "datetime", "v": 5}', "invalid tagged JSON"),
    ],
)
def test_set_refuses_bad_json(run: Any, db: str, value: str, message: str) -> None:
    result = run("-u", db, "set", "notes", "k", value)
    assert result.exit_code == 1
    assert message in one_error_line(result)
    assert contents(db) == {}


def test_bad_namespace_and_key_names(run: Any, db: str) -> None:
    for args in (
        ("set", "bad name", "k", "1"),
        ("set", ".hidden", "k", "1"),
        ("get", "--", "-x", "k"),
        ("ls", "a/b"),
        ("dump", "no spaces please"),
    ):
        result = run("-u", db, *args)
        assert result.exit_code == 1, args
        assert "invalid namespace" in one_error_line(result)
    result = run("-u", db, "set", "ok", "", "1")
    assert "keys must not be empty" in one_error_line(result)
    assert contents(db) == {}


def test_get_of_a_pickled_object_needs_repr(run: Any, db: str) -> None:
    with plugstore.open(db, codec="pickle") as store:
        store.namespace("objs")["f"] = Fraction(1, 3)
    result = run("-u", db, "--codec", "pickle", "get", "objs", "f")
    assert "--repr" in one_error_line(result)
    result = run("-u", db, "--codec", "pickle", "get", "objs", "f", "--repr")
    assert result.exit_code == 0
    assert result.stdout.strip() == "Fraction(1, 3)"
    # the safe default codec refuses to unpickle, with a clear line
    result = run("-u", db, "get", "objs", "f")
    assert "pickle" in one_error_line(result)


# --------------------------------------------------------------------------- ls / rm


def test_ls_namespaces_and_keys(run: Any, db: str) -> None:
    with plugstore.open(db) as store:
        store.namespace("alpha").update({"a1": 1, "a2": 2, "b1": 3})
        store.namespace("beta")["x"] = 1
    result = run("-u", db, "ls")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == ["alpha\t3", "beta\t1"]
    assert json.loads(run("-u", db, "ls", "--format", "json").stdout) == {"alpha": 3, "beta": 1}
    assert run("-u", db, "ls", "alpha").stdout.splitlines() == ["a1", "a2", "b1"]
    assert run("-u", db, "ls", "alpha", "--prefix", "a").stdout.splitlines() == ["a1", "a2"]
    assert json.loads(run("-u", db, "ls", "alpha", "--format", "json").stdout) == [
        "a1",
        "a2",
        "b1",
    ]
    table = run("-u", db, "ls", "--format", "table").stdout
    assert "alpha" in table
    assert "│" in table  # a rich table, even without a terminal

    assert "no namespace 'gamma'" in one_error_line(run("-u", db, "ls", "gamma"))
    result = run("-u", db, "ls", "--prefix", "a")
    assert result.exit_code == 2
    assert "--prefix needs a NAMESPACE" in one_error_line(result)


def test_ls_table_does_not_interpret_markup_in_keys(run: Any, db: str) -> None:
    with plugstore.open(db) as store:
        store.namespace("n")["[bold]not markup[/bold]"] = 1
    table = run("-u", db, "ls", "n", "--format", "table").stdout
    assert "[bold]not markup[/bold]" in table


def test_rm_keys(run: Any, db: str) -> None:
    with plugstore.open(db) as store:
        store.namespace("n").update({"a": 1, "b": 2, "c": 3})
    assert run("-u", db, "rm", "n", "a", "b").exit_code == 0
    assert contents(db) == {"n": {"c": 3}}
    result = run("-u", db, "rm", "n", "a", "c")
    assert result.exit_code == 1
    assert "no key 'a'" in one_error_line(result)
    assert contents(db) == {}  # the present key was still deleted
    for args in (("rm", "n"), ("rm", "n", "k", "--all")):
        result = run("-u", db, *args)
        assert result.exit_code == 2
        one_error_line(result)


def test_rm_all_asks_unless_yes(run: Any, db: str) -> None:
    with plugstore.open(db) as store:
        store.namespace("keep")["k"] = 1
        store.namespace("drop").update({"a": 1, "b": 2})
    result = run("-u", db, "rm", "drop", "--all", input="n\n")
    assert result.exit_code == 1
    assert "aborted" in result.stderr
    assert set(contents(db)) == {"keep", "drop"}
    result = run("-u", db, "rm", "drop", "--all", input="y\n")
    assert result.exit_code == 0
    assert "dropped namespace 'drop' (2 keys)" in result.stdout
    assert set(contents(db)) == {"keep"}
    assert run("-u", db, "rm", "keep", "--all", "--yes").exit_code == 0
    assert contents(db) == {}
    assert "no namespace 'keep'" in one_error_line(run("-u", db, "rm", "keep", "--all", "-y"))


# --------------------------------------------------------------------------- errors


def test_unknown_backend_and_bad_urls(run: Any) -> None:
    line = one_error_line(run("-u", "nosuch://host/x", "ls"))
    assert "no storage backend named 'nosuch'" in line
    line = one_error_line(run("-u", "not a url/with slash", "ls"))
    assert "neither a store URL nor a backend name" in line
    result = run("--codec", "yaml", "ls")
    assert result.exit_code == 2
    assert "'yaml' is not one of" in one_error_line(result)
    result = run("frobnicate")
    assert result.exit_code == 2
    assert "No such command 'frobnicate'" in one_error_line(result)


def test_signed_pickle_without_secret_is_a_clear_error(
    run: Any, db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PLUGSTORE_SECRET", raising=False)
    line = one_error_line(run("-u", db, "--codec", "signed-pickle", "ls"))
    assert "needs a secret" in line
    line = one_error_line(run("-u", db, "--secret-env", "NOT_SET_ANYWHERE", "ls"))
    assert "NOT_SET_ANYWHERE" in line


def test_debug_prints_the_traceback(run: Any) -> None:
    result = run("--debug", "-u", "nosuch://host/x", "ls")
    assert result.exit_code == 1
    assert "Traceback" in result.stderr
    assert "BackendNotFoundError" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: no storage backend")


def test_keyboard_interrupt_exits_130_quietly(run: Any) -> None:
    class Interrupting(io.BytesIO):
        """stdin where the user presses Ctrl-C (click probes it with read(0) first)."""

        def read(self, size: int | None = -1) -> bytes:
            if size == 0:
                return b""
            raise KeyboardInterrupt

        def readinto(self, *args: Any) -> int:
            raise KeyboardInterrupt

    result = run("load", "-", input=Interrupting())
    assert result.exit_code == 130
    assert "error" not in result.stderr
    assert "Traceback" not in result.stderr


class LeakyBackend(MemoryBackend):
    """A careless third-party backend that puts its unmasked URL in an error."""

    name = "leaky"

    def open(self) -> None:
        raise BackendUnavailableError(f"cannot reach {self.url.render(mask=False)}")


@pytest.fixture
def leaky() -> Iterator[None]:
    plugstore.register("leaky", LeakyBackend)
    yield
    from plugstore import registry

    registry.unregister("leaky")


def test_passwords_never_appear_in_any_output(
    run: Any, leaky: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    quoted = PASSWORD.replace("-", "%2D")
    cases = [
        ("-u", f"memory://admin:{PASSWORD}@shared-{uuid.uuid4().hex}", "doctor"),
        ("doctor", f"memory://admin:{quoted}@shared-{uuid.uuid4().hex}"),
        ("-u", f"redis://admin:{PASSWORD}@h:notaport/0", "ls"),
        ("-u", f"leaky://admin:{PASSWORD}@db.local/x", "ls"),
        ("--debug", "-u", f"leaky://admin:{PASSWORD}@db.local/x", "get", "n", "k"),
        ("-u", f"leaky://admin:{quoted}@db.local/x", "doctor"),
        ("--debug", "-u", f"leaky://admin:{quoted}@db.local/x", "doctor"),
        ("-u", f"memory://x?secret={PASSWORD}&codec=signed-pickle", "doctor"),
        ("copy", f"leaky://u:{PASSWORD}@h/a", f"memory://u:{PASSWORD}@h/b"),
        ("purge", f"memory://admin:{PASSWORD}@shared-{uuid.uuid4().hex}"),
        ("get", f"memory://u:{PASSWORD}@h/b"),  # usage error quoting the argument
    ]
    for args in cases:
        result = run(*args)
        everything = result.stdout + result.stderr
        assert PASSWORD not in everything, (args, everything)
        assert quoted not in everything, (args, everything)
    # the same through the environment
    monkeypatch.setenv("PLUGSTORE_URL", f"leaky://admin:{PASSWORD}@db.local/x")
    for args in (("ls",), ("--debug", "doctor")):
        result = run(*args)
        assert result.exit_code == 1
        assert PASSWORD not in result.stdout + result.stderr
        assert "admin:***@db.local" in result.stderr + result.stdout


def test_masked_url_is_shown_not_hidden(run: Any) -> None:
    result = run("doctor", f"memory://admin:{PASSWORD}@shared-{uuid.uuid4().hex}")
    assert result.exit_code == 0
    assert "memory://admin:***@shared-" in result.stdout


# --------------------------------------------------------------------------- dump / load


def _fill(url: str, data: dict[str, dict[str, Any]], **options: Any) -> None:
    with plugstore.open(url, **options) as store:
        for name, values in data.items():
            store.namespace(name).update(values)


def _dump_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def test_dump_load_round_trip_json_codec_memory_to_sqlite(
    run: Any, mem: str, db: str, tmp_path: Path
) -> None:
    data = {"types": VALUES, "other": {"k": [1, 2]}, "empty-str": {"x": ""}}
    _fill(mem, data)
    out = tmp_path / "dump.jsonl"
    result = run("-u", mem, "dump", "-o", str(out))
    assert result.exit_code == 0, result.stderr
    total = sum(len(v) for v in data.values())
    assert f"dumped {total} keys from 3 namespaces" in result.stderr
    records = _dump_lines(out)
    assert len(records) == total
    assert all(set(r) == {"ns", "key", "value"} for r in records)  # json: never raw

    result = run("-u", db, "load", str(out))
    assert result.exit_code == 0, result.stderr
    assert f"loaded {total} records into 3 namespaces" in result.stdout
    loaded = contents(db)
    for name, values in data.items():
        assert_same_data(values, loaded[name])


@pytest.mark.parametrize("codec", ["pickle", "signed-pickle"])
def test_dump_load_round_trip_pickle_codecs_with_raw_records(
    run: Any, mem: str, db: str, tmp_path: Path, codec: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLUGSTORE_SECRET", "test-secret-123")
    values = {**VALUES, **PICKLE_ONLY}
    _fill(mem, {"objs": values}, codec=codec)
    out = tmp_path / "dump.jsonl"
    result = run("-u", mem, "--codec", codec, "dump", "-o", str(out))
    assert result.exit_code == 0, result.stderr
    assert f"({len(PICKLE_ONLY)} as raw {codec} bytes)" in result.stderr
    records = {r["key"]: r for r in _dump_lines(out)}
    for key in PICKLE_ONLY:
        assert records[key]["codec"] == codec
        assert "value" not in records[key]
    for key in VALUES:
        assert "value" in records[key]

    # raw records need the same codec on the destination: refused, and nothing written
    result = run("-u", db, "load", str(out))
    assert result.exit_code == 1
    line = one_error_line(result)
    assert f"stored with the {codec} codec" in line
    assert "dump.jsonl:" in line
    assert contents(db) == {}

    result = run("-u", db, "--codec", codec, "load", str(out))
    assert result.exit_code == 0, result.stderr
    assert_same_data(values, contents(db, codec=codec)["objs"])


def test_dump_raw_is_byte_exact_and_never_decodes(
    run: Any, mem: str, db: str, tmp_path: Path
) -> None:
    with plugstore.open(mem, codec="pickle") as store:
        store.namespace("objs")["f"] = Fraction(2, 3)
        store.backend.bucket("objs").set("garbage", b"\x80not a pickle")
        expected = dict(store.backend.bucket("objs").items())
    out = tmp_path / "raw.jsonl"
    # with --raw nothing is unpickled, so even the json codec can dump a pickle store
    assert run("-u", mem, "--codec", "pickle", "dump", "--raw", "-o", str(out)).exit_code == 0
    records = _dump_lines(out)
    assert {r["key"]: base64.b64decode(r["raw"]) for r in records} == expected
    assert run("-u", db, "--codec", "pickle", "load", str(out)).exit_code == 0
    with plugstore.open(db, codec="pickle") as store:
        assert dict(store.backend.bucket("objs").items()) == expected


def test_dump_keeps_undecodable_values_as_raw_with_a_warning(
    run: Any, mem: str, db: str, tmp_path: Path
) -> None:
    with plugstore.open(mem) as store:
        store.namespace("n")["ok"] = {"a": 1}
        store.backend.bucket("n").set("corrupt", b"{not json")
    out = tmp_path / "d.jsonl"
    result = run("-u", mem, "dump", "-o", str(out))
    assert result.exit_code == 0
    assert "1 stored values could not be decoded" in result.stderr
    assert run("-u", db, "load", str(out)).exit_code == 1  # refused by default
    assert run("-u", db, "load", "--keep-unreadable", str(out)).exit_code == 0
    with plugstore.open(db) as store:
        assert store.backend.bucket("n").get("corrupt") == b"{not json"
        assert store.namespace("n")["ok"] == {"a": 1}


def test_dump_to_stdout_and_chosen_namespaces(run: Any, db: str) -> None:
    _fill(db, {"a": {"k": 1}, "b": {"k": 2}, "c": {"k": 3}})
    result = run("-u", db, "dump", "c", "a")
    assert result.exit_code == 0
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert records == [{"ns": "c", "key": "k", "value": 3}, {"ns": "a", "key": "k", "value": 1}]
    line = one_error_line(run("-u", db, "dump", "a", "missing"))
    assert "no namespace 'missing'" in line


def test_failed_dump_leaves_no_file(run: Any, db: str, tmp_path: Path) -> None:
    _fill(db, {"a": {"k": 1}})
    out = tmp_path / "never.jsonl"
    assert run("-u", db, "dump", "a", "missing", "-o", str(out)).exit_code == 1
    assert not out.exists()
    assert list(tmp_path.glob("*.tmp")) == []


def test_dump_to_an_unwritable_place(run: Any, db: str, tmp_path: Path) -> None:
    _fill(db, {"a": {"k": 1}})
    line = one_error_line(run("-u", db, "dump", "-o", str(tmp_path / "no" / "dir.jsonl")))
    assert line == f"error: cannot write {tmp_path / 'no' / 'dir.jsonl'}: No such file or directory"


def test_load_from_stdin_in_batches(run: Any, db: str) -> None:
    lines = [json.dumps({"ns": "n", "key": f"k{i}", "value": i}) for i in range(7)]
    text = "\n".join(lines) + "\n\n"  # blank lines are skipped
    result = run("-u", db, "load", "-", "--batch-size", "3", input=text)
    assert result.exit_code == 0, result.stderr
    assert contents(db) == {"n": {f"k{i}": i for i in range(7)}}


def test_load_merge_and_replace(run: Any, db: str, tmp_path: Path) -> None:
    _fill(db, {"n": {"old": 1, "k": "before"}, "untouched": {"x": 1}})
    dump = tmp_path / "d.jsonl"
    dump.write_text(json.dumps({"ns": "n", "key": "k", "value": "after"}) + "\n")
    assert run("-u", db, "load", str(dump)).exit_code == 0  # --merge is the default
    assert contents(db) == {"n": {"old": 1, "k": "after"}, "untouched": {"x": 1}}
    _fill(db, {"n": {"k": "before"}})
    result = run("-u", db, "load", "--replace", str(dump))
    assert result.exit_code == 0
    assert "2 existing keys dropped first" in result.stdout
    assert contents(db) == {"n": {"k": "after"}, "untouched": {"x": 1}}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not valid JSON"),
        (b"\xff\xfe garbage", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"ns": "n", "value": 1}', "'ns' and 'key' must be strings"),
        ('{"ns": "bad name", "key": "k", "value": 1}', "invalid namespace"),
        ('{"ns": "n", "key": "", "value": 1}', "keys must not be empty"),
        ('{"ns": "n", "key": "k"}', "exactly one of 'value' and 'raw'"),
        ('{"ns": "n", "key": "k", "value": 1, "raw": "AA=="}', "exactly one of"),
        ('{"ns": "n", "key": "k", "value": 1, "ttl": 5}', "unknown field(s) 'ttl'"),
        ('{"ns": "n", "key": "k", "raw": "AA=="}', "needs the name of its 'codec'"),
        ('{"ns": "n", "key": "k", "raw": "%%%", "codec": "json"}', "not valid base64"),
        ('{"ns": "n", "key": "k", "raw": "AA==", "codec": "pickle"}', "stored with the pickle"),
        ('{"ns": "n", "key": "k", "value": {"$t": "nope", "v": 1}}', "invalid tagged JSON"),
        ('{"ns": "n", "key": "k", "value": NaN}', "invalid tagged JSON"),
    ],
)
def test_load_refuses_bad_lines_and_writes_nothing(
    run: Any, db: str, tmp_path: Path, line: str | bytes, message: str
) -> None:
    good = json.dumps({"ns": "n", "key": "good", "value": 1}).encode() + b"\n"
    dump = tmp_path / "bad.jsonl"
    dump.write_bytes(good + (line if isinstance(line, bytes) else line.encode()) + b"\n" + good)
    _fill(db, {"n": {"existing": 1}})
    # --replace and one record per batch: a loader that wrote before checking would
    # have dropped "n" or written "good" by the time it met line 2
    result = run("-u", db, "load", "--replace", "--batch-size", "1", str(dump))
    assert result.exit_code == 1
    error = one_error_line(result)
    assert f"{dump}:2:" in error
    assert message in error
    assert contents(db) == {"n": {"existing": 1}}


def test_load_missing_file_is_a_usage_error(run: Any, db: str, tmp_path: Path) -> None:
    result = run("-u", db, "load", str(tmp_path / "nope.jsonl"))
    assert result.exit_code == 2
    assert "does not exist" in one_error_line(result)


def test_load_enforces_the_value_size_limit(run: Any, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}?max_value_size=10"
    dump = tmp_path / "d.jsonl"
    dump.write_text(json.dumps({"ns": "n", "key": "k", "value": "x" * 50}) + "\n")
    assert "this store accepts at most 10" in one_error_line(run("-u", url, "load", str(dump)))


# --------------------------------------------------------------------------- copy


def test_copy_sqlite_to_sqlite_verifies_counts(run: Any, tmp_path: Path) -> None:
    src, dst = f"sqlite:///{tmp_path / 'src.db'}", f"sqlite:///{tmp_path / 'dst.db'}"
    big = {f"key-{i:05d}": {"i": i, "tags": {i % 3}} for i in range(1234)}
    _fill(src, {"big": big, "types": VALUES, "small": {"k": 1}})
    result = run("copy", src, dst)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "raw json bytes" in lines[0]
    assert "big\t1234\t1234\t1234\tOK" in lines
    assert "small\t1\t1\t1\tOK" in lines
    assert lines[-1] == f"{1234 + len(VALUES) + 1} keys in 3 namespaces"
    copied = contents(dst)
    assert_same_data(big, copied["big"])
    assert_same_data(VALUES, copied["types"])

    # a second copy into occupied namespaces must say what to do
    line = one_error_line(run("copy", src, dst))
    assert "pass --merge to write over them or --replace" in line
    _fill(dst, {"small": {"extra": 2}})
    result = run("copy", src, dst, "small", "--merge")
    assert result.exit_code == 0, result.stderr
    assert "small\t1\t1\t2\tOK" in result.stdout.splitlines()
    result = run("copy", src, dst, "small", "--replace")
    assert result.exit_code == 0, result.stderr
    assert contents(dst)["small"] == {"k": 1}


def test_copy_between_codecs_decodes_and_reencodes(
    run: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLUGSTORE_SECRET", "s3cret-for-tests")
    src = f"sqlite:///{tmp_path / 'src.db'}?codec=pickle"
    dst = f"sqlite:///{tmp_path / 'dst.db'}"
    _fill(src, {"types": VALUES})
    result = run("copy", src, dst)
    assert result.exit_code == 0, result.stderr
    assert "pickle -> json" in result.stdout
    assert_same_data(VALUES, contents(dst)["types"])
    # into a signed-pickle store: the global --codec applies where the URL names none
    signed = f"sqlite:///{tmp_path / 'signed.db'}"
    assert run("--codec", "signed-pickle", "copy", src, signed).exit_code == 0
    assert_same_data(VALUES, contents(signed, codec="signed-pickle")["types"])
    # rotating the secret: each URL names the variable holding its own secret, and the
    # values are re-signed (decoded and encoded) rather than copied raw
    monkeypatch.setenv("NEW_SECRET", "another-secret")
    rotated = f"sqlite:///{tmp_path / 'rotated.db'}?codec=signed-pickle&secret_env=NEW_SECRET"
    result = run("copy", f"{signed}?codec=signed-pickle", rotated)
    assert result.exit_code == 0, result.stderr
    assert "signed-pickle -> signed-pickle" in result.stdout
    rotated_file = rotated.split("?")[0]
    assert_same_data(
        VALUES, contents(rotated_file, codec="signed-pickle", secret="another-secret")["types"]
    )
    with pytest.raises(plugstore.DecodeError, match="signature does not match"):
        contents(rotated_file, codec="signed-pickle")  # the old secret cannot read it
    # same codec and secret on both sides: bytes move as they are, never decoded (so a
    # source signed under another secret is copied byte for byte, not "fixed")
    copy_dst = f"sqlite:///{tmp_path / 'x.db'}"
    result = run(
        "--secret-env",
        "NEW_SECRET",
        "copy",
        f"{signed}?codec=signed-pickle",
        f"{copy_dst}?codec=signed-pickle",
    )
    assert result.exit_code == 0, result.stderr
    assert "raw signed-pickle bytes" in result.stdout
    assert "another-secret" not in result.stdout + result.stderr
    with plugstore.open(signed) as a, plugstore.open(copy_dst) as b:
        assert dict(a.backend.bucket("types").items()) == dict(b.backend.bucket("types").items())

    # what the destination codec cannot hold fails clearly
    _fill(src, {"objs": PICKLE_ONLY})
    result = run("copy", src, f"sqlite:///{tmp_path / 'dst2.db'}", "objs")
    assert result.exit_code == 1
    assert "cannot copy objs/" in one_error_line(result)


def test_copy_bad_paths(run: Any, tmp_path: Path, mem: str) -> None:
    src = f"sqlite:///{tmp_path / 'src.db'}"
    _fill(src, {"a": {"k": 1}})
    assert "same store" in one_error_line(run("copy", src, src))
    assert "same store" in one_error_line(run("copy", src, f"sqlite:///{tmp_path}/./src.db"))
    line = one_error_line(run("copy", src, mem, "missing"))
    assert "no namespace 'missing' in the source store" in line
    assert "invalid namespace" in one_error_line(run("copy", src, mem, "bad name"))
    result = run("copy", src, mem, "--merge", "--replace")
    assert result.exit_code == 2
    # two private memory stores are different stores: copying is allowed (and pointless)
    assert run("copy", src, "memory://").exit_code == 0


class LossyBackend(MemoryBackend):
    """A broken destination whose batch writes silently drop one item."""

    name = "lossy"

    def bucket(self, namespace: str) -> Any:
        bucket = super().bucket(namespace)
        original = bucket.set_many

        def set_many(items: Any) -> None:
            original(list(items)[:-1])

        bucket.set_many = set_many  # type: ignore[method-assign]
        return bucket


def test_copy_fails_when_the_counts_do_not_match(run: Any, tmp_path: Path) -> None:
    plugstore.register("lossy", LossyBackend)
    try:
        src = f"sqlite:///{tmp_path / 'src.db'}"
        _fill(src, {"a": {"k1": 1, "k2": 2, "k3": 3}})
        result = run("copy", src, f"lossy://dst-{uuid.uuid4().hex}")
        assert result.exit_code == 1
        assert "a\t3\t3\t2\tMISMATCH" in result.stdout.splitlines()
        line = one_error_line(result)
        assert "copy verification failed" in line
        assert "destination holds 2 keys, expected 3" in line
    finally:
        from plugstore import registry

        registry.unregister("lossy")


# --------------------------------------------------------------------------- doctor


def test_doctor_on_sqlite(run: Any, db: str) -> None:
    _fill(db, {"_plugstore_doctor": {"someone-elses": 1}})
    result = run("-u", db, "doctor")
    assert result.exit_code == 0, result.stdout + result.stderr
    out = result.stdout
    for step in ("open", "set", "get", "incr", "scan", "delete"):
        assert any(line.split()[:2] == [step, "OK"] for line in out.splitlines()), step
    assert "backend        sqlite" in out
    assert f"plugstore {plugstore.__version__}" in out
    assert "journal_mode   wal" in out
    assert "near cache     off" in out
    assert out.strip().endswith("doctor: all checks passed")
    # only its own keys were touched and removed
    assert contents(db) == {"_plugstore_doctor": {"someone-elses": 1}}
    cached = run("-u", f"{db}?cache=500", "doctor")
    assert cached.exit_code == 0, cached.stdout + cached.stderr
    assert "near cache     500 entries; coherent by PRAGMA data_version" in cached.stdout


def test_doctor_reports_failure(run: Any, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = run("doctor", f"sqlite:///{blocker}/sub/store.db")
    assert result.exit_code == 1
    assert any(line.split()[:2] == ["open", "FAIL"] for line in result.stdout.splitlines())
    assert "doctor: 1 check(s) failed" in one_error_line(result)


# --------------------------------------------------------------------------- real processes


def _script() -> list[str]:
    exe = Path(sys.executable).with_name("plugstore")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("plugstore")
    return [found] if found else [sys.executable, "-m", "plugstore.cli"]


def test_installed_script_and_module_run(tmp_path: Path) -> None:
    env = {**os.environ, "PLUGSTORE_URL": f"sqlite:///{tmp_path / 'proc.db'}"}
    env.pop("PLUGSTORE_SECRET", None)

    def proc(*args: str, cmd: list[str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*(cmd or _script()), *args], env=env, capture_output=True, text=True, timeout=60
        )

    assert proc("set", "notes", "when", '{"$t": "date", "v": "2024-02-29"}').returncode == 0
    got = proc("get", "notes", "when")
    assert got.returncode == 0
    assert json.loads(got.stdout) == {"$t": "date", "v": "2024-02-29"}
    missing = proc("get", "notes", "nope")
    assert missing.returncode == 1
    assert missing.stderr == "error: no key 'nope' in namespace 'notes'\n"
    leaked = proc("-u", f"nosuch://admin:{PASSWORD}@h/x", "--debug", "ls")
    assert leaked.returncode == 1
    assert "Traceback" in leaked.stderr
    assert PASSWORD not in leaked.stderr + leaked.stdout

    dump = proc("dump", "-o", str(tmp_path / "d.jsonl"))
    assert dump.returncode == 0
    module = proc("--version", cmd=[sys.executable, "-m", "plugstore.cli"])
    assert module.returncode == 0
    assert plugstore.__version__ in module.stdout
    doctor = proc("doctor", cmd=[sys.executable, "-m", "plugstore.cli"])
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        ("memory://cli-self", "memory://cli-self?codec=json"),
        ("sqlite:///{d}/self.db", "sqlite:///{d}/./self.db?timeout=5"),
        ("shelf:///{d}/shelfdir", "shelf:///{d}/shelfdir/../shelfdir"),
    ],
)
def test_copy_onto_itself_is_refused_however_spelled(
    run: Any, tmp_path: Path, src: str, dst: str
) -> None:
    src, dst = src.format(d=tmp_path), dst.format(d=tmp_path)
    with plugstore.open(src) as store:
        store.namespace("notes").update({f"k{i}": i for i in range(5)})
    result = run("copy", "--replace", src, dst)
    assert result.exit_code != 0
    with plugstore.open(src) as store:
        assert len(store.namespace("notes")) == 5  # nothing was wiped


def test_copy_fails_when_the_source_changes_underneath(run: Any, tmp_path: Path) -> None:
    from plugstore.cli.transfer import CopyResult

    result = CopyResult("notes", source_before=5, copied=0, dest_before=0)
    result.source_after = 0
    result.dest_after = 0
    result.verify()
    assert any("before the copy" in p for p in result.problems)


def test_load_refuses_raw_records_the_destination_cannot_read(
    run: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    signed_a = plugstore.SignedPickleCodec("secret-A").encode({"x": 1})
    dump = tmp_path / "raw.jsonl"
    dump.write_text(
        json.dumps({"ns": "n", "key": "fine", "value": 1})
        + "\n"
        + json.dumps(
            {
                "ns": "n",
                "key": "k",
                "raw": base64.b64encode(signed_a).decode(),
                "codec": "signed-pickle",
            }
        )
        + "\n"
    )
    db = f"sqlite:///{tmp_path / 'b.db'}"
    monkeypatch.setenv("PLUGSTORE_SECRET", "secret-B")
    result = run("-u", db, "--codec", "signed-pickle", "load", str(dump))
    assert result.exit_code != 0
    assert "could not read" in result.stderr
    with plugstore.open(db, codec="signed-pickle", secret="secret-B") as store:
        assert len(store.namespace("n")) == 0  # the whole file is refused, nothing written
    monkeypatch.setenv("PLUGSTORE_SECRET", "secret-A")
    result = run("-u", db, "--codec", "signed-pickle", "load", str(dump))
    assert result.exit_code == 0, result.stderr
    with plugstore.open(db, codec="signed-pickle", secret="secret-A") as store:
        assert store.namespace("n")["k"] == {"x": 1}


def test_load_refuses_raw_json_that_is_not_json(run: Any, tmp_path: Path) -> None:
    dump = tmp_path / "raw.jsonl"
    record = {"ns": "n", "key": "k", "raw": base64.b64encode(b"\xff{").decode(), "codec": "json"}
    dump.write_text(json.dumps(record) + "\n")
    result = run("-u", f"sqlite:///{tmp_path / 'j.db'}", "load", str(dump))
    assert result.exit_code != 0
    assert "could not read" in result.stderr


# -- expiry: purge, and deadlines in dump, load and copy ------------------------------------

PAST = 10**6  # seconds back: a store clock set there writes deadlines long past


def test_purge_deletes_expired_keys_and_prints_the_counts(run: Any, db: str) -> None:
    import sqlite3
    import time

    long_ago = time.time() - PAST
    with plugstore.open(db, clock=lambda: long_ago) as store:
        store.namespace("a").set_many({"x": 1, "y": 2}, ttl=10)
        store.namespace("b").set("z", 3, ttl=10)
    with plugstore.open(db) as store:
        store.namespace("a")["kept"] = 1
        store.namespace("b").set("live", 1, ttl=3600)
    result = run("purge", db, "--namespace", "b")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[0] == "b\t1"
    assert result.stdout.splitlines()[1].startswith("purged 1 expired keys from namespace 'b' of ")
    result = run("-u", db, "purge")
    assert result.stdout.splitlines()[0] == "a\t2"
    assert result.stdout.splitlines()[1] == f"purged 2 expired keys from {db}"
    assert run("purge", db).stdout == f"purged 0 expired keys from {db}\n"
    raw = sqlite3.connect(db.removeprefix("sqlite:///"))
    assert sorted(row[0] for row in raw.execute("SELECT key FROM plugstore_kv")) == ["kept", "live"]
    assert "invalid namespace" in one_error_line(run("purge", db, "-n", "bad name"))


class NoExpiryBackend(MemoryBackend):
    """A destination that cannot expire keys (as a third-party backend may be)."""

    name = "noexpiry"
    expiry = False


def test_dump_load_and_copy_carry_deadlines(run: Any, db: str, tmp_path: Path) -> None:
    import time

    now = time.time()
    with plugstore.open(db) as store:
        ns = store.namespace("n")
        ns["plain"] = 1
        ns.set("timed", 2, ttl=3600)
    with plugstore.open(db, clock=lambda: now - PAST) as store:
        store.namespace("n").set("gone", 3, ttl=10)
    out = tmp_path / "dump.jsonl"
    assert run("-u", db, "dump", "-o", str(out)).exit_code == 0
    records = {r["key"]: r for r in _dump_lines(out)}
    assert sorted(records) == ["plain", "timed"]  # the expired key is not dumped
    assert "expires_at" not in records["plain"]
    assert records["timed"]["expires_at"] == pytest.approx(now + 3600, abs=60)
    # loading skips a record whose deadline has passed, and keeps the others' deadlines
    late = {"ns": "n", "key": "late", "value": 4, "expires_at": now - 5}
    with out.open("a", encoding="utf-8") as file:
        file.write(json.dumps(late) + "\n")
    dst = f"sqlite:///{tmp_path / 'dst.db'}"
    result = run("-u", dst, "load", str(out))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        "loaded 2 records into 1 namespaces; skipped 1 records whose deadline had passed\n"
    )
    with plugstore.open(dst) as store:
        loaded = store.namespace("n")
        assert dict(loaded) == {"plain": 1, "timed": 2}
        assert loaded.ttl("plain") is None
        assert loaded.ttl("timed") == pytest.approx(3600, abs=60)
    for bad in ("soon", True, None, [1]):
        record = {"ns": "n", "key": "k", "value": 1, "expires_at": bad}
        if bad is None:
            continue  # null means "no deadline"
        (tmp_path / "bad.jsonl").write_text(json.dumps(record) + "\n")
        line = one_error_line(run("-u", dst, "load", str(tmp_path / "bad.jsonl")))
        assert "'expires_at' must be a number" in line
    plugstore.register("noexpiry", NoExpiryBackend)
    try:
        # a destination without expiry refuses a dump with deadlines, before writing
        line = one_error_line(run("-u", "noexpiry://load", "load", str(out)))
        assert "cannot expire keys" in line
        with plugstore.open("noexpiry://load") as store:
            assert store.namespaces() == []
        # copy keeps going, and says how many keys lost their deadline
        target = f"noexpiry://copy-{uuid.uuid4().hex}"
        result = run("copy", db, target)
        assert result.exit_code == 0, result.stderr
        assert "n\t2\t2\t2\tOK" in result.stdout.splitlines()
        assert "warning: 1 keys had a deadline" in result.stderr
        with plugstore.open(target) as store:
            assert dict(store.namespace("n")) == {"plain": 1, "timed": 2}
        # between stores that can expire keys, copy keeps the deadline
        result = run("copy", db, f"sqlite:///{tmp_path / 'copy.db'}")
        assert result.exit_code == 0, result.stderr
        assert result.stderr == ""
        with plugstore.open(f"sqlite:///{tmp_path / 'copy.db'}") as store:
            assert store.namespace("n").ttl("timed") == pytest.approx(3600, abs=60)
    finally:
        from plugstore import registry

        registry.unregister("noexpiry")
