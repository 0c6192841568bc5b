"""``plugstore import-errbot`` / ``export-errbot``: Errbot Shelf data directories.

The data directories here are written the way Errbot's Shelf writes them (``shelve``
with pickle protocol 2) with the stdlib; tests/real_errbot imports one written by a real bot.
"""

from __future__ import annotations

import dbm.dumb
import os
import pickle
import shelve
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import plugstore
from plugstore.backends.dbmformats import namespace_names
from plugstore.cli import cli
from plugstore.codecs import SignedPickleCodec
from plugstore.integrations.errbot.datadir import shelf_files

GDBM_FIXTURE = Path(__file__).parent / "fixtures" / "errbot-gdbm"
SECRET = "import-secret"

#: What a bot's data dir holds: plugin configs, ACL-ish sets, plugin data, counters.
CORE = {
    "configs": {"Weather": {"API_KEY": "k", "UNITS": "metric"}},
    "bl": ["ChatRoom"],
    "access": {"admins": {"@ann", "@bob"}},
}
PLUGIN = {
    "count": 41,
    "big": 2**70,
    "flag": True,
    "notes": {"meeting": "tomorrow", "ünï": "cödé"},
    "history": [("ann", 1.5), ("bob", None)],
    "blob": b"\x00\xff" * 1000,
    "key with spaces / and ünïcode": "ok",
}
# A pickle of a class whose module is not importable here (like a chat backend's
# identifier): it must move byte for byte, never unpickled.
FOREIGN = (
    b"\x80\x02cerrbot_backend_xyz\nPerson\nq\x00)\x81q\x01}q\x02"
    b"X\x01\x00\x00\x00nq\x03X\x03\x00\x00\x00annq\x04sb."
)


def write_errbot_dir(data_dir: Path, namespaces: dict[str, dict[str, Any]]) -> None:
    """Shelf files as Errbot writes them, in dbm.dumb (this Python has no gdbm)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for name, values in namespaces.items():
        with shelve.Shelf(dbm.dumb.open(str(data_dir / f"{name}.db"), "c"), protocol=2) as shelf:
            shelf.update(values)


def read_errbot_dir(data_dir: Path, name: str) -> dict[str, bytes]:
    """A namespace file's raw pickles, read as Errbot (shelve over dbm) would."""
    with dbm.dumb.open(str(data_dir / f"{name}.db"), "r") as db:
        return {k.decode(): bytes(db[k]) for k in db.keys()}  # noqa: SIM118


@pytest.fixture
def run() -> Any:
    try:  # click < 8.2 mixes stderr into stdout unless told not to
        runner = CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    except TypeError:
        runner = CliRunner()

    def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
        return runner.invoke(cli, list(args), catch_exceptions=False, env=env)

    return invoke


@pytest.fixture
def errbot_dir(tmp_path: Path) -> Path:
    data = tmp_path / "errbot-data"
    write_errbot_dir(data, {"core": CORE, "Plugin": PLUGIN, "repomgr": {}})
    with dbm.dumb.open(str(data / "Plugin.db"), "w") as db:
        db[b"identifier"] = FOREIGN
    (data / "plugins").mkdir()  # Errbot's installed-plugins dir: not a namespace
    (data / "log.txt").write_text("not a namespace")
    return data


