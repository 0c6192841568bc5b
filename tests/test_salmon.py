"""PlugstoreStorage against real Salmon: Router.deliver, handler modules, processes.

The handler modules live in ``tests/fixtures/salmon_app`` (``signup``: a four-state FSM
with ERROR handling and a stateless handler; ``bylist``: a state key generator;
``claim``: steps taken with ``transition``) and are loaded with ``Router.load`` as a
Salmon boot module does.  ``salmon_app.worker`` is one Salmon process with its own
Router, used for the restart and multi-process tests.

Salmon is GPL and only a test dependency: without it this module skips on a developer's
machine and fails in CI.  ``python tests/test_salmon.py shelve-comparison`` runs the
multi-process flow on Salmon's own ShelveStorage and prints what it lost (docs/salmon.md).
"""

from __future__ import annotations

import ast
import collections
import json
import os
import shelve
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import plugstore
from plugstore.errors import InvalidNamespaceError, StoreNotOpenError
from plugstore.state import StateStore
from servers import IN_CI
from test_state_store import Servers, release_together

try:
    from salmon.mail import MailRequest
    from salmon.routing import MemoryStorage, Router, RoutingBase, ShelveStorage, StateStorage
    from salmon.testing import assert_in_state
except ImportError:  # pragma: no cover - depends on the environment
    if IN_CI:
        raise
    pytest.skip(
        'Salmon is not installed: pip install "salmon-mail>=3.3" to run these tests',
        allow_module_level=True,
    )

from plugstore.integrations.salmon import DEFAULT_NAMESPACE, PlugstoreStorage, import_shelve

FIXTURES = Path(__file__).resolve().parent / "fixtures"
APP = ("salmon_app.signup", "salmon_app.bylist", "salmon_app.claim")
SIGNUP, BYLIST, CLAIM = APP
BACKENDS = ["sqlite", "redis", "postgresql"]


def mail(sender: str, to: str = "signup@example.com", subject: str = "hello") -> Any:
    """A message as Salmon's server hands it to the Router."""
    return MailRequest("test", sender, to, f"Subject: {subject}\r\n\r\nhello\r\n")


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    places = Servers()
    yield places
    places.cleanup()


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, servers: Servers, tmp_path: Path) -> str:
    return servers.url(request.param, tmp_path)


@pytest.fixture
def router(monkeypatch: pytest.MonkeyPatch) -> Iterator[RoutingBase]:
    """Salmon's global Router with no routes, handlers or states of other tests.

    The handler modules are dropped from ``sys.modules`` so that loading them registers
    their routes again; everything the tests change is put back afterwards.
    """
    monkeypatch.syspath_prepend(str(FIXTURES))
    saved = {
        name: getattr(Router, name)
        for name in ("STATE_STORE", "LOG_EXCEPTIONS", "UNDELIVERABLE_QUEUE", "RELOAD")
    }
    handlers, captures = dict(Router.HANDLERS), dict(Router.DEFAULT_CAPTURES)

    def reset() -> None:
        Router.clear_routes()
        Router.HANDLERS.clear()
        for name in APP:
            sys.modules.pop(name, None)

    reset()
    Router.LOG_EXCEPTIONS = False  # a failing handler raises instead of being logged
    yield Router
    store = Router.STATE_STORE
    if isinstance(store, PlugstoreStorage) and not store.closed:
        store.close()
    reset()
    for name, value in saved.items():
        setattr(Router, name, value)
    Router.HANDLERS.update(handlers)
    Router.DEFAULT_CAPTURES.clear()
    Router.DEFAULT_CAPTURES.update(captures)


def load(*modules: str) -> list[Any]:
    Router.load(list(modules))
    return [sys.modules[name] for name in modules]


def stored(storage: PlugstoreStorage) -> dict[str, str]:
    return dict(storage.states.states())


# -- the StateStorage contract ----------------------------------------------------------------


