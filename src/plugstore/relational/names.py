"""Plugin names and the schema names made from them.

A plugin name becomes part of SQL identifiers (the schema ``pl_<name>``, a MariaDB
database, an SQLite attachment name and file name), so it is checked against a strict
pattern before anything else sees it: lowercase ASCII letters, digits and ``_``,
starting with a letter, at most :data:`MAX_NAME` characters.  A name that fails is
refused; it is never quoted, escaped or otherwise made to fit.
"""

from __future__ import annotations

import re

from plugstore.errors import ConfigurationError

#: Every plugin's schema is ``pl_<name>``.
SCHEMA_PREFIX = "pl_"
#: Longest plugin name: ``pl_`` plus this stays far below PostgreSQL's 63-byte and
#: MariaDB's 64-character identifier limits, with room for index names made from it.
MAX_NAME = 40
_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")


class InvalidPluginNameError(ConfigurationError):
    """A plugin name that cannot be used to name a schema."""


def check_plugin_name(name: object) -> str:
    """Return ``name`` if it is a valid plugin name, else raise
    :class:`InvalidPluginNameError` saying what is allowed."""
    if not isinstance(name, str):
        raise InvalidPluginNameError(f"a plugin name must be a str, not {type(name).__name__}")
    if not _NAME.match(name) or len(name) > MAX_NAME:
        raise InvalidPluginNameError(
            f"invalid plugin name {name!r}: use lowercase letters, digits and '_', "
            f"starting with a letter, at most {MAX_NAME} characters"
        )
    return name


def schema_for(name: str) -> str:
    """The schema of plugin ``name``: ``pl_<name>`` (the name is checked first)."""
    return SCHEMA_PREFIX + check_plugin_name(name)


def plugin_of_schema(schema: str | None) -> str | None:
    """The plugin owning ``schema`` (``pl_x`` -> ``x``), or ``None`` if it is not one."""
    if schema is None or not schema.startswith(SCHEMA_PREFIX):
        return None
    name = schema[len(SCHEMA_PREFIX) :]
    return name if _NAME.match(name) and len(name) <= MAX_NAME else None