def test_import_moves_every_namespace_and_verifies(
    run: Any, errbot_dir: Path, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    done = run("import-errbot", str(errbot_dir), url)
    assert done.exit_code == 0, done.stderr
    assert "Plugin\t8\t8\t8\tOK" in done.stdout
    assert "core\t3\t3\t3\tOK" in done.stdout
    assert "11 keys in 3 namespaces" in done.stdout
    with plugstore.open(url, codec="pickle") as store:
        assert dict(store.namespace("core")) == CORE
        plugin = store.namespace("Plugin")
        assert {k: plugin[k] for k in PLUGIN} == PLUGIN
        assert plugin.get_raw("identifier") == FOREIGN  # moved as bytes, not unpickled
        assert plugin.get_raw("count") == b"41"  # ints become native counters
        assert plugin.incr("count") == 42
        assert plugin.get_raw("flag") == pickle.dumps(True, protocol=2)  # bool is not int
        assert len(store.namespace("repomgr")) == 0


def test_import_refuses_occupied_namespaces_unless_told(
    run: Any, errbot_dir: Path, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    with plugstore.open(url, codec="pickle") as store:
        store.namespace("Plugin")["count"] = 1000
        store.namespace("Plugin")["only-here"] = "kept by --merge"
    done = run("import-errbot", str(errbot_dir), url)
    assert done.exit_code == 1
    assert "already holds namespace(s) Plugin" in done.stderr
    assert run("import-errbot", str(errbot_dir), url, "--merge", "--replace").exit_code == 2
    done = run("import-errbot", str(errbot_dir), url, "--merge")
    assert done.exit_code == 0, done.stderr
    with plugstore.open(url, codec="pickle") as store:
        assert store.namespace("Plugin")["count"] == 41
        assert store.namespace("Plugin")["only-here"] == "kept by --merge"
    done = run("import-errbot", str(errbot_dir), url, "--replace")
    assert done.exit_code == 0, done.stderr
    with plugstore.open(url, codec="pickle") as store:
        assert "only-here" not in store.namespace("Plugin")


def test_import_chosen_namespaces_and_bad_names(run: Any, errbot_dir: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    too_long = "ü" * 30  # 180 characters once escaped
    write_errbot_dir(errbot_dir, {too_long: {"k": 1}})
    done = run("import-errbot", str(errbot_dir), url)
    assert done.exit_code == 1
    assert f"{too_long}.db" in done.stderr
    assert "180 characters, over the limit of 128" in done.stderr
    assert "naming them" in done.stderr
    done = run("import-errbot", str(errbot_dir), url, "core")
    assert done.exit_code == 0, done.stderr
    with plugstore.open(url, codec="pickle") as store:
        assert store.namespaces() == ["core"]
    done = run("import-errbot", str(errbot_dir), url, "Nope")
    assert done.exit_code == 1
    assert "no file for namespace 'Nope'" in done.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    done = run("import-errbot", str(empty), url)
    assert done.exit_code == 1
    assert "no Errbot storage files" in done.stderr
    assert run("import-errbot", str(tmp_path / "missing"), url).exit_code == 2


def test_import_into_json_is_refused_and_signed_pickle_signs(
    run: Any, errbot_dir: Path, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    done = run("import-errbot", str(errbot_dir), url + "?codec=json")
    assert done.exit_code == 1
    assert "json codec" in done.stderr
    assert "pickle" in done.stderr
    env = {"PLUGSTORE_SECRET": SECRET}
    done = run("--codec", "signed-pickle", "import-errbot", str(errbot_dir), url, env=env)
    assert done.exit_code == 0, done.stderr
    assert SECRET not in done.stdout + done.stderr
    with plugstore.open(url, codec="signed-pickle", secret=SECRET) as store:
        plugin = store.namespace("Plugin")
        assert plugin["notes"] == PLUGIN["notes"]
        raw = plugin.get_raw("identifier")
        assert raw is not None
        assert raw.startswith(b"PSG1")
        assert raw.endswith(FOREIGN)
        SignedPickleCodec(SECRET).check_readable(raw)


def test_import_detects_a_value_that_did_not_arrive_intact(
    run: Any, errbot_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from plugstore.backends.sqlite import SQLiteBucket

    original = SQLiteBucket.set_many

    def lossy(self: SQLiteBucket, items: Any) -> None:
        items = list(items)
        items[0] = (items[0][0], items[0][1] + b"!")
        original(self, items)

    monkeypatch.setattr(SQLiteBucket, "set_many", lossy)
    done = run("import-errbot", str(errbot_dir), f"sqlite:///{tmp_path / 'bot.db'}")
    assert done.exit_code == 1
    assert "import verification failed" in done.stderr
    assert "values differ from the source" in done.stderr
    assert "MISMATCH" in done.stdout


def test_export_round_trip_opens_in_shelve(run: Any, errbot_dir: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    assert run("import-errbot", str(errbot_dir), url).exit_code == 0
    with plugstore.open(url, codec="pickle") as store:
        store.namespace("Plugin").incr("count", 9)  # now a native counter: b"50"
    out = tmp_path / "exported"
    done = run("export-errbot", url, str(out))
    assert done.exit_code == 0, done.stderr
    assert "Plugin\t8\t8\t8\tOK" in done.stdout
    # Exactly how Errbot's Shelf storage reads it.
    with shelve.Shelf(dbm.dumb.open(str(out / "Plugin.db"), "r")) as shelf:
        assert shelf["count"] == 50
        assert shelf["notes"] == PLUGIN["notes"]
        assert shelf["big"] == 2**70
    assert read_errbot_dir(out, "Plugin")["identifier"] == FOREIGN
    with dbm.dumb.open(str(out / "core.db"), "r") as db, shelve.Shelf(db) as shelf:
        assert dict(shelf) == CORE
    # Existing files: refused, then --replace / --merge.
    done = run("export-errbot", url, str(out))
    assert done.exit_code == 1
    assert "already holds namespace(s)" in done.stderr
    assert run("export-errbot", url, str(out), "--replace").exit_code == 0
    assert run("export-errbot", url, str(out), "Plugin", "--merge").exit_code == 0
    assert not [p for p in os.listdir(out) if p.endswith(".lock")]  # no sidecars left


def test_export_from_a_json_store_and_into_sqlite3_dbm(run: Any, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'json.db'}"
    with plugstore.open(url) as store:
        store.namespace("Notes").update({"a": {"x": (1, 2)}, "n": 3, "s": {1, 2}})
    out = tmp_path / "out"
    done = run("export-errbot", url + "?codec=json", str(out), "--dbm", "sqlite3")
    assert done.exit_code == 0, done.stderr
    with open(out / "Notes.db", "rb") as f:
        assert f.read(16) == b"SQLite format 3\x00"
    # Back in through import (reads the dbm.sqlite3 flavour on any Python).
    back = f"sqlite:///{tmp_path / 'back.db'}"
    done = run("import-errbot", str(out), back)
    assert done.exit_code == 0, done.stderr
    with plugstore.open(back, codec="pickle") as store:
        assert dict(store.namespace("Notes")) == {"a": {"x": (1, 2)}, "n": 3, "s": {1, 2}}


def test_export_refuses_a_signed_store_under_the_wrong_secret(run: Any, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    with plugstore.open(url, codec="signed-pickle", secret=SECRET) as store:
        store.namespace("A")["fine"] = 1  # exported first, were anything written early
        store.namespace("P")["k"] = {"v": 1}
    done = run(
        "--codec",
        "signed-pickle",
        "export-errbot",
        url,
        str(tmp_path / "out"),
        env={"PLUGSTORE_SECRET": "wrong-secret"},
    )
    assert done.exit_code == 1
    assert not (tmp_path / "out").exists()  # nothing written: every value converts first
    assert "cannot export P/'k'" in done.stderr
    assert "signature" in done.stderr


def test_import_reads_gdbm_files_without_dbm_gnu(run: Any, tmp_path: Path) -> None:
    """Most Errbot installs (Linux, Docker) wrote GNU dbm; this Python may lack dbm.gnu."""
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    done = run("import-errbot", str(GDBM_FIXTURE), url)
    assert done.exit_code == 0, done.stderr
    with plugstore.open(url, codec="pickle") as store:
        names = store.namespaces()
        assert names
        for name in names:
            assert len(store.namespace(name)) > 0


def test_plugin_dir_command(run: Any) -> None:
    from plugstore.integrations.errbot import plugin_dir

    done = run("errbot-plugin-dir")
    assert done.exit_code == 0
    assert done.stdout.strip() == str(plugin_dir())


def test_the_default_plugstore_store_in_the_data_dir_is_not_a_namespace(
    run: Any, errbot_dir: Path
) -> None:
    """STORAGE = "Plugstore" without a URL keeps BOT_DATA_DIR/plugstore.db: a SQLite file
    in the data dir that is not a dbm.sqlite3 namespace."""
    url = f"sqlite:///{errbot_dir / 'plugstore.db'}"
    assert run("import-errbot", str(errbot_dir), url).exit_code == 0
    done = run("import-errbot", str(errbot_dir), url, "--merge")
    assert done.exit_code == 0, done.stderr
    assert "\nplugstore\t" not in done.stdout
    assert "11 keys in 3 namespaces" in done.stdout


def test_namespace_names_take_the_longest_suffix() -> None:
    """X.db.db is Berkeley ndbm's file of X, or gnu's and sqlite3's of X.db: both are
    candidates (the caller keeps the one whose file opens)."""
    entries = ["Plugin.db.db", "core.db", "x.db.dat", "x.db.dir", "x.db.bak", ".db", "log.txt"]
    assert namespace_names(entries) == {"Plugin", "Plugin.db", "core", "x"}


def test_a_plugin_whose_name_ends_in_db_is_imported_with_the_directory(
    run: Any, tmp_path: Path
) -> None:
    """Errbot's file of a plugin named "My.db" is My.db.db (gnu, sqlite3): a whole
    directory import finds it, not only one that names it."""
    data = tmp_path / "data"
    data.mkdir()
    with plugstore.open(f"shelf:///{data}", dbm="sqlite3", codec="pickle") as store:
        store.namespace("My.db")["k"] = 1
        store.namespace("core")["x"] = 2
    assert {"My.db.db", "core.db"} <= set(os.listdir(data))
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    done = run("import-errbot", str(data), url)
    assert done.exit_code == 0, done.stderr
    with plugstore.open(url, codec="pickle") as store:
        assert store.namespaces() == ["My.db", "core"]
        assert store.namespace("My.db")["k"] == 1


def test_a_bad_key_anywhere_stops_the_import_before_any_write(
    run: Any, errbot_dir: Path, tmp_path: Path
) -> None:
    with dbm.dumb.open(str(errbot_dir / "zzz.db"), "c") as db:
        db[b"fine"] = pickle.dumps(1, protocol=2)
        db[b""] = pickle.dumps("Errbot accepts an empty key", protocol=2)
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    done = run("import-errbot", str(errbot_dir), url)
    assert done.exit_code == 1
    assert "cannot import zzz/''" in done.stderr
    with plugstore.open(url, codec="pickle") as store:
        assert store.namespaces() == []  # nothing was written, so a retry is clean
    done = run("import-errbot", str(errbot_dir), url, "core", "Plugin")
    assert done.exit_code == 0, done.stderr


def test_export_checks_dbm_first_and_says_which_flavour_a_merge_kept(
    run: Any, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    with plugstore.open(url, codec="pickle") as store:
        store.namespace("P")["k"] = "v"
    try:
        import dbm.ndbm  # noqa: F401
    except ImportError:
        out = tmp_path / "not-created"
        done = run("export-errbot", url, str(out), "--dbm", "ndbm")
        assert done.exit_code == 2
        assert "--dbm" in done.stderr
        assert "no dbm.ndbm module" in done.stderr
        assert not out.exists()
    out = tmp_path / "out"
    write_errbot_dir(out, {"P": {"old": 1}})  # dbm.dumb
    done = run("export-errbot", url, str(out), "--merge", "--dbm", "sqlite3")
    assert done.exit_code == 0, done.stderr
    assert "is a dbm.dumb file: merged in that flavour, not --dbm sqlite3" in done.stderr
    assert set(read_errbot_dir(out, "P")) == {"old", "k"}


def test_a_pickled_int_too_long_for_text_stays_a_pickle() -> None:
    from plugstore.codecs import PickleCodec

    huge = 10**5000
    pickled = pickle.dumps(huge, protocol=2)
    assert PickleCodec().from_pickle(pickled) == pickled
    assert PickleCodec().to_pickle(pickled) == pickled


#: Errbot names that are not namespaces, beside the names they must not be confused with.
ODD = {
    "Test hooks for webhooks testing": {"url": "https://example.org/hook", "count": 3},
    "a b": {"who": "a b"},
    "a_b": {"who": "a_b"},
    "A b": {"who": "A b"},
    "a%20b": {"who": "a%20b"},
    "Wetter ☂ für Köln": {"who": "umbrella"},
    ".hidden": {"who": "dot"},
}
ODD_NAMESPACES = {
    "Test hooks for webhooks testing": "Test%20hooks%20for%20webhooks%20testing",
    "a b": "a%20b",
    "a_b": "a_b",
    "A b": "A%20b",
    "a%20b": "a%2520b",
    "Wetter ☂ für Köln": "Wetter%20%E2%98%82%20f%C3%BCr%20K%C3%B6ln",
    ".hidden": "%2Ehidden",
}


def test_plugins_of_any_name_move_both_ways(run: Any, tmp_path: Path) -> None:
    data = tmp_path / "errbot-data"
    write_errbot_dir(data, {"core": CORE, **ODD})
    files = shelf_files(data)
    assert {f.name: f.namespace for f in files} == {"core": "core", **ODD_NAMESPACES}
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    done = run("import-errbot", str(data), url)
    assert done.exit_code == 0, done.stderr
    assert "Test%20hooks%20for%20webhooks%20testing\t2\t2\t2\tOK" in done.stdout
    with plugstore.open(url, codec="pickle") as store:
        assert sorted(store.namespaces()) == sorted(["core", *ODD_NAMESPACES.values()])
        for name, values in ODD.items():
            assert dict(store.namespace(ODD_NAMESPACES[name])) == values, name
        store.namespace("Test%20hooks%20for%20webhooks%20testing").incr("count")
    out = tmp_path / "exported"
    done = run("export-errbot", url, str(out))
    assert done.exit_code == 0, done.stderr
    assert namespace_names(os.listdir(out)) == {"core", *ODD}  # files named as Errbot does
    with shelve.Shelf(dbm.dumb.open(str(out / "Test hooks for webhooks testing.db"), "r")) as sh:
        assert dict(sh) == {"url": "https://example.org/hook", "count": 4}
    for name in ODD:
        if name != "Test hooks for webhooks testing":
            assert read_errbot_dir(out, name) == read_errbot_dir(data, name), name


def test_import_and_export_name_plugins_as_errbot_does(run: Any, tmp_path: Path) -> None:
    data = tmp_path / "errbot-data"
    write_errbot_dir(data, {"core": CORE, **ODD})
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    done = run("import-errbot", str(data), url, "a b", "a%20b")
    assert done.exit_code == 0, done.stderr
    with plugstore.open(url, codec="pickle") as store:
        assert sorted(store.namespaces()) == ["a%20b", "a%2520b"]
        assert store.namespace("a%2520b")["who"] == "a%20b"
    done = run("import-errbot", str(data), url, "Test%20hooks%20for%20webhooks%20testing")
    assert done.exit_code == 1
    assert "is the plugstore namespace of 'Test hooks for webhooks testing'" in done.stderr
    out = tmp_path / "out"
    done = run("export-errbot", url, str(out), "a%20b")  # the Errbot name "a%20b"
    assert done.exit_code == 0, done.stderr
    assert namespace_names(os.listdir(out)) == {"a%20b"}
    assert read_errbot_dir(out, "a%20b") == read_errbot_dir(data, "a%20b")
    done = run("export-errbot", url, str(out), "A b")
    assert done.exit_code == 1
    assert "no namespace 'A%20b' (Errbot name 'A b')" in done.stderr


def test_export_refuses_namespaces_no_errbot_name_has(run: Any, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    with plugstore.open(url, codec="pickle") as store:
        store.namespace("fine")["k"] = 1
        store.namespace("%41")["k"] = "'A' escaped: a spelling no Errbot name maps to"
    out = tmp_path / "out"
    done = run("export-errbot", url, str(out))
    assert done.exit_code == 1
    assert "namespace '%41' is not an escaped name" in done.stderr
    assert "export the other namespaces by naming them" in done.stderr
    assert not out.exists()  # refused before anything was written
    with plugstore.open(url, codec="pickle") as store:
        store.namespace("%41").clear()
        store.namespace("a%2Fb")["k"] = "the name 'a/b' is no file name"
    done = run("export-errbot", url, str(out))
    assert done.exit_code == 1
    assert "'a/b' cannot be a Shelf file name" in done.stderr
    assert not out.exists()
    done = run("export-errbot", url, str(out), "fine")
    assert done.exit_code == 0, done.stderr


def test_errbot_namespace_finds_a_plugins_data_by_its_errbot_name(run: Any, tmp_path: Path) -> None:
    done = run("errbot-namespace", "Test hooks for webhooks testing", "core", "a%20b")
    assert done.exit_code == 0, done.stderr
    assert done.stdout == "Test%20hooks%20for%20webhooks%20testing\ncore\na%2520b\n"
    done = run("errbot-namespace", "--reverse", "Test%20hooks%20for%20webhooks%20testing", "core")
    assert done.exit_code == 0, done.stderr
    assert done.stdout == "Test hooks for webhooks testing\ncore\n"
    # What a user does with it: read the plugin's data with the namespace commands.
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    write_errbot_dir(tmp_path / "data", ODD)
    assert run("import-errbot", str(tmp_path / "data"), url).exit_code == 0
    ns = run("errbot-namespace", "Test hooks for webhooks testing").stdout.strip()
    done = run("--codec", "pickle", "-u", url, "get", ns, "url")
    assert done.exit_code == 0, done.stderr
    assert done.stdout.strip() == '"https://example.org/hook"'


def test_errbot_namespace_errors(run: Any) -> None:
    done = run("errbot-namespace", "x" * 129)
    assert done.exit_code == 1
    assert "over the limit of 128" in done.stderr
    assert "Errbot plugin" in done.stderr
    done = run("errbot-namespace", "-r", "%41")
    assert done.exit_code == 1
    assert "not an escaped name" in done.stderr
    done = run("errbot-namespace", "-r", "a b")
    assert done.exit_code == 1
    assert "invalid namespace" in done.stderr
    assert run("errbot-namespace").exit_code == 2


def test_shelf_names_never_leave_the_data_directory(tmp_path: Path) -> None:
    from plugstore.errors import InvalidNamespaceError
    from plugstore.integrations.errbot.datadir import remove_shelf, shelf_file, write_shelf

    data = tmp_path / "data"
    for bad in ("../evil", "a/b", "nul\x00"):
        with pytest.raises(InvalidNamespaceError, match="cannot be a Shelf file name"):
            write_shelf(data, bad, [("k", pickle.dumps(1, protocol=2))])
        with pytest.raises(InvalidNamespaceError):
            shelf_file(data, bad)
        with pytest.raises(InvalidNamespaceError):
            remove_shelf(data, bad)
    assert not data.exists()
    assert sorted(os.listdir(tmp_path)) == []
    assert write_shelf(data, "..", [("k", pickle.dumps(1, protocol=2))]) == 1  # "...db"
    file = shelf_file(data, "..")
    assert file is not None
    assert (file.name, file.namespace) == ("..", "%2E.")
