"""The chat host and its built-in plugins, driven line by line as a user would."""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Table, event, select, update
from sqlalchemy.exc import OperationalError

import plugstore
from plugstore.bot import (
    ChatHost,
    CommandError,
    Context,
    Plugin,
    UsageError,
    builtin_plugins,
    command,
    listen,
)
from plugstore.bot.plugins.games import Record, rank
from plugstore.bot.plugins.poll import tables as poll_tables
from plugstore.errors import BackendUnavailableError
from plugstore.relational import RelationalHost


class Chat:
    """A host on a store, with helpers that return reply texts."""

    def __init__(
        self, store: plugstore.Store, seed: int = 7, extra: list[type[Plugin]] | None = None
    ):
        self.store = store
        self.host = ChatHost(store, [*builtin_plugins(), *(extra or [])], rng=random.Random(seed))

    def say(self, user: str, line: str) -> list[str]:
        """Replies to ``line``; fails the test if any is an error."""
        replies = self.host.handle(user, line)
        errors = [r.text for r in replies if r.error]
        assert not errors, f"{line!r} -> {errors}"
        return [r.text for r in replies]

    def one(self, user: str, line: str) -> str:
        replies = self.say(user, line)
        assert len(replies) == 1, replies
        return replies[0]

    def error(self, user: str, line: str) -> str:
        """The single error reply to ``line``."""
        replies = self.host.handle(user, line)
        assert [r.error for r in replies] == [True], replies
        assert "Traceback" not in replies[0].text
        return replies[0].text


@pytest.fixture
def store(tmp_path: Path) -> Iterator[plugstore.Store]:
    with plugstore.open(f"sqlite:///{tmp_path / 'chat.db'}") as opened:
        yield opened


@pytest.fixture
def chat(store: plugstore.Store) -> Chat:
    return Chat(store)


# -- remember ----------------------------------------------------------------------------


def test_remember_whatis_forget_memories(chat: Chat, store: plugstore.Store) -> None:
    assert chat.one("ana", ".remember meeting is tomorrow") == "OK, meeting is tomorrow."
    assert chat.one("bob", ".whatis meeting") == "tomorrow"
    assert chat.one("bob", ".whatis  MEETING? ") == "tomorrow"  # case, spaces, '?'
    chat.say("bob", ".remember the plan is x is y")  # the first " is " splits
    assert chat.one("ana", ".whatis the plan") == "x is y"
    assert chat.one("ana", ".memories") == (
        "meeting is tomorrow (said by ana)\nthe plan is x is y (said by bob)"
    )
    fact = store.namespace("chat.remember")["meeting"]
    assert fact["value"] == "tomorrow"
    assert fact["by"] == "ana"
    assert chat.one("ana", ".forget meeting") == "OK, I forgot meeting."
    assert "meeting" not in store.namespace("chat.remember")
    assert "don't know what meeting is" in chat.error("ana", ".whatis meeting")
    assert "didn't know" in chat.error("ana", ".forget meeting")


def test_remember_bad_input_gets_the_usage_line(chat: Chat) -> None:
    assert chat.error("ana", ".remember meeting").startswith("usage: .remember KEY is VALUE")
    assert chat.error("ana", ".remember  is tomorrow").startswith("usage: .remember")
    assert chat.error("ana", ".whatis").startswith("usage: .whatis KEY")
    assert chat.error("ana", ".memories please").startswith("usage: .memories")
    # A key plugstore cannot store (NUL) is a clear error, not a traceback.
    assert "NUL" in chat.error("ana", ".remember a\x00b is c")


def test_memories_is_empty_then_capped(chat: Chat) -> None:
    assert "don't remember anything" in chat.one("ana", ".memories")
    for i in range(53):
        chat.say("ana", f".remember k{i:02} is {i}")
    lines = chat.one("ana", ".memories").splitlines()
    assert len(lines) == 51
    assert lines[0].startswith("k00 is 0")
    assert lines[-1] == "... and 3 more"


