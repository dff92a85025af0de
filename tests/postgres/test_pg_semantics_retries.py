"""The behaviour suite's `test_semantics_retries.py` on PostgreSQL (see conftest.py)."""

from integration.test_semantics_retries import *  # noqa: F403
