"""A small aiogram 3 bot whose conversations live in plugstore: a sign-up form.

/start asks for a name, then an age, then says what it recorded; /cancel stops the
form.  Where the form stands for each user is aiogram FSM state and data, kept in any
plugstore store, so a restart (or another process on the same store) carries on where
the user left off::

    pip install "plugstore[aiogram]"          # plus [postgresql], [redis]... for a server
    BOT_TOKEN=123:ABC PLUGSTORE_URL=sqlite:///bot.db python bot.py

``tests/test_aiogram.py`` runs these handlers on every backend with updates fed through
``Dispatcher.feed_update`` (no network).
"""

from __future__ import annotations

import asyncio
import logging
import os

from aiogram import Bot, Dispatcher, F, Router
from aiogram.filters import Command, CommandStart
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import Message

from plugstore.integrations.aiogram import PlugstoreStorage


class SignUp(StatesGroup):
    name = State()
    age = State()


async def start(message: Message, state: FSMContext) -> None:
    await state.set_state(SignUp.name)
    await message.answer("Hi! What is your name?")


async def cancel(message: Message, state: FSMContext) -> None:
    if await state.get_state() is None:
        await message.answer("Nothing to cancel.")
        return
    await state.clear()
    await message.answer("Cancelled. /start to begin again.")


async def got_name(message: Message, state: FSMContext) -> None:
    await state.update_data(name=message.text)
    await state.set_state(SignUp.age)
    await message.answer(f"Nice to meet you, {message.text}. How old are you?")


async def got_age(message: Message, state: FSMContext) -> None:
    assert message.text is not None  # the filter matched digits
    data = await state.update_data(age=int(message.text))
    await state.clear()
    await message.answer(f"Signed up: {data['name']}, {data['age']}.")


async def bad_age(message: Message) -> None:
    await message.answer("Please send your age as a number, like 42.")


def make_router() -> Router:
    """The bot's handlers (a router joins one dispatcher only, so one per dispatcher)."""
    router = Router(name="signup")
    router.message.register(start, CommandStart())
    router.message.register(cancel, Command("cancel"))
    router.message.register(got_name, SignUp.name, F.text)
    router.message.register(got_age, SignUp.age, F.text.regexp(r"^\d{1,3}$"))
    router.message.register(bad_age, SignUp.age)
    return router


def make_dispatcher(url: str | None = None) -> Dispatcher:
    """A dispatcher keeping its FSM in the store at ``url`` (``None``: ``PLUGSTORE_URL``,
    else plugstore's default SQLite file), with the events of one chat handled one at a
    time across every process that shares the store."""
    storage = PlugstoreStorage(url)  # opened in the event loop, on the first update
    dp = Dispatcher(storage=storage, events_isolation=storage.create_isolation())
    dp.include_router(make_router())
    return dp


async def main() -> None:
    bot = Bot(os.environ["BOT_TOKEN"])
    dp = make_dispatcher()
    await dp.start_polling(bot)  # closes the storage (and its store) when it stops


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(main())
