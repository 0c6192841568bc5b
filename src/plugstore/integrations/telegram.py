"""plugstore as python-telegram-bot's persistence: ``.persistence(PlugstorePersistence(url))``.

python-telegram-bot (PTB) keeps ``user_data``, ``chat_data``, ``bot_data``, arbitrary
callback data and the states of ``persistent=True`` ConversationHandlers in a
``BasePersistence``.  PTB's own ``PicklePersistence`` writes one pickle file;
:class:`PlugstorePersistence` keeps them in any plugstore store (SQLite, PostgreSQL,
MariaDB, Redis, DynamoDB...), in one namespace, with the safe JSON codec by default::

    from telegram.ext import Application
    from plugstore.integrations.telegram import PlugstorePersistence

    app = (Application.builder().token(TOKEN)
           .persistence(PlugstorePersistence("postgresql://bot@db/bot")).build())

The layout, in namespace ``"telegram"`` (``namespace=`` changes it)::

    scope(user=U)          "user_data"       the user_data of user U
                           "chat_data"       the chat_data of the private chat with U
    scope(chat=C)          "chat_data"       the chat_data of group, supergroup or channel C
    scope(conversation=N)  "[7, 7]"          a ConversationHandler's state, by its key (JSON)
    "bot_data", "callback_data"              plain keys

Telegram gives a private chat the id of its user, and every other chat a negative id;
so a positive chat id is a private chat, and its data sits in the user's scope, where
``plugstore user export/forget`` finds it with the user's own data.

This is the only plugstore module that imports python-telegram-bot (LGPL-3.0); plugstore
never depends on it.  Tested on PTB 22; PTB 21 has the same persistence contract.  See
``docs/telegram.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import MutableMapping
from typing import Any, TypeVar, cast, overload

from telegram.ext import BasePersistence, ContextTypes, PersistenceInput

from ..aio import AsyncNamespace, AsyncStore
from ..aio import open as open_async
from ..aio import wrap as wrap_async
from ..aio.scopes import AsyncScope
from ..codecs import Codec, JSONCodec, get_codec
from ..config import SECRET_ENV
from ..errors import ConfigurationError, DecodeError, EncodeError
from ..keys import check_namespace
from ..store import Store
from ..url import StoreURL, mask_text

#: The namespace holding a bot's data unless ``namespace=`` says otherwise.
DEFAULT_NAMESPACE = "telegram"
#: Keys and scope levels of the layout (see the module docs).
USER_DATA, CHAT_DATA = "user_data", "chat_data"
BOT_DATA, CALLBACK_DATA = "bot_data", "callback_data"
USER_LEVEL, CHAT_LEVEL, CONVERSATION_LEVEL = "user", "chat", "conversation"

UD = TypeVar("UD")
CD = TypeVar("CD")
BD = TypeVar("BD")

# PTB's own aliases live in a private module (telegram.ext._utils.types): spelled here.
ConversationKey = tuple[int | str, ...]
ConversationDict = MutableMapping[ConversationKey, object]
CDCData = tuple[list[tuple[str, float, dict[str, Any]]], dict[str, str]]
#: A piece of data: ("user_data", user id), ("chat_data", chat id), ("bot_data", 0)...
_Seen = tuple[str, int | str]

_LOG = logging.getLogger(__name__)
_JSON = JSONCodec()
_PICKLE_HINT = (
    "pass state_codec='pickle' (or 'signed-pickle' with a secret) to PlugstorePersistence"
)


class PlugstorePersistence(BasePersistence[UD, CD, BD]):
    """A ``telegram.ext.BasePersistence`` kept in a plugstore namespace.

    ``store`` is a URL (``None``: ``PLUGSTORE_URL``, else the embedded default), opened
    with ``options`` on the first call inside the running event loop (PTB builds the
    Application before its loop exists) and closed by :meth:`flush` at the
    Application's shutdown -- the next call opens it again.  Or an open
    :class:`~plugstore.aio.AsyncStore` or :class:`~plugstore.Store`, which stays the
    caller's to close.

    Every ``update_*``/``drop_*`` call writes to the store at once; what is still
    buffered is PTB's own: the Application hands its changes over every
    ``update_interval`` seconds and at shutdown.  Unchanged data is not written again.

    ``state_codec`` says how conversation states are stored: ``"json"`` (the default:
    ints, strs and other JSON values, stored as they are), ``"pickle"`` or
    ``"signed-pickle"`` (any picklable state, such as an ``IntEnum``: the state's pickle
    is stored as bytes through the store's codec; the signed variant needs ``secret`` or
    ``PLUGSTORE_SECRET``), or a :class:`~plugstore.codecs.Codec`.  user, chat, bot and
    callback data go through the store's codec (``codec=`` of the store: JSON unless it
    says otherwise).

    With ``refresh`` (the default), ``refresh_*`` reads each update's user, chat and bot
    data back from the store, so changes made by another process (or by ``plugstore user
    forget``) reach the handlers -- unless this process changed the same data since it
    last wrote or read it: then its own copy is kept, and written later (PTB assumes one
    process owns the data; see docs/telegram.md).  ``refresh=False`` saves those three
    reads per update.

    ``context_types`` must be the Application's, when it uses custom data classes.
    """

    @overload
    def __init__(
        self: PlugstorePersistence[dict[Any, Any], dict[Any, Any], dict[Any, Any]],
        store: str | Store | AsyncStore | None = None,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        state_codec: str | Codec = "json",
        secret: str | bytes | None = None,
        store_data: PersistenceInput | None = None,
        update_interval: float = 60,
        refresh: bool = True,
        **options: Any,
    ) -> None: ...

    @overload
    def __init__(
        self: PlugstorePersistence[UD, CD, BD],
        store: str | Store | AsyncStore | None = None,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        state_codec: str | Codec = "json",
        secret: str | bytes | None = None,
        store_data: PersistenceInput | None = None,
        update_interval: float = 60,
        refresh: bool = True,
        context_types: ContextTypes[Any, UD, CD, BD] | None = None,
        **options: Any,
    ) -> None: ...

    def __init__(
        self,
        store: str | Store | AsyncStore | None = None,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        state_codec: str | Codec = "json",
        secret: str | bytes | None = None,
        store_data: PersistenceInput | None = None,
        update_interval: float = 60,
        refresh: bool = True,
        context_types: ContextTypes[Any, Any, Any, Any] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(store_data=store_data, update_interval=update_interval)
        check_namespace(namespace)
        if isinstance(store, (Store, AsyncStore)) and options:
            raise TypeError("store options apply only when PlugstorePersistence opens a URL")
        if store is not None and not isinstance(store, (str, Store, AsyncStore)):
            raise TypeError(
                f"store must be a URL, a plugstore Store or AsyncStore, not {type(store).__name__}"
            )
        self._source = store
        self._options = options if secret is None else {**options, "secret": secret}
        self._namespace_name = namespace
        self._state_codec = _state_codec(state_codec, secret)
        self._refresh = refresh
        self._types: ContextTypes[Any, Any, Any, Any] = context_types or ContextTypes()
        self._astore: AsyncStore | None = store if isinstance(store, AsyncStore) else None
        self._ns: AsyncNamespace | None = None
        self._opening: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None
        # What this process last wrote to or read from the store, per piece of data, as
        # the store's codec encodes it (None: nothing stored).  It lets unchanged data go
        # unwritten and tells refresh_* whether the Application changed its copy since.
        self._seen: dict[_Seen, bytes | None] = {}
        self._conflicts: set[_Seen] = set()  # warned about once, until written

    # -- facts -----------------------------------------------------------------------------

    @property
    def namespace_name(self) -> str:
        """The namespace holding the data."""
        return self._namespace_name

    @property
    def store(self) -> AsyncStore | None:
        """The async store in use, or ``None`` before the first call and after
        :meth:`flush` closed the one this persistence opened."""
        return self._astore

    @property
    def refresh(self) -> bool:
        """Whether ``refresh_*`` reads data back from the store."""
        return self._refresh

    def __repr__(self) -> str:
        source = self._source
        if isinstance(source, (Store, AsyncStore)):
            where = source.url
        elif source is None:
            where = "PLUGSTORE_URL"
        else:
            try:
                where = str(StoreURL.parse(source))  # the password masked
            except Exception:
                where = mask_text(source)
        return f"<PlugstorePersistence {self._namespace_name!r} of {where}>"

    # -- the store, opened lazily in the running loop ------------------------------------

    async def _namespace(self) -> AsyncNamespace:
        ns = self._ns
        if ns is not None and ns.store.is_open:
            return ns
        if isinstance(self._source, AsyncStore):
            self._ns = self._source.namespace(self._namespace_name)  # raises if closed
            return self._ns
        loop = asyncio.get_running_loop()
        if self._opening is None or self._opening[0] is not loop:
            self._opening = (loop, asyncio.Lock())  # an asyncio.Lock belongs to one loop
        async with self._opening[1]:
            if self._ns is not None and self._ns.store.is_open:
                return self._ns
            if isinstance(self._source, Store):
                astore = await wrap_async(self._source)
            else:
                astore = await open_async(self._source, **self._options)
            try:
                self._ns = astore.namespace(self._namespace_name)
            except BaseException:
                await astore.aclose()
                raise
            self._astore = astore
            return self._ns

    async def flush(self) -> None:
        """Called by ``Application.shutdown()``: every write has already gone through,
        so this only closes the store if this persistence opened it (a URL) or wrapped
        it (a sync ``Store``, which stays open).  The next call opens it again, so the
        same persistence serves a new Application."""
        astore = self._astore
        if isinstance(self._source, AsyncStore) or astore is None:
            return
        self._astore = self._ns = None
        if astore.is_open:
            await astore.aclose()

    # -- encoding --------------------------------------------------------------------------

    @staticmethod
    def _encoded(codec: Codec, what: str, value: Any) -> bytes | None:
        """``value`` as ``codec`` stores it; ``None`` for empty data (an empty dict is not
        stored: PTB makes a fresh one for absent data)."""
        if isinstance(value, dict) and not value:
            return None
        try:
            return codec.encode(value)
        except EncodeError as exc:
            raise EncodeError(
                f"{what} cannot be stored: {exc} (PlugstorePersistence(url, codec='pickle') "
                "opens a store that keeps any picklable value)"
            ) from exc

    def _check_type(self, what: str, value: Any, expected: type[Any], *, stored: bool) -> None:
        if isinstance(value, expected):
            return
        kind = type(value).__name__
        if stored:
            raise DecodeError(
                f"{what} in namespace {self._namespace_name!r} holds a {kind}, not a "
                f"{expected.__name__}: it was not written by PlugstorePersistence (delete "
                "it, or pass the Application's context_types)"
            )
        raise EncodeError(f"{what} is a {kind}, not a {expected.__name__}: it is not stored")

    def _encode_state(self, name: str, key: ConversationKey, state: object | None) -> Any:
        if state is None:
            return None
        codec = self._state_codec
        where = f"conversation {name!r} {list(key)}"
        if codec is None:
            try:
                _JSON.encode(state)
                storable = not isinstance(state, (bytes, bytearray))  # bytes: pickled states
            except EncodeError:
                storable = False
            if not storable:
                raise EncodeError(
                    f"{where}: the state {state!r} (a {type(state).__name__}) is not a JSON "
                    f"value, which the default state_codec='json' stores: {_PICKLE_HINT}"
                )
            return state
        try:
            return codec.encode(state)
        except EncodeError as exc:
            raise EncodeError(f"{where}: the state {state!r} cannot be stored: {exc}") from exc

    def _decode_state(self, name: str, stored: str, value: Any) -> object | None:
        if not isinstance(value, bytes):
            return cast(object, value)  # None, or a JSON state (also under a pickle codec)
        codec = self._state_codec
        where = f"conversation {name!r} {stored}"
        if codec is None:
            raise DecodeError(
                f"{where}: the state was stored with a pickle state codec; {_PICKLE_HINT}"
            )
        try:
            return cast(object, codec.decode(value))
        except DecodeError as exc:
            raise DecodeError(f"{where}: {exc} (state_codec={codec.name!r})") from exc

    # -- loading ---------------------------------------------------------------------------

    async def get_user_data(self) -> dict[int, UD]:
        """Every user's ``user_data`` (PTB calls it once, in ``initialize()``)."""
        self._forget_seen(USER_DATA)
        return cast(dict[int, UD], await self._load_level(USER_LEVEL, USER_DATA))

    async def get_chat_data(self) -> dict[int, CD]:
        """Every chat's ``chat_data``: private chats' from their users' scopes, the
        others' from their own."""
        self._forget_seen(CHAT_DATA)
        data = await self._load_level(USER_LEVEL, CHAT_DATA)
        data.update(await self._load_level(CHAT_LEVEL, CHAT_DATA))
        return cast(dict[int, CD], data)

    def _forget_seen(self, kind: str) -> None:
        """Forget what was seen of ``kind`` before a (re)load: data deleted meanwhile must
        not look like this process's own unwritten change."""
        for seen in [seen for seen in self._seen if seen[0] == kind]:
            del self._seen[seen]
            self._conflicts.discard(seen)

    async def _load_level(self, level: str, key: str) -> dict[Any, Any]:
        expected = self._types.user_data if key == USER_DATA else self._types.chat_data
        ns = await self._namespace()
        loaded: dict[Any, Any] = {}
        for ident, values in (await ns.scope().children(level)).items():
            if key in values:  # a user's scope may hold only their private chat's data
                what = f"{key} of {'user' if key == USER_DATA else 'chat'} {ident!r}"
                value = values[key]
                self._check_type(what, value, expected, stored=True)
                self._seen[(key, ident)] = self._encoded(ns.store.codec, what, value)
                loaded[ident] = value
        return loaded

    async def get_bot_data(self) -> BD:
        """The ``bot_data`` (a fresh ``context_types.bot_data()`` if none is stored)."""
        ns = await self._namespace()
        value = await ns.get(BOT_DATA)
        if value is None:
            value = self._types.bot_data()
        else:
            self._check_type(BOT_DATA, value, self._types.bot_data, stored=True)
        self._seen[(BOT_DATA, 0)] = self._encoded(ns.store.codec, BOT_DATA, value)
        return cast(BD, value)

    async def get_callback_data(self) -> CDCData | None:
        """The callback data cache's contents (``None`` if none is stored)."""
        ns = await self._namespace()
        value = await ns.get(CALLBACK_DATA)
        if value is not None and not _is_callback_data(value):
            raise DecodeError(
                f"{CALLBACK_DATA} in namespace {self._namespace_name!r} holds a "
                f"{type(value).__name__}, not PTB's callback data (a tuple of a list and a "
                "dict): it was not written by PlugstorePersistence (delete it)"
            )
        seen = None if value is None else self._encoded(ns.store.codec, CALLBACK_DATA, value)
        self._seen[(CALLBACK_DATA, 0)] = seen
        return cast("CDCData | None", value)

    async def get_conversations(self, name: str) -> ConversationDict:
        """The states of ConversationHandler ``name``, by conversation key (ended
        conversations are there with the state ``None``, as PTB stores them)."""
        scope = (await self._namespace()).scope(**{CONVERSATION_LEVEL: name})
        states: dict[ConversationKey, object] = {}
        async for stored, value in scope.scan():
            states[_parse_key(name, stored)] = self._decode_state(name, stored, value)
        return states

    # -- writing ---------------------------------------------------------------------------

    async def update_conversation(
        self, name: str, key: ConversationKey, new_state: object | None
    ) -> None:
        """Store the state of conversation ``key`` of handler ``name`` (``None``: the
        conversation ended; stored as ``None``, as PTB's own persistences do)."""
        stored_key = _key_text(key)
        value = self._encode_state(name, key, new_state)
        scope = (await self._namespace()).scope(**{CONVERSATION_LEVEL: name})
        await scope.set(stored_key, value)

    async def update_user_data(self, user_id: int, data: UD) -> None:
        """Store the ``user_data`` of ``user_id`` (not written when unchanged; empty data
        deletes the entry)."""
        what = f"{USER_DATA} of user {user_id!r}"
        self._check_type(what, data, self._types.user_data, stored=False)
        await self._write((USER_DATA, user_id), (USER_LEVEL, user_id), data, what)

    async def update_chat_data(self, chat_id: int, data: CD) -> None:
        """Store the ``chat_data`` of ``chat_id`` (not written when unchanged; empty data
        deletes the entry)."""
        what = f"{CHAT_DATA} of chat {chat_id!r}"
        self._check_type(what, data, self._types.chat_data, stored=False)
        await self._write((CHAT_DATA, chat_id), _chat_place(chat_id), data, what)

    async def update_bot_data(self, data: BD) -> None:
        """Store the ``bot_data`` (PTB hands it over on every run, changed or not: it is
        written only when it changed)."""
        self._check_type(BOT_DATA, data, self._types.bot_data, stored=False)
        await self._write((BOT_DATA, 0), None, data, BOT_DATA)

    async def update_callback_data(self, data: CDCData) -> None:
        """Store the callback data cache's contents (written only when they changed)."""
        if not _is_callback_data(data):
            raise EncodeError(
                f"{CALLBACK_DATA} is a {type(data).__name__}, not PTB's callback data (a "
                "tuple of a list and a dict): it is not stored"
            )
        await self._write((CALLBACK_DATA, 0), None, data, CALLBACK_DATA)

    async def _write(
        self, seen: _Seen, place: tuple[str, int | str] | None, value: Any, what: str
    ) -> None:
        """Store ``value`` under ``seen[0]`` in the scope at ``place`` (``None``: a plain
        key), unless it is what this process last wrote or read there."""
        ns = await self._namespace()
        encoded = self._encoded(ns.store.codec, what, value)
        if seen in self._seen and self._seen[seen] == encoded:
            return
        key = seen[0]
        if encoded is None:
            await _delete(ns if place is None else ns.scope(**{place[0]: place[1]}), key)
        elif place is None:
            await ns.set(key, value)
        else:
            await ns.scope(**{place[0]: place[1]}).set(key, value)
        self._seen[seen] = encoded
        self._conflicts.discard(seen)

    async def drop_user_data(self, user_id: int) -> None:
        """Delete the ``user_data`` of ``user_id`` (``Application.drop_user_data``)."""
        await _delete((await self._namespace()).scope(**{USER_LEVEL: user_id}), USER_DATA)
        self._seen[(USER_DATA, user_id)] = None
        self._conflicts.discard((USER_DATA, user_id))

    async def drop_chat_data(self, chat_id: int) -> None:
        """Delete the ``chat_data`` of ``chat_id`` (``Application.drop_chat_data``, and
        the old id of a migrated chat)."""
        level, ident = _chat_place(chat_id)
        await _delete((await self._namespace()).scope(**{level: ident}), CHAT_DATA)
        self._seen[(CHAT_DATA, chat_id)] = None
        self._conflicts.discard((CHAT_DATA, chat_id))

    # -- refreshing ------------------------------------------------------------------------

    async def refresh_user_data(self, user_id: int, user_data: UD) -> None:
        """Read the ``user_data`` of ``user_id`` back from the store, in place, when
        another process (or a tool) changed it there and this one did not since it last
        wrote or read it (see the class docs).  Nothing happens with ``refresh=False``."""
        if self._refresh:
            what = f"{USER_DATA} of user {user_id!r}"
            place = (USER_LEVEL, user_id)
            await self._take((USER_DATA, user_id), place, user_data, self._types.user_data, what)

    async def refresh_chat_data(self, chat_id: int, chat_data: CD) -> None:
        """:meth:`refresh_user_data` for the ``chat_data`` of ``chat_id``."""
        if self._refresh:
            what = f"{CHAT_DATA} of chat {chat_id!r}"
            place = _chat_place(chat_id)
            await self._take((CHAT_DATA, chat_id), place, chat_data, self._types.chat_data, what)

    async def refresh_bot_data(self, bot_data: BD) -> None:
        """:meth:`refresh_user_data` for the ``bot_data``."""
        if self._refresh:
            await self._take((BOT_DATA, 0), None, bot_data, self._types.bot_data, BOT_DATA)

    async def _take(
        self,
        seen: _Seen,
        place: tuple[str, int | str] | None,
        local: Any,
        expected: type[Any],
        what: str,
    ) -> None:
        ns = await self._namespace()
        where = ns if place is None else ns.scope(**{place[0]: place[1]})
        stored = await where.get(seen[0])
        # No await from here on: the Application's copy is compared and replaced at once.
        codec = ns.store.codec
        if stored is not None:
            self._check_type(what, stored, expected, stored=True)
        stored_bytes = None if stored is None else self._encoded(codec, what, stored)
        last = self._seen.get(seen)
        if stored_bytes == last or not isinstance(local, MutableMapping):
            return  # nobody else wrote it (or a custom class: it cannot be filled in place)
        if self._encoded(codec, what, local) != last:
            if seen not in self._conflicts:
                self._conflicts.add(seen)
                _LOG.warning(
                    "%s was changed in the store by someone else and here since this "
                    "process last wrote it: this process's copy is kept and will be written "
                    "(python-telegram-bot expects one process to own its data)",
                    what,
                )
            return
        local.clear()
        if stored is not None:
            local.update(stored)
        self._seen[seen] = stored_bytes


