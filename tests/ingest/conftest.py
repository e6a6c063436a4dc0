"""Fixtures of the ingest tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from pelbiot.storage.db import make_engine
from pelbiot.storage.migrations import upgrade


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """The writer's engine on this test's migrated database."""
    engine = make_engine(database_url, writer=True)
    upgrade(engine)
    yield engine
    engine.dispose()
