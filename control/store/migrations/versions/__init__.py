"""Alembic revisions, one file each, in order of their `down_revision` chain."""