def test_behaves_exactly_like_salmons_memory_storage(tmp_path: Path) -> None:
    """The same calls give the same answers and the same stored keys as MemoryStorage."""
    memory = MemoryStorage()
    with PlugstoreStorage(f"sqlite:///{tmp_path / 's.db'}") as ours:
        assert isinstance(ours, StateStorage)
        calls = [
            ("app.signup", "ana@example.com", "CONFIRMING"),
            ("app.signup", "jösé@exämple.com", "POSTING"),
            ("app.other", "ana@example.com", "END"),
            ("app.signup", "ana@example.com", "START"),
            ("app.signup", "nobody@example.com", "START"),
            ("app.signup", 'O\'Brien "x" <a\x00b@example.com>', "ERROR"),
        ]
        for key, sender, state in calls:
            memory.set(key, sender, state)
            ours.set(key, sender, state)
            assert stored(ours) == memory.states
            for k, s, _ in calls:
                assert ours.get(k, s) == memory.get(k, s)
        assert len(stored(ours)) == 3
        ours.clear()
        memory.clear()
        assert stored(ours) == memory.states == {}


def test_opens_plugstore_url_default_store_or_an_open_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    default = tmp_path / "from-env.sqlite3"
    monkeypatch.setenv("PLUGSTORE_URL", f"sqlite:///{default}")
    with PlugstoreStorage() as storage:  # PLUGSTORE_URL, namespace "salmon-states"
        storage.set("app", "a@example.com", "A")
        assert storage.states.namespace.name == DEFAULT_NAMESPACE == "salmon-states"
    with plugstore.open(f"sqlite:///{default}") as store:
        assert dict(store.namespace("salmon-states")) == {"['app', 'a@example.com']": "A"}

        # An open store stays open (it is the caller's), whatever happens to the storage.
        storage = PlugstoreStorage(store, namespace="other-states")
        storage.set("app", "b@example.com", "B")
        storage.close()
        assert store.is_open
        assert dict(store.namespace("other-states")) == {"['app', 'b@example.com']": "B"}
        with pytest.raises(TypeError, match="options"):
            PlugstoreStorage(store, codec="pickle")

    # Store options pass through.
    with PlugstoreStorage(f"sqlite:///{tmp_path / 'p.db'}", codec="pickle") as storage:
        assert storage.store.codec.name == "pickle"
        storage.set("app", "c@example.com", "C")
        assert storage.get("app", "c@example.com") == "C"
    with pytest.raises(InvalidNamespaceError):
        PlugstoreStorage(f"sqlite:///{tmp_path / 'p.db'}", namespace="no spaces")
    with pytest.raises(plugstore.ConfigurationError):
        PlugstoreStorage(f"sqlite:///{tmp_path / 'p.db'}", no_such_option=1)


def test_close_and_context_manager(tmp_path: Path) -> None:
    storage = PlugstoreStorage(f"sqlite:///{tmp_path / 's.db'}")
    assert "salmon-states" in repr(storage)
    assert "open" in repr(storage)
    with storage as same:
        assert same is storage
        storage.set("app", "a@example.com", "A")
    assert storage.closed
    assert not storage.store.is_open  # it opened the store, so it closed it
    assert "closed" in repr(storage)
    for call in (
        lambda: storage.get("app", "a@example.com"),
        lambda: storage.set("app", "a@example.com", "B"),
        lambda: storage.transition("app", "a@example.com", "A", "B"),
        storage.clear,
        storage.close,
    ):
        with pytest.raises(StoreNotOpenError):
            call()
    with pytest.raises(StoreNotOpenError), storage:
        pass
    with PlugstoreStorage(f"sqlite:///{tmp_path / 's.db'}") as again:
        assert again.get("app", "a@example.com") == "A"


def test_bad_states_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    with PlugstoreStorage(f"sqlite:///{tmp_path / 's.db'}") as storage:
        for bad in (None, "", 1):
            with pytest.raises(TypeError):
                storage.set("app", "a@example.com", bad)  # type: ignore[arg-type]
        assert stored(storage) == {}


# -- a handler module's FSM through Router.deliver ------------------------------------------------


