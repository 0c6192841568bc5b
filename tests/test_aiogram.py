"""PlugstoreStorage against real aiogram 3, on every backend, with no network.

Updates go in through ``Dispatcher.feed_update`` to a Bot whose session answers from a
table (``aiogram_offline.py``), as polling would feed them; the example bot
(``examples/aiogram_bot``) runs here too.  Every test works in a store of its own: a
named memory store, files under tmp_path, a table of its own on PostgreSQL, MariaDB and
DynamoDB (a local moto server), a key prefix of its own on Redis.

aiogram is only a test dependency: without it this module skips on a developer's
machine and fails in CI.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib.util
import json
import os
import subprocess
import sys
import types
import uuid
import zlib
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypedDict

import pytest

import plugstore
import plugstore.aio
from plugstore import testing
from plugstore.errors import (
    BackendUnavailableError,
    ConfigurationError,
    DecodeError,
    EncodeError,
    InvalidNamespaceError,
    LockLostError,
    LockTimeoutError,
    StoreError,
    StoreNotOpenError,
)
from plugstore.scopekeys import parse_scoped_key
from plugstore.userdata import export_user, forget_user
from servers import IN_CI, require_server
from test_state_store import Servers

try:
    from aiogram import Dispatcher, F, Router
    from aiogram.exceptions import DataNotDictLikeError
    from aiogram.filters import Command
    from aiogram.fsm.context import FSMContext
    from aiogram.fsm.scene import Scene, SceneRegistry, on
    from aiogram.fsm.state import State, StatesGroup
    from aiogram.fsm.storage.base import BaseStorage, DefaultKeyBuilder, KeyBuilder, StorageKey
    from aiogram.fsm.strategy import FSMStrategy
    from aiogram.types import Message
except ImportError:  # pragma: no cover - depends on the environment
    if IN_CI:
        raise
    pytest.skip(
        'aiogram is not installed: pip install "aiogram>=3.21" to run these tests',
        allow_module_level=True,
    )

from aiogram_offline import BOT_ID, counting_dispatcher, message, offline_bot
from plugstore.integrations.aiogram import (
    DEFAULT_NAMESPACE,
    FSMDataNotDictError,
    PlugstoreEventIsolation,
    PlugstoreStorage,
)

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "aiogram_bot"
HERE = Path(__file__).resolve().parent
BACKENDS = ["memory", "sqlite", "shelf", "postgresql", "mariadb", "redis", "dynamodb"]
MULTIPROCESS = BACKENDS[1:]
RUN = uuid.uuid4().hex[:12]
MYSQL = ("127.0.0.1", 3306)
KEY = StorageKey(bot_id=BOT_ID, chat_id=-100, user_id=7)


class Places(Servers):
    """:class:`Servers` (memory, files, PostgreSQL, Redis), plus MariaDB (a database per
    run, a table per test) and DynamoDB (a local moto server per run, a table per test).
    Memory stores are named, so a second open in the process sees the same data."""

    def __init__(self) -> None:
        super().__init__()
        self.mysql_db = f"psaiogram_{RUN}"
        self.dynamo: Any = None

    def url(self, backend: str, tmp_path: Path) -> str:
        tag = f"{zlib.crc32(str(tmp_path).encode()):08x}"
        if backend == "memory":
            return f"memory://aiogram-{RUN}-{tag}"
        if backend == "mariadb":
            require_server("MariaDB", *MYSQL)
            if "mariadb" not in self.used:
                with _mysql_admin() as conn, conn.cursor() as cur:
                    cur.execute(f"CREATE DATABASE `{self.mysql_db}`")
                self.used.add("mariadb")
            return f"mysql://root@{MYSQL[0]}:{MYSQL[1]}/{self.mysql_db}?table=t_{tag}"
        if backend == "dynamodb":
            if self.dynamo is None:
                pytest.importorskip("moto.server", reason="moto[server] is not installed")
                from test_dynamodb_backend import LocalDynamoDB

                self.dynamo = LocalDynamoDB()
            return str(self.dynamo.url_for(f"t_aiogram_{tag}", create="true"))
        return super().url(backend, tmp_path)

    def cleanup(self) -> None:
        try:
            super().cleanup()
        finally:
            if "mariadb" in self.used:
                with _mysql_admin() as conn, conn.cursor() as cur:
                    cur.execute(f"DROP DATABASE IF EXISTS `{self.mysql_db}`")
            if self.dynamo is not None:
                self.dynamo.stop()


def _mysql_admin() -> Any:
    import pymysql

    return pymysql.connect(host=MYSQL[0], port=MYSQL[1], user="root", password="", autocommit=True)


@pytest.fixture(scope="module")
def places() -> Iterator[Places]:
    found = Places()
    yield found
    found.cleanup()


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, places: Places, tmp_path: Path) -> str:
    return places.url(request.param, tmp_path)


def run(body: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``body()`` in a new event loop, as ``dp.run_polling`` would."""
    return asyncio.run(body())  # type: ignore[arg-type]


