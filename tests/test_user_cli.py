"""Per-user data: ``plugstore user export|forget`` and the chat host's ``.forgetme``.

What matches on every backend is the conformance kit's (``testing/user_behaviours.py``);
these tests drive the command line and the chat command on SQLite, and the helpers the
matching rests on.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import plugstore
from plugstore import StateStore
from plugstore.bot import ChatHost, Context, Plugin, builtin_plugins, command
from plugstore.bot.host import STATE_NAMESPACE
from plugstore.cli import cli
from plugstore.userdata import UserData, export_user, matching_ids, state_machine_of
from test_cli import one_error_line, runner  # noqa: F401 (runner: a fixture)

PASSWORD = "s3cr3t-Xy7"


@pytest.fixture
def run(runner: CliRunner) -> Any:  # noqa: F811 (the fixture imported above)
    def invoke(*args: str, input: str | None = None) -> Result:
        return runner.invoke(cli, list(args), input=input, catch_exceptions=False)

    return invoke


@pytest.fixture
def db(tmp_path: Path) -> str:
    """A SQLite store holding data about users 42, "42", 7 and ana."""
    url = f"sqlite:///{tmp_path / 'users.sqlite3'}"
    with plugstore.open(url) as store:
        levels = store.namespace("levels")
        levels.scope(user=42)["xp"] = 120
        levels.scope(guild=1, member="42")["nick"] = "forty-two"
        levels.scope(user=7)["xp"] = 3
        levels["42"] = "a plain key: nobody's"
        store.namespace("notes").scope(user="ana")["todo"] = ["milk"]
        states = StateStore(store.namespace(STATE_NAMESPACE))
        states.set("poll", "42", "QUESTION")
        states.set("poll", "7", "OPTIONS")
    return url


def entries(url: str) -> dict[str, set[str]]:
    """Every stored key, by namespace."""
    with plugstore.open(url) as store:
        return {n: set(store.backend.bucket(n).keys()) for n in store.namespaces()}


def error_line(result: Result) -> str:
    """The one ``error:`` line of a command that failed with exit code 1."""
    assert result.exit_code == 1, (result.exit_code, result.stderr)
    return one_error_line(result)


# --------------------------------------------------------------------------- export


def test_export_prints_the_users_data_as_json(run: Any, db: str) -> None:
    result = run("user", "export", "42", db)
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data == {
        "user": "42",
        "namespaces": {
            "levels": [
                {"scope": [["guild", 1], ["member", "42"]], "key": "nick", "value": "forty-two"},
                {"scope": [["user", 42]], "key": "xp", "value": 120},
            ]
        },
        "states": [{"namespace": STATE_NAMESPACE, "key": "poll", "value": "QUESTION"}],
        "plugins": {},
    }
    assert result.stderr.startswith(
        "exported 2 scoped entries in 1 namespace, 1 conversation state and data from "
        "0 plugins about user '42'"
    )
    with plugstore.open(db) as store:
        assert export_user(store, "42") == data


def test_export_to_a_file_and_with_the_global_url(run: Any, db: str, tmp_path: Path) -> None:
    out = tmp_path / "ana.json"
    result = run("-u", db, "user", "export", "ana", "-o", str(out))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr.strip().endswith(f"to {out}")
    assert json.loads(out.read_text("utf-8"))["namespaces"] == {
        "notes": [{"scope": [["user", "ana"]], "key": "todo", "value": ["milk"]}]
    }
    nobody = json.loads(run("-u", db, "user", "export", "nobody").stdout)
    assert nobody == {"user": "nobody", "namespaces": {}, "states": [], "plugins": {}}


def test_export_to_an_unwritable_place_is_one_line(run: Any, db: str, tmp_path: Path) -> None:
    target = tmp_path / "no" / "such" / "dir.json"
    line = error_line(run("user", "export", "42", db, "-o", str(target)))
    assert line.startswith(f"error: cannot write {target}")
    assert not target.parent.exists()


def test_the_url_defaults_to_plugstore_url(
    run: Any, db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLUGSTORE_URL", db)
    result = run("user", "export", "7")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["states"] == [
        {"namespace": STATE_NAMESPACE, "key": "poll", "value": "OPTIONS"}
    ]
    assert run("user", "forget", "7", "--yes").exit_code == 0
    assert json.loads(run("user", "export", "7").stdout)["namespaces"] == {}


# --------------------------------------------------------------------------- forget


def test_forget_dry_run_lists_and_deletes_nothing(run: Any, db: str) -> None:
    before = entries(db)
    result = run("user", "forget", "42", db, "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"{STATE_NAMESPACE}\tstate\tpoll",
        "levels\tguild=1, member='42'\tnick",
        "levels\tuser=42\txp",
        f"dry run: would delete 3 entries (1 in {STATE_NAMESPACE}, 2 in levels) about user '42'",
    ]
    assert entries(db) == before


def test_forget_asks_then_deletes_exactly_the_users_entries(run: Any, db: str) -> None:
    before = entries(db)
    result = run("user", "forget", "42", db, input="n\n")
    assert "aborted: nothing was deleted" in result.stderr
    assert result.exit_code == 1
    assert entries(db) == before

    result = run("user", "forget", "42", db, input="y\n")
    assert result.exit_code == 0, result.stderr
    assert "Delete these 3 entries about user '42' from sqlite:///" in result.stderr
    assert result.stdout.splitlines()[-1] == (
        f"deleted 3 entries (1 in {STATE_NAMESPACE}, 2 in levels) about user '42'"
    )
    with plugstore.open(db) as store:
        levels = store.namespace("levels")
        assert levels.scope(user=7)["xp"] == 3
        assert levels.get("42") == "a plain key: nobody's"
        assert "xp" not in levels.scope(user=42)
        assert "nick" not in levels.scope(guild=1, member="42")
        states = StateStore(store.namespace(STATE_NAMESPACE))
        assert states.get("poll", "42") == "START"
        assert states.get("poll", "7") == "OPTIONS"
        assert store.namespace("notes").scope(user="ana")["todo"] == ["milk"]

    again = run("user", "forget", "42", db, "--yes")
    assert again.exit_code == 0
    assert again.stdout.strip() == f"nothing is stored about user '42' in {db}"
    ana = run("user", "forget", "ana", db, input="y\n")
    assert f"Delete this entry about user 'ana' from {db}?" in ana.stderr


def test_forget_yes_does_not_ask(run: Any, db: str) -> None:
    result = run("user", "forget", "ana", db, "-y")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines() == [
        "notes\tuser='ana'\ttodo",
        "deleted 1 entry (1 in notes) about user 'ana'",
    ]
    assert "notes" not in entries(db)


def test_control_characters_in_what_forget_lists_are_escaped(run: Any, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'odd.sqlite3'}"
    with plugstore.open(url) as store:
        store.namespace("n").scope(user="ana")["line\nbreak"] = 1
    result = run("user", "forget", "ana", url, "--dry-run")
    assert result.stdout.splitlines()[0] == "n\tuser='ana'\t'line\\nbreak'"


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("action", [("export",), ("forget", "--yes"), ("forget", "--dry-run")])
def test_an_empty_user_is_one_line(run: Any, db: str, action: tuple[str, ...]) -> None:
    before = entries(db)
    line = error_line(run("user", action[0], "", db, *action[1:]))
    assert line == "error: a user id must not be empty"
    assert entries(db) == before


@pytest.mark.parametrize("action", [("export",), ("forget", "--yes")])
def test_an_unreachable_server_is_one_line(run: Any, action: tuple[str, ...]) -> None:
    url = f"postgresql://bot:{PASSWORD}@127.0.0.1:1/db?connect_timeout=1"
    result = run("user", action[0], "42", url, *action[1:])
    line = error_line(result)
    assert "127.0.0.1:1" in line
    assert PASSWORD not in result.stderr + result.stdout


def test_missing_user_is_a_usage_error(run: Any) -> None:
    result = run("user", "export")
    assert result.exit_code == 2
    assert "Missing argument 'USER'" in result.stderr


def test_user_is_listed_in_the_help(run: Any) -> None:
    assert "user" in run("--help").stdout
    text = run("user", "--help").stdout
    assert "export" in text
    assert "forget" in text


# --------------------------------------------------------------------------- matching


def test_ids_of_canonical_digits_name_the_int_too() -> None:
    assert matching_ids("42") == ("42", 42)
    assert matching_ids(42) == ("42", 42)
    assert matching_ids("-1") == ("-1", -1)
    assert matching_ids("0") == ("0", 0)
    for text in ("042", "+42", "4_2", "٤٢", "42 ", "-0", "ana"):
        assert matching_ids(text) == (text,), text


def test_state_keys_match_only_statestores_own_spelling() -> None:
    for machine, sender in [
        ("poll", "42"),
        ("app.handlers", "ana@example.com"),
        ("', '", "', '"),
        ("q\"'", "ключ🔑\x1c"),
        ("", " "),
    ]:
        assert state_machine_of(StateStore.key(machine, sender), sender) == machine
        assert state_machine_of(StateStore.key(machine, sender), sender + "x") is None
    for stored in (
        '["poll", "42"]',  # not repr's quotes
        "['poll', '42', '42']",
        "['poll' , '42']",
        "[b'poll', '42']",
        "[42, '42']",
        "[__import__('os').system('false'), '42']",
        "[['poll'], '42']",
        "['poll', '42']x",
        "('poll', '42')",
    ):
        assert state_machine_of(stored, "42") is None, stored


# --------------------------------------------------------------------------- .forgetme


class Levels(Plugin):
    """Experience per user, kept in a scope."""

    name = "levels"

    @command()
    def xp(self, ctx: Context, args: str) -> str:
        """Gain a point."""
        return str(self.data.scope(user=ctx.user).incr("xp"))


@pytest.fixture
def host(tmp_path: Path) -> Iterator[ChatHost]:
    with (
        plugstore.open(f"sqlite:///{tmp_path / 'chat.db'}") as store,
        ChatHost(store, [*builtin_plugins(), Levels], rng=random.Random(1)) as chat,
    ):
        assert not chat.problems
        yield chat


def say(host: ChatHost, user: str, line: str) -> str:
    (reply,) = host.handle(user, line)
    assert not reply.error, reply.text
    return reply.text


def test_forgetme_says_what_it_keeps_then_forgets_it_on_confirm(host: ChatHost) -> None:
    for user in ("ana", "bob"):
        say(host, user, ".xp")
        assert say(host, user, ".poll") == "What is the question?"  # a conversation state
    say(host, "ana", ".xp")
    assert say(host, "carol", ".forgetme") == "I keep nothing about you."

    preview = say(host, "ana", ".forgetme")
    assert preview == (
        "I keep 2 entries (1 in chat-states, 1 in chat.levels) and plugin data: "
        "poll (drafts: 1) about you. "
        "Say '.forgetme confirm' to erase it all; this cannot be undone."
    )
    assert host.states.get("poll", "ana") == "QUESTION"  # a preview erases nothing

    done = say(host, "ana", ".forgetme CONFIRM ")
    assert done == (
        "Done: I forgot 2 entries (1 in chat-states, 1 in chat.levels) and plugin data: "
        "poll (drafts: 1) about you."
    )
    assert host.states.get("poll", "ana") == "START"
    assert say(host, "ana", ".xp") == "1"  # starts over
    assert host.states.get("poll", "bob") == "QUESTION"
    assert say(host, "bob", ".xp") == "2"  # bob keeps his
    assert say(host, "ana", ".forgetme confirm").startswith("Done: I forgot 1 entry ")
    assert say(host, "ana", ".forgetme confirm") == "I keep nothing about you."


def test_forgetme_with_other_words_shows_its_usage(host: ChatHost) -> None:
    (reply,) = host.handle("ana", ".forgetme everything")
    assert reply.error
    assert reply.text.startswith("usage: .forgetme [confirm]")
    help_text = say(host, "ana", ".help forgetme")
    assert help_text.startswith(".forgetme [confirm]\n  Say what I keep about you")


# --------------------------------------------------------------------------- hooks


BROKEN_HOOK = """
from plugstore.userdata import UserData

