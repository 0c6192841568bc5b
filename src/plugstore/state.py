"""StateStore: per-sender conversation state with Lamson/Salmon's semantics.

A state machine (a Salmon handler module, a chat plugin's multi-step command) keeps one
state per ``(key, sender)``: ``key`` names the machine (Salmon passes the handler's
module name), ``sender`` the party it talks to.  Salmon's rules, kept exactly:

* a pair that was never set is in the first state, ``"START"``;
* setting a pair back to ``"START"`` deletes its entry (finished conversations cost
  nothing);
* the storage key is ``repr([key, sender])``, so data written by Salmon's
  ``MemoryStorage`` layout reads the same here, and any ``str`` works, non-ASCII included
  (Salmon's ``ShelveStorage`` rejects it).

Every call is one atomic operation on a :class:`~plugstore.namespace.Namespace`, so a
StateStore is safe from many threads without a caller lock, and from many processes on
the multi-process backends.  Beyond Salmon, :meth:`StateStore.transition` moves a pair
from one state to another only if nobody moved it first: two processes handling the
same sender's messages cannot both take the same step.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .errors import DecodeError
from .steps import Steps, call, run

if TYPE_CHECKING:
    from .namespace import Namespace

#: The state every (key, sender) pair starts in; Salmon's ``ROUTE_FIRST_STATE``.
FIRST_STATE = "START"


class StateCore:
    """The rules of a state store, written once for :class:`StateStore` and
    :class:`~plugstore.aio.state.AsyncStateStore`: its operations are steps (see
    :mod:`plugstore.steps`) calling the namespace's own methods, plain or awaited."""

    def __init__(self, namespace: Any) -> None:
        self._ns = namespace

    @staticmethod
    def key(key: str, sender: str) -> str:
        """The storage key of a pair: exactly ``repr([key, sender])``, as Salmon builds it."""
        return repr([key, sender])

    def _decode(self, storage_key: str, raw: bytes | None) -> str:
        if raw is None:
            return FIRST_STATE
        state = self._ns.store.codec.decode(raw)
        if type(state) is not str or not state:
            raise DecodeError(
                f"state of {storage_key} in namespace {self._ns.name!r} is {state!r:.60}, "
                "not a non-empty str: it was not written by a StateStore"
            )
        return state

    def _get_steps(self, key: str, sender: str) -> Steps[str]:
        storage_key = self.key(key, sender)
        return self._decode(storage_key, (yield call(self._ns, "get_raw", storage_key)))

    def _set_steps(self, key: str, sender: str, state: str) -> Steps[None]:
        _check_state(state)
        storage_key = self.key(key, sender)
        if state == FIRST_STATE:
            yield call(self._ns, "pop", storage_key, None)
        else:
            yield call(self._ns, "set", storage_key, state)

    def _transition_steps(self, key: str, sender: str, expected: str, state: str) -> Steps[bool]:
        _check_state(expected)
        _check_state(state)
        storage_key = self.key(key, sender)
        raw = yield call(self._ns, "get_raw", storage_key)
        if self._decode(storage_key, raw) != expected:
            return False
        if expected == state:
            return True
        if state == FIRST_STATE:
            assert raw is not None  # current == expected != FIRST_STATE
            return bool((yield call(self._ns, "remove_if", storage_key, raw)))
        return bool((yield call(self._ns, "replace_if", storage_key, raw, state)))


class StateStore(StateCore):
    """Conversation states kept in one namespace (see the module docs for the rules).

    >>> import plugstore
    >>> with plugstore.open("memory://") as store:
    ...     states = StateStore(store.namespace("states"))
    ...     states.set("app.handlers.signup", "ana@example.com", "CONFIRMING")
    ...     states.get("app.handlers.signup", "ana@example.com")
    'CONFIRMING'
    """

    _ns: Namespace

    def __init__(self, namespace: Namespace) -> None:
        super().__init__(namespace)

    @property
    def namespace(self) -> Namespace:
        """The namespace holding the states."""
        return self._ns

    def get(self, key: str, sender: str) -> str:
        """The state of ``(key, sender)``, or ``"START"`` if it has none.

        Raises :class:`~plugstore.errors.DecodeError` if the entry holds something other
        than a non-empty ``str`` (it was not written by a StateStore).
        """
        return run(self._get_steps(key, sender))

    def set(self, key: str, sender: str, state: str) -> None:
        """Put ``(key, sender)`` in ``state``; ``"START"`` deletes the entry."""
        run(self._set_steps(key, sender, state))

    def transition(self, key: str, sender: str, expected: str, state: str) -> bool:
        """Move ``(key, sender)`` from ``expected`` to ``state`` atomically; return whether.

        ``False`` means the pair was not in ``expected`` (another thread or process moved
        it first); nothing was written.  ``"START"`` on either side means "no entry".
        Raises ``TypeError`` for a bad state and ``DecodeError`` for an entry that holds
        no state, like :meth:`get`.
        """
        return run(self._transition_steps(key, sender, expected, state))

    def clear(self) -> None:
        """Forget every state (every pair is back in ``"START"``)."""
        self._ns.clear()

    def states(self) -> Iterator[tuple[str, str]]:
        """Yield ``(storage key, state)`` for every pair not in ``"START"``."""
        yield from self._ns.scan()

    def __len__(self) -> int:
        """How many pairs are in a state other than ``"START"``."""
        return len(self._ns)

    def __repr__(self) -> str:
        return f"<StateStore in {self._ns!r}>"


def _check_state(state: object) -> None:
    if type(state) is not str or not state:
        raise TypeError(f"a state must be a non-empty str, not {state!r}")