# -- karma -------------------------------------------------------------------------------


def test_karma_counts_anywhere_in_a_line(chat: Chat, store: plugstore.Store) -> None:
    assert chat.say("ana", "python++ is great, java-- and (big data)++") == [
        "python has karma 1",
        "java has karma -1",
        "big data has karma 1",
    ]
    assert chat.say("bob", "Python++") == ["python has karma 2"]
    assert chat.say("bob", "not karma: x++y, --x, ++, -- alone, <-- <!-- -->") == []
    assert chat.say("bob", "thanks alice++! rust++, go++. java++") == [
        "alice has karma 1",
        "rust has karma 1",
        "go has karma 1",
        "java has karma 0",
    ]
    assert chat.say("bob", "python++ python++ PYTHON--") == ["python has karma 3"]  # once
    assert chat.one("ana", ".karma (big data)") == "big data has karma 1"
    assert chat.one("ana", ".karma python") == "python has karma 3"
    assert chat.one("ana", ".karma nothing") == "nothing has karma 0"
    assert store.namespace("chat.karma").scope(channel="general")["python"] == 3
    assert chat.one("ana", ".karma") == (
        "top: python (3), alice (1), big data (1), go (1), rust (1)\nbottom: java (0)"
    )


def test_no_karma_for_yourself(chat: Chat, store: plugstore.Store) -> None:
    assert chat.say("ana", "ana++ bob++") == [
        "nice try, ana: no karma for yourself",
        "bob has karma 1",
    ]
    assert "ana" not in store.namespace("chat.karma").scope(channel="general")


def test_karma_listing_shows_top_and_bottom(chat: Chat) -> None:
    chat.say("ana", "t00--")
    for i in range(12):
        for _ in range(i):
            chat.say("ana", f"t{i:02}++")
    top, bottom = chat.one("ana", ".karma").splitlines()
    assert top == "top: t11 (11), t10 (10), t09 (9), t08 (8), t07 (7)"
    assert bottom == "bottom: t00 (-1), t01 (1), t02 (2), t03 (3), t04 (4)"


# -- games, stats, leaderboard -----------------------------------------------------------


def test_rps_outcomes_follow_the_rules_and_are_counted(chat: Chat, store: plugstore.Store) -> None:
    beats = {"rock": "scissors", "paper": "rock", "scissors": "paper"}
    tally = {"wins": 0, "draws": 0, "losses": 0}
    for i in range(60):
        mine = ("rock", "paper", "scissors")[i % 3]
        reply = chat.one("ana", f".play rps {mine.upper() if i % 2 else mine}")
        bot = re.match(r"I play (\w+): ", reply)
        assert bot, reply
        theirs = bot.group(1)
        expected = "draws" if theirs == mine else ("wins" if beats[mine] == theirs else "losses")
        assert {"wins": "you win", "draws": "a draw", "losses": "I win"}[expected] in reply
        tally[expected] += 1
    ana = store.namespace("chat.games").scope(channel="general", user="ana")
    for outcome, count in tally.items():
        assert ana.get(outcome, 0) == count
    assert all(tally.values())  # a fair bot: every outcome happened in 60 games
    points = 3 * tally["wins"] + tally["draws"]
    assert chat.one("ana", ".play stats") == (
        f"ana: 60 games: {tally['wins']} wins, {tally['draws']} draws, "
        f"{tally['losses']} losses, {points} points, rank 1 of 1"
    )


def test_dice_and_stats_of_someone_else(chat: Chat) -> None:
    reply = chat.one("bob", ".play dice")
    rolls = re.match(r"you roll (\d+), I roll (\d+): ", reply)
    assert rolls
    assert all(2 <= int(r) <= 12 for r in rolls.groups())
    assert chat.one("ana", ".play stats bob").startswith("bob: 1 game: ")
    assert chat.error("ana", ".play stats carol") == "carol has not played in general yet"


