"""A small python-telegram-bot bot whose conversations survive restarts.

plugstore keeps its user, chat and bot data and the state of its sign-up conversation,
so a user who stops half-way through can come back after the bot restarted (or moved to
another machine sharing the store) and carry on::

    pip install "plugstore[telegram]"
    TELEGRAM_TOKEN=123456:ABC-DEF PLUGSTORE_URL=sqlite:///bot.db python bot.py

Commands: /start (sign up: your name, then your favourite colour), /cancel, /whoami,
/forget (drop what the bot keeps about you and this chat).  tests/test_telegram.py runs
it offline on every backend, restarts included.
"""

from __future__ import annotations

import os
from typing import Any

from telegram import Update
from telegram.ext import (
    Application,
    BasePersistence,
    CommandHandler,
    ContextTypes,
    ConversationHandler,
    MessageHandler,
    filters,
)
from telegram.request import BaseRequest

from plugstore.integrations.telegram import PlugstorePersistence

# The conversation's states: plain ints, which the default JSON state codec stores.
# (IntEnum states need PlugstorePersistence(..., state_codec="pickle").)
NAME, COLOUR = range(2)


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
    assert update.message is not None
    await update.message.reply_text("Hello! What is your name?")
    return NAME


async def got_name(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
    assert update.message is not None
    assert context.user_data is not None
    context.user_data["name"] = update.message.text
    await update.message.reply_text(f"Nice to meet you, {update.message.text}. Favourite colour?")
    return COLOUR


async def got_colour(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
    assert update.message is not None
    assert context.user_data is not None
    assert context.chat_data is not None
    context.user_data["colour"] = update.message.text
    context.bot_data["signups"] = context.bot_data.get("signups", 0) + 1
    context.chat_data.setdefault("members", []).append(context.user_data["name"])
    await update.message.reply_text(
        f"Thanks, {context.user_data['name']}: {update.message.text} it is. "
        f"You are sign-up number {context.bot_data['signups']}."
    )
    return ConversationHandler.END


async def cancel(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
    assert update.message is not None
    await update.message.reply_text("Cancelled.")
    return ConversationHandler.END


async def whoami(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.message is not None
    assert context.user_data is not None
    if "colour" in context.user_data:
        text = f"You are {context.user_data['name']} and you like {context.user_data['colour']}."
    else:
        text = "I do not know you yet: /start"
    await update.message.reply_text(text)


async def forget(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.message is not None
    assert update.effective_user is not None
    assert update.effective_chat is not None
    context.application.drop_user_data(update.effective_user.id)
    context.application.drop_chat_data(update.effective_chat.id)
    await update.message.reply_text("Forgotten.")


def build_application(
    persistence: BasePersistence[Any, Any, Any],
    token: str,
    *,
    request: BaseRequest | None = None,
    concurrent_updates: bool = False,
) -> Application[Any, Any, Any, Any, Any, Any]:
    """The bot, with ``persistence``; ``request`` replaces the HTTP layer (the tests
    pass one that answers without a network)."""
    builder = Application.builder().token(token).persistence(persistence)
    builder = builder.concurrent_updates(concurrent_updates)
    if request is not None:
        builder = builder.request(request).get_updates_request(request).updater(None)
    app = builder.build()
    app.add_handler(
        ConversationHandler(
            entry_points=[CommandHandler("start", start)],
            states={
                NAME: [MessageHandler(filters.TEXT & ~filters.COMMAND, got_name)],
                COLOUR: [MessageHandler(filters.TEXT & ~filters.COMMAND, got_colour)],
            },
            fallbacks=[CommandHandler("cancel", cancel)],
            name="signup",
            persistent=True,  # the state of every user's sign-up is kept in the store
        )
    )
    app.add_handler(CommandHandler("whoami", whoami))
    app.add_handler(CommandHandler("forget", forget))
    return app


def main() -> None:
    # PLUGSTORE_URL picks the store (default: plugstore's embedded SQLite file).  The
    # store is opened in the loop run_polling starts, and closed when the bot stops.
    persistence = PlugstorePersistence(os.environ.get("PLUGSTORE_URL"), update_interval=5)
    build_application(persistence, os.environ["TELEGRAM_TOKEN"]).run_polling()


if __name__ == "__main__":
    main()
