"""Real Errbot (TestBot, the ``errbot`` command) storing through plugstore."""

from __future__ import annotations

import pickle
import sys
import threading
from pathlib import Path

import pytest
from errbot.storage import StoreNotOpenError as ErrbotStoreNotOpenError

import plugstore
from conftest import ERRBOT, PLUGSTORE, plugin, run, running_bot, say
from plugstore.errors import ConflictError, DecodeError
from plugstore.integrations.errbot import (
    ErrbotStorageFactory,
    compute,
    incr,
    namespace,
    plugin_dir,
)

SECRET = "errbot-test-secret"


def test_plugin_commands_store_read_delete_iterate(tmp_path: Path, store_url: str) -> None:
    with running_bot(tmp_path / "data", storage_config={"url": store_url}) as bot:
        assert say(bot, "!memo set meeting tomorrow") == "stored meeting"
        assert say(bot, "!memo set lunch noon") == "stored lunch"
        assert say(bot, "!memo get meeting") == "meeting = tomorrow"
        assert say(bot, "!memo get nothing") == "nothing is missing"  # KeyError reached it
        assert say(bot, "!memo list") == "keys: lunch, meeting (2)"
        assert say(bot, "!memo del lunch") == "deleted lunch"
        assert say(bot, "!memo del lunch") == "lunch is missing"
        assert say(bot, "!memo keep remember me") == "kept"
        assert say(bot, "!memo show") == "Keepsake from gbin@localhost: remember me"
        assert say(bot, "!memo append a") == "log has 1"
        assert say(bot, "!memo append b") == "log has 2"
        assert say(bot, "!memo count") == "count 1"
        assert say(bot, "!memo score alice") == "alice has 1"
        assert say(bot, "!memo list") == (
            "keys: count, keepsake, last_speaker, log, meeting, scores (6)"
        )
        assert say(bot, "!memo clear") == "cleared 6"  # deleting through keys()
        assert say(bot, "!memo list") == "keys: (none) (0)"
        assert say(bot, "!memo set again yes") == "stored again"
    with plugstore.open(store_url, codec="pickle") as store:
        assert dict(store.namespace("Memo")) == {"again": "yes"}
        # Errbot's own namespaces live in the same store.
        assert "core" in store.namespaces()


HOOKS = "Test hooks for webhooks testing"


def test_a_plugin_whose_name_is_no_namespace_activates_and_keeps_its_data(
    tmp_path: Path, store_url: str
) -> None:
    """Errbot accepts any plugin name; its storage gets the name's escaped namespace."""
    config = {"url": store_url}
    with running_bot(tmp_path / "one", storage_config=config) as bot:
        assert HOOKS in bot.bot.plugin_manager.get_all_active_plugin_names()
        assert say(bot, "!hooks set url https://example.org/hook") == "hooked url"
        assert say(bot, "!hooks count") == "hooks 1"
    with running_bot(tmp_path / "two", storage_config=config) as bot:
        assert say(bot, "!hooks get url") == "url = https://example.org/hook"
        assert say(bot, "!hooks count") == "hooks 2"
        assert namespace(plugin(bot, HOOKS)).name == "Test%20hooks%20for%20webhooks%20testing"
    with plugstore.open(store_url, codec="pickle") as store:
        stored = store.namespace("Test%20hooks%20for%20webhooks%20testing")
        assert dict(stored) == {"url": "https://example.org/hook", "count": 2}
        assert "core" in store.namespaces()  # valid names keep their namespace
    done = run(PLUGSTORE, "errbot-namespace", HOOKS)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Test%20hooks%20for%20webhooks%20testing\n"
    done = run(PLUGSTORE, "--codec", "pickle", "-u", store_url, "ls", done.stdout.strip())
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["count", "url"]


def test_data_and_plugin_config_survive_two_bot_starts(tmp_path: Path, store_url: str) -> None:
    config = {"url": store_url}
    with running_bot(tmp_path / "one", storage_config=config) as bot:
        assert "configuration done" in say(bot, "!plugin config Memo {'GREETING': 'ahoy'}")
        say(bot, "!memo set meeting tomorrow")
        say(bot, "!memo keep a custom object")
        say(bot, "!memo append first")
        say(bot, "!memo count")
    # A separate start, with a fresh data directory: everything comes from the store.
    with running_bot(tmp_path / "two", storage_config=config) as bot:
        assert say(bot, "!memo get meeting") == "meeting = tomorrow"
        assert say(bot, "!memo show") == "Keepsake from gbin@localhost: a custom object"
        assert say(bot, "!memo append second") == "log has 2"
        assert say(bot, "!memo count") == "count 2"
        assert "ahoy" in say(bot, "!plugin config Memo")
        stored = plugin(bot)["last_speaker"]
        assert stored == bot.bot.build_identifier("gbin@localhost")