def export(store, user):
    raise RuntimeError("cannot reach the quotes service")

def forget(store, user, dry_run):
    raise RuntimeError("cannot reach the quotes service")

def fine_export(store, user):
    ns = store.namespace("quotes")
    return {k: v for k, v in ns.scan("by:" + user + ":")}

def fine_forget(store, user, dry_run):
    ns = store.namespace("quotes")
    keys = list(ns.scan_keys("by:" + user + ":"))
    if not dry_run:
        for key in keys:
            del ns[key]
    return {"quotes": len(keys)}

broken = UserData("quotes_service", export, forget)
fine = UserData("quotes", fine_export, fine_forget)
"""


@pytest.fixture
def hook_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module ``uh_hooks`` with a UserData that raises (``broken``) and one that
    keeps quotes under plain keys ``by:<user>:<n>`` (``fine``), importable from the cwd."""
    (tmp_path / "uh_hooks.py").write_text(BROKEN_HOOK)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "uh_hooks"


def test_a_loaded_key_value_hook_joins_export_and_forget(
    run: Any, db: str, hook_module: str
) -> None:
    with plugstore.open(db) as store:
        store.namespace("quotes")["by:ana:1"] = "hello"
        store.namespace("quotes")["by:anab:1"] = "not ana's"
    exported = run("user", "export", "ana", db, "--load", f"{hook_module}:fine")
    assert exported.exit_code == 0, exported.stderr
    assert json.loads(exported.stdout)["plugins"] == {"quotes": {"by:ana:1": "hello"}}
    forgot = run("user", "forget", "ana", db, "--load", f"{hook_module}:fine", "--yes")
    assert forgot.stdout.splitlines() == [
        "notes\tuser='ana'\ttodo",
        "quotes\tplugin\tquotes: 1",
        "deleted 1 entry (1 in notes) and plugin data: quotes (quotes: 1) about user 'ana'",
    ]
    assert entries(db)["quotes"] == {"by:anab:1"}


