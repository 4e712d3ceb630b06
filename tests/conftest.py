"""Fixtures shared by tests/unit and tests/integration."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.postgres import PostgresServer, postgres_server


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server for the whole session, started on first use (the store
    tests' PostgreSQL parameter and tests/integration/test_postgres.py share it); each test
    makes its own database on it with `create_database()`."""
    with postgres_server() as server:
        yield server
