"""AsyncStateStore: per-sender conversation states for asyncio code.

The twin of :class:`plugstore.state.StateStore` (same rules, same stored keys, written
once in :class:`~plugstore.state.StateCore`), over an
:class:`~plugstore.aio.namespace.AsyncNamespace`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from ..state import StateCore
from .runtime import arun

if TYPE_CHECKING:
    from .namespace import AsyncNamespace


class AsyncStateStore(StateCore):
    """Conversation states kept in one async namespace: ``await states.get(key,
    sender)``, ``await states.set(...)``, ``await states.transition(key, sender,
    expected, state)`` (atomic: two tasks or processes cannot both take one step)."""

    _ns: AsyncNamespace

    def __init__(self, namespace: AsyncNamespace) -> None:
        super().__init__(namespace)

    @property
    def namespace(self) -> AsyncNamespace:
        """The namespace holding the states."""
        return self._ns

    async def get(self, key: str, sender: str) -> str:
        """The state of ``(key, sender)``, or ``"START"`` if it has none."""
        return await arun(self._get_steps(key, sender))

    async def set(self, key: str, sender: str, state: str) -> None:
        """Put ``(key, sender)`` in ``state``; ``"START"`` deletes the entry."""
        await arun(self._set_steps(key, sender, state))

    async def transition(self, key: str, sender: str, expected: str, state: str) -> bool:
        """Move ``(key, sender)`` from ``expected`` to ``state`` atomically; whether it
        did (see :meth:`plugstore.state.StateStore.transition`)."""
        return await arun(self._transition_steps(key, sender, expected, state))

    async def clear(self) -> None:
        """Forget every state."""
        await self._ns.clear()

    async def states(self) -> AsyncIterator[tuple[str, Any]]:
        """``(storage key, state)`` for every pair not in ``"START"``."""
        async for pair in self._ns.scan():
            yield pair

    async def count(self) -> int:
        """How many pairs are in a state other than ``"START"``."""
        return await self._ns.count()

    def __repr__(self) -> str:
        return f"<AsyncStateStore in {self._ns!r}>"


__all__ = ["AsyncStateStore"]