def records(url: str, namespace: str = DEFAULT_NAMESPACE) -> dict[tuple[Any, str], Any]:
    """Every record in the store, as ``{(scope path, key): value}``, read by a sync store."""
    with plugstore.open(url) as store:
        found = {}
        for stored, raw in store.backend.bucket(namespace).items():
            parsed = parse_scoped_key(stored)
            assert parsed is not None, f"a plain key {stored!r}: records live in scopes"
            found[parsed] = store.codec.decode(raw)
        return found


def user(uid: int) -> tuple[tuple[str, int], ...]:
    return (("user", uid),)


class Form(StatesGroup):
    name = State()
    age = State()


class Profile(TypedDict):
    name: str
    age: int


# -- the BaseStorage contract, on every backend -------------------------------------------------


def test_states_and_data_round_trip_as_aiograms_storages_do(url: str) -> None:
    storage = PlugstoreStorage(url)  # built outside any event loop, like a Dispatcher
    assert isinstance(storage, BaseStorage)
    assert storage.store is None
    when = dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.timezone.utc)

    async def body() -> None:
        assert await storage.get_state(KEY) is None
        assert await storage.get_data(KEY) == {}
        await storage.set_state(KEY, Form.name)  # a State is stored as its string
        assert await storage.get_state(KEY) == "Form:name"
        await storage.set_state(KEY, "custom")
        assert await storage.get_state(KEY) == "custom"
        data = {"name": "Ann", "when": when, "pair": (1, "a"), 5: "an int key", "x": None}
        await storage.set_data(KEY, data)
        got = await storage.get_data(KEY)
        assert got == data
        assert type(got["pair"]) is tuple
        assert 5 in got
        assert await storage.get_value(KEY, "name") == "Ann"
        assert await storage.get_value(KEY, "nope", 3) == 3
        # A fresh dict every time: mutating what a read returned changes nothing stored.
        got["name"] = "Bob"
        got.setdefault("history", []).append(1)
        assert await storage.get_data(KEY) == data
        merged = await storage.update_data(KEY, {"name": "Cy", "age": 30})
        assert merged == {**data, "name": "Cy", "age": 30}
        merged["age"] = 99
        assert await storage.get_data(KEY) == {**data, "name": "Cy", "age": 30}
        assert await storage.update_data(KEY, {}) == {**data, "name": "Cy", "age": 30}
        await storage.set_data(KEY, Profile(name="Di", age=4))  # a TypedDict is a dict
        assert await storage.get_data(KEY) == {"name": "Di", "age": 4}
        # FSMContext.clear(): set_state(None) + set_data({}) delete the records.
        other = StorageKey(bot_id=BOT_ID, chat_id=8, user_id=8)
        await FSMContext(storage, other).update_data(kept=True)
        await FSMContext(storage, KEY).clear()
        await FSMContext(storage, KEY).clear()  # nothing to delete: no error
        assert await storage.get_state(KEY) is None
        assert await storage.get_data(KEY) == {}
        await storage.set_state(KEY, Form.age)
        await storage.set_state(KEY, State())  # a State whose .state is None deletes too
        assert await storage.get_state(KEY) is None
        await storage.close()

    run(body)
    assert records(url) == {(user(8), "fsm:42:8:8:default:data"): {"kept": True}}