def test_game_bad_arguments(chat: Chat) -> None:
    for line in (".play", ".play chess", ".play rps", ".play rps lizard", ".play dice 3"):
        assert chat.error("ana", line).startswith("usage: .play rps rock|paper|scissors")
    for line in (".leaderboard 0", ".leaderboard -1", ".leaderboard ten", ".leaderboard 101"):
        assert chat.error("ana", line).startswith("usage: .leaderboard [N]")


def test_leaderboard_ranks_ties_consistently(chat: Chat, store: plugstore.Store) -> None:
    assert "nobody has played" in chat.one("ana", ".leaderboard")
    games = store.namespace("chat.games").scope(channel="general")
    # points: dora 9 (3 wins), bob 7, carl 7 (2w 1d both), ana 7 (1 win 4 draws), eve 0
    for player, wins, draws, losses in [
        ("dora", 3, 0, 0),
        ("bob", 2, 1, 0),
        ("carl", 2, 1, 5),
        ("ana", 1, 4, 0),
        ("eve", 0, 0, 2),
    ]:
        for outcome, n in (("wins", wins), ("draws", draws), ("losses", losses)):
            if n:
                games.scope(user=player).incr(outcome, n)
    lines = chat.one("zed", ".leaderboard").splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["1.", "dora"],
        ["2.", "bob"],
        ["2.", "carl"],
        ["4.", "ana"],
        ["5.", "eve"],
    ]
    assert len(chat.one("zed", ".leaderboard 2").splitlines()) == 2
    assert chat.one("zed", ".play stats carl").endswith("7 points, rank 2 of 5")


def test_rank_is_standard_competition_ranking() -> None:
    records = [Record("b", wins=1), Record("a", wins=1), Record("c", draws=3), Record("d")]
    assert [(place, r.player) for place, r in rank(records)] == [
        (1, "a"),
        (1, "b"),
        (3, "c"),
        (4, "d"),
    ]


# -- poll: a conversation in the StateStore ----------------------------------------------


def test_poll_conversation_survives_a_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'poll.db'}"

    def replies(user: str, line: str) -> list[str]:
        with plugstore.open(url) as store:  # a fresh store and host each time: a restart
            return Chat(store).say(user, line)

    def step(user: str, line: str) -> str:
        (reply,) = replies(user, line)
        return reply

    assert step("ana", ".poll") == "What is the question?"
    assert step("ana", "Lunch where?").startswith("Send the options")
    assert step("ana", "pizza") == "Option 1: pizza. Another, or 'done'?"
    assert replies("bob", "sushi") == []  # bob is not writing a poll: nothing captures it
    assert step("ana", "sushi").startswith("Option 2: sushi")
    opened = step("ana", "done")
    assert opened.startswith("Poll 1 is open: Lunch where? [1] pizza [2] sushi")
    assert step("bob", ".vote 1 SUSHI") == "bob votes 'sushi' in poll 1"
    assert step("carl", ".vote 1 2") == "carl votes 'sushi' in poll 1"
    assert step("ana", ".vote 1 pizza") == "ana votes 'pizza' in poll 1"
    assert step("carl", ".vote 1 1") == "carl votes 'pizza' in poll 1"  # changed vote
    assert step("ana", ".poll 1").splitlines() == [
        "Poll 1 (open, by ana): Lunch where?",
        "  1. pizza: 2 votes",
        "  2. sushi: 1 vote",
    ]
    assert step("ana", ".polls") == "#1 Lunch where? (by ana)"
    with plugstore.open(url) as store:
        chat = Chat(store)
        assert chat.error("bob", ".poll close 1") == "only ana can close poll 1"
        assert chat.one("ana", ".poll close 1").startswith("Poll 1 (closed, by ana)")
        assert chat.error("bob", ".vote 1 pizza") == "poll 1 is closed"
        assert chat.one("ana", ".polls") == "no open polls (.poll starts one)"
        assert len(chat.host.states) == 0  # finished conversations leave no state behind


