"""Building throwaway relational plugins (a module and a migrations directory) for tests.

Every test plugin gets a unique name, so its schema ``pl_<name>`` on the shared
PostgreSQL and MariaDB servers belongs to that test alone; :func:`drop_schemas` removes
them afterwards.
"""

from __future__ import annotations

import importlib.util
import sys
import textwrap
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import ModuleType

import pytest

from servers import require_server

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
MY_URL = "mysql://root@127.0.0.1:3306/test"
ENGINES = ("sqlite", "postgresql", "mysql")

# Revision bodies; {schema} is the plugin's schema.  Every revision also records that it
# ran in the table "runs" (no key: a second run would show as a duplicate row).
CREATE_NOTES = """
    op.create_table("runs", sa.Column("revision", sa.String(20)), schema="{schema}")
    op.create_table(
        "notes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("text", sa.String(100), nullable=False),
        schema="{schema}",
    )
    op.execute("INSERT INTO {schema}.runs (revision) VALUES ('r1')")
"""
DROP_NOTES = """
    op.drop_table("notes", schema="{schema}")
    op.drop_table("runs", schema="{schema}")
"""
ADD_STARS = """
    with op.batch_alter_table("notes", schema="{schema}") as batch:
        batch.add_column(sa.Column("stars", sa.Integer, nullable=True))
    op.execute("INSERT INTO {schema}.runs (revision) VALUES ('r2')")
"""
DROP_STARS = """
    with op.batch_alter_table("notes", schema="{schema}") as batch:
        batch.drop_column("stars")
"""
NOTES_TABLE = """
notes = Table(
    "notes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("text", String(100), nullable=False),
    Column("stars", Integer, nullable=True),
)
runs = Table("runs", metadata, Column("revision", String(20)))
"""


def unique_name(label: str) -> str:
    return f"t{uuid.uuid4().hex[:8]}_{label}"


def url_for(engine: str, tmp_path: Path) -> str:
    if engine == "postgresql":
        require_server("PostgreSQL", "127.0.0.1", 5432)
        return PG_URL
    if engine == "mysql":
        require_server("MariaDB", "127.0.0.1", 3306)
        return MY_URL
    return f"sqlite:///{tmp_path}/store.sqlite3"


def write_plugin(
    root: Path,
    name: str,
    revisions: Sequence[tuple[str, str]] = ((CREATE_NOTES, DROP_NOTES), (ADD_STARS, DROP_STARS)),
    *,
    tables: str = NOTES_TABLE,
) -> Path:
    """Write ``root/plug_<name>.py`` (``metadata`` and ``plugin``) and the migrations
    directory ``root/mig_<name>`` with ``revisions`` (upgrade, downgrade bodies) chained
    as r1, r2, ...; return the module's path."""
    schema = f"pl_{name}"
    migrations = root / f"mig_{name}"
    migrations.mkdir(parents=True, exist_ok=True)
    for number, (up, down) in enumerate(revisions, 1):
        add_revision(migrations, schema, number, up, down)
    module = root / f"plug_{name}.py"
    module.write_text(
        "from pathlib import Path\n"
        "from datetime import datetime\n"
        "from sqlalchemy import Column, Integer, String, Table\n"
        "from plugstore.relational import (\n"
        "    RelationalPlugin, Setting, Settings, plugin_metadata)\n"
        f"metadata = plugin_metadata({name!r})\n"
        f"{tables}\n"
        f"plugin = RelationalPlugin({name!r}, metadata,\n"
        f"                          Path(__file__).parent / {migrations.name!r})\n"
    )
    return module


def add_revision(migrations: Path, schema: str, number: int, up: str, down: str) -> None:
    down_revision = repr(f"r{number - 1}") if number > 1 else "None"

    def block(code: str) -> str:
        return textwrap.indent(textwrap.dedent(code).strip() or "pass", "    ")

    body = (
        f'"""revision {number}"""\n'
        "import sqlalchemy as sa\n"
        "from alembic import op\n\n"
        f'revision = "r{number}"\n'
        f"down_revision = {down_revision}\n"
        "branch_labels = None\n"
        "depends_on = None\n\n\n"
        f"def upgrade():\n{block(up)}\n\n\n"
        f"def downgrade():\n{block(down)}\n"
    )
    (migrations / f"r{number}.py").write_text(body.replace("{schema}", schema))


def load(module_path: Path) -> ModuleType:
    """Import a plugin module written by :func:`write_plugin` (fresh each time)."""
    name = module_path.stem
    spec = importlib.util.spec_from_file_location(name, module_path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def drop_schemas(url: str, names: Iterable[str]) -> None:
    """Drop the plugins' schemas (a PostgreSQL schema, a MariaDB database)."""
    from sqlalchemy import text

    from plugstore.relational.engines import Database

    database = Database.parse(url)
    if database.kind == "sqlite":
        return
    engine = database.engine()
    try:
        with engine.begin() as conn:
            for name in names:
                schema = f"pl_{name}"
                assert schema.replace("_", "").isalnum()
                if database.kind == "postgresql":
                    conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
                else:
                    conn.execute(text(f"DROP DATABASE IF EXISTS `{schema}`"))
    finally:
        engine.dispose()


# The fixtures of the relational test modules, which import them under these names.


@pytest.fixture(name="url", params=ENGINES)
def url_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The store URL of each engine in turn (SQLite in ``tmp_path``)."""
    return url_for(request.param, tmp_path)


@pytest.fixture(name="plugin_names")
def plugin_names_fixture(url: str) -> Iterator[list[str]]:
    """The test's plugin names on ``url``: their schemas are dropped after it."""
    names: list[str] = []
    yield names
    drop_schemas(url, names)
