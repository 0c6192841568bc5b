"""aiogram without a network: a Bot whose session answers from a table, and updates.

``Bot(TOKEN, session=CannedSession())`` never opens a socket: every Telegram method the
handlers call lands in ``session.calls`` and gets a canned answer (a ``Message`` for
``sendMessage``).  ``bot.id`` (42) comes from the token, so aiogram needs no ``getMe``.
Updates go in through ``Dispatcher.feed_update``, as polling or a webhook feeds them.

``python aiogram_offline.py SPEC_ENV`` is one bot process of the cross-process tests:
it reads its spec (JSON) from the environment variable SPEC_ENV, prints ``ready``, waits
for a line on stdin, then feeds its updates all at once and prints what it sent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import os
import sys
from collections.abc import AsyncGenerator
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.client.session.base import BaseSession
from aiogram.fsm.context import FSMContext
from aiogram.methods import SendMessage, TelegramMethod
from aiogram.types import Chat, Message, Update, User

TOKEN = "42:TEST-TOKEN"
BOT_ID = 42
_ids = itertools.count(1)


class CannedSession(BaseSession):
    """The only thing a Bot talks to: records each method, answers from a table."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[TelegramMethod[Any]] = []

    async def make_request(
        self, bot: Bot, method: TelegramMethod[Any], timeout: int | None = None
    ) -> Any:
        self.calls.append(method)
        if isinstance(method, SendMessage):  # aiogram wants method.__returning__ back
            return Message(
                message_id=len(self.calls),
                date=dt.datetime.now(dt.timezone.utc),
                chat=Chat(id=int(method.chat_id), type="private"),
                text=method.text,
            )
        return True

    async def stream_content(
        self,
        url: str,
        headers: dict[str, Any] | None = None,
        timeout: int = 30,
        chunk_size: int = 65536,
        raise_for_status: bool = True,
    ) -> AsyncGenerator[bytes, None]:
        yield b""

    async def close(self) -> None:
        pass

    def texts(self, chat: int | None = None) -> list[str]:
        """What the bot sent (to ``chat``), in order."""
        return [
            str(m.text)
            for m in self.calls
            if isinstance(m, SendMessage) and (chat is None or int(m.chat_id) == chat)
        ]


def offline_bot() -> tuple[Bot, CannedSession]:
    session = CannedSession()
    return Bot(TOKEN, session=session), session


def message(
    text: str, *, user: int = 7, chat: int | None = None, thread: int | None = None
) -> Update:
    """An update carrying a text message from ``user`` in ``chat`` (default: their
    private chat), in forum topic ``thread`` if given."""
    chat_id = user if chat is None else chat
    update_id = next(_ids)
    return Update(
        update_id=update_id,
        message=Message(
            message_id=update_id,
            date=dt.datetime.now(dt.timezone.utc),
            text=text,
            chat=Chat(id=chat_id, type="private" if chat_id == user else "supergroup"),
            from_user=User(id=user, is_bot=False, first_name=f"user{user}"),
            message_thread_id=thread,
            is_topic_message=thread is not None or None,
        ),
    )


async def slow_increment(msg: Message, state: FSMContext) -> None:
    """A handler that reads, waits, then writes: correct only if the events of one chat
    are handled one at a time."""
    data = await state.get_data()
    await asyncio.sleep(0.005)
    await state.set_data({"n": data.get("n", 0) + 1})
    await msg.answer("counted")


def counting_dispatcher(url: str, *, isolated: bool) -> Dispatcher:
    from plugstore.integrations.aiogram import PlugstoreStorage

    storage = PlugstoreStorage(url)
    if isolated:
        dp = Dispatcher(storage=storage, events_isolation=storage.create_isolation(timeout=120))
    else:
        dp = Dispatcher(storage=storage)  # aiogram's default: no isolation
    dp.message.register(slow_increment)
    return dp


async def _worker(spec: dict[str, Any]) -> int:
    dp = counting_dispatcher(spec["url"], isolated=spec["isolated"])
    bot, session = offline_bot()
    await dp.storage.get_state(_key(spec["user"]))  # opened before the start signal
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    updates = [message("+1", user=spec["user"]) for _ in range(spec["updates"])]
    await asyncio.gather(*(dp.feed_update(bot, update) for update in updates))
    await dp.emit_shutdown()
    return len(session.texts())


def _key(user: int) -> Any:
    from aiogram.fsm.storage.base import StorageKey

    return StorageKey(bot_id=BOT_ID, chat_id=user, user_id=user)


if __name__ == "__main__":
    sent = asyncio.run(_worker(json.loads(os.environ[sys.argv[1]])))
    print(json.dumps(sent), flush=True)