def test_a_failing_hook_fails_export_and_writes_nothing(
    run: Any, db: str, hook_module: str, tmp_path: Path
) -> None:
    out = tmp_path / "ana.json"
    result = run("user", "export", "ana", db, "--load", f"{hook_module}:broken", "-o", str(out))
    line = error_line(result)
    assert line == (
        "error: cannot export user 'ana': plugin 'quotes_service' failed: RuntimeError: "
        "cannot reach the quotes service (nothing was exported: fix the plugin and export again)"
    )
    assert not out.exists()


def test_a_failing_hook_is_reported_and_the_rest_is_forgotten(
    run: Any, db: str, hook_module: str
) -> None:
    hook = ("--load", f"{hook_module}:broken")
    before = entries(db)
    dry = run("user", "forget", "42", db, *hook, "--dry-run")
    assert dry.exit_code == 1
    assert "warning: plugin 'quotes_service' cannot tell: RuntimeError: cannot reach" in dry.stderr
    assert dry.stdout.splitlines()[-1].startswith("dry run: would delete 3 entries")
    assert dry.stderr.splitlines()[-1].startswith("error: cannot erase everything about user")
    assert entries(db) == before

    done = run("user", "forget", "42", db, *hook, "--yes")
    assert done.exit_code == 1
    assert done.stdout.splitlines()[-1] == (
        f"deleted 3 entries (1 in {STATE_NAMESPACE}, 2 in levels) about user '42'"
    )
    assert done.stderr.splitlines()[0].startswith("warning: plugin 'quotes_service' cannot tell")
    assert done.stderr.splitlines()[1:] == [
        "error: cannot erase everything about user '42': plugin 'quotes_service' failed: "
        "RuntimeError: cannot reach the quotes service; erased 3 entries "
        f"(1 in {STATE_NAMESPACE}, 2 in levels): fix the plugin and run it again "
        "(it erases only what is left)"
    ]
    with plugstore.open(db) as store:
        assert "xp" not in store.namespace("levels").scope(user=42)
    # Nothing else left; the hook still fails, and says so rather than "nothing stored".
    again = run("user", "forget", "42", db, *hook, "--yes")
    assert again.exit_code == 1
    assert "plugin 'quotes_service' failed" in again.stderr.splitlines()[-1]