def test_values_are_decoded_only_when_read(tmp_path: Path) -> None:
    """Opening storage decodes nothing: a value whose class is not importable yet (a chat
    backend's identifier, a plugin's class) breaks only the read of that key."""
    url = f"sqlite:///{tmp_path / 'lazy.db'}"
    with running_bot(tmp_path / "data", storage_config={"url": url}) as bot:
        say(bot, "!memo keep lazily")
        say(bot, "!memo set plain text")
    # A fresh process, where the plugin module was never loaded.
    script = (
        "import sys, plugstore\n"
        "from plugstore.errors import DecodeError\n"
        f"memo = plugstore.open({url!r}, codec='pickle').namespace('Memo')\n"
        "print(memo['plain'], len(memo), sorted(memo))\n"
        "try:\n"
        "    memo['keepsake']\n"
        "except DecodeError as exc:\n"
        "    print('DecodeError', exc)\n"
    )
    done = run(sys.executable, "-c", script)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "text 3 ['keepsake', 'last_speaker', 'plain']"
    assert lines[1].startswith("DecodeError")
    assert "errbot.plugins" in lines[1]


def test_found_through_the_entry_point_without_an_extra_dir(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ep.db'}"
    with running_bot(tmp_path / "data", storage_config={"url": url}) as bot:
        assert "BOT_EXTRA_STORAGE_PLUGINS_DIR" not in bot.bot_config.__dict__ or (
            bot.bot_config.BOT_EXTRA_STORAGE_PLUGINS_DIR is None
        )
        assert type(plugin(bot)._store).__name__ == "PlugstoreStorage"


def test_found_through_the_printed_plugin_dir(tmp_path: Path) -> None:
    printed = run(PLUGSTORE, "errbot-plugin-dir")
    assert printed.returncode == 0, printed.stderr
    directory = printed.stdout.strip()
    assert Path(directory) == plugin_dir()
    assert (Path(directory) / "plugstore.plug").is_file()
    url = f"sqlite:///{tmp_path / 'dir.db'}"
    with running_bot(
        tmp_path / "data", storage_config={"url": url}, BOT_EXTRA_STORAGE_PLUGINS_DIR=directory
    ) as bot:
        assert say(bot, "!memo set k v") == "stored k"


def test_default_store_is_a_sqlite_file_in_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PLUGSTORE_URL", raising=False)
    with running_bot(tmp_path / "data") as bot:
        say(bot, "!memo set where datadir")
    with plugstore.open(f"sqlite:///{tmp_path / 'data' / 'plugstore.db'}", codec="pickle") as s:
        assert s.namespace("Memo")["where"] == "datadir"


def test_closed_storage_raises_errbots_and_plugstores_not_open_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'closed.db'}"
    with running_bot(tmp_path / "data", storage_config={"url": url}) as bot:
        memo = plugin(bot)
        storage = memo._store
        say(bot, "!memo set k v")
        assert "Memo" in say(bot, "!plugin deactivate Memo")
        assert storage.closed
        for call in (
            lambda: storage.get("k"),
            lambda: storage.set("k", 1),
            lambda: storage.remove("k"),
            storage.keys,
            storage.len,
            storage.close,
        ):
            with pytest.raises(ErrbotStoreNotOpenError):
                call()
            with pytest.raises(plugstore.StoreNotOpenError):
                call()
        with pytest.raises(plugstore.StoreNotOpenError):
            incr(memo, "count")
        assert "Memo" in say(bot, "!plugin activate Memo")
        assert say(bot, "!memo get k") == "k = v"


def test_errbot_storage_get_reads_our_storage(
    tmp_path: Path, bot_config_file, clean_env: dict[str, str]
) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    with plugstore.open(url, codec="pickle") as store:
        store.namespace("Memo").update({"meeting": "tomorrow", "tags": {"a", "b"}, "n": 3})
    config = bot_config_file(tmp_path / "data", {"url": url})
    done = run(ERRBOT, "-c", str(config), "--storage-get", "Memo", env=clean_env)
    assert done.returncode == 0, done.stderr
    assert eval(done.stdout) == {"meeting": "tomorrow", "tags": {"a", "b"}, "n": 3}  # noqa: S307
    # --storage-set goes the other way, through the same plugin.
    done = run(
        ERRBOT,
        "-c",
        str(config),
        "--storage-set",
        "Memo",
        input="{'fresh': [1, 2]}",
        env=clean_env,
    )
    assert done.returncode == 0, done.stderr
    with plugstore.open(url, codec="pickle") as store:
        assert dict(store.namespace("Memo")) == {"fresh": [1, 2]}


# --------------------------------------------------------------------------- concurrency

THREADS, ROUNDS = 10, 200


def _hammer(work) -> list[BaseException]:
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def worker() -> None:
        start.wait()
        for _ in range(ROUNDS):
            try:
                work()
            except BaseException as exc:  # collected, asserted by the caller
                errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_atomic_helpers_are_exact_under_threads(tmp_path: Path, store_url: str) -> None:
    with running_bot(tmp_path / "data", storage_config={"url": store_url}) as bot:
        memo = plugin(bot)
        assert _hammer(lambda: incr(memo, "hits")) == []
        assert memo["hits"] == THREADS * ROUNDS

        def bump(scores: dict[str, int]) -> dict[str, int]:
            return {**scores, "alice": scores.get("alice", 0) + 1}

        assert _hammer(lambda: compute(memo, "scores", bump, {})) == []
        assert memo["scores"] == {"alice": THREADS * ROUNDS}


