"""The tutorial plugin's tables, in its own schema ``pl_tutorial``."""

from datetime import datetime
from pathlib import Path

from sqlalchemy import Column, Integer, String, Table

from plugstore.relational import RelationalPlugin, Setting, Settings, plugin_metadata

metadata = plugin_metadata("tutorial")

string_ints = Table(
    "string_ints",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("string1", String(50), nullable=False),
    Column("int1", Integer, nullable=False),
)

#: Peek's Setting/SettingProperty tables, as declared settings with types and defaults.
settings = Settings(
    metadata,
    {
        "greeting": Setting(str, "hello"),
        "max_rows": Setting(int, 100),
        "ratio": Setting(float, 0.5),
        "enabled": Setting(bool, True),
        "last_import": Setting(datetime, None),
        "colours": Setting(dict, {}),
    },
)

plugin = RelationalPlugin("tutorial", metadata, Path(__file__).parent / "migrations")