def test_fsm_walks_start_to_end_through_router_deliver(router: RoutingBase, url: str) -> None:
    storage = router.STATE_STORE = PlugstoreStorage(url)
    (signup,) = load(SIGNUP)
    ana, key = "ana@example.com", repr([SIGNUP, "ana@example.com"])
    expected = []
    for subject, handler, state in [
        ("join", "START", "CONFIRMING"),
        ("confirm", "CONFIRMING", "POSTING"),
        ("post", "POSTING", "END"),
        ("again", "END", "END"),
    ]:
        router.deliver(mail(ana, subject=subject))
        expected.append((ana, handler, subject))
        assert signup.steps == expected
        assert router.get_state(SIGNUP, mail(ana)) == state
        assert stored(storage) == {key: state}
    assert signup.seen == [ana] * 4  # the @stateless handler ran on every message
    assert_in_state(SIGNUP, "signup@example.com", ana, "END")  # Salmon's own test helper

    router.deliver(mail(ana, subject="unsubscribe"))  # END returns START
    assert signup.steps[-1] == (ana, "END", "unsubscribe")
    assert stored(storage) == {}  # Salmon's set(..., "START") deleted the entry
    router.deliver(mail(ana, subject="rejoin"))
    assert signup.steps[-1] == (ana, "START", "rejoin")

    router.deliver(mail("bob@example.com", to="nobody@example.org"))  # no route
    assert len(signup.steps) == 6
    router.clear_states()  # Salmon's test helper calls StateStorage.clear
    assert stored(storage) == {}


def test_handler_that_raises_puts_the_sender_in_error(
    router: RoutingBase, url: str, caplog: pytest.LogCaptureFixture
) -> None:
    storage = router.STATE_STORE = PlugstoreStorage(url)
    (signup,) = load(SIGNUP)
    ana, bob = "ana@example.com", "bob@example.com"
    router.deliver(mail(ana, subject="join"))
    with pytest.raises(RuntimeError, match="CONFIRMING blew up"):
        router.deliver(mail(ana, subject="boom"))
    assert stored(storage) == {repr([SIGNUP, ana]): "ERROR"}
    router.deliver(mail(ana, subject="sorry"))  # the ERROR handler runs, returns START
    assert signup.steps[-1] == (ana, "ERROR", "sorry")
    assert stored(storage) == {}
    router.deliver(mail(ana, subject="join"))
    assert signup.steps[-1] == (ana, "START", "join")

    router.LOG_EXCEPTIONS = True  # Salmon's default: log, do not raise
    with caplog.at_level("ERROR", logger="routing"):
        router.deliver(mail(bob, subject="boom"))
    assert "ERROR handling salmon_app.signup.START" in caplog.text
    assert storage.get(SIGNUP, bob) == "ERROR"
    assert storage.get(SIGNUP, ana) == "CONFIRMING"


def test_state_key_generator_and_transition_handlers(router: RoutingBase, url: str) -> None:
    storage = router.STATE_STORE = PlugstoreStorage(url)
    bylist, claim = load(BYLIST, CLAIM)
    ana = "ana@example.com"
    router.deliver(mail(ana, to="python-list@example.com"))
    router.deliver(mail(ana, to="python-list@example.com"))
    router.deliver(mail(ana, to="rust-list@example.com"))
    assert bylist.events == [
        ("python-list@example.com", ana, "joined"),
        ("python-list@example.com", ana, "posted"),
        ("rust-list@example.com", ana, "joined"),
    ]
    for _ in range(6):
        router.deliver(mail(ana, to="claim@example.com"))
    assert claim.won == [(ana, "START"), (ana, "ONE"), (ana, "TWO"), (ana, "THREE")]
    assert stored(storage) == {
        repr([f"{BYLIST}:python-list@example.com", ana]): "MEMBER",
        repr([f"{BYLIST}:rust-list@example.com", ana]): "MEMBER",
        repr([CLAIM, ana]): "END",
    }