def test_records_live_in_the_users_scope_under_the_key_builders_keys(url: str) -> None:
    storage = PlugstoreStorage(url)

    async def body() -> None:
        await storage.set_state(KEY, Form.name)
        await storage.update_data(KEY, {"n": 1})
        topic = StorageKey(bot_id=BOT_ID, chat_id=-100, user_id=9, thread_id=5)
        await storage.set_state(topic, "topic")
        scenes = StorageKey(bot_id=BOT_ID, chat_id=9, user_id=9, destiny="scenes_history")
        await storage.set_data(scenes, {"history": [{"state": None, "data": {}}]})
        await storage.close()

    run(body)
    assert records(url) == {
        (user(7), "fsm:42:-100:7:default:state"): "Form:name",
        (user(7), "fsm:42:-100:7:default:data"): {"n": 1},
        (user(9), "fsm:42:-100:5:9:default:state"): "topic",
        (user(9), "fsm:42:9:9:scenes_history:data"): {"history": [{"state": None, "data": {}}]},
    }


def test_data_that_is_not_a_dict_is_refused_as_aiogram_refuses_it(url: str) -> None:
    storage = PlugstoreStorage(url)

    async def body() -> None:
        await storage.set_data(KEY, {"kept": 1})
        for bad in [(), [("a", 1)], "text", types.MappingProxyType({"a": 1}), None]:
            with pytest.raises(DataNotDictLikeError) as err:
                await storage.set_data(KEY, bad)  # type: ignore[arg-type]
            assert isinstance(err.value, FSMDataNotDictError)
            assert isinstance(err.value, EncodeError)  # and a plugstore error
            assert f"got {type(bad).__name__}" in str(err.value)
        for bad in [[("a", 1)], "text", None]:
            with pytest.raises(FSMDataNotDictError):
                await storage.update_data(KEY, bad)  # type: ignore[arg-type]
        # Values the codec cannot carry are refused before anything is written.
        with pytest.raises(EncodeError):
            await storage.set_data(KEY, {"x": object()})
        with pytest.raises(EncodeError):
            await storage.update_data(KEY, {"x": object()})
        with pytest.raises(EncodeError, match="state"):
            await storage.set_state(KEY, 5)  # type: ignore[arg-type]
        assert await storage.get_data(KEY) == {"kept": 1}
        assert await storage.get_state(KEY) is None
        await storage.close()

    run(body)


def test_a_message_in_the_data_needs_the_pickle_codec(tmp_path: Path) -> None:
    sent = message("hello").message
    assert sent is not None
    url = f"sqlite:///{tmp_path / 'fsm.db'}"

    async def body() -> None:
        default, pickled = PlugstoreStorage(url), PlugstoreStorage(url, codec="pickle")
        with pytest.raises(EncodeError, match="pickle codec"):
            await default.set_data(KEY, {"message": sent})
        await pickled.set_data(KEY, {"message": sent})
        got = (await pickled.get_data(KEY))["message"]
        assert got == sent
        assert type(got) is Message
        await default.close()
        await pickled.close()

    run(body)


def test_what_other_code_wrote_in_a_record_is_a_decode_error(url: str) -> None:
    storage = PlugstoreStorage(url)

    async def body() -> None:
        await storage.set_state(KEY, "S")
        await storage.set_data(KEY, {"a": 1})
        assert storage.store is not None
        scope = storage.store.namespace(DEFAULT_NAMESPACE).scope(user=7)
        await scope.set("fsm:42:-100:7:default:state", ["not", "a", "state"])
        await scope.set("fsm:42:-100:7:default:data", "not data")
        with pytest.raises(DecodeError, match="not an FSM state"):
            await storage.get_state(KEY)
        for call in (storage.get_data(KEY), storage.update_data(KEY, {"b": 2})):
            with pytest.raises(DecodeError, match="not FSM data"):
                await call
        await storage.set_data(KEY, {"fixed": True})  # a write replaces it
        assert await storage.get_data(KEY) == {"fixed": True}
        await storage.close()

    run(body)


# -- update_data: atomic where aiogram's BaseStorage loses updates ---------------------------


def test_50_concurrent_update_data_keep_50_of_50(url: str) -> None:
    storage = PlugstoreStorage(url)
    base_key = StorageKey(bot_id=BOT_ID, chat_id=1, user_id=1)

    async def body() -> tuple[dict[str, Any], dict[str, Any]]:
        await asyncio.gather(*(storage.update_data(KEY, {f"k{i}": i}) for i in range(50)))
        # aiogram's own update_data (get_data + merge + set_data) on the same storage:
        await asyncio.gather(
            *(BaseStorage.update_data(storage, base_key, {f"k{i}": i}) for i in range(50))
        )
        ours, base = await storage.get_data(KEY), await storage.get_data(base_key)
        await storage.close()
        return ours, base

    ours, base = run(body)
    assert ours == {f"k{i}": i for i in range(50)}
    if not url.startswith("memory:"):  # memory answers without yielding to other tasks
        assert len(base) < 50  # BaseStorage.update_data lost some: what the override prevents


