"""The behaviour suite's `test_semantics_replay.py` on PostgreSQL (see conftest.py)."""

from integration.test_semantics_replay import *  # noqa: F403
