"""The chat host's channels: karma and game statistics kept per channel in scopes, and
the version 2 migration of data written before channels existed."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import plugstore
from plugstore.bot import ChatHost, builtin_plugins
from plugstore.bot.plugins.games import legacy_counter_key
from plugstore.scopekeys import VERSION_KEY


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'chat.db'}"


@pytest.fixture
def host(url: str) -> Iterator[ChatHost]:
    with (
        plugstore.open(url) as store,
        ChatHost(store, builtin_plugins(), rng=random.Random(3)) as chat_host,
    ):
        yield chat_host


def texts(host: ChatHost, user: str, line: str, channel: str = "general") -> list[str]:
    replies = host.handle(user, line, channel)
    assert not [r.text for r in replies if r.error], replies
    return [r.text for r in replies]


def test_karma_is_kept_per_channel(host: ChatHost) -> None:
    assert texts(host, "ana", "python++", "dev") == ["python has karma 1"]
    assert texts(host, "bob", "python++", "dev") == ["python has karma 2"]
    assert texts(host, "ana", "python--", "random") == ["python has karma -1"]
    assert texts(host, "ana", ".karma python", "dev") == ["python has karma 2"]
    assert texts(host, "ana", ".karma python") == ["python has karma 0"]
    assert texts(host, "ana", ".karma", "random") == ["top: python (-1)"]
    assert texts(host, "ana", ".karma") == ["no karma here yet: say thing++"]
    karma = host.store.namespace("chat.karma")
    assert sorted(karma.scope().ids("channel")) == ["dev", "random"]
    assert list(karma) == []  # nothing stored as a plain key any more


def test_game_statistics_are_kept_per_channel_and_player(host: ChatHost) -> None:
    for _ in range(3):
        texts(host, "ana", ".play dice", "dev")
    texts(host, "bob", ".play dice", "dev")
    texts(host, "ana", ".play dice", "random")
    games = host.store.namespace("chat.games")
    ana_dev = games.scope(channel="dev", user="ana")
    assert sum(ana_dev.get(o, 0) for o in ("wins", "draws", "losses")) == 3
    assert texts(host, "ana", ".play stats", "dev")[0].startswith("ana: 3 games: ")
    assert texts(host, "ana", ".play stats", "random")[0].startswith("ana: 1 game: ")
    board = texts(host, "zed", ".leaderboard", "dev")[0].splitlines()
    assert sorted(line.split()[1] for line in board) == ["ana", "bob"]
    assert len(texts(host, "zed", ".leaderboard", "random")[0].splitlines()) == 1
    assert "nobody has played" in texts(host, "zed", ".leaderboard", "quiet")[0]
    replies = host.handle("ana", ".play stats bob", "random")
    assert [(r.text, r.error) for r in replies] == [("bob has not played in random yet", True)]


def test_bad_channels_are_refused(host: ChatHost) -> None:
    for channel in ("", "  ", "dev\nbob> hi", "\x1b[31m"):
        replies = host.handle("ana", "python++", channel)
        assert len(replies) == 1
        assert replies[0].error
        assert "channel name" in replies[0].text
    assert list(host.store.namespace("chat.karma").scope().ids("channel")) == []


def test_data_from_before_channels_moves_to_the_default_channel(url: str) -> None:
    with plugstore.open(url) as store:  # what version 1 of the plugins wrote
        store.namespace("chat.karma").update({"python": 3, "big data": -1})
        store.namespace("chat.games").update(
            {
                legacy_counter_key("wins", "ana"): 2,
                legacy_counter_key("losses", "ana"): 1,
                legacy_counter_key("draws", "bob:the:builder"): 4,
                "notes": "not a counter: left alone",
            }
        )
    with plugstore.open(url) as store, ChatHost(store, builtin_plugins()) as host:
        assert host.problems == []
        assert texts(host, "zed", ".karma python") == ["python has karma 3"]
        assert texts(host, "zed", ".karma big data") == ["big data has karma -1"]
        assert texts(host, "zed", ".play stats ana") == [
            "ana: 3 games: 2 wins, 0 draws, 1 loss, 6 points, rank 1 of 2"
        ]
        assert texts(host, "zed", ".play stats bob:the:builder")[0].startswith(
            "bob:the:builder: 4 games: 0 wins, 4 draws"
        )
        karma, games = store.namespace("chat.karma"), store.namespace("chat.games")
        assert list(karma) == []
        assert list(games) == ["notes"]
        assert karma.data_version == games.data_version == 2
        assert karma._bucket.get(VERSION_KEY) == b"2"


def test_newer_plugin_data_is_reported_not_misread(url: str) -> None:
    with plugstore.open(url) as store:
        store.namespace("chat.karma", version=9)["anything"] = 1
    with plugstore.open(url) as store, ChatHost(store, builtin_plugins()) as host:
        assert "karma" not in [p.name for p in host.plugins]
        (problem,) = [p for p in host.problems if "karma" in p]
        assert "data version 9" in problem
        assert "up to 2" in problem
        assert "games" in [p.name for p in host.plugins]  # the others still load


def test_chat_command_speaks_in_the_channel_given(url: str) -> None:
    def chat(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "plugstore.cli", "chat", "--user", "ana", *args],
            env={**os.environ, "PLUGSTORE_URL": url},
            capture_output=True,
            text=True,
            timeout=120,
        )

    assert chat("--channel", "dev", "-c", "python++").stdout.strip() == "python has karma 1"
    assert chat("-c", ".karma python").stdout.strip() == "python has karma 0"
    assert chat("--channel", "dev", "-c", ".karma python").stdout.strip() == "python has karma 1"
    bad = chat("--channel", " ", "-c", "python++")
    assert bad.returncode == 1
    assert "--channel: a channel name must not be empty" in bad.stderr
