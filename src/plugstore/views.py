"""``items()`` and ``values()`` views that stream, for namespaces and scopes alike."""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, ValuesView
from typing import Any


class ScanItemsView(ItemsView[str, Any]):
    """``m.items()``: one streaming pass through ``m.scan()``, page by page."""

    _mapping: Any  # a Namespace or a Scope: anything with scan()

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        scanned: Iterator[tuple[str, Any]] = self._mapping.scan()
        return scanned


class ScanValuesView(ValuesView[Any]):
    """``m.values()``: the values of one streaming pass through ``m.scan()``."""

    _mapping: Any

    def __iter__(self) -> Iterator[Any]:
        return (value for _, value in self._mapping.scan())