def test_non_ascii_state_keys_work_where_shelve_storage_raises(
    router: RoutingBase, tmp_path: Path
) -> None:
    signup, bylist = load(SIGNUP, BYLIST)
    sender, café = "jösé@exämple.com", "café-list@example.com"

    # Salmon's ShelveStorage encodes the *key* (the module name, or what a state key
    # generator returns) to ASCII; senders may be anything.
    router.STATE_STORE = ShelveStorage(str(tmp_path / "shelve"))
    router.deliver(mail(sender, subject="join"))
    assert router.get_state(SIGNUP, mail(sender)) == "CONFIRMING"
    with pytest.raises(UnicodeEncodeError):
        router.deliver(mail(sender, to=café))
    assert bylist.events == []

    storage = router.STATE_STORE = PlugstoreStorage(f"sqlite:///{tmp_path / 's.db'}")
    router.deliver(mail(sender, to=café))
    router.deliver(mail(sender, to=café))
    assert bylist.events == [(café, sender, "joined"), (café, sender, "posted")]
    assert stored(storage) == {repr([f"{BYLIST}:{café}", sender]): "MEMBER"}
    assert signup.steps == [(sender, "START", "join")]


# -- processes ---------------------------------------------------------------------------------


def start_workers(specs: list[dict[str, Any]]) -> list[subprocess.Popen[str]]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(FIXTURES), *sys.path])}
    return [
        subprocess.Popen(
            [sys.executable, "-m", "salmon_app.worker"],
            env={**env, "SALMON_APP_SPEC": json.dumps(spec)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for spec in specs
    ]


def run_workers(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run one worker per spec; those with ``wait`` are released together."""
    return release_together(start_workers(specs), [bool(s.get("wait")) for s in specs])


@pytest.mark.slow
def test_state_survives_a_restart_in_another_process(router: RoutingBase, url: str) -> None:
    storage = router.STATE_STORE = PlugstoreStorage(url)
    (signup,) = load(SIGNUP)
    ana = "änä@exämple.com"
    router.deliver(mail(ana, subject="join"))
    storage.close()  # the server stops

    # A fresh process (a restarted server) picks the conversation up where it was.
    (result,) = run_workers(
        [
            {
                "url": url,
                "namespace": DEFAULT_NAMESPACE,
                "rounds": [[[ana, "signup@example.com", "confirm"]]],
            }
        ]
    )
    assert result["steps"] == [[ana, "CONFIRMING", "confirm"]]
    assert result["errors"] == []

    storage = router.STATE_STORE = PlugstoreStorage(url)
    assert storage.get(SIGNUP, ana) == "POSTING"
    router.deliver(mail(ana, subject="post"))
    assert signup.steps == [(ana, "START", "join"), (ana, "POSTING", "post")]
    assert stored(storage) == {repr([SIGNUP, ana]): "END"}


SUBJECTS = ["join", "confirm", "post", "done", "unsubscribe"]
HANDLED_BY = ["START", "CONFIRMING", "POSTING", "END", "END"]


def own_senders(process: int, n: int) -> list[str]:
    return [
        f"p{process}-ü{j}@exämple.com" if j % 5 == 0 else f"p{process}-u{j}@example.com"
        for j in range(n)
    ]


def flow_specs(processes: int, own: int, shared: int, claim: bool) -> list[dict[str, Any]]:
    """Each process walks its own senders through signup, interleaved round by round
    (the even ones unsubscribe at the end), and signs the shared senders up to a list of
    its own; with ``claim``, all processes also push the shared senders through claim."""
    shared_senders = [f"shared-{j}@example.com" for j in range(shared)]
    specs = []
    for p in range(processes):
        rounds = [
            [
                [sender, "signup@example.com", subject]
                for j, sender in enumerate(own_senders(p, own))
                if subject != "unsubscribe" or j % 2 == 0
            ]
            for subject in SUBJECTS
        ]
        for r in (0, 1):  # join, then post: on p's own list
            rounds[r] += [[s, f"p{p}-list@example.com", "list"] for s in shared_senders]
        specs.append({"rounds": rounds, "claim": shared_senders if claim else [], "wait": True})
    return specs


def expected_outcome(processes: int, own: int, shared: int, claim: bool) -> dict[str, Any]:
    shared_senders = [f"shared-{j}@example.com" for j in range(shared)]
    steps, events, final = [], [], {}
    for p in range(processes):
        mine = []
        for j, sender in enumerate(own_senders(p, own)):
            walked = [
                [sender, handler, subject]
                for subject, handler in zip(SUBJECTS, HANDLED_BY, strict=True)
                if subject != "unsubscribe" or j % 2 == 0
            ]
            mine.extend(walked)
            if j % 2:
                final[repr([SIGNUP, sender])] = "END"
        steps.append(sorted(mine))
        to = f"p{p}-list@example.com"
        events.append(
            sorted([to, s, what] for s in shared_senders for what in ("joined", "posted"))
        )
        final.update({repr([f"{BYLIST}:{to}", s]): "MEMBER" for s in shared_senders})
    if claim:
        final.update({repr([CLAIM, s]): "END" for s in shared_senders})
    return {"steps": steps, "events": events, "final": final}


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "redis", "postgresql"])
def test_four_processes_deliver_concurrently_and_lose_nothing(
    backend: str, servers: Servers, tmp_path: Path
) -> None:
    url = servers.url(backend, tmp_path)
    processes, own, shared = 4, 50, 10
    specs = flow_specs(processes, own, shared, claim=True)
    # Created first: processes racing to create a new SQLite file can fail to open it.
    PlugstoreStorage(url).close()
    results = run_workers([{**spec, "url": url, "namespace": DEFAULT_NAMESPACE} for spec in specs])
    want = expected_outcome(processes, own, shared, claim=True)

    assert [r["errors"] for r in results] == [[]] * processes
    assert [r["unfinished"] for r in results] == [[]] * processes
    # Every own sender took exactly its steps, in its process, in order.
    assert [sorted(r["steps"]) for r in results] == want["steps"]
    for r in results:
        by_sender = collections.defaultdict(list)
        for sender, handler, _ in r["steps"]:
            by_sender[sender].append(handler)
        assert all(h[:4] == HANDLED_BY[:4] for h in by_sender.values())
    assert [sorted(r["events"]) for r in results] == want["events"]
    # The shared senders' claim steps: each taken by exactly one process.
    won = collections.Counter(tuple(w) for r in results for w in r["won"])
    assert won == collections.Counter(
        (f"shared-{j}@example.com", step)
        for j in range(shared)
        for step in ("START", "ONE", "TWO", "THREE")
    )
    with PlugstoreStorage(url) as storage:
        assert stored(storage) == want["final"]


# -- migrating from ShelveStorage ---------------------------------------------------------------


def test_import_shelve_copies_salmons_shelve_states(router: RoutingBase, tmp_path: Path) -> None:
    path = str(tmp_path / "states")
    shelf = ShelveStorage(path)
    router.STATE_STORE = shelf
    load(SIGNUP)
    router.deliver(mail("ana@example.com", subject="join"))
    router.deliver(mail("jösé@exämple.com", subject="join"))
    router.deliver(mail("jösé@exämple.com", subject="confirm"))
    router.deliver(mail("gone@example.com", subject="join"))
    shelf.set(SIGNUP, "gone@example.com", "START")
    shelf.set("other.handlers", "ana@example.com", "END")
    with shelve.open(path, flag="r") as raw:  # ShelveStorage's own key layout
        assert sorted(raw) == sorted(
            [
                repr([SIGNUP.encode(), "ana@example.com"]),
                repr([SIGNUP.encode(), "jösé@exämple.com"]),
                repr([b"other.handlers", "ana@example.com"]),
            ]
        )

    with PlugstoreStorage(f"sqlite:///{tmp_path / 's.db'}") as storage:
        storage.set(SIGNUP, "ana@example.com", "OVERWRITTEN")
        storage.set(SIGNUP, "kept@example.com", "KEPT")
        assert import_shelve(path, storage) == 3
        assert stored(storage) == {
            repr([SIGNUP, "ana@example.com"]): "CONFIRMING",
            repr([SIGNUP, "jösé@exämple.com"]): "POSTING",
            repr(["other.handlers", "ana@example.com"]): "END",
            repr([SIGNUP, "kept@example.com"]): "KEPT",
        }
        # A Router on the new storage carries on where the shelf left off.
        router.STATE_STORE = storage
        router.deliver(mail("jösé@exämple.com", subject="post"))
        assert storage.get(SIGNUP, "jösé@exämple.com") == "END"
        router.STATE_STORE = shelf


@pytest.mark.parametrize(
    ("key", "value"),
    [("not a list", "A"), ("[b'app']", "A"), ("[1, 'a@example.com']", "A"), ("[b'app', 'a']", 5)],
)
def test_import_shelve_refuses_foreign_entries_and_writes_nothing(
    tmp_path: Path, key: str, value: Any
) -> None:
    path = str(tmp_path / "states")
    with shelve.open(path) as raw:
        raw[repr([b"app", "first@example.com"])] = "GOOD"
        raw[key] = value
    with PlugstoreStorage(f"sqlite:///{tmp_path / 's.db'}") as storage:
        with pytest.raises(ValueError, match="state"):
            import_shelve(path, storage)
        assert stored(storage) == {}


# -- the GPL boundary ------------------------------------------------------------------------------


def test_plugstore_never_imports_salmon() -> None:
    code = (
        "import sys, plugstore, plugstore.state, plugstore.cli, plugstore.integrations;"
        "print(sorted(m for m in sys.modules if m == 'salmon' or m.startswith('salmon.')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            code.replace("plugstore.integrations;", "plugstore.integrations.salmon;"),
        ],
        capture_output=True,
        text=True,
    )
    assert "'salmon.routing'" in done.stdout  # the check above can see an import


# -- a measured comparison, not a test: python tests/test_salmon.py shelve-comparison ------


def shelve_comparison(processes: int = 4, own: int = 50, shared: int = 10) -> None:
    """Run the four-process flow on ShelveStorage and on SQLite and print what each lost."""
    want = expected_outcome(processes, own, shared, claim=False)
    with tempfile.TemporaryDirectory() as tmp:
        for label, where in [
            ("salmon ShelveStorage", {"shelve": f"{tmp}/shelve"}),
            ("plugstore sqlite", {"url": f"sqlite:///{tmp}/s.db", "namespace": DEFAULT_NAMESPACE}),
        ]:
            specs = flow_specs(processes, own, shared, claim=False)
            if "url" in where:
                PlugstoreStorage(where["url"]).close()  # created before the race
            results = run_workers([{**spec, **where, "tolerate": True} for spec in specs])
            if "shelve" in where:
                try:
                    with shelve.open(where["shelve"], flag="r") as raw:
                        final = {}
                        for k, v in raw.items():
                            key, sender = ast.literal_eval(k)
                            final[StateStore.key(key.decode(), sender)] = v
                except Exception as exc:  # the measurement: report, do not fail
                    print(f"{label}: the shelf is unreadable afterwards: {exc!r:.80}")
                    final = {}
            else:
                with PlugstoreStorage(where["url"]) as storage:
                    final = stored(storage)
            senders: list[dict[str, list[list[str]]]] = [
                collections.defaultdict(list) for _ in results
            ]
            for per_sender, r in zip(senders, results, strict=True):
                for sender, handler, subject in r["steps"]:
                    per_sender[sender].append([sender, handler, subject])
            planned: list[dict[str, list[list[str]]]] = [
                collections.defaultdict(list) for _ in results
            ]
            for per_sender, w in zip(planned, want["steps"], strict=True):
                for sender, handler, subject in w:
                    per_sender[sender].append([sender, handler, subject])
            bad_senders = sum(
                sorted(got[sender]) != sorted(steps)
                for got, plan in zip(senders, planned, strict=True)
                for sender, steps in plan.items()
            )
            wrong = sum(final.get(k) != v for k, v in want["final"].items())
            extra = len(set(final) - set(want["final"]))
            kinds = collections.Counter(e.split("(")[0] for r in results for e in r["errors"])
            seconds = max(r["seconds"] for r in results)
            total = sum(len(messages) for spec in specs for messages in spec["rounds"])
            print(
                f"{label}: {sum(kinds.values())} of {total} deliveries raised {dict(kinds)}; "
                f"{bad_senders} of {processes * own} senders' step records wrong; "
                f"{wrong} of {len(want['final'])} final states missing or wrong, {extra} "
                f"unexpected; slowest process {seconds:.2f}s"
            )


if __name__ == "__main__" and sys.argv[1:] == ["shelve-comparison"]:
    shelve_comparison()