def test_poll_plain_lines_of_others_are_not_captured(chat: Chat) -> None:
    chat.say("ana", ".poll")
    assert chat.say("bob", "python++") == ["python has karma 1"]
    assert chat.host.states.get("poll", "ana") == "QUESTION"
    assert chat.host.states.get("poll", "bob") == "START"
    # while ana writes her poll, her plain lines are the poll's (no karma), commands still work
    chat.say("ana", "Best language?")
    assert chat.one("ana", "python++").startswith("Option 1: python++")
    assert chat.one("ana", ".karma python") == "python has karma 1"


def test_poll_bad_steps(chat: Chat, store: plugstore.Store) -> None:
    assert chat.error("ana", ".poll cancel") == "you are not writing a poll"
    chat.say("ana", ".poll")
    assert "already writing a poll" in chat.error("ana", ".poll")
    chat.say("ana", "Q?")
    chat.say("ana", "one")
    assert "already an option" in chat.error("ana", "ONE")
    assert "at least 2 options" in chat.error("ana", "done")
    assert "under 200 characters" in chat.error("ana", "x" * 201)
    assert chat.one("ana", ".poll cancel") == "Poll cancelled."
    with chat.host.plugins[-1].session() as s:
        assert s.execute(select(poll_tables.drafts)).all() == []
    assert chat.host.states.get("poll", "ana") == "START"
    for line in (".poll x", ".vote", ".vote x 1", ".vote 1", ".poll close", ".poll 1 2"):
        assert chat.error("ana", line).startswith("usage: ")
    assert "no poll 9" in chat.error("ana", ".vote 9 a")
    chat.say("ana", ".poll")
    chat.say("ana", "Q?")
    for i in range(10):
        chat.say("ana", f"o{i}")
    assert "at most 10 options" in chat.error("ana", "o10")
    chat.say("ana", "done")
    assert "has no option 'o10'" in chat.error("bob", ".vote 1 o10")
    assert "has no option '11'" in chat.error("bob", ".vote 1 11")


def table_rows(url: str, table: Table) -> list[Any]:
    """Every row of one of the poll plugin's tables in the store at ``url``."""
    with RelationalHost(url, [poll_tables.plugin]) as host:
        host.start()
        with host["poll"].session() as s:
            return list(s.execute(select(table)).all())


