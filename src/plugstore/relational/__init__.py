"""Relational plugin storage: a schema per plugin, its own Alembic chain, typed settings.

Needs the ``relational`` extra (SQLAlchemy 2 and Alembic)::

    pip install "plugstore[relational]"

A plugin declares its tables on :func:`plugin_metadata` (schema ``pl_<name>``) and names
its migrations directory in a :class:`RelationalPlugin`; a :class:`RelationalHost`
migrates every plugin to its head at start-up and hands each its engine and sessions.
A plugin that keeps rows about users declares a :class:`RelationalUserData` hook, so
that ``.forgetme`` and ``plugstore user export|forget`` reach them.
See docs/relational.md.
"""

from __future__ import annotations

try:
    import alembic  # noqa: F401
    import sqlalchemy  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in an environment without them
    from plugstore.errors import MissingDependencyError

    raise MissingDependencyError(
        f'plugstore.relational needs {exc.name}: pip install "plugstore[relational]"'
    ) from exc

from .host import PluginDatabase, RelationalHost
from .migrations import Applied, MigrationError
from .names import InvalidPluginNameError, check_plugin_name, schema_for
from .plugin import ENTRY_POINT_GROUP, RelationalPlugin, RelationalUserData, plugin_metadata
from .settings import Setting, Settings, UndeclaredSettingError

__all__ = [
    "ENTRY_POINT_GROUP",
    "Applied",
    "InvalidPluginNameError",
    "MigrationError",
    "PluginDatabase",
    "RelationalHost",
    "RelationalPlugin",
    "RelationalUserData",
    "Setting",
    "Settings",
    "UndeclaredSettingError",
    "check_plugin_name",
    "plugin_metadata",
    "schema_for",
]