def test_load_names_a_hook_or_is_one_line(run: Any, db: str, hook_module: str) -> None:
    line = error_line(run("user", "export", "ana", db, "--load", f"{hook_module}:__name__"))
    assert (
        line == f"error: --load {hook_module}:__name__: a str, not a RelationalPlugin or UserData"
    )
    line = error_line(run("user", "export", "ana", db, "--load", "nomodule"))
    assert line == "error: --load 'nomodule': write it as MODULE:ATTRIBUTE"


class Quotes(Plugin):
    """Quotes kept under plain keys, with a hook that fails."""

    name = "quotes"
    user_data = UserData("quotes", lambda store, user: {}, lambda *_: 1 / 0)


def test_forgetme_reports_a_failing_hook_and_forgets_the_rest(tmp_path: Path) -> None:
    with (
        plugstore.open(f"sqlite:///{tmp_path / 'chat.db'}") as store,
        ChatHost(store, [*builtin_plugins(), Levels, Quotes]) as chat,
    ):
        say(chat, "ana", ".xp")
        (preview,) = chat.handle("ana", ".forgetme")
        assert preview.error
        assert preview.text == (
            "I keep 1 entry (1 in chat.levels) about you, and I could not check what these "
            "plugins keep (plugin 'quotes': ZeroDivisionError: division by zero). Try again later."
        )
        (done,) = chat.handle("ana", ".forgetme confirm")
        assert done.error
        assert done.text.startswith("I forgot 1 entry (1 in chat.levels) about you, but I could")
        assert done.text.endswith("Say '.forgetme confirm' again later.")
        assert say(chat, "ana", ".xp") == "1"  # the rest was erased


