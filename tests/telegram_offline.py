"""python-telegram-bot without a network, for the tests of plugstore's PTB persistence.

:class:`OfflineRequest` is the Bot's HTTP layer: it answers ``getMe``, ``sendMessage``
and the other calls with canned JSON and records what the bot sent.  Updates are made
with :func:`message` / :func:`callback_query` and fed with ``app.process_update``, the
way PTB's own tests feed them.
"""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

from telegram import Update
from telegram.ext import Application
from telegram.request import BaseRequest, RequestData

BOT_ID = 123456
TOKEN = f"{BOT_ID}:TEST"
_ids = itertools.count(1)


class OfflineRequest(BaseRequest):
    """Answers every Bot API call from a table; records ``(method, parameters)``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    @property
    def read_timeout(self) -> float | None:  # abstract since PTB 22.0
        return 1.0

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Any = None,
        write_timeout: Any = None,
        connect_timeout: Any = None,
        pool_timeout: Any = None,
    ) -> tuple[int, bytes]:
        name = url.rsplit("/", 1)[-1]
        params: dict[str, Any] = dict(request_data.parameters) if request_data else {}
        self.calls.append((name, params))
        result: Any = True
        if name == "getMe":
            result = {"id": BOT_ID, "is_bot": True, "first_name": "Test", "username": "test_bot"}
        elif name == "sendMessage":
            result = {
                "message_id": next(_ids),
                "date": int(time.time()),
                "text": params["text"],
                "chat": {"id": params["chat_id"], "type": _chat_type(int(params["chat_id"]))},
            }
            if "reply_markup" in params:
                markup = params["reply_markup"]
                result["reply_markup"] = json.loads(markup) if isinstance(markup, str) else markup
        return 200, json.dumps({"ok": True, "result": result}).encode()

    def sent(self) -> list[str]:
        """The texts of the messages the bot sent, in order."""
        return [params["text"] for name, params in self.calls if name == "sendMessage"]


def _chat_type(chat_id: int) -> str:
    return "private" if chat_id > 0 else "group"


def _user(user_id: int) -> dict[str, Any]:
    return {"id": user_id, "is_bot": False, "first_name": f"User{user_id}"}


def message(
    app: Application[Any, Any, Any, Any, Any, Any],
    text: str,
    *,
    user: int = 7,
    chat: int | None = None,
) -> Update:
    """A text message from ``user`` in ``chat`` (default: the private chat with
    ``user``); a leading ``/word`` is a command."""
    chat_id = user if chat is None else chat
    entities = []
    if text.startswith("/"):
        entities = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
    payload = {
        "update_id": next(_ids),
        "message": {
            "message_id": next(_ids),
            "date": int(time.time()),
            "text": text,
            "entities": entities,
            "chat": {"id": chat_id, "type": _chat_type(chat_id), "title": "group"},
            "from": _user(user),
        },
    }
    return Update.de_json(payload, app.bot)  # binds the bot: reply_text works


def callback_query(
    app: Application[Any, Any, Any, Any, Any, Any],
    sent_message: dict[str, Any],
    data: str,
    *,
    user: int = 7,
) -> Update:
    """``user`` pressing the button whose callback data is ``data`` under
    ``sent_message`` (the parameters of a recorded ``sendMessage``)."""
    chat_id = int(sent_message["chat_id"])
    payload = {
        "update_id": next(_ids),
        "callback_query": {
            "id": str(next(_ids)),
            "chat_instance": "ci",
            "from": _user(user),
            "data": data,
            "message": {
                "message_id": next(_ids),
                "date": int(time.time()),
                "text": sent_message["text"],
                "chat": {"id": chat_id, "type": _chat_type(chat_id)},
                "from": {"id": BOT_ID, "is_bot": True, "first_name": "Test"},
            },
        },
    }
    return Update.de_json(payload, app.bot)
