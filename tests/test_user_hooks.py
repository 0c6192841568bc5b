"""Plugins' user-data hooks on real SQLite, PostgreSQL and MariaDB tables.

The poll plugin's hook (its polls, options, votes and drafts in ``pl_poll``) through
``.forgetme``, ``plugstore.userdata`` and ``plugstore user export|forget``; a relational
hook that fails (its transaction rolls back, the failure is reported, the rest is
erased); hooks of plugins never migrated here, or behind their head.

Isolation: on PostgreSQL each test gets a database of its own (``pl_poll`` is a fixed
schema name); on MariaDB, where a schema is a database, users are unique to the test,
only their rows are looked at, and they are deleted afterwards.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Connection, create_engine, delete, select, text
from sqlalchemy.orm import Session

import plugstore
from plugstore.bot import ChatHost, builtin_plugins
from plugstore.bot.plugins.poll import tables as poll
from plugstore.bot.plugins.privacy import chat_hooks
from plugstore.cli import cli
from plugstore.relational import RelationalHost, RelationalPlugin, RelationalUserData
from plugstore.userdata import UserDataError, export_user, forget_user
from relational_helpers import (  # the fixtures url and plugin_names too
    CREATE_NOTES,
    DROP_NOTES,
    ENGINES,
    MY_URL,
    load,
    plugin_names_fixture,  # noqa: F401 (a fixture)
    unique_name,
    url_fixture,  # noqa: F401 (a fixture)
    write_plugin,
)
from servers import require_server

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture
def suffix() -> str:
    """Appended to every user name of the test: its rows on a shared server are its own."""
    return uuid.uuid4().hex[:8]


@pytest.fixture(params=ENGINES)
def tables(request: pytest.FixtureRequest, tmp_path: Path, suffix: str) -> Iterator[str]:
    """A database for the chat plugins' tables, the poll plugin's to this test alone
    (on MariaDB: its users' rows are, and they are removed afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'tables.sqlite3'}"
    elif request.param == "mysql":
        require_server("MariaDB", "127.0.0.1", 3306)
        yield MY_URL
        _remove_rows_of(MY_URL, suffix)
    else:
        require_server("PostgreSQL", "127.0.0.1", 5432)
        name = f"uh_{uuid.uuid4().hex[:10]}"
        admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            yield f"postgresql://postgres@127.0.0.1:5432/{name}"
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        finally:
            admin.dispose()


def _remove_rows_of(url: str, suffix: str) -> None:
    """Delete the poll rows of the users whose names end with ``-suffix``."""
    mine = f"%-{suffix}"
    with RelationalHost(url, [poll.plugin]) as host:
        host.start()
        with host["poll"].session() as s:
            ids = select(poll.polls.c.id).where(poll.polls.c.author.like(mine))
            s.execute(delete(poll.votes).where(poll.votes.c.voter.like(mine)))
            s.execute(delete(poll.votes).where(poll.votes.c.poll_id.in_(ids)))
            s.execute(delete(poll.options).where(poll.options.c.poll_id.in_(ids)))
            s.execute(delete(poll.polls).where(poll.polls.c.author.like(mine)))
            s.execute(delete(poll.drafts).where(poll.drafts.c.author.like(mine)))


def users(suffix: str, *names: str) -> list[str]:
    return [f"{name}-{suffix}" for name in names]


def say(host: ChatHost, user: str, line: str) -> str:
    (reply,) = host.handle(user, line)
    assert not reply.error, reply.text
    return reply.text


def open_poll(host: ChatHost, user: str, question: str, *choices: str) -> int:
    for line in (".poll", question, *choices):
        say(host, user, line)
    opened = say(host, user, "done")
    return int(opened.split()[1])


def poll_rows(url: str, who: list[str]) -> dict[str, list[tuple[Any, ...]]]:
    """The poll tables' rows that involve ``who`` (their polls, all votes on those, and
    their own votes and drafts)."""
    with RelationalHost(url, [poll.plugin]) as host:
        host.start()
        with host["poll"].session(readonly=True) as s:
            ids = list(s.execute(select(poll.polls.c.id).where(poll.polls.c.author.in_(who))))
            ids = [row[0] for row in ids]
            return {
                "polls": s.execute(
                    select(poll.polls.c.id, poll.polls.c.author).where(poll.polls.c.id.in_(ids))
                ).all(),
                "options": s.execute(
                    select(poll.options.c.poll_id, poll.options.c.position).where(
                        poll.options.c.poll_id.in_(ids)
                    )
                ).all(),
                "votes": s.execute(
                    select(poll.votes.c.poll_id, poll.votes.c.voter)
                    .where(poll.votes.c.poll_id.in_(ids) | poll.votes.c.voter.in_(who))
                    .order_by(poll.votes.c.poll_id, poll.votes.c.voter)
                ).all(),
                "drafts": s.execute(
                    select(poll.drafts.c.author).where(poll.drafts.c.author.in_(who))
                ).all(),
            }


@pytest.fixture
def host(tables: str) -> Iterator[ChatHost]:
    with (
        plugstore.open("memory://") as store,
        ChatHost(store, builtin_plugins(), rng=random.Random(1), database=tables) as chat,
    ):
        assert not chat.problems
        yield chat


def test_poll_data_is_exported_and_forgotten(host: ChatHost, tables: str, suffix: str) -> None:
    ana, bob, carl, nobody = users(suffix, "ana", "bob", "carl", "nobody")
    lunch = open_poll(host, ana, "Lunch?", "pizza", "sushi")
    drink = open_poll(host, bob, "Drink?", "tea", "coffee")
    say(host, ana, f".vote {lunch} pizza")
    say(host, ana, f".vote {drink} tea")
    say(host, bob, f".vote {lunch} sushi")
    say(host, carl, f".vote {lunch} pizza")
    say(host, carl, f".vote {drink} coffee")
    say(host, ana, ".poll")
    say(host, ana, "Dinner?")  # a draft, with its question
    hooks = chat_hooks(host)
    assert [hook.name for hook in hooks] == ["poll"]

    exported = export_user(host.store, ana, hooks=hooks)["plugins"]["poll"]
    [created] = exported["polls"]
    assert created.pop("created_at").startswith("20")
    assert created == {
        "id": lunch,
        "question": "Lunch?",
        "options": [{"text": "pizza", "votes": 2}, {"text": "sushi", "votes": 1}],
        "is_open": True,
        "closed_at": None,
    }
    assert exported["votes"] == [
        {"poll": lunch, "question": "Lunch?", "option": "pizza"},
        {"poll": drink, "question": "Drink?", "option": "tea"},
    ]
    assert exported["draft"] == {"question": "Dinner?", "options": []}
    assert json.dumps(exported)  # JSON as it is
    assert export_user(host.store, nobody, hooks=hooks)["plugins"] == {}
    assert say(host, nobody, ".forgetme") == "I keep nothing about you."
    assert forget_user(host.store, nobody, hooks=hooks).total == 0

    before = poll_rows(tables, [ana, bob, carl])
    preview = say(host, ana, ".forgetme")
    counts = "poll (votes: 2, others' votes: 2, polls: 1, drafts: 1)"
    assert preview.startswith(f"I keep 1 entry (1 in chat-states) and plugin data: {counts} ")
    assert poll_rows(tables, [ana, bob, carl]) == before  # a preview erases nothing

    done = say(host, ana, ".forgetme confirm")
    assert done == f"Done: I forgot 1 entry (1 in chat-states) and plugin data: {counts} about you."
    after = poll_rows(tables, [ana, bob, carl])
    assert after == {
        "polls": [(drink, bob)],
        "options": [(drink, 1), (drink, 2)],
        "votes": [(drink, carl)],  # ana's votes and every vote in her poll are gone
        "drafts": [],
    }
    assert "no poll" in host.handle(bob, f".poll {lunch}")[0].text
    assert say(host, bob, f".poll {drink}").splitlines()[1:] == [
        "  1. tea: 0 votes",
        "  2. coffee: 1 vote",
    ]
    assert export_user(host.store, bob, hooks=hooks)["plugins"]["poll"]["polls"][0]["id"] == drink
    assert "votes" not in export_user(host.store, bob, hooks=hooks)["plugins"]["poll"]

    # Idempotent: nothing is left, the second forget finds nothing and changes nothing.
    assert say(host, ana, ".forgetme confirm") == "I keep nothing about you."
    again = forget_user(host.store, ana, hooks=hooks)
    assert (again.total, again.failures) == (0, [])
    assert poll_rows(tables, [ana, bob, carl]) == after


def _notes_plugin(module: Any, *, fail: bool) -> RelationalPlugin:
    """The helpers' notes plugin, with a hook: a note whose text is a user is theirs."""
    notes = module.notes

    def export(session: Session, user: str) -> Any:
        return list(session.execute(select(notes.c.id).where(notes.c.text == user)).scalars())

    def forget(session: Session, user: str) -> dict[str, int]:
        gone = session.execute(delete(notes).where(notes.c.text == user)).rowcount  # type: ignore[attr-defined]
        if fail:
            raise RuntimeError("the hook's own bug, after it deleted")
        return {"notes": gone}

    hooks = RelationalUserData(export, forget)
    return RelationalPlugin(module.plugin.name, module.metadata, module.plugin.migrations, hooks)


def _count_notes(conn: Connection, schema: str, user: str) -> int:
    query = text(f"SELECT count(*) FROM {schema}.notes WHERE text = :user")  # noqa: S608
    return int(conn.execute(query, {"user": user}).scalar_one())


def test_a_relational_hook_that_fails_rolls_back_and_is_reported(
    url: str, tmp_path: Path, plugin_names: list[str]
) -> None:
    name = unique_name("notes")
    plugin_names.append(name)
    module = load(write_plugin(tmp_path, name))
    broken = _notes_plugin(module, fail=True)
    [ana, bob] = users(uuid.uuid4().hex[:8], "ana", "bob")
    with plugstore.open("memory://") as store, RelationalHost(url, [broken]) as host:
        host.start()
        with host[name].session() as s:
            s.execute(module.notes.insert(), [{"text": ana}, {"text": ana}, {"text": bob}])
        store.namespace("levels").scope(user=ana)["xp"] = 1
        hooks = host.user_data_hooks()
        assert [hook.name for hook in hooks] == [name]
        assert len(export_user(store, ana, hooks=hooks)["plugins"][name]) == 2

        with pytest.raises(UserDataError) as failed:
            forget_user(store, ana, hooks=hooks)
        message = str(failed.value)
        assert f"plugin {name!r} failed: RuntimeError: the hook's own bug" in message
        assert "erased 1 entry (1 in levels)" in message
        assert "run it again" in message
        with host.engine_for(broken).connect() as conn:
            assert _count_notes(conn, broken.schema, ana) == 2  # rolled back whole
            assert _count_notes(conn, broken.schema, bob) == 1
        assert "xp" not in store.namespace("levels").scope(user=ana)  # the rest went

    fixed = _notes_plugin(module, fail=False)
    with plugstore.open("memory://") as store, RelationalHost(url, [fixed]) as host:
        hooks = host.user_data_hooks()  # not started: read at its head, not migrated
        assert forget_user(store, ana, dry_run=True, hooks=hooks).plugins[0].counts == {"notes": 2}
        done = forget_user(store, ana, hooks=hooks)
        assert [(r.name, r.counts) for r in done.plugins] == [(name, {"notes": 2})]
        assert forget_user(store, ana, hooks=hooks).total == 0
        with host.engine_for(fixed).connect() as conn:
            assert _count_notes(conn, fixed.schema, ana) == 0
            assert _count_notes(conn, fixed.schema, bob) == 1


def test_hooks_of_plugins_not_migrated_or_behind_their_head(
    url: str, tmp_path: Path, plugin_names: list[str]
) -> None:
    name = unique_name("notes")
    plugin_names.append(name)
    module = load(write_plugin(tmp_path, name, [(CREATE_NOTES, DROP_NOTES)]))
    plugin = _notes_plugin(module, fail=False)
    with plugstore.open("memory://") as store, RelationalHost(url, [plugin]) as host:
        assert host.user_data_hooks() == []  # never migrated here: it keeps nothing
        assert forget_user(store, "ana", hooks=host.user_data_hooks()).total == 0
        host.upgrade()
        # A new revision the database has not got: the hook is not run on old tables.
        (tmp_path / f"mig_{name}" / "r2.py").write_text(
            '"""r2"""\nrevision = "r2"\ndown_revision = "r1"\nbranch_labels = None\n'
            "depends_on = None\n\n\ndef upgrade():\n    pass\n\n\ndef downgrade():\n    pass\n"
        )
        with pytest.raises(UserDataError) as behind:
            forget_user(store, "ana", hooks=host.user_data_hooks())
        assert "are at revision r1, not its head r2: run 'plugstore db upgrade' first" in str(
            behind.value
        )


# -- the command line -------------------------------------------------------------------


def test_user_commands_reach_the_poll_tables(tables: str, tmp_path: Path, suffix: str) -> None:
    store_url = f"sqlite:///{tmp_path / 'bot.sqlite3'}"
    ana, bob = users(suffix, "ana", "bob")
    with (
        plugstore.open(store_url) as store,
        ChatHost(store, builtin_plugins(), database=tables) as chat,
    ):
        lunch = open_poll(chat, ana, "Lunch?", "pizza", "sushi")
        say(chat, bob, f".vote {lunch} sushi")
        say(chat, ana, f".vote {lunch} pizza")
        drink = open_poll(chat, bob, "Drink?", "tea", "coffee")
        say(chat, ana, f".vote {drink} tea")
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(cli, list(args), catch_exceptions=False)

    exported = run("user", "export", ana, store_url, "--db", tables)
    assert exported.exit_code == 0, exported.stderr
    assert json.loads(exported.stdout)["plugins"]["poll"]["votes"] == [
        {"poll": lunch, "question": "Lunch?", "option": "pizza"},
        {"poll": drink, "question": "Drink?", "option": "tea"},
    ]
    assert "and data from 1 plugin (poll) about user" in exported.stderr

    dry = run("user", "forget", ana, store_url, "--db", tables, "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert dry.stdout.splitlines() == [
        "poll\tplugin\tvotes: 2",
        "poll\tplugin\tothers' votes: 1",
        "poll\tplugin\tpolls: 1",
        f"dry run: would delete plugin data: poll (votes: 2, others' votes: 1, polls: 1) "
        f"about user '{ana}'",
    ]
    done = run("user", "forget", ana, store_url, "--db", tables, "--yes")
    assert done.exit_code == 0, done.stderr
    assert done.stdout.splitlines()[-1] == (
        f"deleted plugin data: poll (votes: 2, others' votes: 1, polls: 1) about user '{ana}'"
    )
    assert poll_rows(tables, [ana, bob])["votes"] == []
    again = run("user", "forget", ana, store_url, "--db", tables, "--yes")
    assert again.stdout.strip() == f"nothing is stored about user '{ana}' in {store_url}"
    bobs = json.loads(run("user", "export", bob, store_url, "--db", tables).stdout)
    assert [p["question"] for p in bobs["plugins"]["poll"]["polls"]] == ["Drink?"]
    assert poll_rows(tables, [bob])["votes"] == []


def test_the_quotes_example_forgets_scores_and_quizzes(tmp_path: Path) -> None:
    """examples/chat_plugins/quotes.py keeps scores and quizzes under plain keys; its
    key-value hook is what lets .forgetme find them."""
    from plugstore.bot import directory_plugins

    examples = Path(__file__).resolve().parent.parent / "examples" / "chat_plugins"
    found, problems = directory_plugins(examples)
    assert not problems
    with (
        plugstore.open(f"sqlite:///{tmp_path / 'quotes.db'}") as store,
        ChatHost(store, [*builtin_plugins(), *found], rng=random.Random(1)) as chat,
    ):
        say(chat, "bob", ".quote Ada: hello")
        for user in ("ana", "bob"):
            say(chat, user, ".quiz")
            say(chat, user, "Ada")
        say(chat, "ana", ".quiz")  # pending
        data = store.namespace("chat.quotes")
        assert export_user(store, "ana", hooks=chat_hooks(chat))["plugins"] == {
            "quotes": {"score:ana": 1, "quiz:ana": 1}
        }
        done = say(chat, "ana", ".forgetme confirm")
        assert done == (
            "Done: I forgot 1 entry (1 in chat-states) and plugin data: "
            "quotes (scores: 1, quizzes: 1) about you."
        )
        assert "score:ana" not in data
        assert "quiz:ana" not in data
        assert data["score:bob"] == 1
        assert data["quote:1"] == {"author": "Ada", "text": "hello"}
        assert say(chat, "ana", ".forgetme") == "I keep nothing about you."


def test_users_whose_names_differ_only_in_case_or_accents_stay_apart(
    host: ChatHost, tables: str, suffix: str
) -> None:
    """ "ana", "Ana" and "ána" are three users on every engine (MariaDB's default
    collation once made them one): each votes, each exports only their own data, and
    forgetting one leaves the others' polls and votes."""
    ana, big_ana, accented = users(suffix, "ana", "Ana", "ána")
    lunch = open_poll(host, big_ana, "Lunch?", "pizza", "sushi")
    for user in (ana, big_ana, accented):
        say(host, user, f".vote {lunch} pizza")
    hooks = chat_hooks(host)
    exported = export_user(host.store, ana, hooks=hooks)["plugins"]["poll"]
    assert "polls" not in exported  # Ana's poll is not ana's
    assert exported["votes"] == [{"poll": lunch, "question": "Lunch?", "option": "pizza"}]
    forgotten = forget_user(host.store, ana, hooks=hooks)
    assert forgotten.plugins[0].counts == {"votes": 1}
    assert poll_rows(tables, [ana, big_ana, accented]) == {
        "polls": [(lunch, big_ana)],
        "options": [(lunch, 1), (lunch, 2)],
        "votes": sorted([(lunch, big_ana), (lunch, accented)]),
        "drafts": [],
    }
