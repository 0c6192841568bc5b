"""Typed plugin settings, kept in a table of the plugin's own schema.

>>> from datetime import datetime
>>> from plugstore.relational import Setting, Settings, plugin_metadata
>>> metadata = plugin_metadata("tutorial")
>>> settings = Settings(metadata, {
...     "greeting": Setting(str, "hello"),
...     "max_items": Setting(int, 10),
...     "ratio": Setting(float, 0.5),
...     "enabled": Setting(bool, True),
...     "last_run": Setting(datetime, None),      # a None default: None is allowed
...     "aliases": Setting(dict, {}),
... })
>>> settings.table.fullname
'pl_tutorial.plugstore_settings'

The table joins the plugin's metadata, so the plugin's next ``revision --autogenerate``
creates it in the plugin's own migration chain.  Reading a setting never writes: an
unset one is its default.  Writing is one upsert on a unique name, so several processes
setting a setting for the first time at once leave one row.  Neither commits the
caller's session or connection unless ``commit=True`` is passed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Column, Connection, MetaData, String, Table, Text, bindparam, delete, select
from sqlalchemy.orm import Session

from plugstore.errors import DecodeError, StoreError

from .upserts import dialect_of, upsert

T = TypeVar("T")
#: The kinds a setting can be declared with; ``"json"`` is any JSON-compatible value.
KINDS: tuple[object, ...] = (str, int, float, bool, datetime, dict, list, "json")
MAX_NAME = 100
TABLE = "plugstore_settings"


class UndeclaredSettingError(StoreError, KeyError):
    """A setting name the plugin did not declare."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class Setting(Generic[T]):
    """One declared setting: its kind and its default.

    ``kind`` is ``str``, ``int``, ``float``, ``bool``, ``datetime``, ``dict``, ``list``
    or ``"json"`` (any JSON-compatible value).  ``None`` is a valid value when
    ``nullable`` (the default when ``default`` is ``None``).  A ``float`` setting takes
    ints too (stored as floats); an ``int`` setting refuses ``bool``.
    """

    def __init__(self, kind: type[T] | str, default: T | None, *, nullable: bool | None = None):
        if kind not in KINDS:
            raise TypeError(f"a setting is one of {_kind_names()}, not {kind!r}")
        self.kind = kind
        self.nullable = default is None if nullable is None else nullable
        self.default = self.check(default, "the default")

    def check(self, value: Any, what: str = "value") -> Any:
        """``value`` as this setting stores it, or :class:`TypeError` saying why not."""
        if value is None:
            if self.nullable:
                return None
            raise TypeError(f"{what} must not be None (declare the setting nullable)")
        kind = self.kind
        if kind is float and type(value) is int:
            return float(value)
        if kind == "json":
            _check_json(value, what)
            return value
        if kind is int and isinstance(value, bool):
            raise TypeError(f"{what} must be an int, not a bool")
        if not isinstance(value, kind):  # type: ignore[arg-type]
            raise TypeError(f"{what} must be {_kind_name(kind)}, not {type(value).__name__}")
        if kind in (dict, list):
            _check_json(value, what)
        return value

    def encode(self, value: Any) -> str:
        if isinstance(value, datetime):
            return json.dumps(value.isoformat())
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))

    def decode(self, text: str, name: str) -> Any:
        try:
            value = json.loads(text)
            if value is not None and self.kind is datetime:
                value = datetime.fromisoformat(value)
            return self.check(value)
        except (TypeError, ValueError) as exc:
            raise DecodeError(
                f"setting {name!r} holds {text[:80]!r}, which is not {_kind_name(self.kind)} "
                f"({exc}): set it again, or reset it to its default"
            ) from None

    def __repr__(self) -> str:
        return f"Setting({_kind_name(self.kind)}, {self.default!r})"


class Settings:
    """A plugin's declared settings, stored in ``<schema>.plugstore_settings``.

    Every method takes the caller's :class:`~sqlalchemy.orm.Session` or
    :class:`~sqlalchemy.Connection`, and joins its transaction.
    """

    def __init__(
        self, metadata: MetaData, declared: Mapping[str, Setting[Any]], *, table: str = TABLE
    ) -> None:
        for name, setting in declared.items():
            if not isinstance(name, str) or not name or len(name) > MAX_NAME:
                raise ValueError(f"a setting name is a str of 1 to {MAX_NAME} characters")
            if not isinstance(setting, Setting):
                raise TypeError(f"setting {name!r} must be declared as a Setting(...)")
        self.declared: dict[str, Setting[Any]] = dict(declared)
        self.table = Table(
            table,
            metadata,
            Column("name", String(MAX_NAME), primary_key=True),
            Column("value", Text, nullable=False),
        )
        self._select = select(self.table.c.value).where(self.table.c.name == bindparam("n"))
        self._select_all = select(self.table.c.name, self.table.c.value)
        self._delete = delete(self.table).where(self.table.c.name == bindparam("n"))
        self._upserts: dict[str, Any] = {}

    def get(self, db: Session | Connection, name: str) -> Any:
        """The value of setting ``name``: stored, else its default.  Never writes."""
        setting = self._declared(name)
        text = db.execute(self._select, {"n": name}).scalar_one_or_none()
        return setting.default if text is None else setting.decode(text, name)

    def set(self, db: Session | Connection, name: str, value: Any, *, commit: bool = False) -> None:
        """Store ``value`` (one upsert); commit the caller's transaction only if
        ``commit``."""
        setting = self._declared(name)
        text = setting.encode(setting.check(value, f"setting {name!r}"))
        db.execute(self._upsert(dialect_of(db)), {"name": name, "value": text})
        if commit:
            db.commit()

    def reset(self, db: Session | Connection, name: str, *, commit: bool = False) -> None:
        """Forget the stored value of ``name``: it reads as its default again."""
        self._declared(name)
        db.execute(self._delete, {"n": name})
        if commit:
            db.commit()

    def all(self, db: Session | Connection) -> dict[str, Any]:
        """Every declared setting's value (stored values over defaults), by name."""
        values = {name: s.default for name, s in self.declared.items()}
        for name, text in db.execute(self._select_all):
            if name in self.declared:  # one dropped from the code: ignored
                values[name] = self.declared[name].decode(text, name)
        return values

    def _declared(self, name: str) -> Setting[Any]:
        try:
            return self.declared[name]
        except (KeyError, TypeError):
            known = ", ".join(sorted(self.declared)) or "none"
            raise UndeclaredSettingError(
                f"no setting {name!r} is declared (declared: {known})"
            ) from None

    def _upsert(self, dialect: str) -> Any:
        statement = self._upserts.get(dialect)
        if statement is None:
            statement = upsert(self.table, dialect, ["name"], ["value"])
            self._upserts[dialect] = statement
        return statement


def _check_json(value: Any, what: str, depth: int = 0) -> None:
    """Refuse what would not come back the same from JSON (tuples, non-str keys...)."""
    if depth > 100:
        raise TypeError(f"{what} is nested too deeply")
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if math.isfinite(value):
            return
        raise TypeError(f"{what} contains {value!r}, which JSON cannot hold")
    if type(value) is list:
        for item in value:
            _check_json(item, what, depth + 1)
        return
    if type(value) is dict:
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{what} has a {type(key).__name__} key; JSON keys are str")
            _check_json(item, what, depth + 1)
        return
    raise TypeError(f"{what} contains a {type(value).__name__}, which is not JSON")


def _kind_name(kind: object) -> str:
    return kind if isinstance(kind, str) else getattr(kind, "__name__", repr(kind))


def _kind_names() -> str:
    return ", ".join(_kind_name(k) for k in KINDS)
