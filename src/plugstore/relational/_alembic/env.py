"""The one Alembic environment of every plugstore plugin (plugins have none of their own).

Alembic runs this file; everything it needs (the plugin, its metadata and schema, the
connection) comes from the config plugstore made.
"""

from plugstore.relational.migrations import run_environment

run_environment()
