"""The behaviour suite's `test_semantics_events.py` on PostgreSQL (see conftest.py)."""

from integration.test_semantics_events import *  # noqa: F403
