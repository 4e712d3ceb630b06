"""Alembic migrations for control.store (run by engine.open_store; no alembic.ini needed)."""