CHAT_PLUGIN = """
from plugstore.bot import Plugin
from plugstore.userdata import UserData

def export(store, user):
    return store.namespace("chat.wins").get("wins:" + user)

def forget(store, user, dry_run):
    ns = store.namespace("chat.wins")
    found = ("wins:" + user) in ns
    if found and not dry_run:
        del ns["wins:" + user]
    return {"wins": int(found)}

class Wins(Plugin):
    \"\"\"Wins under plain keys.\"\"\"
    user_data = UserData("wins", export, forget)
"""


def test_chat_plugins_of_a_directory_bring_their_hooks(run: Any, db: str, tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "wins.py").write_text(CHAT_PLUGIN)
    with plugstore.open(db) as store:
        store.namespace("chat.wins")["wins:ana"] = 4
    exported = run("user", "export", "ana", db, "-p", str(plugins))
    assert json.loads(exported.stdout)["plugins"] == {"wins": 4}
    assert json.loads(run("user", "export", "ana", db).stdout)["plugins"] == {}
    forgot = run("user", "forget", "ana", db, "-p", str(plugins), "--yes")
    assert forgot.stdout.splitlines()[-1] == (
        "deleted 1 entry (1 in notes) and plugin data: wins (wins: 1) about user 'ana'"
    )
    assert "chat.wins" not in entries(db)
    (plugins / "broken.py").write_text("raise ImportError('no such thing')\n")
    line = error_line(run("user", "forget", "ana", db, "-p", str(plugins), "--yes"))
    assert line.startswith(f"error: plugin file {plugins / 'broken.py'}: ImportError")