def test_50_updates_through_the_dispatcher_keep_every_update_data(url: str) -> None:
    """aiogram's default is no isolation: 50 updates from one user run at once."""
    storage = PlugstoreStorage(url)
    dp = Dispatcher(storage=storage)

    @dp.message()
    async def remember(msg: Message, state: FSMContext) -> None:
        await state.update_data({f"m{msg.message_id}": msg.text})

    async def body() -> dict[str, Any]:
        bot, _ = offline_bot()
        updates = [message(f"text {i}", chat=-100) for i in range(50)]
        await asyncio.gather(*(dp.feed_update(bot, update) for update in updates))
        data = await storage.get_data(KEY)
        await dp.emit_shutdown()
        return data

    data = run(body)
    assert len(data) == 50


# -- isolation: one chat's events one at a time, across processes ---------------------------


def test_isolation_serialises_the_events_of_one_chat(url: str) -> None:
    """``slow_increment`` reads, sleeps and writes: exact only when isolated."""

    async def body(isolated: bool) -> int:
        dp = counting_dispatcher(url, isolated=isolated)
        bot, session = offline_bot()
        await asyncio.gather(*(dp.feed_update(bot, message("+1", user=3)) for _ in range(20)))
        n = await dp.storage.get_value(StorageKey(bot_id=BOT_ID, chat_id=3, user_id=3), "n")
        assert session.texts() == ["counted"] * 20
        await dp.emit_shutdown()
        return int(n)

    assert asyncio.run(body(True)) == 20
    assert asyncio.run(body(False)) < 40  # the same 20 more, unisolated: some are lost


