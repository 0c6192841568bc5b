"""Alembic revisions of the chat plugin 'poll' (schema pl_poll), applied by plugstore."""