class Misdeclared(Plugin):
    """A hook that is not a UserData."""

    name = "misdeclared"
    user_data = ("export", "forget")  # type: ignore[assignment]


def test_a_hook_that_is_not_a_user_data_is_a_failure_not_a_crash(tmp_path: Path) -> None:
    with (
        plugstore.open(f"sqlite:///{tmp_path / 'chat.db'}") as store,
        ChatHost(store, [*builtin_plugins(), Levels, Misdeclared]) as chat,
    ):
        say(chat, "ana", ".xp")
        (done,) = chat.handle("ana", ".forgetme confirm")
        assert done.error
        assert "plugin 'misdeclared': its user_data is a tuple, not a plugstore UserData" in (
            done.text
        )
        assert say(chat, "ana", ".xp") == "1"


def test_an_unreachable_tables_database_fails_the_hooks_not_the_rest(run: Any, db: str) -> None:
    tables = f"postgresql://bot:{PASSWORD}@127.0.0.1:1/db?connect_timeout=1"
    exported = run("user", "export", "42", db, "--db", tables)
    assert error_line(exported).startswith(
        "error: cannot export user '42': plugin 'poll' failed: cannot reach the plugin "
        "database postgresql://bot:***@127.0.0.1:1/db"
    )
    done = run("user", "forget", "42", db, "--db", tables, "--yes")
    assert done.exit_code == 1
    assert "deleted 3 entries" in done.stdout
    assert "plugin 'poll' failed: cannot reach the plugin database" in done.stderr
    assert PASSWORD not in done.stdout + done.stderr + exported.stdout + exported.stderr
    with plugstore.open(db) as store:
        levels = store.namespace("levels")
        assert "xp" not in levels.scope(user=42)
        assert levels.scope(user=7)["xp"] == 3


def test_installed_hooks_are_run_and_broken_ones_reported(
    run: Any, db: str, hook_module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from importlib.metadata import EntryPoint

    import plugstore.relational.plugin as relational_plugin
    import plugstore.userdata as userdata

    installed = {
        "plugstore.user_data": [
            EntryPoint("quotes", f"{hook_module}:fine", "plugstore.user_data"),
        ],
        "plugstore.relational": [
            EntryPoint("gone", "no_such_module_uh:plugin", "plugstore.relational"),
        ],
    }

    def entry_points(group: str) -> list[EntryPoint]:
        return installed.get(group, [])

    monkeypatch.setattr(userdata.importlib_metadata, "entry_points", entry_points)
    monkeypatch.setattr(relational_plugin.importlib_metadata, "entry_points", entry_points)
    with plugstore.open(db) as store:
        store.namespace("quotes")["by:ana:1"] = "hello"
    done = run("user", "forget", "ana", db, "--yes")
    assert done.exit_code == 1
    assert done.stdout.splitlines()[-1] == (
        "deleted 1 entry (1 in notes) and plugin data: quotes (quotes: 1) about user 'ana'"
    )
    assert (
        "plugin 'entry point gone' failed: relational plugin no_such_module_uh:plugin not "
        in (done.stderr.splitlines()[-1])
    )
    # --no-entry-points: neither the installed hook nor the broken one
    assert run("user", "forget", "ana", db, "--yes", "--no-entry-points").exit_code == 0

    installed["plugstore.relational"] = []
    installed["plugstore.user_data"].append(
        EntryPoint("odd", f"{hook_module}:__name__", "plugstore.user_data")
    )
    exported = run("user", "export", "ana", db)
    assert error_line(exported) == (
        "error: cannot export user 'ana': plugin 'odd' failed: uh_hooks:__name__ not loaded: "
        "TypeError: it is a str, not a plugstore UserData (nothing was exported: fix the "
        "plugin and export again)"
    )