def race(url: str, user: str, lines: list[str]) -> list[list[str]]:
    """Each line said by ``user`` at once, by its own host on its own store connection."""
    stores = [plugstore.open(url) for _ in lines]
    hosts = [Chat(s).host for s in stores]
    barrier = threading.Barrier(len(hosts))
    results: list[list[str]] = [[] for _ in hosts]

    def say(i: int) -> None:
        barrier.wait()
        results[i] = [r.text for r in hosts[i].handle(user, lines[i])]

    threads = [threading.Thread(target=say, args=(i,)) for i in range(len(hosts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        s.close()
    return results


def test_poll_opened_once_when_the_same_user_races_done(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'race.db'}"
    with plugstore.open(url) as store:
        chat = Chat(store)
        for line in (".poll", "Q?", "a", "b"):
            chat.say("ana", line)
    results = race(url, "ana", ["done"] * 8)
    opened = [r for r in results if r and r[0].startswith("Poll 1 is open")]
    assert len(opened) == 1, results
    assert [row.id for row in table_rows(url, poll_tables.polls)] == [1]
    assert table_rows(url, poll_tables.drafts) == []


def test_racing_the_question_step_keeps_the_winners_question(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'race.db'}"
    with plugstore.open(url) as store:
        Chat(store).say("ana", ".poll")
    results = race(url, "ana", [f"question {i}?" for i in range(8)])
    winners = [i for i, r in enumerate(results) if r[0].startswith("Send the options")]
    assert len(winners) == 1, results
    [draft] = table_rows(url, poll_tables.drafts)
    assert draft.question == f"question {winners[0]}?"


def test_unknown_conversation_state_starts_over(chat: Chat) -> None:
    chat.host.states.set("poll", "ana", "FROM_A_NEWER_VERSION")
    assert "unknown step" in chat.error("ana", "hello")
    assert chat.host.states.get("poll", "ana") == "START"
    assert chat.one("ana", ".poll") == "What is the question?"


# -- help and the host's error handling ----------------------------------------------------


def test_help_lists_every_command_with_a_description(chat: Chat) -> None:
    text = chat.one("ana", ".help")
    lines = re.sub(r"\n {34}", "  ", text).splitlines()  # long synopses wrap their description
    assert ".play rps rock|paper|scissors | dice | stats [USER]\n" in text
    listed = {line.split()[0] for line in lines}
    assert listed == {f".{name}" for name in chat.host.commands} | {"thing++,", ".quit,"}
    for name in (
        "remember",
        "whatis",
        "forget",
        "memories",
        "play",
        "leaderboard",
        "karma",
        "poll",
        "vote",
        "polls",
        "help",
    ):
        assert f".{name}" in listed
    for line in lines:
        synopsis, description = re.split(r"\s{2,}", line, maxsplit=1)
        assert synopsis.strip(), line
        assert description[0].isupper(), line
    assert chat.one("ana", ".help .whatis").startswith(".whatis KEY\n  Say what KEY is")
    assert chat.error("ana", ".help nope") == "there is no command .nope (.help lists them)"


def test_unknown_commands_suggest_the_closest(chat: Chat) -> None:
    assert chat.error("ana", ".remembr x") == (
        "unknown command .remembr - did you mean .remember? (.help lists the commands)"
    )
    assert chat.error("ana", ".zzzzzz") == "unknown command .zzzzzz (.help lists the commands)"
    assert chat.host.handle("ana", "   ") == []
    assert chat.host.handle("ana", "just chatting") == []
    assert chat.error("  ", ".help") == "a user name must not be empty"


class Broken(Plugin):
    """Fails in every way a plugin can."""

    @command()
    def boom(self, ctx: Context, args: str) -> str:
        """Raise a bug."""
        return str(1 // len(args))

    @command()
    def lazy(self, ctx: Context, args: str) -> list[str]:
        """Fail halfway through a generator."""

        def replies() -> Iterator[str]:
            yield "first"
            raise RuntimeError("second failed")

        return list(replies()) if args else replies()  # type: ignore[return-value]

    @command()
    def refuse(self, ctx: Context, args: str) -> str:
        """Refuse politely."""
        raise CommandError("no, thanks")

    @command()
    def down(self, ctx: Context, args: str) -> str:
        """A storage failure."""
        raise BackendUnavailableError("redis at 127.0.0.1:1 refused the connection")


def test_usage_errors_outside_commands_are_plain_replies(store: plugstore.Store) -> None:
    class Strict(Plugin):
        """Raises UsageError where there is no usage line."""

        @listen(r"\bstrict\b", synopsis="strict")
        def hear(self, ctx: Context, matches: list[re.Match[str]]) -> str:
            """Complain."""
            raise UsageError("say it differently")

        @command()
        def talk(self, ctx: Context, args: str) -> str:
            """Start talking."""
            ctx.set_state("TALKING")
            return "talk to me"

        def converse(self, ctx: Context, text: str) -> str:
            raise UsageError("not like that")

    chat = Chat(store, extra=[Strict])
    assert chat.error("ana", "be strict") == "say it differently"
    chat.say("ana", ".talk")
    assert chat.error("ana", "hello") == "not like that"


def test_plugin_failures_are_one_line_replies(chat_broken: Chat) -> None:
    text = chat_broken.error("ana", ".boom")
    assert text == (
        "plugin 'broken' failed in .boom: ZeroDivisionError: integer division or modulo by "
        "zero (run with --debug for the traceback)"
    )
    assert "second failed" in chat_broken.error("ana", ".lazy")
    assert chat_broken.error("ana", ".refuse") == "no, thanks"
    assert chat_broken.error("ana", ".down") == (
        "storage error in .down (broken): redis at 127.0.0.1:1 refused the connection"
    )
    assert chat_broken.one("ana", ".boom x") == "1"  # and the host goes on


@pytest.fixture
def chat_broken(store: plugstore.Store) -> Chat:
    return Chat(store, extra=[Broken])


def test_a_closed_store_is_a_storage_error_reply(store: plugstore.Store) -> None:
    chat = Chat(store)
    store.close()
    text = chat.error("ana", ".whatis meeting")
    assert text.startswith("storage error in .whatis (remember): ")
    assert "closed" in text
    assert chat.error("ana", "a plain line").startswith("storage error in a conversation (poll)")
    store.open()


def test_plugins_that_clash_or_misname_are_reported_not_loaded(store: plugstore.Store) -> None:
    class Clash(Plugin):
        """Takes .help."""

        @command()
        def help(self, ctx: Context, args: str) -> str:
            """Mine."""
            return "mine"

    class BadName(Plugin):
        """Bad."""

        name = "Bad Name"

    class Remember(Plugin):
        """A second plugin called remember."""

    host = ChatHost(store, [*builtin_plugins(), Clash, BadName, Remember])
    assert [p.name for p in host.plugins] == [
        "help",
        "remember",
        "karma",
        "games",
        "privacy",
        "poll",
    ]
    assert len(host.problems) == 3
    assert "command .help is already taken by plugin 'help'" in host.problems[0]
    assert "invalid plugin name 'Bad Name'" in host.problems[1]
    assert "a plugin named 'remember' is already loaded" in host.problems[2]


def test_each_plugin_has_its_own_namespace(chat: Chat, store: plugstore.Store) -> None:
    chat.say("ana", ".remember x is 1")
    chat.say("ana", "x++")
    chat.say("ana", ".play dice")
    assert store.namespace("chat.remember")["x"]["value"] == "1"
    assert store.namespace("chat.karma").scope(channel="general")["x"] == 1
    assert {"chat.remember", "chat.karma", "chat.games"} <= set(store.namespaces())


def test_command_names_are_validated() -> None:
    with pytest.raises(ValueError, match="invalid command name"):
        command("Bad Name")


def test_the_example_plugin_from_the_docs(store: plugstore.Store) -> None:
    from plugstore.bot import directory_plugins

    examples = Path(__file__).parent.parent / "examples" / "chat_plugins"
    found, problems = directory_plugins(examples)
    assert problems == []
    assert [cls.__name__ for cls in found] == ["Quotes"]
    chat = Chat(store, extra=found)
    assert chat.error("ana", ".quiz") == "no quotes yet: .quote AUTHOR: TEXT"
    assert chat.one("ana", ".quote Ada Lovelace: weaves algebraic patterns") == "quote #1 saved"
    assert chat.error("ana", ".quote nobody").startswith("usage: .quote [AUTHOR: TEXT]")
    assert chat.one("bob", ".quote") == '#1 "weaves algebraic patterns" - Ada Lovelace'
    assert chat.one("bob", ".quiz") == 'Who said: "weaves algebraic patterns"?'
    assert chat.one("ana", "(ada lovelace)++") == "ada lovelace has karma 1"  # ana: no quiz
    restarted = Chat(store, extra=found)  # the quiz is in the store, not in the host
    assert restarted.one("bob", "Ada Lovelace") == "Right, it was Ada Lovelace!"
    assert store.namespace("chat.quotes")["score:bob"] == 1
    assert restarted.host.states.get("quotes", "bob") == "START"


def test_a_plugin_whose_setup_fails_is_reported_and_the_rest_work(store: plugstore.Store) -> None:
    class BadSetup(Plugin):
        """Writes an invalid key at start-up."""

        def setup(self) -> None:
            self.data[""] = 1

    host = ChatHost(store, [*builtin_plugins(), BadSetup])
    assert len(host.problems) == 1
    assert host.problems[0].endswith(".BadSetup not loaded: keys must not be empty")
    assert "badsetup" not in [p.name for p in host.plugins]
    assert [r.text for r in host.handle("ana", ".remember a is b")] == ["OK, a is b."]


def test_a_failed_open_can_be_retried(chat: Chat) -> None:
    for line in (".poll", "Q?", "a", "b"):
        chat.say("ana", line)
    poll = next(p for p in chat.host.plugins if p.name == "poll")
    assert poll.db is not None
    calls = []

    def fail_on_options(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("INSERT INTO pl_poll.options"):
            calls.append(statement)
            raise OperationalError(statement, {}, Exception("database is locked"))

    event.listen(poll.db.engine, "before_cursor_execute", fail_on_options)
    assert chat.error("ana", "done").startswith("storage error in its conversation (poll)")
    assert len(calls) == 1
    assert chat.host.states.get("poll", "ana") == "OPTIONS"  # back where it was
    with poll.session() as s:  # the poll's row went with the failed transaction
        assert s.execute(select(poll_tables.polls)).all() == []
        assert len(s.execute(select(poll_tables.drafts)).all()) == 1
    event.remove(poll.db.engine, "before_cursor_execute", fail_on_options)
    assert chat.one("ana", "done").startswith("Poll 1 is open: Q? [1] a [2] b")


def test_a_question_that_was_not_saved_is_asked_again(chat: Chat, store: plugstore.Store) -> None:
    chat.say("ana", ".poll")
    chat.host.states.set("poll", "ana", "OPTIONS")  # as if the draft write never happened
    assert chat.error("ana", "pizza") == "your question was not saved: what is the question?"
    assert chat.host.states.get("poll", "ana") == "QUESTION"
    assert chat.one("ana", "Lunch?").startswith("Send the options")


def test_a_question_saved_before_a_crash_is_kept(chat: Chat, store: plugstore.Store) -> None:
    chat.say("ana", ".poll")
    poll = next(p for p in chat.host.plugins if p.name == "poll")
    with poll.session() as s:  # the question was saved, then the process died
        s.execute(update(poll_tables.drafts).values(question="Lunch?"))
    assert chat.host.states.get("poll", "ana") == "QUESTION"  # the state did not follow
    assert chat.error("ana", "pizza") == "the question is already 'Lunch?': send an option"
    assert chat.host.states.get("poll", "ana") == "OPTIONS"
    assert chat.one("ana", "pizza") == "Option 1: pizza. Another, or 'done'?"


def test_numbers_are_ascii_digits_only(chat: Chat) -> None:
    for line in (".leaderboard ²", ".vote ² 1", ".poll ²", ".poll close ²"):
        assert chat.error("ana", line).startswith("usage: "), line


def test_user_names_with_control_characters_are_refused(chat: Chat) -> None:
    assert chat.error("eve\n  1. mallory  99 games", ".play dice").startswith(
        "a user name must not contain control characters"
    )


def test_base_classes_in_a_plugin_module_are_not_plugins(tmp_path: Path) -> None:
    from plugstore.bot import directory_plugins

    (tmp_path / "tools.py").write_text(
        "from plugstore.bot import Plugin, command\n"
        "class BaseTool(Plugin):\n"
        '    """Base."""\n'
        "    @command()\n"
        "    def tool(self, ctx, args):\n"
        '        """Use the tool."""\n'
        "        return self.name\n"
        "class Hammer(BaseTool):\n"
        '    """A hammer."""\n'
        "class Saw(BaseTool):\n"
        '    """A saw."""\n'
        "    @command()\n"
        "    def cut(self, ctx, args):\n"
        '        """Cut."""\n'
        "        return 'cut'\n"
    )
    (tmp_path / "quits.py").write_text("import sys\nsys.exit(3)\n")
    found, problems = directory_plugins(tmp_path)
    assert sorted(cls.__name__ for cls in found) == ["Hammer", "Saw"]
    assert len(problems) == 1
    assert "quits.py: SystemExit: 3" in problems[0]