@pytest.mark.slow
@pytest.mark.parametrize("backend", MULTIPROCESS)
def test_isolation_holds_across_three_bot_processes(
    backend: str, places: Places, tmp_path: Path
) -> None:
    """Three processes, each feeding 10 updates of one chat at once, through the isolation
    lock on the store: 30 read-sleep-write increments, none lost."""
    url = places.url(backend, tmp_path)
    spec = {"url": url, "isolated": True, "updates": 10, "user": 11}
    env = {**os.environ, "AIOGRAM_SPEC": json.dumps(spec)}
    procs = [
        subprocess.Popen(
            [sys.executable, str(HERE / "aiogram_offline.py"), "AIOGRAM_SPEC"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    sent = [json.loads(out.splitlines()[-1]) for out in testing.release_together(procs)]
    assert sent == [10, 10, 10]
    assert records(url)[(user(11), "fsm:42:11:11:default:data")] == {"n": 30}


def test_an_isolation_that_waits_too_long_or_outlives_its_lease_says_so(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fsm.db'}"  # a lease-based lock
    release = asyncio.Event()

    async def slow(msg: Message) -> None:
        await asyncio.sleep(0.8)  # longer than the lease

    async def quick(msg: Message) -> None:
        pass

    async def hold(msg: Message) -> None:
        await release.wait()

    def dispatcher(**isolation: Any) -> Dispatcher:
        storage = PlugstoreStorage(url)
        dp = Dispatcher(storage=storage, events_isolation=storage.create_isolation(**isolation))
        dp.message.register(slow, F.text == "slow")
        dp.message.register(hold, F.text == "hold")
        dp.message.register(quick, F.text == "quick")
        return dp

    async def body() -> None:
        bot, _ = offline_bot()
        # Two bot processes (each a store of its own) with a lease shorter than a handler:
        short, other = dispatcher(lease=0.3), dispatcher()
        slow_one = asyncio.ensure_future(short.feed_update(bot, message("slow")))
        await asyncio.sleep(0.1)
        await other.feed_update(bot, message("quick"))  # ran once the lease ran out ...
        assert not slow_one.done()
        with pytest.raises(LockLostError, match="lease"):  # ... and the slow one hears of it
            await slow_one
        # Another bot process (a store of its own) gives up after its timeout.
        holding, waiting = dispatcher(), dispatcher(timeout=0.2)
        holder = asyncio.ensure_future(holding.feed_update(bot, message("hold")))
        await asyncio.sleep(0.3)
        with pytest.raises(LockTimeoutError):
            await waiting.feed_update(bot, message("slow"))
        release.set()
        await holder
        await waiting.feed_update(bot, message("hold"))  # free again
        for dp in (short, other, holding, waiting):
            await dp.emit_shutdown()

    run(body)


def test_isolation_options_are_checked_where_it_is_made() -> None:
    storage = PlugstoreStorage("memory://")
    for bad in ({"timeout": -1}, {"timeout": "5"}, {"lease": 0}, {"lease": -2}):
        with pytest.raises(ConfigurationError):
            storage.create_isolation(**bad)
    isolation = storage.create_isolation(timeout=5, lease=30)
    assert isinstance(isolation, PlugstoreEventIsolation)
    assert (isolation.timeout, isolation.lease) == (5, 30.0)


# -- the example bot and the FSM through the Dispatcher -------------------------------------


def load_example() -> Any:
    """examples/aiogram_bot/bot.py, imported once under a name of its own."""
    name = "aiogram_example_bot"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, EXAMPLE / "bot.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def test_the_example_form_bot_on_every_backend(url: str) -> None:
    example = load_example()

    async def body() -> None:
        dp = example.make_dispatcher(url)
        bot, session = offline_bot()
        for text in ["/start", "Ann"]:
            await dp.feed_update(bot, message(text))
        await dp.emit_shutdown()  # the bot stops mid-form ...
        assert not dp.storage.store  # ... closing the store it opened

        dp = example.make_dispatcher(url)  # ... and a new one carries on
        for text in ["abc", "33", "/cancel"]:
            await dp.feed_update(bot, message(text))
        await dp.feed_update(bot, message("/start", user=8))
        await dp.emit_shutdown()
        assert session.texts(7) == [
            "Hi! What is your name?",
            "Nice to meet you, Ann. How old are you?",
            "Please send your age as a number, like 42.",
            "Signed up: Ann, 33.",
            "Nothing to cancel.",
        ]
        assert session.texts(8) == ["Hi! What is your name?"]

    run(body)
    assert records(url) == {(user(8), "fsm:42:8:8:default:state"): "SignUp:name"}


def test_a_new_bot_process_carries_on_a_form(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    example = load_example()

    async def first() -> None:
        dp = example.make_dispatcher(url)
        bot, _ = offline_bot()
        await dp.feed_update(bot, message("/start"))
        await dp.feed_update(bot, message("Ann"))
        await dp.emit_shutdown()

    run(first)
    script = f"""
import asyncio, sys
sys.path[:0] = [{str(EXAMPLE)!r}, {str(HERE)!r}]
import bot as example
from aiogram_offline import message, offline_bot

async def main():
    dp = example.make_dispatcher({url!r})
    bot, session = offline_bot()
    await dp.feed_update(bot, message("33"))
    await dp.emit_shutdown()
    print(session.texts())

asyncio.run(main())
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "['Signed up: Ann, 33.']"
    assert records(url) == {}


def test_fsm_strategies_pick_the_scope(tmp_path: Path) -> None:
    """The scope is the StorageKey's user_id after aiogram's strategy: the user in a
    chat (default), the chat itself with FSMStrategy.CHAT."""
    url = f"sqlite:///{tmp_path / 'fsm.db'}"

    async def body(strategy: FSMStrategy) -> None:
        storage = PlugstoreStorage(url)
        dp = Dispatcher(storage=storage, fsm_strategy=strategy)

        @dp.message()
        async def count(msg: Message, state: FSMContext) -> None:
            await state.set_state(strategy.name)

        bot, _ = offline_bot()
        thread = 5 if strategy is FSMStrategy.USER_IN_TOPIC else None
        await dp.feed_update(bot, message("hi", user=7, chat=-100, thread=thread))
        await dp.emit_shutdown()

    run(lambda: body(FSMStrategy.USER_IN_CHAT))
    run(lambda: body(FSMStrategy.CHAT))
    run(lambda: body(FSMStrategy.USER_IN_TOPIC))
    assert records(url) == {
        (user(7), "fsm:42:-100:7:default:state"): "USER_IN_CHAT",
        (user(-100), "fsm:42:-100:-100:default:state"): "CHAT",
        (user(7), "fsm:42:-100:5:7:default:state"): "USER_IN_TOPIC",
    }


class Quiz(Scene, state="quiz"):
    """A two-question scene: aiogram keeps its history under destiny "scenes_history"."""

    @on.message.enter()
    async def ask(self, message: Message, state: FSMContext) -> None:
        data = await state.get_data()
        await message.answer(f"question {len(data.get('answers', [])) + 1}?")

    @on.message(F.text)
    async def answer(self, message: Message, state: FSMContext) -> None:
        data = await state.get_data()
        answers = [*data.get("answers", []), message.text]
        await state.update_data(answers=answers)
        if len(answers) < 2:
            await self.wizard.retake()
        else:
            await self.wizard.exit()

    @on.message.exit()
    async def done(self, message: Message, state: FSMContext) -> None:
        await message.answer(f"answers: {(await state.get_data())['answers']}")
        await state.set_data({})


def scene_dispatcher(storage: PlugstoreStorage) -> Dispatcher:
    dp = Dispatcher(storage=storage)
    router = Router()
    router.message.register(Quiz.as_handler(), Command("quiz"))
    dp.include_router(router)
    SceneRegistry(dp).add(Quiz)
    return dp


def test_aiogram_scenes_work_with_the_default_key_builder(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fsm.db'}"

    async def body() -> list[str]:
        dp = scene_dispatcher(PlugstoreStorage(url))
        bot, session = offline_bot()
        for text in ["/quiz", "red", "blue"]:
            await dp.feed_update(bot, message(text))
        await dp.emit_shutdown()
        return session.texts()

    assert run(body) == ["question 1?", "question 2?", "answers: ['red', 'blue']"]


def test_a_key_builder_without_destiny_names_the_fix_for_scenes(tmp_path: Path) -> None:
    storage = PlugstoreStorage(f"sqlite:///{tmp_path / 'fsm.db'}", with_destiny=False)

    async def body() -> None:
        dp = scene_dispatcher(storage)
        bot, _ = offline_bot()
        await dp.feed_update(bot, message("/quiz"))  # no history yet
        with pytest.raises(ConfigurationError, match="with_destiny=True"):
            await dp.feed_update(bot, message("red"))  # retake: a snapshot into the history
        await dp.emit_shutdown()

    run(body)


# -- key builders and options ----------------------------------------------------------------


def test_key_builder_options_or_a_key_builder_of_ones_own(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fsm.db'}"

    class Flat(KeyBuilder):
        def build(self, key: StorageKey, part: Any = None) -> str:
            return f"{key.chat_id}/{key.user_id}/{part}"

    async def body() -> None:
        for storage in (
            PlugstoreStorage(url, prefix="bot", separator="|", with_bot_id=False),
            PlugstoreStorage(url, key_builder=Flat(), namespace="flat"),
            PlugstoreStorage(url, key_builder=DefaultKeyBuilder(with_business_connection_id=True)),
        ):
            key = StorageKey(bot_id=BOT_ID, chat_id=1, user_id=2, business_connection_id="bc")
            await storage.set_state(key, "S")
            await storage.close()

    run(body)
    assert records(url) == {
        (user(2), "bot|1|2|default|state"): "S",
        (user(2), "fsm:bc:1:2:state"): "S",
    }
    assert records(url, "flat") == {(user(2), "1/2/state"): "S"}
    with pytest.raises(ConfigurationError, match="prefix, with_bot_id"):
        PlugstoreStorage(url, key_builder=Flat(), prefix="x", with_bot_id=True)
    with pytest.raises(ConfigurationError, match="KeyBuilder"):
        PlugstoreStorage(url, key_builder="fsm")  # type: ignore[arg-type]


def test_bad_options_fail_where_the_storage_is_made(tmp_path: Path) -> None:
    with pytest.raises(InvalidNamespaceError):
        PlugstoreStorage("memory://", namespace="no spaces")
    with pytest.raises(ConfigurationError):
        PlugstoreStorage("nonsense:/")
    for bad in ({"state_ttl": 0}, {"data_ttl": -1}, {"state_ttl": "1h"}, {"data_ttl": True}):
        with pytest.raises(ConfigurationError):
            PlugstoreStorage("memory://", **bad)
    # Store options are checked by plugstore when the store opens (the first call).
    storage = PlugstoreStorage(f"sqlite:///{tmp_path / 'x.db'}", no_such_option=1)
    with pytest.raises(ConfigurationError, match="no_such_option"):
        run(lambda: storage.get_state(KEY))


# -- expiry -----------------------------------------------------------------------------------


def test_state_ttl_and_data_ttl_expire_records_and_every_write_resets_them(url: str) -> None:
    short = PlugstoreStorage(url, state_ttl=0.5, data_ttl=dt.timedelta(seconds=0.5))
    long = PlugstoreStorage(url, state_ttl=3600, data_ttl=3600)
    key = StorageKey(bot_id=BOT_ID, chat_id=5, user_id=5)

    async def body() -> None:
        await short.set_state(key, "S")
        await short.update_data(key, {"a": 1})  # created by the merge: it gets the ttl
        await long.set_state(KEY, "S")
        await long.set_data(KEY, {"a": 1})
        await short.update_data(KEY, {"b": 2})  # the merge resets the deadline ...
        await asyncio.sleep(1.0)
        assert await short.get_state(key) is None
        assert await short.get_data(key) == {}
        assert await long.get_state(KEY) == "S"
        assert await long.get_data(KEY) == {}  # ... to short's 0.5 s
        await long.update_data(KEY, {"c": 3})
        await short.close()
        await long.close()

    run(body)
    with plugstore.open(url) as store:
        scope = store.namespace(DEFAULT_NAMESPACE).scope(user=7)
        for part in ("state", "data"):
            remaining = scope.ttl(f"fsm:42:-100:7:default:{part}")
            assert remaining is not None
            assert 3500 < remaining <= 3600


# -- the store: lazy opening, ownership, failures --------------------------------------------


def test_opens_lazily_once_and_closes_only_what_it_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'fsm.db'}"
    opened: list[Any] = []
    real_open = plugstore.aio.open

    def counting_open(*args: Any, **kwargs: Any) -> Any:
        opened.append(args)
        return real_open(*args, **kwargs)

    monkeypatch.setattr(plugstore.aio, "open", counting_open)
    storage = PlugstoreStorage(url, codec="pickle")
    assert "not opened yet" in repr(storage)

    async def body() -> None:
        await asyncio.gather(*(storage.get_state(KEY) for _ in range(20)))
        assert len(opened) == 1  # 20 first calls at once: one opening
        store = storage.store
        assert store is not None
        assert store.is_open
        assert store.codec.name == "pickle"
        assert "fsm.db" in repr(storage)
        assert "(open)" in repr(storage)
        await storage.set_state(KEY, "S")
        await storage.close()
        assert not store.is_open  # it opened the store, so it closed it
        await storage.close()  # aiogram may close twice: nothing left to do
        assert await storage.get_state(KEY) == "S"  # used again: opened again
        assert len(opened) == 2
        await storage.close()

    run(body)

    async def later() -> str | None:  # another event loop: the store opens in it
        try:
            return await storage.get_state(KEY)
        finally:
            await storage.close()

    assert run(later) == "S"


def test_a_store_passed_in_stays_its_owners(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fsm.db'}"

    async def body() -> None:
        async with plugstore.aio.open(url) as astore:
            storage = PlugstoreStorage(astore)
            dp = Dispatcher(storage=storage, events_isolation=storage.create_isolation())

            @dp.message()
            async def mark(msg: Message, state: FSMContext) -> None:
                await state.set_state("seen")

            bot, _ = offline_bot()
            await dp.feed_update(bot, message("hi"))
            await dp.emit_shutdown()  # storage.close() and isolation.close()
            assert astore.is_open
            assert storage.store is None
            assert await storage.get_state(StorageKey(BOT_ID, 7, 7)) == "seen"
            await astore.aclose()
            # The owner closed it: every call says so, through the dispatcher too.
            with pytest.raises(StoreNotOpenError):
                await dp.feed_update(bot, message("hi"))
        with pytest.raises(TypeError, match="options"):
            PlugstoreStorage(astore, codec="pickle")

    run(body)

    with plugstore.open(url) as store:  # a sync store: wrapped in the loop, left open
        storage = PlugstoreStorage(store)

        async def wrapped() -> None:
            await storage.set_state(KEY, "sync")
            await storage.close()

        run(wrapped)
        assert store.is_open
        assert store.namespace(DEFAULT_NAMESPACE).scope(user=7)["fsm:42:-100:7:default:state"]


def test_plugstore_url_is_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.setenv("PLUGSTORE_URL", url)
    storage = PlugstoreStorage()
    monkeypatch.setenv("PLUGSTORE_URL", f"sqlite:///{tmp_path / 'later.db'}")  # read above

    async def body() -> None:
        await storage.set_state(KEY, "S")
        await storage.close()

    run(body)
    assert records(url) == {(user(7), "fsm:42:-100:7:default:state"): "S"}


@pytest.mark.parametrize(
    ("server", "where", "url"),
    [
        ("PostgreSQL", ("127.0.0.1", 5432), "postgresql://postgres:s3cr3t@127.0.0.1:1/test"),
        ("MariaDB", MYSQL, "mysql://root:s3cr3t@127.0.0.1:1/test"),
        ("Redis", ("127.0.0.1", 6379), "redis://:s3cr3t@127.0.0.1:1/0"),
    ],
)
def test_an_unreachable_server_reaches_the_caller_as_a_plugstore_error(
    server: str, where: tuple[str, int], url: str
) -> None:
    """Nothing listens at port 1: the first update fails with BackendUnavailableError
    (never the password), and so does the next one: the opening is tried again."""
    require_server(server, *where)  # the server is up: only the port is wrong
    storage = PlugstoreStorage(url)
    dp = Dispatcher(storage=storage, events_isolation=storage.create_isolation())

    @dp.message()
    async def never(msg: Message) -> None:
        raise AssertionError("no handler runs without the store")

    async def body() -> None:
        bot, _ = offline_bot()
        for _ in range(2):
            with pytest.raises(BackendUnavailableError) as err:
                await dp.feed_update(bot, message("hi"))
            assert "127.0.0.1:1" in str(err.value)
            assert "s3cr3t" not in str(err.value)
            assert "s3cr3t" not in repr(storage)
        await dp.emit_shutdown()

    run(body)


# -- per-user data ----------------------------------------------------------------------------


def test_user_export_and_forget_find_a_users_states_and_data(url: str) -> None:
    storage = PlugstoreStorage(url)

    async def body() -> None:
        for uid, chat in ((7, 7), (7, -100), (8, -100)):
            key = StorageKey(bot_id=BOT_ID, chat_id=chat, user_id=uid)
            await storage.set_state(key, Form.name)
            await storage.update_data(key, {"name": f"user{uid}"})
        await storage.close()

    run(body)
    with plugstore.open(url) as store:
        exported = export_user(store, "7")
        assert sorted(
            (r["key"], r["value"]) for r in exported["namespaces"][DEFAULT_NAMESPACE]
        ) == [
            ("fsm:42:-100:7:default:data", {"name": "user7"}),
            ("fsm:42:-100:7:default:state", "Form:name"),
            ("fsm:42:7:7:default:data", {"name": "user7"}),
            ("fsm:42:7:7:default:state", "Form:name"),
        ]
        summary = forget_user(store, 7)
        assert summary.counts == {DEFAULT_NAMESPACE: 4}
    assert set(records(url)) == {
        (user(8), "fsm:42:-100:8:default:state"),
        (user(8), "fsm:42:-100:8:default:data"),
    }


def test_plugstore_user_cli_exports_and_forgets_an_aiogram_user(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fsm.db'}"
    storage = PlugstoreStorage(url)

    async def body() -> None:
        await storage.update_data(KEY, {"name": "Ann"})
        await storage.close()

    run(body)
    cli = [sys.executable, "-m", "plugstore.cli", "user"]
    exported = subprocess.run(
        [*cli, "export", "7", url], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(exported.stdout)["namespaces"] == {
        DEFAULT_NAMESPACE: [
            {"scope": [["user", 7]], "key": "fsm:42:-100:7:default:data", "value": {"name": "Ann"}}
        ]
    }
    subprocess.run([*cli, "forget", "7", url, "--yes"], check=True, timeout=60, capture_output=True)
    assert records(url) == {}


# -- packaging --------------------------------------------------------------------------------


def test_plugstore_never_imports_aiogram() -> None:
    code = (
        "import sys, plugstore, plugstore.aio, plugstore.integrations, plugstore.userdata\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'aiogram'], 'imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_errors_are_plugstore_errors_with_aiograms_names() -> None:
    err = FSMDataNotDictError("Data must be a dict or dict-like object, got list")
    assert isinstance(err, DataNotDictLikeError)
    assert isinstance(err, StoreError)
    assert isinstance(err, TypeError)
    assert str(err) == "Data must be a dict or dict-like object, got list"