def test_strict_mutable_never_loses_an_update(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'strict.db'}"
    config = {"url": url, "strict": True}
    with running_bot(tmp_path / "data", storage_config=config) as bot:
        memo = plugin(bot)
        memo["counter"] = {"n": 0}
        applied = []

        def work() -> None:
            with memo.mutable("counter") as counter:
                counter["n"] += 1
            applied.append(1)

        errors = _hammer(work)
        assert all(isinstance(e, ConflictError) for e in errors), errors[:3]
        # Every block either raised or was applied: none was silently lost.
        assert memo["counter"]["n"] == len(applied)
        assert len(applied) + len(errors) == THREADS * ROUNDS


def test_strict_mutable_raises_when_another_writer_got_in_between(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'strict2.db'}"
    with running_bot(tmp_path / "data", storage_config={"url": url, "strict": True}) as bot:
        memo = plugin(bot)
        memo["log"] = ["start"]
        both_read = threading.Barrier(2)
        outcomes: dict[str, object] = {}

        def append(word: str) -> None:
            try:
                with memo.mutable("log") as log:
                    both_read.wait(timeout=10)  # each has read ["start"]
                    log.append(word)
                    if word == "second":
                        first.join()  # write back strictly after the other
                outcomes[word] = "applied"
            except ConflictError as exc:
                outcomes[word] = exc

        first = threading.Thread(target=append, args=("first",))
        second = threading.Thread(target=append, args=("second",))
        first.start()
        second.start()
        first.join()
        second.join()
        assert outcomes["first"] == "applied"
        assert isinstance(outcomes["second"], ConflictError)
        assert "changed by another writer" in str(outcomes["second"])
        assert memo["log"] == ["start", "first"]
        # A missing key with a default: written only if still absent.
        with memo.mutable("fresh", []) as fresh:
            fresh.append(1)
        assert memo["fresh"] == [1]


def test_default_mode_read_only_mutable_does_not_undo_a_concurrent_update(
    tmp_path: Path,
) -> None:
    """Errbot's mutable() writes back even when nothing changed; on Shelf that reverts a
    concurrent update.  Here an unchanged value is not written back."""
    url = f"sqlite:///{tmp_path / 'ro.db'}"
    with running_bot(tmp_path / "data", storage_config={"url": url}) as bot:
        memo = plugin(bot)
        memo["config"] = {"level": 1}
        with memo.mutable("config") as config:
            assert config["level"] == 1
            memo["config"] = {"level": 2}  # another command's update meanwhile
        assert memo["config"] == {"level": 2}
        with memo.mutable("config") as config:  # a real change is written, as in Errbot
            config["level"] = 3
        assert memo["config"] == {"level": 3}


def test_helpers_refuse_a_bot_not_on_plugstore(tmp_path: Path) -> None:
    with running_bot(tmp_path / "data", storage="Memory") as bot:
        memo = plugin(bot)
        with pytest.raises(TypeError, match="STORAGE = 'Plugstore'"):
            incr(memo, "n")
        with pytest.raises(TypeError, match="not plugstore"):
            namespace(memo)


# --------------------------------------------------------------------------- codecs


def test_signed_pickle_codec(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'signed.db'}"
    config = {"url": url, "codec": "signed-pickle", "secret": SECRET}
    with running_bot(tmp_path / "data", storage_config=config) as bot:
        say(bot, "!memo keep signed")
        assert say(bot, "!memo show") == "Keepsake from gbin@localhost: signed"
        say(bot, "!memo set note hi")
    with plugstore.open(url, codec="pickle") as store:
        memo = store.namespace("Memo")
        raw = memo.get_raw("note")
        assert raw is not None
        assert raw.startswith(b"PSG1")
        # Tamper with the stored pickle: the bot must refuse to unpickle it.
        evil = pickle.dumps("EVIL-PAYLOAD", protocol=2)
        memo.store.backend.bucket("Memo").set("note", raw[:36] + evil)
    with running_bot(tmp_path / "data2", storage_config=config) as bot:
        reply = say(bot, "!memo get note")
        assert "signature does not match" in reply
        assert "EVIL-PAYLOAD" not in reply
    # Under another secret nothing unpickles (Errbot's own start-up reads would fail too).
    other = ErrbotStorageFactory({**config, "secret": "another-secret"}).open("Memo")
    with pytest.raises(DecodeError, match="signature does not match"):
        other.get("keepsake")
    other.close()


def test_json_codec_refuses_what_it_cannot_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'json.db'}"
    with running_bot(tmp_path / "data", storage_config={"url": url, "codec": "json"}) as bot:
        assert say(bot, "!memo set k v") == "stored k"
        reply = say(bot, "!memo keep not json")
        assert "kept" not in reply
        assert say(bot, "!memo list") == "keys: k (1)"  # nothing partial was written
