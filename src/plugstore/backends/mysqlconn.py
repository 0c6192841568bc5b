"""A PyMySQL connection that parses each distinct result-column description once.

Why: profiled on the MariaDB backend's ``get`` (``callgrind``, client instructions per
call), PyMySQL spends most of its Python time on the column descriptions every result
set starts with -- one packet per column, parsed into a ``FieldDescriptorPacket`` (six
length-coded strings, a struct), a DB-API description tuple and a converter, on every
statement.  ``get`` returns two columns (``value``, ``expires_at``): 239k instructions per
call against 181k for raw PyMySQL reading one column, 0.64x-0.74x its speed.  The server
sends the same description bytes for the same statement on the same table, so this
connection keeps what it parsed, keyed by those bytes, and a repeated statement only
reads its description packets (165k instructions per ``get``).

The parse is a pure function of the packet bytes and the connection's encoding,
``use_unicode`` and decoders, which plugstore never changes after connecting; the cache
is per connection and bounded (statements naming a value in a column, such as
``SELECT GET_LOCK('name', 5)``, make new descriptions).  Everything else is PyMySQL's
own: it overrides :meth:`Connection._read_query_result` and
:meth:`MySQLResult._get_descriptions`, private methods (as of PyMySQL 1.2).  On a
PyMySQL release not in :data:`CHECKED_RELEASES`, or one that drops them,
:data:`SUPPORTED` is false and the backend uses PyMySQL's plain connection (correct,
only slower); ``tests/test_mysqlconn.py`` checks that both read
every kind of result alike.
"""

from __future__ import annotations

import threading
from typing import Any

import pymysql
import pymysql.connections
from pymysql.constants import FIELD_TYPE

# PyMySQL's internals, untyped (its stubs describe the public API only).
_c: Any = pymysql.connections

#: Distinct column descriptions a connection keeps (a table's statements need about 20,
#: about 600 bytes each); past this the cache starts afresh.
CACHE_SIZE = 64

#: The PyMySQL releases whose private parse this module mirrors (read and tested).  A
#: later release may keep the names but change what they do, so it gets the plain
#: connection until it is checked and added here.
CHECKED_RELEASES = ((1, 1), (1, 2))

#: Whether this PyMySQL is a checked release with the private pieces the cached parse
#: relies on.
SUPPORTED = tuple(pymysql.VERSION[:2]) in CHECKED_RELEASES and all(
    hasattr(owner, name)
    for owner, name in (
        (_c, "MySQLResult"),
        (_c, "FieldDescriptorPacket"),
        (_c, "TEXT_TYPES"),
        (_c.Connection, "_read_query_result"),
        (_c.Connection, "_read_packet"),
        (_c.MySQLResult, "_get_descriptions"),
        (_c.MySQLResult, "init_unbuffered_query"),
        (_c.converters, "through"),
    )
)


# Without MySQLResult (SUPPORTED is false) the class below is defined but never used.
_ResultBase: Any = getattr(_c, "MySQLResult", object)


class _Result(_ResultBase):  # type: ignore[misc]
    def _get_descriptions(self) -> None:
        """PyMySQL's own, but each description packet is parsed once per connection."""
        conn: Any = self.connection
        cache: dict[bytes, tuple[Any, tuple[Any, ...], tuple[Any, Any]]] = conn._plugstore_fields
        fields, converters, description = [], [], []
        for _ in range(self.field_count):
            data = conn._read_packet().get_all_data()
            parsed = cache.get(data)
            if parsed is None:
                parsed = _parse(conn, data)
                if len(cache) >= CACHE_SIZE:
                    cache.clear()
                cache[data] = parsed
            fields.append(parsed[0])
            description.append(parsed[1])
            converters.append(parsed[2])
        eof_packet = conn._read_packet()
        assert eof_packet.is_eof_packet(), "Protocol error, expecting EOF"
        self.fields, self.converters = fields, converters
        self.description = tuple(description)


def _parse(conn: Any, data: bytes) -> tuple[Any, tuple[Any, ...], tuple[Any, Any]]:
    """(field, its DB-API description, (encoding, converter)), as PyMySQL derives them."""
    field = _c.FieldDescriptorPacket(data, conn.encoding)
    field_type = field.type_code
    encoding: str | None
    if not conn.use_unicode:
        encoding = None
    elif field_type == FIELD_TYPE.JSON:
        encoding = conn.encoding
    elif field_type in _c.TEXT_TYPES:
        encoding = None if field.charsetnr == 63 else conn.encoding  # 63: binary
    else:
        encoding = "ascii"
    converter = conn.decoders.get(field_type)
    if converter is _c.converters.through:
        converter = None
    return field, field.description(), (encoding, converter)


#: The TLS context of PyMySQL's "preferred" mode, built once per process (see
#: :meth:`Connection._create_ssl_ctx`).
_preferred_context: Any = None
_preferred_lock = threading.Lock()


class Connection(_c.Connection):  # type: ignore[misc]
    """``pymysql.connect``'s connection, with the column descriptions cached and the
    default TLS context built once."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Before connecting: the handshake's own statements already read results.
        self._plugstore_fields: dict[bytes, Any] = {}
        super().__init__(*args, **kwargs)

    def _read_query_result(self, unbuffered: bool = False) -> Any:
        # PyMySQL's own, with _Result in place of MySQLResult.
        self._result = None
        result = _Result(self)
        if unbuffered:
            result.init_unbuffered_query()
        else:
            result.read()
        self._result = result
        if result.server_status is not None:
            self.server_status = result.server_status
        return result.affected_rows

    def _create_ssl_ctx(self, sslp: Any) -> Any:
        """PyMySQL's own, except for its default "preferred" mode (no ``ssl_*`` option:
        try TLS, verify nothing), whose context every connection shares.

        Why: PyMySQL 1.2 builds that context afresh per connection, and loading the
        system's CA bundle into it took 50 ms of CPU with the GIL held here, for
        certificates the mode never checks: each new pooled connection stalled every
        other thread, an async store's event loop included (36 ms worst tick beside
        MariaDB calls).  A context is safe to share between connections and threads.
        Explicit ``ssl_*`` options still get a context of their own per connection, so
        renewed certificate files are read on the next connect.
        """
        global _preferred_context
        if sslp != {}:
            return super()._create_ssl_ctx(sslp)
        with _preferred_lock:
            if _preferred_context is None:
                _preferred_context = super()._create_ssl_ctx(sslp)
            return _preferred_context


#: What the backend calls to connect: the cached-description connection where supported.
connect: Any = Connection if SUPPORTED else pymysql.connect
