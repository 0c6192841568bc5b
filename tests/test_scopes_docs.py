"""The code in docs/scopes.md runs, and does what the page says (on the test's SQLite)."""
# ruff: noqa: S102 - running the documentation's own code blocks is the point

from __future__ import annotations

import asyncio
import re
import sys
import types
from pathlib import Path
from typing import Any

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "scopes.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


def test_the_walkthrough_blocks_run_in_order(capsys: pytest.CaptureFixture[str]) -> None:
    scopes, listing, defaults, locks = python_blocks()[:4]
    env: dict[str, Any] = {}
    exec(scopes, env)
    levels = env["levels"]
    assert levels.scope(guild=1234, member=5678)["xp"] == 120
    exec(listing, env)
    assert "5678 120" in capsys.readouterr().out
    assert list(levels.scope(guild=1234).ids("member")) == []  # clear_all()
    exec(defaults, env)
    assert levels.scope(guild=1, member=2)["xp"] == 5
    assert levels.scope(guild=1)["announce"] == {"on": True, "channel": 42}
    resets: list[str] = []
    env.update(today="2026-11-23", gain=3, reset_everything=lambda: resets.append("reset"))
    exec(locks, env)
    exec(locks, env)
    assert resets == ["reset"]  # the second run saw today's reset
    assert levels.scope(guild=1, member=2)["xp"] == 5 + 3 + 3
    env["store"].close()


class _FakeCommands(types.ModuleType):
    """Just enough of redbot.core.commands for the cog to be defined and called."""

    class Cog:
        @staticmethod
        def listener() -> Any:
            return lambda fn: fn

    @staticmethod
    def command() -> Any:
        return lambda fn: fn


def test_the_plugstore_cog_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    redbot = types.ModuleType("redbot")
    core = types.ModuleType("redbot.core")
    core.commands = _FakeCommands("redbot.core.commands")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "redbot", redbot)
    monkeypatch.setitem(sys.modules, "redbot.core", core)
    monkeypatch.setitem(sys.modules, "redbot.core.commands", core.commands)  # type: ignore[attr-defined]
    cog_code = next(
        block for block in python_blocks() if "class Levels" in block and "plugstore" in block
    )
    env: dict[str, Any] = {}
    exec(cog_code, env)
    cog = env["Levels"]()
    ns = types.SimpleNamespace

    def message(guild: int, author: int, bot: bool = False) -> Any:
        return ns(guild=ns(id=guild), author=ns(id=author, bot=bot))

    for author, count in ((10, 3), (11, 1), (12, 2)):
        for _ in range(count):
            asyncio.run(cog.on_message(message(7, author)))
    asyncio.run(cog.on_message(message(7, 13, bot=True)))  # bots earn nothing
    asyncio.run(cog.on_message(ns(guild=None, author=ns(id=14, bot=False))))
    asyncio.run(cog.on_message(message(8, 10)))  # another guild
    sent: list[str] = []

    async def send(text: str) -> None:
        sent.append(text)

    asyncio.run(cog.top(ns(guild=ns(id=7), send=send)))
    assert sent == ["<@10>: 15\n<@12>: 10\n<@11>: 5"]
    levels = env["levels"]
    assert levels.scope(guild=8, member=10)["xp"] == 5
    with pytest.raises(Exception, match="not a registered key"):
        levels.scope(guild=7)["xp_per_mesage"]  # strict: the typo fails loudly
    env["store"].close()


def test_the_versioning_block_migrates_old_karma() -> None:
    import plugstore

    (block,) = [b for b in python_blocks() if "def to_channels" in b]
    with plugstore.open() as store:  # the test's own default store (see conftest)
        store.namespace("karma").update(python=3, rust=1)
    env: dict[str, Any] = {}
    exec(block, env)
    karma = env["karma"]
    assert karma.data_version == 2
    assert dict(karma.scope(channel="general").items()) == {"python": 3, "rust": 1}
    assert list(karma) == []
    env["store"].close()


def test_the_user_data_hook_block_runs(tmp_path: Path) -> None:
    import plugstore

    (block,) = [b for b in python_blocks() if "UserData(" in b]
    with plugstore.open(f"sqlite:///{tmp_path / 'quotes.db'}") as store:
        quotes = store.namespace("quotes")
        quotes["quote:1"] = {"by": "ana", "text": "hi"}
        quotes["quote:2"] = {"by": "bob", "text": "yo"}
        quotes["quote:3"] = {"by": "ana", "text": "bye"}
        env: dict[str, Any] = {"store": store}
        exec(block, env)
        assert env["data"]["plugins"] == {
            "quotes": {
                "quote:1": {"by": "ana", "text": "hi"},
                "quote:3": {"by": "ana", "text": "bye"},
            }
        }
        assert [(r.name, r.counts, r.error) for r in env["summary"].plugins] == [
            ("quotes", {"quotes": 2}, None)
        ]
        assert dict(quotes.items()) == {"quote:2": {"by": "bob", "text": "yo"}}


def test_the_whole_scopes_block_runs() -> None:
    (block,) = [b for b in python_blocks() if "levels.batch()" in b]
    env: dict[str, Any] = {}
    exec(block, env)  # its asserts check what the page says
    levels = env["levels"]
    assert dict(levels.scope(guild=1)) == {"prefix": "?", "xp_per_message": 5}
    env["store"].close()
