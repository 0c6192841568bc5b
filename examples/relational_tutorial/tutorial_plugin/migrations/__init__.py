"""Alembic revisions of the plugstore plugin 'tutorial' (schema pl_tutorial).

Applied by plugstore at start-up; no env.py, alembic.ini or template is needed here.
Make a revision with:  plugstore db revision --plugin tutorial -m "what changed" --autogenerate
"""
