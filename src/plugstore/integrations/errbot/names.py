"""Errbot names and plugstore namespaces: a stable, reversible, collision-free mapping.

Errbot opens one storage per namespace: its own (``core``, ``repomgr``,
``<mode>_backend``) and one per plugin, named as the plugin is (``Name =`` in its
``.plug`` file), and it accepts any name: spaces, punctuation, non-ASCII.  A plugstore
namespace is ``[A-Za-z0-9_.-]`` plus ``%XX`` escapes, so the name goes through
:func:`plugstore.keys.escape_namespace`:

* a name that is a valid namespace without ``%`` (``core``, ``ACLs``, ``Memo``,
  ``text_backend``) is its own namespace, so no existing bot's data moves;
* any other name is percent-escaped: ``"Test hooks for webhooks testing"`` is
  ``Test%20hooks%20for%20webhooks%20testing``, and ``"a b"``, ``"a_b"``, ``"A b"`` and
  ``"a%20b"`` stay four namespaces;
* a name whose escaped form is over 128 characters is refused with an error naming it
  (never truncated or hashed, which could make two plugins share data).

Errbot's ``Shelf`` storage names its files by the raw name (``DATA_DIR/<name>.db``);
``import-errbot`` and ``export-errbot`` translate between the two.
"""

from __future__ import annotations

from ...errors import InvalidNamespaceError
from ...keys import MAX_NAMESPACE_LENGTH, escape_namespace, unescape_namespace


def namespace_for(name: str) -> str:
    """The plugstore namespace of the Errbot storage ``name`` (a plugin's name, ``core``).

    Raises :class:`~plugstore.errors.InvalidNamespaceError` naming ``name`` if it has
    none: empty, not valid Unicode, or over 128 characters once escaped.
    """
    try:
        return escape_namespace(name)
    except InvalidNamespaceError as exc:
        raise InvalidNamespaceError(
            f"Errbot plugin {name!r} cannot store through plugstore: {exc}. Its storage "
            f"needs a namespace of at most {MAX_NAMESPACE_LENGTH} characters, where each "
            "character outside [A-Za-z0-9_.-] counts 3 per UTF-8 byte: give the plugin a "
            "shorter Name in its .plug file"
        ) from None


def errbot_name(namespace: str) -> str:
    """The Errbot name whose namespace is ``namespace`` (the inverse of
    :func:`namespace_for`).

    Raises :class:`~plugstore.errors.InvalidNamespaceError` if ``namespace`` is not the
    namespace of any Errbot name (a ``%XX`` spelling :func:`namespace_for` never makes).
    """
    try:
        return unescape_namespace(namespace)
    except InvalidNamespaceError as exc:
        raise InvalidNamespaceError(f"{exc}; no Errbot plugin stores there") from None


__all__ = ["errbot_name", "namespace_for"]