async def _delete(where: AsyncNamespace | AsyncScope, key: str) -> None:
    with contextlib.suppress(KeyError):
        await where.delete(key)


def _state_codec(state_codec: str | Codec, secret: str | bytes | None) -> Codec | None:
    """The codec for conversation states, ``None`` for JSON (states stored as values)."""
    if isinstance(state_codec, str) and state_codec.lower().replace("_", "-") in (
        "signed-pickle",
        "pickle-signed",
    ):
        import os

        secret = secret or os.environ.get(SECRET_ENV)
    elif not isinstance(state_codec, (str, Codec)):
        raise ConfigurationError(
            f"state_codec must be 'json', 'pickle', 'signed-pickle' or a plugstore Codec, "
            f"not {type(state_codec).__name__}"
        )
    codec = get_codec(state_codec, secret=secret)
    return None if isinstance(codec, JSONCodec) else codec


def _chat_place(chat_id: int | str) -> tuple[str, int | str]:
    """Where a chat's data lives: a private chat's (positive id: its user's id) in the
    user's scope, any other chat's in its own."""
    if type(chat_id) is int and chat_id > 0:
        return USER_LEVEL, chat_id
    return CHAT_LEVEL, chat_id


def _key_text(key: ConversationKey) -> str:
    """A conversation key as the scoped key it is stored under: ``[7, 7]``."""
    if not isinstance(key, tuple) or not all(type(part) in (int, str) for part in key):
        raise EncodeError(f"a conversation key is a tuple of ints and strs, not {key!r}")
    return json.dumps(list(key), ensure_ascii=False)


def _parse_key(name: str, stored: str) -> ConversationKey:
    try:
        parts = json.loads(stored)
    except ValueError:
        parts = None
    if not isinstance(parts, list) or not all(type(part) in (int, str) for part in parts):
        raise DecodeError(
            f"conversation {name!r}: the key {stored!r} is not a JSON list of ints and strs "
            "(it was not written by PlugstorePersistence: delete it)"
        )
    return tuple(parts)


def _is_callback_data(value: object) -> bool:
    return (
        isinstance(value, tuple)
        and len(value) == 2
        and isinstance(value[0], list)
        and isinstance(value[1], dict)
    )


__all__ = ["DEFAULT_NAMESPACE", "PlugstorePersistence"]
